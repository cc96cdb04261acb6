"""Incremental recomputation, one mechanism: compute only the keys whose inputs changed, join back the rest, and
record what was reused.

A *key* is the identity of everything a value is computed from (a text's hash and the cleaning settings, a
content hash and the Word2Vec version, an image and the embedder, a dump's fingerprint and the ingest code, a
model's training inputs and settings). Equal key, equal value: the previous output's value is reused.

- ``reuse_by_key``: per-row values of a table (item texts, text vectors, image embeddings).
- ``reuse_record``: one output as a whole (an ingested dump, a trained model, Word2Vec), recorded with its key
  in a JSON record beside it; ``unseen_share`` measures how much of an input is new, for outputs that are kept
  while that share stays small (Word2Vec).

Nothing here knows Dagster or the warehouse: callers pass frames and records, and report the counts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl


@dataclass(frozen=True)
class Reuse:
    """The rows asked for with their values, and what was computed now versus reused from the previous output."""

    frame: pl.DataFrame
    computed_keys: int  # distinct keys computed in this run
    computed_rows: int  # rows asked for whose key was computed in this run
    reused_rows: int  # rows asked for whose value came from the previous output


def reuse_by_key(
    wanted: pl.DataFrame,
    key: str,
    previous: pl.DataFrame | None,
    compute: Callable[[pl.DataFrame], pl.DataFrame],
    *,
    keep: Sequence[str],
    values: Sequence[str],
    how: Literal["left", "inner"] = "left",
    distinct: bool = True,
) -> Reuse:
    """``wanted`` (one row per output row, holding ``key``) joined to a value per key: the previous output's
    (``previous``, holding ``key`` and ``values``; None: no previous output) where it has the key, else computed.

    ``compute`` receives the rows of ``wanted`` whose key is new (one row per key with ``distinct``, every such row
    without) and returns ``key`` and ``values`` for them. The result keeps the ``keep`` columns of ``wanted``, in
    its order, then ``values``; ``how="inner"`` drops rows left without a value.
    """
    value_columns = [key, *(v for v in values if v != key)]  # the key may be one of the values it keeps
    known = None
    if previous is not None and set(value_columns) <= set(previous.columns):
        # Only the keys still wanted: values of other keys (another embedder, older texts) are dropped, not mixed in.
        known = previous.select(value_columns).filter(pl.col(key).is_in(wanted[key].implode()))
        known = known.unique(key, keep="first", maintain_order=True) if known.height else None
    todo = wanted.filter(~pl.col(key).is_in(known[key].implode())) if known is not None else wanted
    if distinct:
        todo = todo.unique(key, keep="first", maintain_order=True)
    fresh = compute(todo).select(value_columns).unique(key, keep="first", maintain_order=True)
    table = pl.concat([known, fresh], how="vertical") if known is not None and fresh.height else known
    table = fresh if table is None else table
    frame = wanted.select([*keep] if key in keep else [*keep, key]).join(table, on=key, how=how, maintain_order="left")
    frame = frame.select([*keep, *values])
    new_keys = fresh[key].implode()
    computed_rows = int(wanted[key].is_in(new_keys).sum()) if wanted.height else 0
    return Reuse(frame, fresh.height, computed_rows, wanted.height - computed_rows)


@dataclass(frozen=True)
class Record:
    """What was recorded beside an output the last time it was computed: its key and a payload (a report, a
    training summary)."""

    key: Any
    payload: Mapping[str, Any]


def reuse_record(
    previous: Record | None,
    key: Any,
    *,
    force: bool = False,
    problem: str | Callable[[Record], str | None] | None = None,
) -> tuple[Record | None, str]:
    """The previous record when its key equals ``key`` and nothing is wrong with its output, else None; with why.

    ``problem`` says what is wrong with the recorded output, or None: a function of the record, called only when
    the key matches (trust, but verify: a damaged file must not be reused forever), or the verdict itself (e.g.
    "too much of the input is new" for an output kept while few inputs change).
    """
    if force:
        return None, "forced"
    if previous is None:
        return None, "nothing recorded yet"
    if previous.key != key:
        return None, "inputs changed"
    why = problem(previous) if callable(problem) else problem
    if why is not None:
        return None, f"recorded output unusable: {why}"
    return previous, "unchanged"


def unseen_share(current: Collection[Any], seen: Collection[Any]) -> float:
    """The share of ``current`` keys not in ``seen`` (0 for an empty ``current``)."""
    seen_set = set(seen)
    return sum(1 for k in set(current) if k not in seen_set) / max(1, len(set(current)))
