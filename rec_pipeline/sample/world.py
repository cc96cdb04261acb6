"""The known rating model behind the sample dumps: who exists, what they like, and which reviews they wrote.

Everything here is plain numpy and deterministic from ``SampleSpec.seed``, so a test or a benchmark can rebuild
the exact truth a dump was written from. Items are *mostly* described by their content (a topic the text reveals
and an image style the pictures reveal), so a hybrid model has real content signal to find and cold items are
predictable; users are free latent vectors, as in any matrix-factorization world. Which items a user reviews
depends on popularity and, by ``SampleSpec.choice_affinity``, on their taste, so ranking is personal too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Release = Literal["2014", "2018", "2023"]

N_TOPICS = 8
N_STYLES = 6
GLOBAL_MEAN = 3.9  # below real dumps' ~4.3 so ratings keep enough spread for models to learn from

# Shares of item-side variance (per factor coordinate and for the bias). Content (topic + style) explains 75%,
# the free residual the rest: cold items are predictable from content, warm ones still reward collaborative data.
FACTOR_SHARES = {"topic": 0.45, "style": 0.30, "residual": 0.25}
BIAS_SHARES = {"topic": 0.60, "style": 0.15, "residual": 0.25}
ITEM_BIAS_STD = 0.35
USER_BIAS_STD = 0.35
INTERACTION_STD = 0.6  # std of p_u . q_i, whatever n_factors is

USER_ACTIVITY_SIGMA = 1.0  # lognormal spread of reviews per user
ITEM_ZIPF_EXPONENT = 0.9
MIN_REVIEWS_PER_USER = 5  # the dumps are named "5-core", so users should look like it where counts allow
# Default strength of personal taste in *which* items a user reviews (see SampleSpec.choice_affinity). Users
# review what they expect to like, so this also lifts the mean rating from GLOBAL_MEAN to about real dumps' 4.4.
# On the demo's sample (leave-last-out) it moves NDCG@10 of popularity from 0.24 to 0.17 and EASE's from 0.22 to
# 0.23: a personalized ranker now has something to find (at 0, popularity is close to the best ranker).
DEFAULT_CHOICE_AFFINITY = 4.0
# Popularity-drawn candidates per review in the affinity-weighted draw: enough that most users' choices come from
# their own pool, few enough that 2M-review benchmarks draw in seconds.
CHOICE_POOL = 8

IMAGE_OK, IMAGE_BROKEN, IMAGE_NONE = 0, 1, 2
BROKEN_IMAGE_SHARE = 0.03
NO_IMAGE_SHARE = 0.03

SECONDS_PER_DAY = 86_400
# Review date ranges per release (epoch days), ending shortly before each release was published.
DATE_RANGES: dict[str, tuple[str, str]] = {
    "2014": ("2004-01-01", "2014-07-01"),
    "2018": ("2006-01-01", "2018-09-01"),
    "2023": ("2008-01-01", "2023-09-01"),
}
RECENCY_SCALE_DAYS = 3 * 365  # review volume grows over time: dates are skewed towards the end of the range
MAX_DUPLICATE_DELAY_DAYS = 400


@dataclass(frozen=True)
class SampleSpec:
    """What to generate. Defaults give a demo-sized category that the whole pipeline runs on in minutes."""

    category: str = "Sample_Toys"
    release: Release = "2018"
    n_users: int = 2000
    n_items: int = 400
    n_reviews: int = 30000  # valid review records written, duplicates included, dirt lines not
    n_factors: int = 8
    sigma: float = 0.5
    duplicate_fraction: float = 0.03
    dirt_fraction: float = 0.005
    image_size: int = 64
    seed: int = 7
    compresslevel: int = 6
    five_core_name: bool = True
    # 2014/2018 only (2023 keys items by parent_asin): the share of items listed under 1-3 extra variant asins,
    # every review written once per asin, as those dumps did; and how many reviews are also copied, once, onto
    # one unrelated item (a reviewer pasting one text twice), the overlap that must not merge two products.
    variant_families: float = 0.0
    coincidental_copies: int = 0
    # How much personal taste decides which items a user reviews: item i is drawn with probability roughly
    # proportional to popularity_i * exp(choice_affinity * p_u . q_i). At 0 choice follows popularity alone (the
    # draw of earlier versions, bit for bit), which makes the non-personalized popularity ranker nearly optimal.
    choice_affinity: float = DEFAULT_CHOICE_AFFINITY

    def __post_init__(self) -> None:
        if self.release not in ("2014", "2018", "2023"):
            raise ValueError(f"unknown release {self.release!r}")
        if self.n_users < 1 or self.n_items < 2 or self.n_reviews < 1 or self.n_factors < 1:
            raise ValueError("n_users, n_items, n_reviews and n_factors must be positive (n_items >= 2)")
        if not 0.0 <= self.duplicate_fraction < 0.5 or not 0.0 <= self.dirt_fraction < 0.5:
            raise ValueError("duplicate_fraction and dirt_fraction must lie in [0, 0.5)")
        if self.sigma < 0:
            raise ValueError("sigma must be >= 0")
        if not 0.0 <= self.variant_families <= 1.0 or self.coincidental_copies < 0:
            raise ValueError("variant_families must lie in [0, 1] and coincidental_copies must be >= 0")
        if self.choice_affinity < 0:
            raise ValueError("choice_affinity must be >= 0")


@dataclass(frozen=True)
class World:
    """The latent truth: r* = mu + b_u + b_i + p_u . q_i for every (user, item)."""

    spec: SampleSpec
    mu: float
    item_topic: np.ndarray  # (n_items,) int, 0..N_TOPICS-1
    item_style: np.ndarray  # (n_items,) int, 0..N_STYLES-1
    item_factors: np.ndarray  # (n_items, k)
    item_bias: np.ndarray  # (n_items,)
    item_content_factors: np.ndarray  # (n_items, k): the topic + style part of item_factors
    item_content_bias: np.ndarray  # (n_items,): the topic + style part of item_bias
    item_popularity: np.ndarray  # (n_items,) sampling probabilities, heavy-tailed
    item_image_state: np.ndarray  # (n_items,) IMAGE_OK / IMAGE_BROKEN / IMAGE_NONE
    user_factors: np.ndarray  # (n_users, k)
    user_bias: np.ndarray  # (n_users,)
    user_review_counts: np.ndarray  # (n_users,) distinct items each user reviews

    def true_score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """r* for paired index arrays, in blocks so millions of pairs need only block-sized (n, k) temporaries."""
        out = np.empty(len(users), dtype=np.float64)
        block = 1 << 18
        for start in range(0, len(users), block):
            u = users[start : start + block]
            i = items[start : start + block]
            dot = np.einsum("nk,nk->n", self.user_factors[u], self.item_factors[i])
            out[start : start + block] = self.mu + self.user_bias[u] + self.item_bias[i] + dot
        return out


@dataclass(frozen=True)
class ReviewDraw:
    """Every valid review record of the dump, in no particular order (the writer orders them).

    ``is_latest`` marks the record that survives "keep the latest review per (user, item)"; it is False only
    for the earlier copy of a duplicated pair.
    """

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    day: np.ndarray  # int64 epoch days
    seconds_of_day: np.ndarray  # int64, used where a release stores time of day (2023)
    rating: np.ndarray  # int8, 1..5
    true_score: np.ndarray  # float64 r*
    is_duplicate: np.ndarray  # bool: the later copy of a duplicated pair
    is_latest: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.user)

    @property
    def timestamp(self) -> np.ndarray:
        """Seconds since the epoch."""
        return self.day * SECONDS_PER_DAY + self.seconds_of_day


def _split_variance(
    rng: np.random.Generator,
    shares: dict[str, float],
    total_std: float,
    topic_idx: np.ndarray,
    style_idx: np.ndarray,
    shape_tail: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Draw topic + style + residual effects with the given variance shares; return (total, content part)."""
    topic = rng.normal(0.0, total_std * np.sqrt(shares["topic"]), size=(N_TOPICS, *shape_tail))
    style = rng.normal(0.0, total_std * np.sqrt(shares["style"]), size=(N_STYLES, *shape_tail))
    # Centre the class effects so the realized content share is close to the nominal one even with 6-8 classes.
    topic -= topic.mean(axis=0)
    style -= style.mean(axis=0)
    topic *= total_std * np.sqrt(shares["topic"]) / max(float(topic.std()), 1e-12)
    style *= total_std * np.sqrt(shares["style"]) / max(float(style.std()), 1e-12)
    content = topic[topic_idx] + style[style_idx]
    residual = rng.normal(0.0, total_std * np.sqrt(shares["residual"]), size=(len(topic_idx), *shape_tail))
    return content + residual, content


def _user_review_counts(rng: np.random.Generator, n_users: int, n_items: int, n_pairs: int) -> np.ndarray:
    """Reviews per user: lognormal activity, at least MIN_REVIEWS_PER_USER where the total allows, capped so
    no user needs more than half the catalogue (distinct items must stay drawable)."""
    cap = max(1, n_items // 2)
    if n_pairs > n_users * cap:
        raise ValueError(
            f"{n_pairs} distinct (user, item) pairs do not fit {n_users} users x {cap} items each; "
            "raise n_users or n_items"
        )
    floor = MIN_REVIEWS_PER_USER if n_pairs >= MIN_REVIEWS_PER_USER * n_users else 0
    floor = min(floor, cap)
    weights = rng.lognormal(0.0, USER_ACTIVITY_SIGMA, size=n_users)
    counts = np.full(n_users, floor, dtype=np.int64) + rng.multinomial(
        n_pairs - floor * n_users, weights / weights.sum()
    )
    # Move the excess of over-cap users onto users with room, in proportion to their activity.
    while (excess := int(np.clip(counts - cap, 0, None).sum())) > 0:
        counts = np.minimum(counts, cap)
        room = counts < cap
        w = np.where(room, weights, 0.0)
        counts += rng.multinomial(excess, w / w.sum())
    return counts


def _item_popularity(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """Zipf-like popularity over a random ranking (so popularity is unrelated to id order)."""
    ranks = rng.permutation(n_items)
    weights = 1.0 / (ranks + 1.0) ** ITEM_ZIPF_EXPONENT
    return weights / weights.sum()


def generate_world(spec: SampleSpec) -> World:
    """Build the latent truth for ``spec``; the same spec always gives the same world."""
    rng = np.random.default_rng([spec.seed, 0x5A17])
    k = spec.n_factors
    topic = rng.integers(0, N_TOPICS, size=spec.n_items)
    style = rng.integers(0, N_STYLES, size=spec.n_items)
    # p and q get the same per-coordinate std s with k * s^4 = INTERACTION_STD^2, so the dot product's spread
    # does not depend on how many factors the spec asks for.
    factor_std = (INTERACTION_STD**2 / k) ** 0.25
    item_factors, item_content_factors = _split_variance(rng, FACTOR_SHARES, factor_std, topic, style, (k,))
    item_bias, item_content_bias = _split_variance(rng, BIAS_SHARES, ITEM_BIAS_STD, topic, style, ())
    user_factors = rng.normal(0.0, factor_std, size=(spec.n_users, k))
    user_bias = rng.normal(0.0, USER_BIAS_STD, size=spec.n_users)
    n_dup = duplicate_count(spec)
    counts = _user_review_counts(rng, spec.n_users, spec.n_items, spec.n_reviews - n_dup)
    image_state = rng.choice(
        [IMAGE_OK, IMAGE_BROKEN, IMAGE_NONE],
        size=spec.n_items,
        p=[1 - BROKEN_IMAGE_SHARE - NO_IMAGE_SHARE, BROKEN_IMAGE_SHARE, NO_IMAGE_SHARE],
    )
    return World(
        spec=spec,
        mu=GLOBAL_MEAN,
        item_topic=topic.astype(np.int16),
        item_style=style.astype(np.int16),
        item_factors=item_factors,
        item_bias=item_bias,
        item_content_factors=item_content_factors,
        item_content_bias=item_content_bias,
        item_popularity=_item_popularity(rng, spec.n_items),
        item_image_state=image_state.astype(np.int8),
        user_factors=user_factors,
        user_bias=user_bias,
        user_review_counts=counts,
    )


def duplicate_count(spec: SampleSpec) -> int:
    """How many of the ``n_reviews`` records are later duplicates of an earlier (user, item) review."""
    n_dup = int(round(spec.duplicate_fraction * spec.n_reviews))
    return min(n_dup, spec.n_reviews // 2)


def _distinct_items_per_user(
    rng: np.random.Generator,
    users: np.ndarray,
    n_items: int,
    popularity: np.ndarray,
    n_fixed: int = 0,
    fixed_items: np.ndarray | None = None,
) -> np.ndarray:
    """Draw one item per entry of ``users`` (grouped by user) so that no user gets the same item twice.

    Draw by popularity, then redraw only the colliding entries; after a few rounds fall back to uniform draws,
    which always converge because no user asks for more than half the catalogue. The first ``n_fixed`` entries
    keep ``fixed_items`` (already chosen elsewhere); only the rest are drawn, avoiding them.
    """
    items = rng.choice(n_items, size=len(users) - n_fixed, p=popularity)
    if n_fixed:
        assert fixed_items is not None
        items = np.concatenate([fixed_items, items])
    uniform = np.full(n_items, 1.0 / n_items)
    for round_no in range(1000):
        keys = users.astype(np.int64) * n_items + items
        _, first = np.unique(keys, return_index=True)  # the first occurrence: fixed entries always win
        collided = np.ones(len(keys), dtype=bool)
        collided[first] = False
        n_collided = int(collided.sum())
        if n_collided == 0:
            return items
        items[collided] = rng.choice(n_items, size=n_collided, p=popularity if round_no < 8 else uniform)
    raise RuntimeError("could not draw distinct items per user")  # unreachable with the per-user cap


def _taste_weighted_items_per_user(rng: np.random.Generator, users: np.ndarray, world: World) -> np.ndarray:
    """Like ``_distinct_items_per_user``, but each user prefers items they like: P(i) ~ pop_i exp(a p_u . q_i).

    Exact sampling would score every user against every item (10^10 pairs for a 2M-review benchmark). Instead
    each user gets a pool of ``CHOICE_POOL`` popularity-drawn candidates per review and keeps the distinct
    candidates with the largest ``a p_u . q_i + log(times drawn) + Gumbel noise``: Gumbel top-k, i.e. sampling
    without replacement proportional to popularity x exp(a p_u . q_i) within the pool. Users whose pool holds too
    few distinct items get the rest by the popularity draw. ``users`` must be sorted (``np.repeat`` of counts).
    """
    affinity = world.spec.choice_affinity
    n_items = len(world.item_popularity)
    counts = np.bincount(users, minlength=len(world.user_factors))
    pool_users = np.repeat(users.astype(np.int64), CHOICE_POOL)
    # Inverse-CDF draw: rng.choice with p is ~10x slower on tens of millions of draws.
    cdf = np.cumsum(world.item_popularity)
    pool_items = np.minimum(np.searchsorted(cdf, rng.random(len(pool_users)) * cdf[-1], side="right"), n_items - 1)
    pairs, times_drawn = np.unique(pool_users * n_items + pool_items, return_counts=True)  # sorted by user
    pool_users, pool_items = pairs // n_items, pairs % n_items
    keys = np.log(times_drawn) + rng.gumbel(size=len(pairs))
    block = 1 << 18
    for start in range(0, len(pairs), block):
        u, i = pool_users[start : start + block], pool_items[start : start + block]
        keys[start : start + block] += affinity * np.einsum("nk,nk->n", world.user_factors[u], world.item_factors[i])
    # Best keys first within each user, by one integer sort of (user, key quantized to 2^-20: ties are harmless).
    quantized = np.clip(np.round(keys * (1 << 20)), -(1 << 40), 1 << 40).astype(np.int64)
    order = np.argsort(pool_users * (1 << 42) - quantized)
    pool_users, pool_items = pool_users[order], pool_items[order]
    group_start = np.flatnonzero(np.r_[True, pool_users[1:] != pool_users[:-1]])
    rank = np.arange(len(pool_users)) - np.repeat(group_start, np.diff(np.r_[group_start, len(pool_users)]))
    keep = rank < counts[pool_users]
    chosen_users, chosen_items = pool_users[keep], pool_items[keep]
    missing = counts - np.bincount(chosen_users, minlength=len(counts))
    if missing.any():
        extra_users = np.repeat(np.arange(len(counts), dtype=np.int64), missing)
        all_users = np.concatenate([chosen_users, extra_users])
        all_items = _distinct_items_per_user(
            rng, all_users, n_items, world.item_popularity, len(chosen_users), chosen_items
        )
        # Back to the layout of ``users`` (grouped by user, in user order).
        return all_items[np.argsort(all_users, kind="stable")]
    return chosen_items


def observe(rng: np.random.Generator, true_score: np.ndarray, sigma: float) -> np.ndarray:
    """Observed star rating: clip(round(r* + N(0, sigma)), 1, 5), as integers like the real dumps."""
    noisy = true_score + rng.normal(0.0, sigma, size=len(true_score))
    return np.clip(np.floor(noisy + 0.5), 1, 5).astype(np.int8)


def _epoch_day(date: str) -> int:
    return int(np.datetime64(date, "D").astype(np.int64))


def draw_reviews(world: World) -> ReviewDraw:
    """Sample every review record: distinct (user, item) pairs first, then the duplicated later copies."""
    spec = world.spec
    rng = np.random.default_rng([spec.seed, 0x2E71])
    users = np.repeat(np.arange(spec.n_users, dtype=np.int32), world.user_review_counts)
    if spec.choice_affinity > 0:
        items = _taste_weighted_items_per_user(rng, users, world).astype(np.int32)
    else:
        items = _distinct_items_per_user(rng, users, spec.n_items, world.item_popularity).astype(np.int32)
    start, end = (_epoch_day(d) for d in DATE_RANGES[spec.release])
    back = np.minimum(rng.exponential(RECENCY_SCALE_DAYS, size=len(users)), end - start - MAX_DUPLICATE_DELAY_DAYS)
    days = (end - MAX_DUPLICATE_DELAY_DAYS - back).astype(np.int64)

    n_dup = duplicate_count(spec)
    dup_of = rng.choice(len(users), size=n_dup, replace=False)
    all_users = np.concatenate([users, users[dup_of]])
    all_items = np.concatenate([items, items[dup_of]])
    all_days = np.concatenate([days, days[dup_of] + rng.integers(1, MAX_DUPLICATE_DELAY_DAYS + 1, size=n_dup)])
    n = len(all_users)
    is_duplicate = np.zeros(n, dtype=bool)
    is_duplicate[len(users) :] = True
    is_latest = np.ones(n, dtype=bool)
    is_latest[dup_of] = False
    score = world.true_score(all_users, all_items)
    return ReviewDraw(
        user=all_users,
        item=all_items,
        day=all_days,
        seconds_of_day=rng.integers(0, SECONDS_PER_DAY, size=n),
        rating=observe(rng, score, spec.sigma),
        true_score=score,
        is_duplicate=is_duplicate,
        is_latest=is_latest,
    )


def content_share(total: np.ndarray, content: np.ndarray) -> float:
    """Share of the variance of ``total`` explained by its content part (1 - residual variance / total)."""
    residual = total - content
    return float(1.0 - residual.var() / max(float(total.var()), 1e-12))
