"""Top-K selection with a seeded random order among equal scores, shared by evaluation and ``Recommender.recommend``.

Why random: models that score many items alike (the global mean scores every item alike, popularity ties items
with equal counts, a 5-star clip ties a generous user's favourites) used to get their ties broken by catalogue
position, i.e. by id. Ids correlate with age and popularity, which let the global mean "win" NDCG@10 on real data.
Here the order among ties is a pseudo-random key per (user, item): a seeded hash of both ids. That keeps it
reproducible, independent of batch composition and catalogue order (evaluation and ``recommend()`` agree), and
different per user, so a constant model behaves like a random recommender instead of one fixed list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

TieKeys = Callable[[np.ndarray], np.ndarray]

# splitmix64 constants (Steele, Lea & Flood 2014): a cheap, well-mixing 64-bit finalizer, vectorized in numpy.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Keys are shifted into [0, 2^62) so ``key + 1`` and the "below the cut" sentinel both fit in uint64.
_BELOW = np.uint64(1 << 63)
# Keys mixed per chunk: 64k uint64 (512 KB) stays in a core's L2 cache across the mixing passes.
_KEY_CHUNK = 1 << 16
# Tie-broken cells per chunk of rows (uint64 keys and ranks: 2 MB each).
_TIE_CHUNK = 1 << 18


def id_hashes(ids: Sequence[str], seed: int) -> np.ndarray:
    """A seeded 64-bit hash (uint64) per id; the same id gets the same hash in whatever list it comes."""
    salt = int(seed).to_bytes(16, "little", signed=True)
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8, salt=salt).digest(), "little")
            for value in ids
        ),
        dtype=np.uint64,
        count=len(ids),
    )


def _mix(values: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """splitmix64's finalizer, in place, with one scratch array of the same shape instead of a temporary per step."""
    scratch = np.empty_like(values) if scratch is None else scratch
    for shift, multiplier in ((30, _MIX1), (27, _MIX2)):
        np.right_shift(values, np.uint64(shift), out=scratch)
        np.bitwise_xor(values, scratch, out=values)
        np.multiply(values, multiplier, out=values)
    np.right_shift(values, np.uint64(31), out=scratch)
    np.bitwise_xor(values, scratch, out=values)
    return values


class TieBreaker:
    """Random keys per (user, item) pair for a fixed list of item columns; smaller key wins a tie."""

    def __init__(self, item_ids: Sequence[str], seed: int = 0) -> None:
        self.seed = int(seed)
        self._items = id_hashes(item_ids, self.seed) * _GOLDEN

    @property
    def n_items(self) -> int:
        return len(self._items)

    def keys(self, user_ids: Sequence[str]) -> np.ndarray:
        """uint64 keys, shape ``[len(user_ids), n_items]``.

        Computed a few rows at a time so the mixing passes stay in cache: for tie-heavy models (the global mean
        ties every item) this is a third of the time of mixing the whole 16 MB matrix pass after pass.
        """
        users = id_hashes(user_ids, self.seed)
        keys = np.empty((len(users), self.n_items), dtype=np.uint64)
        step = max(1, _KEY_CHUNK // max(self.n_items, 1))
        scratch = np.empty((min(step, len(users)), self.n_items), dtype=np.uint64)
        for start in range(0, len(users), step):
            chunk = keys[start : start + step]
            np.bitwise_xor(users[start : start + step, None], self._items[None, :], out=chunk)
            _mix(chunk, scratch[: len(chunk)])
            np.right_shift(chunk, np.uint64(2), out=chunk)
        return keys

    def for_rows(self, user_ids: Sequence[str]) -> TieKeys:
        """The ``tie_keys`` callable of ``top_k_columns`` for score rows in ``user_ids`` order."""
        users = list(user_ids)
        return lambda rows: self.keys([users[row] for row in rows])


def column_order_keys(n_columns: int) -> TieKeys:
    """Ties broken by column order: only for callers whose columns carry no meaning (tests, pre-shuffled data)."""
    return lambda rows: np.broadcast_to(np.arange(n_columns, dtype=np.uint64), (len(rows), n_columns))


def top_k_columns(scores: np.ndarray, k: int, tie_keys: TieKeys) -> np.ndarray:
    """Column indices of the ``k`` highest scores per row, best first; equal scores ordered by smaller tie key.

    ``np.argpartition`` makes the common case O(items) per row, on the scores' own float dtype (float32 scores
    are not widened: half the memory traffic, and the order is the same). Only rows where a tie matters (two
    equal scores inside the top K, or the K-th score shared with an item outside it) ask ``tie_keys(rows)`` for a
    ``[len(rows), n_columns]`` key matrix, so continuous-score models never pay for keys; rows tied at their
    best score skip the argpartition. Scores of ``-inf`` (excluded items) come last; callers drop them.
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    n_rows, n_columns = scores.shape
    k = min(k, n_columns)
    if k <= 0 or n_rows == 0:
        return np.zeros((n_rows, 0), dtype=np.int64)
    top = np.zeros((n_rows, k), dtype=np.int64)
    # Rows whose best score is shared by K or more items (every row of a constant model) are pure tie-breaks:
    # their K-th score is their maximum, so they skip the partition by score. Three cheap passes find them.
    best = scores.max(axis=1, keepdims=True)
    at_best = scores == best
    flat = np.zeros(n_rows, dtype=bool)
    if np.count_nonzero(at_best) >= n_rows + k - 1:
        flat = np.count_nonzero(at_best, axis=1) >= k
    ranked = np.flatnonzero(~flat)
    kth = best.copy()
    tied = flat.copy()
    if ranked.size:
        part = scores if ranked.size == n_rows else scores[ranked]
        partial = np.argpartition(part, n_columns - k, axis=1)[:, n_columns - k :]
        partial_scores = np.take_along_axis(part, partial, axis=1)
        order = np.argsort(-partial_scores, axis=1, kind="stable")
        top[ranked] = np.take_along_axis(partial, order, axis=1)
        partial_scores = np.take_along_axis(partial_scores, order, axis=1)
        kth[ranked] = partial_scores[:, k - 1 : k]
        # Every row has at least k scores >= its K-th; more only where an item outside the top K ties the K-th.
        # One whole-batch count answers "no such row" for continuous scores; per-row counts only otherwise.
        at_least = part >= kth[ranked]
        if np.count_nonzero(at_least) > ranked.size * k:
            tied[ranked] |= np.count_nonzero(at_least, axis=1) > k
        tied[ranked] |= (partial_scores[:, 1:] == partial_scores[:, :-1]).any(axis=1)
    tied = np.flatnonzero(tied)
    # Tied rows go a few at a time: keys, composite rank and partition of ~2 MB stay in cache, which halved the
    # time of a batch where every row ties (a constant model) against one pass over the whole batch.
    step = max(8, _TIE_CHUNK // n_columns)
    for start in range(0, tied.size, step):
        rows = tied[start : start + step]
        keys = np.asarray(tie_keys(rows), dtype=np.uint64)
        if keys.shape != (rows.size, n_columns):
            raise ValueError(f"tie_keys returned shape {keys.shape}, expected {(rows.size, n_columns)}")
        if keys.max(initial=0) >= _BELOW - np.uint64(1):
            raise ValueError("tie keys must stay below 2**63 - 1")
        top[rows] = _break_ties(scores[rows], kth[rows], k, keys)
    return top.astype(np.int64, copy=False)


def _break_ties(scores: np.ndarray, kth: np.ndarray, k: int, keys: np.ndarray) -> np.ndarray:
    """Exact top K by (score descending, key ascending) in O(items): everything above the K-th score, then the
    boundary items with the smallest keys, picked by one argpartition on a composite rank (0 above the K-th score,
    key + 1 at it, 2^63 below); only the K winners are then fully sorted."""
    rank = np.add(keys, np.uint64(1))
    np.copyto(rank, np.uint64(0), where=scores > kth)
    np.copyto(rank, _BELOW, where=scores < kth)
    chosen = np.argpartition(rank, k - 1, axis=1)[:, :k]
    order = np.lexsort((np.take_along_axis(keys, chosen, axis=1), -np.take_along_axis(scores, chosen, axis=1)), axis=1)
    return np.take_along_axis(chosen, order, axis=1)
