"""Write the sample world as dump files in each release's original format, names and quirks included.

The reviews file is the big one (a benchmark writes 2 million lines), so every per-review choice is drawn as a
numpy array up front and lines are assembled per chunk from pre-escaped lookup tables: the only per-review
Python work is one f-string per line. Lines stream into gzip chunk by chunk; the gzip header carries no name and
no time, so the same spec always gives the same bytes. Metadata is one line per item and built with plain Python.

2014/2018 specs may ask for *variant copies*, the trap those dumps are known for: some items are listed under
extra variant asins and their reviews are written once per asin (same reviewer, time, rating and text), and a
few reviews are copied once onto an unrelated item. The manifest records both, so a test can check that variant
collapsing recovers exactly the planted families and merges none of the coincidences.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rec_pipeline.atomic import atomic_path
from rec_pipeline.sample.images import STYLE_NAMES, image_ext, image_url, write_item_images
from rec_pipeline.sample.truth import write_truth
from rec_pipeline.sample.world import (
    IMAGE_BROKEN,
    IMAGE_NONE,
    IMAGE_OK,
    ReviewDraw,
    SampleSpec,
    World,
    draw_reviews,
    generate_world,
)

CHUNK_REVIEWS = 100_000
DIRT_KINDS = ("malformed_json", "missing_user_id", "non_numeric_rating", "out_of_range_rating", "empty_line")
NON_NUMERIC_RATINGS = ("five", "N/A", "4 stars", "", "excellent")

# --- vocabularies -----------------------------------------------------------------------------------------------
# Each topic has its own nouns, adjectives, details and features, so the topic is recoverable from the text; the
# shared filler below appears everywhere, as boilerplate does in real listings and reviews.


@dataclass(frozen=True)
class Topic:
    name: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    details: tuple[str, ...]
    features: tuple[str, ...]
    brands: tuple[str, ...]
    median_price: float


TOPICS: tuple[Topic, ...] = (
    Topic(
        "Puzzles",
        ("jigsaw puzzle", "puzzle", "brain teaser", "3D puzzle", "puzzle cube", "maze puzzle"),
        ("challenging", "interlocking", "tricky", "scenic", "panoramic"),
        (
            "The pieces fit snugly and the picture is vivid.",
            "It took us a whole weekend to finish it.",
            "No missing pieces and the cardboard is thick.",
            "The edge pieces are easy to sort.",
            "Great for family puzzle night at the kitchen table.",
        ),
        (
            "1000 interlocking pieces",
            "Poster included for reference",
            "Thick recycled cardboard",
            "Finished size 27 x 20 inches",
            "Glare-free linen finish",
        ),
        ("Ravenwood", "PuzzleCraft", "Mindbend"),
        14.0,
    ),
    Topic(
        "Plush Toys",
        ("teddy bear", "plush bunny", "stuffed animal", "plush dragon", "plush unicorn", "pillow pet"),
        ("soft", "cuddly", "fluffy", "huggable", "squishy"),
        (
            "The fur is incredibly soft and the stitching is tight.",
            "My toddler sleeps with it every night.",
            "It survived the washing machine without issues.",
            "The embroidered eyes are safe for babies.",
            "Bigger and softer than it looks in the photos.",
        ),
        (
            "Ultra-soft polyester fur",
            "Embroidered safety eyes",
            "Surface washable",
            "Measures 14 inches tall",
            "Hypoallergenic stuffing",
        ),
        ("Cuddlebug", "SnuggleCo", "Fuzzy Friends"),
        17.0,
    ),
    Topic(
        "Building Blocks",
        ("building set", "brick kit", "block set", "construction kit", "magnetic tiles"),
        ("creative", "compatible", "modular", "sturdy", "stackable"),
        (
            "The bricks click together firmly and come apart easily.",
            "The instructions are clear, step by step.",
            "Compatible with the bricks we already had.",
            "We built the castle in one afternoon.",
            "Lots of pieces to build your own designs.",
        ),
        (
            "520 pieces",
            "Compatible with major brick brands",
            "Step-by-step instruction booklet",
            "Storage bin included",
            "BPA-free ABS plastic",
        ),
        ("Brickforge", "BlockBuddy", "Constructo"),
        34.0,
    ),
    Topic(
        "Remote Control Vehicles",
        ("RC car", "remote control truck", "drone", "RC helicopter", "stunt car"),
        ("fast", "rechargeable", "rugged", "off-road", "wireless"),
        (
            "The battery lasts about twenty minutes per charge.",
            "It handles grass and gravel surprisingly well.",
            "The remote has a good range in the backyard.",
            "It flips over and keeps driving.",
            "Charging takes a couple of hours with the USB cable.",
        ),
        (
            "2.4GHz remote control",
            "Rechargeable battery included",
            "Top speed 15 mph",
            "Shock-absorbing suspension",
            "USB charging cable",
        ),
        ("TurboTrax", "SkyHawk", "RoadRush"),
        45.0,
    ),
    Topic(
        "Board Games",
        ("board game", "card game", "strategy game", "party game", "dice game"),
        ("strategic", "competitive", "family-friendly", "cooperative", "replayable"),
        (
            "Rules are easy to learn but there is real strategy.",
            "Game night has never been this loud.",
            "A round takes about forty five minutes.",
            "The cards and tokens are good quality.",
            "Works well with two players and with six.",
        ),
        (
            "For 2 to 6 players",
            "Ages 8 and up",
            "45 minute play time",
            "Includes 120 cards and 4 dice",
            "Quick start rules sheet",
        ),
        ("Meeple House", "Gamewright Labs", "Tabletop Co"),
        24.0,
    ),
    Topic(
        "Arts & Crafts",
        ("craft kit", "paint set", "crayon set", "bead kit", "sketchbook set", "slime kit"),
        ("washable", "non-toxic", "vibrant", "mess-free", "creative"),
        (
            "The colors are vibrant and wash out of clothes.",
            "Enough beads for a dozen bracelets.",
            "My daughter spent hours painting with it.",
            "The markers did not dry out.",
            "Everything comes in a neat carrying case.",
        ),
        (
            "Washable non-toxic paints",
            "24 vibrant colors",
            "Carrying case included",
            "Over 500 beads",
            "Safety scissors included",
        ),
        ("Artsy Kids", "ColorNest", "Crafty Cub"),
        15.0,
    ),
    Topic(
        "Outdoor Play",
        ("water blaster", "kite", "jump rope", "sandbox set", "bubble machine", "frisbee"),
        ("durable", "weatherproof", "lightweight", "splash-proof", "portable"),
        (
            "It soaked everyone at the pool party.",
            "Flies easily even in a light breeze.",
            "Held up to a summer of backyard play.",
            "The bubbles come out fast and big.",
            "Folds up small enough for the beach bag.",
        ),
        (
            "Range up to 30 feet",
            "UV-resistant plastic",
            "Ripstop nylon sail",
            "Batteries not included",
            "Carry bag included",
        ),
        ("SunSplash", "Backyard Pro", "Windrider"),
        19.0,
    ),
    Topic(
        "Dolls & Figures",
        ("doll", "action figure", "dollhouse", "figure set", "fashion doll"),
        ("poseable", "articulated", "collectible", "detailed", "miniature"),
        (
            "The joints are poseable and hold their position.",
            "The outfits are well made and easy to change.",
            "The paint details on the face are excellent.",
            "The dollhouse furniture is tiny and adorable.",
            "A great addition to his collection.",
        ),
        (
            "11 points of articulation",
            "Includes 3 outfits",
            "Display stand included",
            "Stands 12 inches tall",
            "Hand-painted details",
        ),
        ("Figurine Works", "Dollhaven", "HeroForge"),
        22.0,
    ),
)

OPENERS = {
    5: ("Absolutely love", "We really love", "My kids adore", "I highly recommend", "Couldn't be happier with"),
    4: ("Pretty happy with", "We really like", "Overall satisfied with", "Good experience with", "Nice job on"),
    3: ("Mixed feelings about", "Not sure about", "Somewhat okay with", "Average experience with", "So-so on"),
    2: ("Somewhat disappointed with", "Expected more from", "Not impressed by", "Kind of let down by", "Unhappy with"),
    1: ("Very disappointed with", "Do not buy", "Really regret buying", "Terrible experience with", "Avoid"),
}
VERDICTS = {
    5: (
        "it exceeded my expectations",
        "it is worth every penny",
        "it works perfectly",
        "it is the best gift this year",
    ),
    4: ("it is good for the price", "it works well with minor quirks", "it is well made overall", "it does its job"),
    3: ("it is just average", "it does the job but nothing special", "quality is hit or miss", "it is fine I guess"),
    2: (
        "it feels cheaper than expected",
        "it broke after a few weeks",
        "it is smaller than pictured",
        "parts wore out fast",
    ),
    1: (
        "it arrived broken",
        "it fell apart on the first day",
        "it is a waste of money",
        "nothing worked out of the box",
    ),
}
CLOSINGS = {
    5: ("Five stars from our family.", "Would buy again in a heartbeat.", "Highly recommended!", "Love it!"),
    4: ("Would recommend.", "Overall a solid buy.", "Happy with the purchase.", "Good value."),
    3: ("It's fine for the price.", "Not bad, not great.", "Might look for something else next time.", "Meh."),
    2: ("Probably would not buy again.", "Expected better quality.", "Two stars for the effort.", "Disappointing."),
    1: ("Returned it.", "One star is generous.", "Save your money.", "Complete junk."),
}
SUMMARIES = {
    5: ("Five Stars", "Five Stars", "Five Stars", "Love it!", "Perfect gift", "Excellent", "Great {noun}"),
    4: ("Four Stars", "Four Stars", "Good value", "Nice {noun}", "Pretty good", "Kids like it"),
    3: ("Three Stars", "Three Stars", "OK", "Average {noun}", "It's alright"),
    2: ("Two Stars", "Two Stars", "Meh", "Not great", "Disappointed with this {noun}"),
    1: ("One Star", "One Star", "Junk", "Broke immediately", "Waste of money", "Terrible {noun}"),
}
FILLER = (
    "I bought this as a gift for my nephew.",
    "Shipping was fast and the packaging was fine.",
    "We have had it for about a month now.",
    "The box was a bit dented but the contents were fine.",
    "I compared several options before choosing this one.",
    "My daughter plays with it almost every day.",
    "Instructions were easy enough to follow.",
    "Arrived two days earlier than expected.",
    "Bought it for a birthday party and it was a hit.",
    "The price was lower than in the local store.",
    "Grandkids visit every weekend and this gets used a lot.",
    "I read a lot of reviews before ordering.",
)
MARKETING = (
    "Makes a great gift for birthdays and holidays.",
    "Perfect for ages 3 and up.",
    "Encourages creativity and imaginative play.",
    "Designed and tested for safety.",
    "Satisfaction guaranteed or your money back.",
    "Hours of fun for the whole family.",
)
FIRST_NAMES = (
    "Shelly",
    "Adam",
    "Maria",
    "James",
    "Linda",
    "Kevin",
    "Priya",
    "Tom",
    "Ana",
    "Chris",
    "Wei",
    "Jordan",
    "Fatima",
    "Lucas",
    "Emma",
    "Noah",
    "Olivia",
    "Sam",
    "Grace",
    "Omar",
)
NICKNAMES = ("houserules", "toyfan", "momof3", "gamer", "crafty", "bargainhunter", "dad_on_duty", "reader")
SIZES = ("Small", "Medium", "Large", "One Size", "Pack of 2", "Pack of 4")
HTML_DOCUMENT = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title><style type="text/css">'
    'body {{ font-family: Arial; }} .a-box {{ margin: 0; }}</style></head><body><div class="a-box">'
    '<span id="productTitle">{title}</span></div></body></html>'
)
STRAY_PRICE_HTML = ".a-section.a-spacing-mini{margin-bottom:6px!important;}.a-box-inner{background-color:#fff;}"
ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
MAX_VARIANT_ASINS = 3  # extra asins per planted family
# Every variant asin carries the first MIN_VARIANT_COPIES text reviews of its item (so it shares enough events to
# be recognized as a variant) and each other review with VARIANT_COPY_SHARE: pooled reviews overlap only partly.
MIN_VARIANT_COPIES = 2
VARIANT_COPY_SHARE = 0.85


@dataclass(frozen=True)
class SampleManifest:
    """What :func:`write_sample` wrote, with the exact counts tests check ingestion against."""

    release: str
    category: str
    reviews_path: Path
    meta_path: Path
    truth_path: Path
    truth_items_path: Path
    truth_users_path: Path
    image_paths: tuple[Path, ...]
    review_lines: int  # every line of the reviews file, dirt included
    review_records: int  # valid review records (== spec.n_reviews)
    unique_pairs: int  # distinct (user, item) pairs: the deduplicated-latest review count
    duplicates: int  # later copies of an already reviewed (user, item)
    dirt: dict[str, int]  # dirt lines in the reviews file by kind (see DIRT_KINDS)
    items: int  # distinct items in the metadata file
    meta_lines: int
    meta_dirt: dict[str, int] = field(default_factory=dict)  # duplicated asin lines, HTML titles, empty fields
    images: dict[str, int] = field(default_factory=dict)  # written / broken (URL but no file) / none
    # Valid lines that repeat a review on another asin (variant and coincidental copies); review_records,
    # unique_pairs and duplicates count reviews, not lines, so they are what collapsing the copies gives back.
    copy_lines: int = 0
    variant_families: dict[str, tuple[str, ...]] = field(default_factory=dict)  # item -> its asins, sorted
    coincidences: tuple[tuple[str, str], ...] = ()  # unrelated asin pairs sharing exactly one review

    @property
    def paths(self) -> tuple[Path, ...]:
        """The dump and truth files (images excluded: there may be tens of thousands)."""
        return (self.reviews_path, self.meta_path, self.truth_path, self.truth_items_path, self.truth_users_path)

    @property
    def dirt_lines(self) -> int:
        return sum(self.dirt.values())


# --- file names and ids -----------------------------------------------------------------------------------------


def dump_file_names(category: str, release: str, five_core: bool = True) -> tuple[str, str]:
    """(reviews, metadata) file names exactly as each release published them."""
    suffix = "_5" if five_core else ""
    if release == "2014":
        return f"reviews_{category}{suffix}.json.gz", f"meta_{category}.json.gz"
    if release == "2018":
        return f"{category}{suffix}.json.gz", f"meta_{category}.json.gz"
    # The 2023 release has no 5-core review files; it publishes whole categories only.
    return f"{category}.jsonl.gz", f"meta_{category}.jsonl.gz"


def random_ids(
    rng: np.random.Generator, n: int, prefix: str, length: int, exclude: frozenset[str] = frozenset()
) -> list[str]:
    """``n`` distinct ids of ``prefix`` + ``length`` upper-case alphanumerics, like Amazon's, in draw order."""
    out: list[str] = []
    seen = set(exclude)
    while len(out) < n:
        need = n - len(out)
        codes = ALNUM[rng.integers(0, len(ALNUM), size=(need, length))]
        for raw in codes.view(f"S{length}").ravel().tolist():
            candidate = prefix + raw.decode()
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out


def make_user_ids(rng: np.random.Generator, n: int, release: str) -> list[str]:
    """2014/2018 reviewerIDs are "A" + 11-13 characters; 2023 user_ids are "A" + 27."""
    if release == "2023":
        return random_ids(rng, n, "A", 27)
    lengths = rng.choice([11, 12, 13], size=n, p=[0.2, 0.4, 0.4])
    full = random_ids(rng, n, "A", 13)
    ids = [uid[: 1 + int(k)] for uid, k in zip(full, lengths)]
    if len(set(ids)) < n:  # truncation collided (astronomically rare): keep the full-length ids
        return full
    return ids


def make_item_ids(rng: np.random.Generator, n: int) -> list[str]:
    """ASINs like "B00XXXXXXX", sorted, so item index order is file order (real files are grouped by asin)."""
    return sorted(random_ids(rng, n, "B0", 8))


# --- item content -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemContent:
    """Release-independent content of one item; each release's writer renders it in its own fields."""

    item_id: str
    title: str
    brand: str
    description: list[str]
    features: list[str]
    price: float | None
    category_path: list[str]
    image_url: str | None
    variant_ids: list[str]  # 2023 variant asins (the first may equal item_id)
    style_variants: list[dict[str, str]]  # 2018 review "style" dicts an item's buyers can pick from


def _htmlify(text: str, rng: np.random.Generator) -> str:
    """Add the kinds of HTML dirt real listings carry: tags, line breaks and entities."""
    kind = rng.integers(0, 3)
    if kind == 0:
        return f"<p>{text}</p>"
    if kind == 1:
        return text.replace(". ", ".<br>", 1).replace(" and ", " &amp; ")
    return f"<b>{text.split('.')[0]}</b>.{'.'.join(text.split('.')[1:])}".replace("'", "&#39;")


def build_item_content(
    world: World, item_ids: list[str], rng: np.random.Generator
) -> tuple[list[ItemContent], dict[str, int]]:
    """Titles, descriptions, features and prices from each item's topic and style, with realistic dirt."""
    spec = world.spec
    display = spec.category.replace("_", " ")
    dirt = {
        "html_title_documents": 0,
        "empty_titles": 0,
        "empty_descriptions": 0,
        "empty_features": 0,
        "html_descriptions": 0,
    }
    variant_pool = random_ids(rng, 2 * len(item_ids), "B0", 8, exclude=frozenset(item_ids))
    out = []
    for index, item_id in enumerate(item_ids):
        topic = TOPICS[int(world.item_topic[index])]
        colour = STYLE_NAMES[int(world.item_style[index])]
        noun = str(rng.choice(topic.nouns))
        adjective = str(rng.choice(topic.adjectives))
        brand = str(rng.choice(topic.brands)) if rng.random() < 0.9 else "Generic"
        title = f"{brand} {adjective.title()} {noun.title()}"
        if rng.random() < 0.5:  # colour in the title, as many listings have, so text hints at the style too
            title += f" ({colour})"
        if rng.random() < 0.3:
            title += f", {rng.choice(SIZES)}"
        details = list(rng.choice(topic.details, size=3, replace=False))
        description = [" ".join([details[0], details[1], str(rng.choice(MARKETING))])]
        if rng.random() < 0.5:
            description.append(" ".join([details[2], str(rng.choice(MARKETING))]))
        features = [str(f) for f in rng.choice(topic.features, size=int(rng.integers(2, 5)), replace=False)]
        roll = rng.random(4)
        if roll[0] < 0.10:
            description = [_htmlify(d, rng) for d in description]
            dirt["html_descriptions"] += 1
        if roll[1] < 0.05:
            description = []
            dirt["empty_descriptions"] += 1
        if roll[2] < 0.05:
            features = []
            dirt["empty_features"] += 1
        if roll[3] < 0.01:
            title = HTML_DOCUMENT.format(title=title)
            dirt["html_title_documents"] += 1
        elif roll[3] < 0.015:
            title = ""
            dirt["empty_titles"] += 1
        # Shop prices end in .99; a sixth of listings show none.
        price = (
            round(max(1.0, round(topic.median_price * rng.lognormal(0.0, 0.4))) - 0.01, 2)
            if rng.random() < 0.85
            else None
        )
        path = [display, topic.name] if rng.random() < 0.85 else [display]
        state = int(world.item_image_state[index])
        url = None if state == IMAGE_NONE else image_url(spec.category, item_id, image_ext(index))
        n_variants = int(rng.integers(1, 4))
        variants = ([item_id] if rng.random() < 0.6 else []) + variant_pool[2 * index : 2 * index + 2]
        style_variants = [{"Color:": f" {colour}"}] + [
            {"Size:": f" {s}", "Color:": f" {colour}"} for s in rng.choice(SIZES, size=2, replace=False)
        ]
        out.append(
            ItemContent(
                item_id, title, brand, description, features, price, path, url, variants[:n_variants], style_variants
            )
        )
    return out, dirt


# --- review text banks ------------------------------------------------------------------------------------------

BANK_SIZE = 256


@dataclass(frozen=True)
class ReviewTextBank:
    """Pre-escaped review text pieces indexed by (topic, rating, draw); a review joins one head and one tail.

    256 heads x 256 tails per (topic, rating) gives 65k distinct texts per cell, so texts look varied while
    only the final concatenation happens per review. The last entry of each flat array is empty (empty reviews).
    """

    heads: np.ndarray  # object, flat (T * 5 * BANK_SIZE + 1,) JSON-escaped, ending with a space
    tails: np.ndarray  # object, flat, JSON-escaped
    summaries: np.ndarray  # object, flat (T * 5 * n_summaries,) JSON-escaped without quotes
    n_summaries: int


def _escape(text: str) -> str:
    return json.dumps(text)[1:-1]


def build_text_bank(rng: np.random.Generator) -> ReviewTextBank:
    heads, tails, summaries = [], [], []
    n_summaries = 8
    for topic in TOPICS:
        for rating in range(1, 6):
            for _ in range(BANK_SIZE):
                noun, adj = rng.choice(topic.nouns), rng.choice(topic.adjectives)
                head = (
                    f"{rng.choice(OPENERS[rating])} this {adj} {noun}; {rng.choice(VERDICTS[rating])}. "
                    f"{rng.choice(topic.details)} "
                )
                heads.append(_escape(head))
                parts = list(rng.choice(FILLER, size=int(rng.integers(1, 4)), replace=False))
                if rng.random() < 0.5:
                    parts.append(str(rng.choice(topic.details)))
                parts.append(str(rng.choice(CLOSINGS[rating])))
                tail = " ".join(parts)
                if rng.random() < 0.03:  # real review text carries stray markup now and then
                    tail = tail.replace(" ", " <br /> ", 1).replace(" and ", " &amp; ")
                tails.append(_escape(tail))
            for _ in range(n_summaries):
                summaries.append(_escape(str(rng.choice(SUMMARIES[rating])).format(noun=rng.choice(topic.nouns))))
    heads.append("")
    tails.append("")
    return ReviewTextBank(
        np.array(heads, dtype=object), np.array(tails, dtype=object), np.array(summaries, dtype=object), n_summaries
    )


# --- per-review choices -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewExtras:
    """Everything about a review besides who, what, when and the rating, drawn once as arrays."""

    head: np.ndarray  # index into bank.heads
    tail: np.ndarray
    summary: np.ndarray
    verified: np.ndarray  # bool
    votes: np.ndarray  # int, 0 = no vote field
    total_votes: np.ndarray  # 2014 "helpful" denominator
    style_variant: np.ndarray  # -1 = no style field
    photos: np.ndarray  # number of review photos
    variant: np.ndarray  # 2023 index into an item's variant list
    millis: np.ndarray  # 2023 milliseconds part of the timestamp


def draw_extras(world: World, draw: ReviewDraw, bank: ReviewTextBank, rng: np.random.Generator) -> ReviewExtras:
    n = len(draw)
    topic = world.item_topic[draw.item].astype(np.int64)
    cell = topic * 5 + draw.rating.astype(np.int64) - 1
    empty = rng.random(n) < 0.002
    empty_head = len(bank.heads) - 1
    head = np.where(empty, empty_head, cell * BANK_SIZE + rng.integers(0, BANK_SIZE, size=n))
    tail = np.where(empty, empty_head, cell * BANK_SIZE + rng.integers(0, BANK_SIZE, size=n))
    summary = cell * bank.n_summaries + rng.integers(0, bank.n_summaries, size=n)
    has_vote = rng.random(n) < 0.12
    votes = np.where(has_vote, np.minimum(np.ceil(rng.pareto(1.2, size=n) * 2 + 1), 99_999), 0).astype(np.int64)
    total = votes + np.where(rng.random(n) < 0.3, rng.integers(0, 5, size=n), 0)
    style_variant = np.where(rng.random(n) < 0.85, rng.integers(0, 3, size=n), -1)
    photos = np.where(rng.random(n) < 0.02, rng.integers(1, 4, size=n), 0)
    return ReviewExtras(
        head=head,
        tail=tail,
        summary=summary,
        verified=rng.random(n) < 0.9,
        votes=votes,
        total_votes=total,
        style_variant=style_variant,
        photos=photos,
        variant=rng.integers(0, 3, size=n),
        millis=rng.integers(0, 1000, size=n),
    )


# --- variant copies -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantCopies:
    """The extra asins of planted variant families and every copy line to write on top of the draw's reviews.

    Asins are numbered as in the reviews file's asin table: items first (``0..n_items-1``), then ``asins``.
    """

    asins: list[str]  # the variant asins
    base: np.ndarray  # the item each variant asin lists
    review: np.ndarray  # int64: draw index of each copy line
    asin: np.ndarray  # int64: asin table index of each copy line
    coincidences: list[tuple[str, str]]  # (smaller, larger) asin of each coincidental copy

    def __len__(self) -> int:
        return len(self.review)

    def families(self, item_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Item id -> all of its asins (its own included), sorted: the families variant collapsing must find."""
        members: dict[str, list[str]] = {}
        for asin, base in zip(self.asins, self.base.tolist()):
            members.setdefault(item_ids[base], [item_ids[base]]).append(asin)
        return {item: tuple(sorted(asins)) for item, asins in members.items()}

    def variants_of(self) -> dict[int, list[str]]:
        """Item index -> its variant asins, for the metadata writer."""
        out: dict[int, list[str]] = {}
        for asin, base in zip(self.asins, self.base.tolist()):
            out.setdefault(base, []).append(asin)
        return out


NO_COPIES = VariantCopies([], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), [])


def plan_variant_copies(
    world: World, draw: ReviewDraw, has_text: np.ndarray, item_ids: Sequence[str], rng: np.random.Generator
) -> VariantCopies:
    """Choose the planted families and coincidences of a 2014/2018 spec and the copy lines they need.

    Families go to items with at least ``MIN_VARIANT_COPIES`` text reviews, so each variant asin can carry
    enough copies to be recognizable. Coincidences copy one text review whose (user, item) has no duplicate
    from a non-family item onto another non-family item the user never reviewed, each item pair at most once:
    one shared review, which must not merge the two.
    """
    spec = world.spec
    if spec.release == "2023" or (spec.variant_families == 0 and spec.coincidental_copies == 0):
        return NO_COPIES
    n_items = spec.n_items
    texts = np.bincount(draw.item[has_text], minlength=n_items)
    eligible = np.flatnonzero(texts >= MIN_VARIANT_COPIES)
    n_families = min(len(eligible), round(spec.variant_families * n_items))
    family_items = np.sort(rng.choice(eligible, size=n_families, replace=False)).astype(np.int64)
    per_family = rng.integers(1, MAX_VARIANT_ASINS + 1, size=n_families)
    asins = random_ids(rng, int(per_family.sum()), "B0", 8, exclude=frozenset(item_ids))
    n_variants = np.zeros(n_items, dtype=np.int64)
    n_variants[family_items] = per_family
    first_variant = np.zeros(n_items, dtype=np.int64)
    first_variant[family_items] = n_items + np.cumsum(per_family) - per_family

    # Each review of a family item, once per variant asin of its item.
    on_family = np.flatnonzero(n_variants[draw.item] > 0)
    reps = n_variants[draw.item[on_family]]
    review = np.repeat(on_family, reps)
    slot = np.arange(len(review)) - np.repeat(np.cumsum(reps) - reps, reps)
    asin = first_variant[draw.item[review]] + slot
    # The first text reviews of each family item (by draw order) go onto every one of its variants.
    by_item = on_family[np.argsort(draw.item[on_family], kind="stable")]
    text = has_text[by_item].astype(np.int64)
    group = np.cumsum(np.r_[True, np.diff(draw.item[by_item]) != 0]) - 1
    texts_before = np.cumsum(text) - text
    rank = texts_before - texts_before[np.r_[0, np.flatnonzero(np.diff(group)) + 1]][group]
    forced = np.zeros(len(draw), dtype=bool)
    forced[by_item[(text == 1) & (rank < MIN_VARIANT_COPIES)]] = True
    keep = forced[review] | (rng.random(len(review)) < VARIANT_COPY_SHARE)
    review, asin = review[keep], asin[keep]

    coincidences: list[tuple[str, str]] = []
    extra_review: list[int] = []
    extra_asin: list[int] = []
    if spec.coincidental_copies:
        free_items = np.flatnonzero(n_variants == 0)
        sources = np.flatnonzero(has_text & draw.is_latest & ~draw.is_duplicate & (n_variants[draw.item] == 0))
        pairs: set[tuple[int, int]] = set()
        for r in rng.permutation(sources)[: 20 * spec.coincidental_copies].tolist():
            if len(pairs) == spec.coincidental_copies or len(free_items) < 2:
                break
            source, target = int(draw.item[r]), int(rng.choice(free_items))
            pair = (min(source, target), max(source, target))
            if source == target or pair in pairs or bool(np.any((draw.user == draw.user[r]) & (draw.item == target))):
                continue
            pairs.add(pair)
            extra_review.append(r)
            extra_asin.append(target)
            coincidences.append((item_ids[pair[0]], item_ids[pair[1]]))
    return VariantCopies(
        asins=asins,
        base=np.repeat(family_items, per_family),
        review=np.concatenate([review, np.array(extra_review, dtype=np.int64)]),
        asin=np.concatenate([asin, np.array(extra_asin, dtype=np.int64)]),
        coincidences=coincidences,
    )


# --- review lines -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineTables:
    """Pre-rendered JSON fragments, so building a line is lookups plus one f-string."""

    rating: np.ndarray  # object, index = rating
    user_id: np.ndarray
    name_field: np.ndarray  # '"reviewerName": "...", ' or '' (some reviewers have no name)
    item_id: np.ndarray
    style_field: np.ndarray  # flat (n_items * 3 + 1): last is ''
    variant_id: np.ndarray  # flat (n_items * 3)
    review_time: np.ndarray  # per epoch day offset
    first_day: int
    helpful: np.ndarray  # flat (64 * 64) "[a, b]"


def _review_time_table(first_day: int, last_day: int) -> np.ndarray:
    """ "MM D, YYYY" for every day, as the 2014/2018 dumps write it (month padded, day not)."""
    days = np.arange(first_day, last_day + 1).astype("datetime64[D]")
    return np.array([f"{d.month:02d} {d.day}, {d.year}" for d in days.tolist()], dtype=object)


def build_line_tables(
    draw: ReviewDraw, user_ids: list[str], items: list[ItemContent], rng: np.random.Generator
) -> LineTables:
    n_users = len(user_ids)
    names = []
    for _ in range(n_users):
        roll = rng.random()
        if roll < 0.01:
            names.append("")
        elif roll < 0.12:
            names.append('"reviewerName": "Amazon Customer", ')
        elif roll < 0.35:
            names.append(f'"reviewerName": "{rng.choice(NICKNAMES)}{rng.integers(1, 100)}", ')
        else:
            names.append(f'"reviewerName": "{rng.choice(FIRST_NAMES)} {chr(65 + int(rng.integers(0, 26)))}", ')
    style = [json.dumps({"style": sv})[1:-1] + ", " for item in items for sv in item.style_variants] + [""]
    variants = [item.variant_ids[k % len(item.variant_ids)] for item in items for k in range(3)]
    helpful = [f"[{min(a, b)}, {b}]" for a in range(64) for b in range(64)]
    first_day, last_day = int(draw.day.min()), int(draw.day.max())
    return LineTables(
        rating=np.array(["", "1.0", "2.0", "3.0", "4.0", "5.0"], dtype=object),
        user_id=np.array(user_ids, dtype=object),
        name_field=np.array(names, dtype=object),
        item_id=np.array([item.item_id for item in items], dtype=object),
        style_field=np.array(style, dtype=object),
        variant_id=np.array(variants, dtype=object),
        review_time=_review_time_table(first_day, last_day),
        first_day=first_day,
        helpful=np.array(helpful, dtype=object),
    )


def _vote_fragments(votes: np.ndarray) -> list[str]:
    """'"vote": "1,234", ' where a review has votes, '' elsewhere (2018 writes votes as strings)."""
    out = [""] * len(votes)
    for pos in np.flatnonzero(votes).tolist():
        out[pos] = f'"vote": "{int(votes[pos]):,}", '
    return out


def _photo_urls(category: str, user: str, item: str, count: int) -> list[str]:
    # Review photos are not in the mirror: real review photos are rarely fetched and these exercise 404 handling.
    return [f"https://images.rec-pipeline.invalid/{category}/reviews/{user}_{item}_{k}.jpg" for k in range(count)]


def _chunk_lines(
    release: str,
    category: str,
    idx: np.ndarray,
    draw: ReviewDraw,
    extras: ReviewExtras,
    bank: ReviewTextBank,
    tables: LineTables,
    asin: np.ndarray | None = None,
) -> list[str]:
    """Render the reviews at positions ``idx`` as JSON lines in the release's field order.

    ``asin`` (indices into ``tables.item_id``) writes a line under another asin than its review's item: a copy,
    identical otherwise, photo URLs included.
    """
    user = tables.user_id[draw.user[idx]].tolist()
    item = tables.item_id[draw.item[idx]].tolist()
    listed = item if asin is None else tables.item_id[asin].tolist()
    rating = tables.rating[draw.rating[idx]].tolist()
    head = bank.heads[extras.head[idx]].tolist()
    tail = bank.tails[extras.tail[idx]].tolist()
    summary = bank.summaries[extras.summary[idx]].tolist()
    day = draw.day[idx]
    photos = extras.photos[idx]
    photo_pos = np.flatnonzero(photos).tolist()
    if release == "2023":
        ts = ((day * 86_400 + draw.seconds_of_day[idx]) * 1000 + extras.millis[idx]).tolist()
        variant = tables.variant_id[draw.item[idx].astype(np.int64) * 3 + extras.variant[idx]].tolist()
        images = ["[]"] * len(idx)
        for pos in photo_pos:
            urls = _photo_urls(category, user[pos], item[pos], int(photos[pos]))
            images[pos] = json.dumps(
                [{"small_image_url": u, "medium_image_url": u, "large_image_url": u} for u in urls]
            )
        helpful = extras.votes[idx].tolist()
        verified = np.where(extras.verified[idx], "true", "false").tolist()
        return [
            f'{{"rating": {r}, "title": "{s}", "text": "{h}{t}", "images": {im}, "asin": "{v}", '
            f'"parent_asin": "{i}", "user_id": "{u}", "timestamp": {ms}, "helpful_vote": {hv}, '
            f'"verified_purchase": {ve}}}'
            for r, s, h, t, im, v, i, u, ms, hv, ve in zip(
                rating, summary, head, tail, images, variant, item, user, ts, helpful, verified
            )
        ]
    names = tables.name_field[draw.user[idx]].tolist()
    seconds = (day * 86_400).tolist()
    review_time = tables.review_time[day - tables.first_day].tolist()
    if release == "2014":
        helpful_idx = np.minimum(extras.votes[idx], 63) * 64 + np.minimum(extras.total_votes[idx], 63)
        helpful = tables.helpful[helpful_idx].tolist()
        return [
            f'{{"reviewerID": "{u}", "asin": "{i}", {n}"helpful": {hp}, "reviewText": "{h}{t}", "overall": {r}, '
            f'"summary": "{s}", "unixReviewTime": {sec}, "reviewTime": "{rt}"}}'
            for u, i, n, hp, h, t, r, s, sec, rt in zip(
                user, listed, names, helpful, head, tail, rating, summary, seconds, review_time
            )
        ]
    votes = _vote_fragments(extras.votes[idx])
    sv = extras.style_variant[idx]
    style_idx = np.where(sv >= 0, draw.item[idx].astype(np.int64) * 3 + sv, len(tables.style_field) - 1)
    style = tables.style_field[style_idx].tolist()
    images = [""] * len(idx)
    for pos in photo_pos:
        images[pos] = '"image": ' + json.dumps(_photo_urls(category, user[pos], item[pos], int(photos[pos]))) + ", "
    verified = np.where(extras.verified[idx], "true", "false").tolist()
    return [
        f'{{{im}"overall": {r}, {vo}"verified": {ve}, "reviewTime": "{rt}", "reviewerID": "{u}", "asin": "{i}", '
        f'{st}{n}"reviewText": "{h}{t}", "summary": "{s}", "unixReviewTime": {sec}}}'
        for im, r, vo, ve, rt, u, i, st, n, h, t, s, sec in zip(
            images, rating, votes, verified, review_time, user, listed, style, names, head, tail, summary, seconds
        )
    ]


def corrupt_line(line: str, kind: str, release: str, rng: np.random.Generator) -> str:
    """Turn a valid review line into one dirt line of ``kind`` (every kind is rejected by a careful reader)."""
    if kind == "empty_line":
        return ""
    if kind == "malformed_json":
        return line[: max(1, len(line) // 2)]
    record = json.loads(line)
    user_key, rating_key = ("user_id", "rating") if release == "2023" else ("reviewerID", "overall")
    if kind == "missing_user_id":
        del record[user_key]
    elif kind == "non_numeric_rating":
        record[rating_key] = str(rng.choice(NON_NUMERIC_RATINGS))
    elif kind == "out_of_range_rating":
        record[rating_key] = float(rng.choice([0.0, 7.0]))
    else:
        raise ValueError(f"unknown dirt kind {kind!r}")
    return json.dumps(record)


def _file_order(asin_rank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lines grouped by asin (asin order, as in the real 5-core files), in random order within an asin."""
    return np.lexsort((rng.random(len(asin_rank)), asin_rank))


def write_reviews(
    path: Path,
    world: World,
    draw: ReviewDraw,
    user_ids: list[str],
    items: list[ItemContent],
    rng: np.random.Generator,
    log: Callable[[str], None],
) -> tuple[int, dict[str, int], VariantCopies]:
    """Stream the reviews file, variant copies included; return (lines written, dirt lines by kind, copies)."""
    spec = world.spec
    bank = build_text_bank(rng)
    extras = draw_extras(world, draw, bank, rng)
    tables = build_line_tables(draw, user_ids, items, rng)
    item_ids = [item.item_id for item in items]
    copies = plan_variant_copies(
        world, draw, extras.head != len(bank.heads) - 1, item_ids, np.random.default_rng([spec.seed, 0x7A41])
    )
    review = np.concatenate([np.arange(len(draw), dtype=np.int64), copies.review])
    asin = np.concatenate([draw.item.astype(np.int64), copies.asin])
    asin_ids = np.array(item_ids + copies.asins, dtype=object)
    tables = dataclasses.replace(tables, item_id=asin_ids)
    # Item ids are sorted, so without copies an item's index is its rank and the order is the one it always was.
    order = _file_order(np.argsort(np.argsort(asin_ids))[asin] if len(copies) else asin, rng)
    n = len(order)
    n_dirt = int(round(spec.dirt_fraction * n))
    dirt_kind = [DIRT_KINDS[k % len(DIRT_KINDS)] for k in range(n_dirt)]
    dirt_before = np.sort(rng.integers(0, n, size=n_dirt))  # a dirt line goes right before this valid line
    dirt_counts = {kind: 0 for kind in DIRT_KINDS}
    kind_order = rng.permutation(n_dirt)
    lines_written = 0
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=spec.compresslevel, mtime=0) as out,
    ):
        for start in range(0, n, CHUNK_REVIEWS):
            stop = min(start + CHUNK_REVIEWS, n)
            rows = order[start:stop]
            lines = _chunk_lines(spec.release, spec.category, review[rows], draw, extras, bank, tables, asin[rows])
            lo, hi = np.searchsorted(dirt_before, [start, stop])
            valid = lines[:]  # dirt is derived from the valid line it precedes, even when two land at one spot
            # Insert from the back so earlier insertion points keep their offsets.
            for d in range(hi - 1, lo - 1, -1):
                pos = int(dirt_before[d]) - start
                kind = dirt_kind[int(kind_order[d])]
                lines.insert(pos, corrupt_line(valid[pos], kind, spec.release, rng))
                dirt_counts[kind] += 1
            out.write(("\n".join(lines) + "\n").encode("utf-8"))
            lines_written += len(lines)
            log(f"reviews: {stop:,}/{n:,} records written")
    return lines_written, dirt_counts, copies


# --- metadata -----------------------------------------------------------------------------------------------------


def _related(rng: np.random.Generator, same_topic: list[str], k: int) -> list[str]:
    if not same_topic:
        return []
    return [str(x) for x in rng.choice(same_topic, size=min(k, len(same_topic)), replace=False)]


def _price_2018(price: float | None, rng: np.random.Generator) -> str:
    if price is None:
        return ""
    roll = rng.random()
    if roll < 0.05:
        return f"${price:,.2f} - ${price * 1.6:,.2f}"
    if roll < 0.08:
        return STRAY_PRICE_HTML
    return f"${price:,.2f}"


def _listings(
    items: list[ItemContent], variants: Mapping[int, Sequence[str]], rng: np.random.Generator
) -> Iterator[tuple[int, ItemContent]]:
    """(item index, listing): each item, then its variant listings, which copy it under another asin with a
    size in the title, as sibling listings read (an empty or HTML-document title is copied as it is)."""
    for index, item in enumerate(items):
        yield index, item
        asins = variants.get(index, ())
        if not asins:
            continue
        for asin, size in zip(asins, rng.choice(SIZES, size=len(asins), replace=False).tolist()):
            title = f"{item.title}, {size}" if item.title and not item.title.startswith("<") else item.title
            yield index, dataclasses.replace(item, item_id=asin, title=title)


def meta_records(
    world: World,
    items: list[ItemContent],
    draw: ReviewDraw,
    rng: np.random.Generator,
    variants: Mapping[int, Sequence[str]] | None = None,
) -> Iterator[str]:
    """One metadata line per item and variant asin (``variants``: item index -> its variant asins), in the
    release's syntax."""
    release = world.spec.release
    topic_members: dict[int, list[str]] = {}
    for index, item in enumerate(items):
        topic_members.setdefault(int(world.item_topic[index]), []).append(item.item_id)
    latest = draw.is_latest
    counts = np.bincount(draw.item[latest], minlength=len(items))
    sums = np.bincount(draw.item[latest], weights=draw.rating[latest].astype(np.float64), minlength=len(items))
    ranks = np.argsort(np.argsort(-counts, kind="stable"), kind="stable") * 37 + rng.integers(1, 37, size=len(items))
    for index, item in _listings(items, variants or {}, rng):
        peers = [x for x in topic_members[int(world.item_topic[index])] if x != item.item_id]
        display = item.category_path[0]
        if release == "2014":
            record: dict = {"asin": item.item_id}
            if item.title:
                record["title"] = item.title
            if item.price is not None:
                record["price"] = item.price
            if item.image_url:
                record["imUrl"] = item.image_url
            record["related"] = {
                "also_bought": _related(rng, peers, 4),
                "also_viewed": _related(rng, peers, 3),
                "bought_together": _related(rng, peers, 1),
            }
            record["salesRank"] = {display: int(ranks[index])}
            record["brand"] = item.brand
            record["categories"] = [item.category_path] + ([[display]] if len(item.category_path) > 1 else [])
            if item.description:
                record["description"] = " ".join(item.description)
            yield repr(record)
        elif release == "2018":
            urls = [item.image_url] if item.image_url else []
            yield json.dumps(
                {
                    "category": item.category_path,
                    "tech1": "",
                    "description": item.description,
                    "fit": "",
                    "title": item.title,
                    "also_buy": _related(rng, peers, 4),
                    "tech2": "",
                    "brand": item.brand,
                    "feature": item.features,
                    "rank": f"{int(ranks[index]):,} in {display} (",
                    "also_view": _related(rng, peers, 3),
                    "main_cat": display,
                    "similar_item": "",
                    "date": "",
                    "price": _price_2018(item.price, rng),
                    "asin": item.item_id,
                    "imageURL": urls,
                    "imageURLHighRes": urls,
                }
            )
        else:
            images = []
            if item.image_url:
                images = [
                    {
                        "thumb": item.image_url,
                        "large": item.image_url,
                        "variant": "MAIN",
                        "hi_res": item.image_url if rng.random() < 0.7 else None,
                    }
                ]
            n_ratings = int(counts[index])
            yield json.dumps(
                {
                    "main_category": display,
                    "title": item.title,
                    "average_rating": round(float(sums[index] / n_ratings), 1) if n_ratings else None,
                    "rating_number": n_ratings,
                    "features": item.features,
                    "description": item.description,
                    "price": item.price,
                    "images": images,
                    "videos": [],
                    "store": item.brand,
                    "categories": item.category_path,
                    "details": {"Manufacturer": item.brand},
                    "parent_asin": item.item_id,
                    "bought_together": None,
                }
            )


def write_meta(
    path: Path,
    world: World,
    items: list[ItemContent],
    draw: ReviewDraw,
    rng: np.random.Generator,
    variants: Mapping[int, Sequence[str]] | None = None,
) -> tuple[int, int]:
    """Write the metadata file, variant listings included; return (lines, duplicated asin lines). Only 2018
    repeats asin lines, as it did."""
    lines, duplicates = [], 0
    duplicate_share = 0.01 if world.spec.release == "2018" else 0.0
    for line in meta_records(world, items, draw, rng, variants):
        lines.append(line)
        if rng.random() < duplicate_share:
            lines.append(line)
            duplicates += 1
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=world.spec.compresslevel, mtime=0) as out,
    ):
        out.write(("\n".join(lines) + "\n").encode("utf-8"))
    return len(lines), duplicates


# --- the whole sample ---------------------------------------------------------------------------------------------


def write_sample(
    data_root: Path, spec: SampleSpec = SampleSpec(), logger: logging.Logger | None = None
) -> SampleManifest:
    """Generate ``spec``'s world and write its dumps into ``<data_root>/raw``, images into the mirror and the
    truth into ``<data_root>/sample_truth``. Deterministic: the same spec writes the same bytes."""
    data_root = Path(data_root)
    log = logger.info if logger is not None else (lambda message: None)
    world = generate_world(spec)
    draw = draw_reviews(world)
    rng = np.random.default_rng([spec.seed, 0xD0C5])
    user_ids = make_user_ids(rng, spec.n_users, spec.release)
    item_ids = make_item_ids(rng, spec.n_items)
    items, meta_dirt = build_item_content(world, item_ids, rng)
    log(f"sample world: {spec.n_users:,} users, {spec.n_items:,} items, {len(draw):,} reviews")

    reviews_name, meta_name = dump_file_names(spec.category, spec.release, spec.five_core_name)
    raw_dir = data_root / "raw"
    reviews_path, meta_path = raw_dir / reviews_name, raw_dir / meta_name
    review_lines, dirt, copies = write_reviews(
        reviews_path, world, draw, user_ids, items, np.random.default_rng([spec.seed, 0xAE11]), log
    )
    meta_lines, meta_duplicates = write_meta(
        meta_path, world, items, draw, np.random.default_rng([spec.seed, 0x3E7A]), copies.variants_of()
    )
    meta_dirt["duplicate_asin_lines"] = meta_duplicates
    families = copies.families(item_ids)
    n_asins = spec.n_items + len(copies.asins)

    to_draw = world.item_image_state == IMAGE_OK
    image_paths = write_item_images(
        data_root,
        spec.category,
        item_ids,
        world.item_style,
        to_draw,
        spec.image_size,
        spec.seed,
        progress=lambda done, total: log(f"images: {done:,}/{total:,}"),
    )
    images = {
        "written": len(image_paths),
        "broken": int((world.item_image_state == IMAGE_BROKEN).sum()),
        "none": int((world.item_image_state == IMAGE_NONE).sum()),
    }
    counts = {
        "review_lines": review_lines,
        "review_records": len(draw),
        "unique_pairs": int(draw.is_latest.sum()),
        "duplicates": int(draw.is_duplicate.sum()),
        "dirt": dirt,
        "items": n_asins,
        "users": spec.n_users,
        "meta_lines": meta_lines,
        "meta_dirt": meta_dirt,
        "images": images,
        "reviews_file": reviews_name,
        "meta_file": meta_name,
        "copy_lines": len(copies),
        "variant_asins": len(copies.asins),
        "coincidental_copies": len(copies.coincidences),
    }
    variants = {
        "families": {item: list(asins) for item, asins in families.items()},
        "coincidences": [list(pair) for pair in copies.coincidences],
    }
    truth_path, truth_items, truth_users = write_truth(
        data_root / "sample_truth", world, draw, item_ids, user_ids, counts, variants
    )
    log(f"sample written: {reviews_path.name} ({review_lines:,} lines), {meta_path.name}, truth in {truth_path.parent}")
    return SampleManifest(
        release=spec.release,
        category=spec.category,
        reviews_path=reviews_path,
        meta_path=meta_path,
        truth_path=truth_path,
        truth_items_path=truth_items,
        truth_users_path=truth_users,
        image_paths=tuple(image_paths),
        review_lines=review_lines,
        review_records=len(draw),
        unique_pairs=int(draw.is_latest.sum()),
        duplicates=int(draw.is_duplicate.sum()),
        dirt=dirt,
        items=n_asins,
        meta_lines=meta_lines,
        meta_dirt=meta_dirt,
        images=images,
        copy_lines=len(copies),
        variant_families=families,
        coincidences=tuple(copies.coincidences),
    )
