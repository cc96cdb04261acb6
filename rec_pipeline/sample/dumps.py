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
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rec_pipeline.atomic import atomic_path
from rec_pipeline.ingest import formats, release_2018
from rec_pipeline.ingest.release import MetaFields, ReviewFields, present
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
# The word lists live in ``vocabulary.json`` beside this module (package data). Each topic has its own nouns,
# adjectives, details and features, so the topic is recoverable from the text; the shared lists appear
# everywhere, as boilerplate does in real listings and reviews.


@dataclass(frozen=True)
class Topic:
    name: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    details: tuple[str, ...]
    features: tuple[str, ...]
    brands: tuple[str, ...]
    median_price: float


def _load_vocabulary() -> dict[str, Any]:
    text = resources.files("rec_pipeline.sample").joinpath("vocabulary.json").read_text(encoding="utf-8")
    vocabulary: dict[str, Any] = json.loads(text)
    return vocabulary


def _by_rating(table: dict[str, list[str]]) -> dict[int, tuple[str, ...]]:
    return {int(rating): tuple(words) for rating, words in table.items()}


_VOCABULARY = _load_vocabulary()
TOPICS: tuple[Topic, ...] = tuple(
    Topic(
        t["name"],
        tuple(t["nouns"]),
        tuple(t["adjectives"]),
        tuple(t["details"]),
        tuple(t["features"]),
        tuple(t["brands"]),
        float(t["median_price"]),
    )
    for t in _VOCABULARY["topics"]
)
OPENERS = _by_rating(_VOCABULARY["openers"])
VERDICTS = _by_rating(_VOCABULARY["verdicts"])
CLOSINGS = _by_rating(_VOCABULARY["closings"])
SUMMARIES = _by_rating(_VOCABULARY["summaries"])
FILLER: tuple[str, ...] = tuple(_VOCABULARY["filler"])
MARKETING: tuple[str, ...] = tuple(_VOCABULARY["marketing"])
FIRST_NAMES: tuple[str, ...] = tuple(_VOCABULARY["first_names"])
NICKNAMES: tuple[str, ...] = tuple(_VOCABULARY["nicknames"])
SIZES: tuple[str, ...] = tuple(_VOCABULARY["sizes"])
HTML_DOCUMENT: str = _VOCABULARY["html_document"]
STRAY_PRICE_HTML: str = _VOCABULARY["stray_price_html"]
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
    """(reviews, metadata) file names exactly as each release published them (2023 has no 5-core files)."""
    published = formats.release(release)
    return published.reviews_file.name(category, five_core), published.meta_file.name(category)


# --- field names: the reader's own (rec_pipeline.ingest.release_*), so writer and reader cannot drift apart ---------


def review_fields(release: str) -> ReviewFields:
    fields = formats.format_for(release, "reviews").fields
    assert isinstance(fields, ReviewFields)
    return fields


def meta_fields(release: str) -> MetaFields:
    fields = formats.format_for(release, "meta").fields
    assert isinstance(fields, MetaFields)
    return fields


def _key(name: str | None) -> str:
    """A JSON key ready to be followed by its value: '"name": '."""
    assert name is not None, "the release has no such field"
    return json.dumps(name) + ": "


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
    ids = [uid[: 1 + int(k)] for uid, k in zip(full, lengths, strict=True)]
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
        for asin, base in zip(self.asins, self.base.tolist(), strict=True):
            members.setdefault(item_ids[base], [item_ids[base]]).append(asin)
        return {item: tuple(sorted(asins)) for item, asins in members.items()}

    def variants_of(self) -> dict[int, list[str]]:
        """Item index -> its variant asins, for the metadata writer."""
        out: dict[int, list[str]] = {}
        for asin, base in zip(self.asins, self.base.tolist(), strict=True):
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
    draw: ReviewDraw, user_ids: list[str], items: list[ItemContent], rng: np.random.Generator, release: str
) -> LineTables:
    """The release's fragments; fields it does not have (2023: reviewer names, style) are left empty."""
    fields = review_fields(release)
    name_key = fields.user_name
    n_users = len(user_ids)
    names = []
    for _ in range(n_users):  # drawn whatever the release, so every release sees the same random stream
        roll = rng.random()
        if roll < 0.01:
            name = None
        elif roll < 0.12:
            name = "Amazon Customer"
        elif roll < 0.35:
            name = f"{rng.choice(NICKNAMES)}{rng.integers(1, 100)}"
        else:
            name = f"{rng.choice(FIRST_NAMES)} {chr(65 + int(rng.integers(0, 26)))}"
        names.append(f'{_key(name_key)}"{name}", ' if name is not None and name_key is not None else "")
    style_key = fields.style
    style = [
        json.dumps({style_key: sv})[1:-1] + ", " if style_key is not None else ""
        for item in items
        for sv in item.style_variants
    ] + [""]
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
    key = _key(review_fields("2018").votes)
    for pos in np.flatnonzero(votes).tolist():
        out[pos] = f'{key}"{int(votes[pos]):,}", '
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
    f = review_fields(release)
    k_user, k_item, k_rating, k_time = _key(f.user), _key(f.item), _key(f.rating), _key(f.time)
    k_text, k_summary = _key(f.text), _key(f.summary)
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
        k_images, k_variant, k_votes, k_verified = _key(f.images), _key(f.variant), _key(f.votes), _key(f.verified)
        return [
            f'{{{k_rating}{r}, {k_summary}"{s}", {k_text}"{h}{t}", {k_images}{im}, {k_variant}"{v}", '
            f'{k_item}"{i}", {k_user}"{u}", {k_time}{ms}, {k_votes}{hv}, '
            f"{k_verified}{ve}}}"
            for r, s, h, t, im, v, i, u, ms, hv, ve in zip(
                rating, summary, head, tail, images, variant, item, user, ts, helpful, verified, strict=True
            )
        ]
    names = tables.name_field[draw.user[idx]].tolist()
    seconds = (day * 86_400).tolist()
    review_time = tables.review_time[day - tables.first_day].tolist()
    if release == "2014":
        helpful_idx = np.minimum(extras.votes[idx], 63) * 64 + np.minimum(extras.total_votes[idx], 63)
        helpful = tables.helpful[helpful_idx].tolist()
        k_helpful, k_date = _key(f.votes), _key(f.date)
        return [
            f'{{{k_user}"{u}", {k_item}"{i}", {n}{k_helpful}{hp}, {k_text}"{h}{t}", {k_rating}{r}, '
            f'{k_summary}"{s}", {k_time}{sec}, {k_date}"{rt}"}}'
            for u, i, n, hp, h, t, r, s, sec, rt in zip(
                user, listed, names, helpful, head, tail, rating, summary, seconds, review_time, strict=True
            )
        ]
    votes = _vote_fragments(extras.votes[idx])
    sv = extras.style_variant[idx]
    style_idx = np.where(sv >= 0, draw.item[idx].astype(np.int64) * 3 + sv, len(tables.style_field) - 1)
    style = tables.style_field[style_idx].tolist()
    images = [""] * len(idx)
    k_photos, k_verified, k_date = _key(f.images), _key(f.verified), _key(f.date)
    for pos in photo_pos:
        images[pos] = k_photos + json.dumps(_photo_urls(category, user[pos], item[pos], int(photos[pos]))) + ", "
    verified = np.where(extras.verified[idx], "true", "false").tolist()
    return [
        f'{{{im}{k_rating}{r}, {vo}{k_verified}{ve}, {k_date}"{rt}", {k_user}"{u}", {k_item}"{i}", '
        f'{st}{n}{k_text}"{h}{t}", {k_summary}"{s}", {k_time}{sec}}}'
        for im, r, vo, ve, rt, u, i, st, n, h, t, s, sec in zip(
            images,
            rating,
            votes,
            verified,
            review_time,
            user,
            listed,
            style,
            names,
            head,
            tail,
            summary,
            seconds,
            strict=True,
        )
    ]


def corrupt_line(line: str, kind: str, release: str, rng: np.random.Generator) -> str:
    """Turn a valid review line into one dirt line of ``kind`` (every kind is rejected by a careful reader)."""
    if kind == "empty_line":
        return ""
    if kind == "malformed_json":
        return line[: max(1, len(line) // 2)]
    record = json.loads(line)
    fields = review_fields(release)
    user_key, rating_key = fields.user, fields.rating
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
    tables = build_line_tables(draw, user_ids, items, rng, spec.release)
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


def _thumbnail(url: str) -> str:
    """The 38x50 thumbnail URL of a picture, as 2018's ``image`` lists hold them (the reader maps it back)."""
    stem, _, ext = url.rpartition(".")
    return f"{stem}._SX38_SY50_CR,0,0,38,50_.{ext}"


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
        for asin, size in zip(asins, rng.choice(SIZES, size=len(asins), replace=False).tolist(), strict=True):
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
    m = meta_fields(release)
    image_variant = release_2018.image_key_variant(world.spec.category)
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
            ((image_key,),) = m.image_keys
            record: dict = {m.item: item.item_id}
            if item.title:
                record[m.title] = item.title
            if item.price is not None:
                record[m.price] = item.price
            if item.image_url:
                record[image_key] = item.image_url
            record["related"] = {
                "also_bought": _related(rng, peers, 4),
                "also_viewed": _related(rng, peers, 3),
                "bought_together": _related(rng, peers, 1),
            }
            record["salesRank"] = {display: int(ranks[index])}
            record[m.brand] = item.brand
            record[m.categories] = [item.category_path] + ([[display]] if len(item.category_path) > 1 else [])
            if item.description:
                record[m.description] = " ".join(item.description)
            yield repr(record)
        elif release == "2018":
            # In the order of the real files; small categories keep their images under another key (see release_2018).
            urls = [item.image_url] if item.image_url else []
            image_keys = m.image_keys[image_variant]
            record = {
                m.categories: item.category_path,
                "tech1": "",
                m.description: item.description,
                "fit": "",
                m.title: item.title,
                "also_buy": _related(rng, peers, 4),
            }
            if image_variant == release_2018.SMALL_CATEGORY_IMAGES:
                record.update((key, [_thumbnail(url) for url in urls]) for key in image_keys)
            record.update(
                {
                    "tech2": "",
                    m.brand: item.brand,
                    present(m.features): item.features,
                    "rank": f"{int(ranks[index]):,} in {display} (",
                    "also_view": _related(rng, peers, 3),
                    "details": {},
                    present(m.main_category): display,
                    "similar_item": "",
                    "date": "",
                    m.price: _price_2018(item.price, rng),
                    m.item: item.item_id,
                }
            )
            if image_variant == release_2018.LARGE_CATEGORY_IMAGES:
                high_res, low_res = image_keys
                record.update({low_res: urls, high_res: urls})
            yield json.dumps(record)
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
            ((images_key,),) = m.image_keys
            yield json.dumps(
                {
                    present(m.main_category): display,
                    m.title: item.title,
                    "average_rating": round(float(sums[index] / n_ratings), 1) if n_ratings else None,
                    "rating_number": n_ratings,
                    present(m.features): item.features,
                    m.description: item.description,
                    m.price: item.price,
                    images_key: images,
                    "videos": [],
                    m.brand: item.brand,
                    m.categories: item.category_path,
                    "details": {"Manufacturer": item.brand},
                    m.item: item.item_id,
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


_DEFAULT_SPEC = SampleSpec()


def write_sample(
    data_root: Path, spec: SampleSpec = _DEFAULT_SPEC, logger: logging.Logger | None = None
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
