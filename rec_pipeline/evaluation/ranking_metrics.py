"""Top-K ranking metrics computed from hit matrices, for many users at once.

Definitions (binary relevance, positions counted from 1):

- ``recall@K`` = hits in the top K / number of relevant items.
- ``hr@K`` (hit rate) = 1 if at least one relevant item is in the top K, else 0.
- ``ndcg@K`` = DCG@K / IDCG@K with gain 1 per hit and discount ``1 / log2(position + 1)``; IDCG places
  ``min(K, |relevant|)`` hits at the top.
- ``map@K`` = sum over hit positions p <= K of precision@p, divided by ``min(K, |relevant|)`` so that a perfect
  ranking scores 1 even when a user has more relevant items than K.
- ``coverage@K`` = share of the catalogue that appears in at least one user's top K.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RANKING_METRICS = ("recall", "ndcg", "hr", "map")


def metric_key(metric: str, k: int) -> str:
    """Column name used everywhere for a metric at a cut-off, e.g. ``ndcg@10``."""
    return f"{metric}@{k}"


def ranking_metrics_from_hits(hits: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user ``recall@K``, ``ndcg@K``, ``hr@K``, ``map@K`` for every K in ``ks``.

    ``hits[u, p]`` says whether the item at rank position ``p`` (0-based, best first) of user ``u`` is relevant;
    the matrix may be narrower than ``max(ks)`` when the catalogue is smaller than K (missing positions are
    misses). ``n_relevant[u]`` must be >= 1: users without relevant items have no defined recall and are
    skipped by the callers, not scored 0.
    """
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
        raise ValueError("hits must be a 2-d [users, positions] matrix")
    n_rel = np.asarray(n_relevant, dtype=np.int64)
    if n_rel.shape != (hits.shape[0],):
        raise ValueError("n_relevant needs one count per row of hits")
    if np.any(n_rel < 1):
        raise ValueError("every user needs at least one relevant item")
    if np.any(hits.sum(axis=1) > n_rel):
        raise ValueError("a row has more hits than relevant items")
    k_max = max(ks)
    discounts = 1.0 / np.log2(np.arange(2, k_max + 2, dtype=np.float64))
    ideal = np.cumsum(discounts)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be positive, got {k}")
        top = hits[:, :k]
        width = top.shape[1]
        n_hits = top.sum(axis=1)
        denominators = np.minimum(k, n_rel)
        precision_at = np.cumsum(top, axis=1) / np.arange(1, width + 1)
        out[metric_key("recall", k)] = n_hits / n_rel
        out[metric_key("ndcg", k)] = (top * discounts[:width]).sum(axis=1) / ideal[denominators - 1]
        out[metric_key("hr", k)] = (n_hits > 0).astype(np.float64)
        out[metric_key("map", k)] = (precision_at * top).sum(axis=1) / denominators
    return out


def catalog_coverage(recommended: np.ndarray) -> float | None:
    """Share of catalogue items flagged in the boolean ``recommended`` vector (``None`` for an empty catalogue)."""
    flags = np.asarray(recommended, dtype=bool)
    return float(flags.mean()) if flags.size else None
