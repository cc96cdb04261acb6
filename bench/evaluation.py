"""Full-ranking evaluation benchmark: every model ranks every item for every test user, as ``model_metrics`` does.

    python bench/evaluation.py                     # 100k users x 20k items, 2M ratings
    python bench/evaluation.py --users 20000 --models mf hybrid ncf

Generates 2M ratings (Zipf-like item popularity, ~20 per user), holds one rating per user out as a relevant test
item, and builds each trained model with synthetic weights: one epoch on a frame that shows every user and item
once (so the vocabularies are complete and the weights random-ish; ranking time does not depend on what was
learnt). EASE gets random item-item weights instead of its 20k x 20k inverse, which would dominate the run; the
closed-form baselines (biases, popularity, global mean) are fitted on the real training split, so their ties are
the real ones (popularity ties items of equal counts, the global mean ties everything). Then times
``evaluate_model`` (full protocol, K=10: RMSE on the test pairs plus ranking all 20k items for 100k users) per
model: the median of 3 runs when one run is under a minute, a single run otherwise (marked).

Targets (issue 12, item 1): MF's full-ranking evaluation <= 30 s; every model within 2x of MF. The last column
extrapolates to the largest category (1.9M users x 368k items) by scaling with users x items, the work of a full
ranking (EASE refuses that catalogue: ``max_items``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from _measure import print_table  # noqa: E402

MODELS = (
    "mf",
    "hybrid",
    "hybrid_seed000",
    "two_tower",
    "autorec",
    "ncf",
    "neumf",
    "ease",
    "biases",
    "popularity",
    "global_mean",
)
CLOSED_FORM = ("biases", "popularity", "global_mean")
LARGEST = (1_900_000, 368_000)
REPEAT_UNDER_SECONDS = 60.0


@dataclass(frozen=True)
class Splits:
    train: pl.DataFrame
    test: pl.DataFrame
    cover: pl.DataFrame  # every user and every item once: what the models are "trained" on
    content: object  # ItemContent


def generate(n_users: int, n_items: int, n_ratings: int, seed: int = 0) -> Splits:
    from rec_pipeline.models import ItemContent

    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    users = np.repeat(np.arange(n_users), -(-n_ratings // n_users))[:n_ratings]
    items = rng.choice(n_items, n_ratings, p=popularity / popularity.sum())
    frame = pl.DataFrame(
        {
            "user_id": np.char.add("u", users.astype(str)),
            "item_id": np.char.add("i", items.astype(str)),
            "rating": rng.integers(1, 6, n_ratings).astype(np.float32),
        }
    ).unique(["user_id", "item_id"])
    frame = frame.with_columns(pl.lit(0, dtype=pl.Int64).alias("timestamp"))
    held_out = frame.with_columns(pl.int_range(pl.len()).shuffle(seed).over("user_id").alias("_draw"))
    test = (
        held_out.filter(pl.col("_draw") == 0).drop("_draw").with_columns(pl.lit(5.0, dtype=pl.Float32).alias("rating"))
    )
    train = held_out.filter(pl.col("_draw") > 0).drop("_draw")
    every = np.arange(max(n_users, n_items))
    cover = pl.DataFrame(
        {
            "user_id": np.char.add("u", (every % n_users).astype(str)),
            "item_id": np.char.add("i", (every % n_items).astype(str)),
            "rating": rng.integers(1, 6, len(every)).astype(np.float32),
        }
    )
    content = ItemContent(
        [f"i{i}" for i in range(n_items)],
        rng.normal(size=(n_items, 64)).astype(np.float32),
        rng.random(n_items) > 0.1,
        rng.normal(size=(n_items, 512)).astype(np.float32),
        rng.random(n_items) > 0.1,
    )
    return Splits(train, test, cover, content)


def build(kind: str, splits: Splits) -> object:
    """A fitted model of ``kind`` with (nearly) random weights over every user and item."""
    from rec_pipeline.models import TrainingData, TrainOptions, create_model, ease

    if kind == "ease":

        def random_weights(user_items: object, l2: float) -> np.ndarray:
            n = user_items.shape[1]  # type: ignore[attr-defined]
            return np.random.default_rng(0).normal(0, 0.01, (n, n)).astype(np.float32)

        ease.ease_weights = random_weights  # the bench times scoring X_u B, not the inverse
    model = create_model(kind)
    content = splits.content if kind in ("hybrid", "hybrid_seed000", "two_tower") else None
    ratings = splits.train if kind in CLOSED_FORM else splits.cover
    options = TrainOptions(epochs=1, batch_size=4096, early_stopping_patience=0)
    model.fit(TrainingData(ratings, None, content), options)  # type: ignore[arg-type]
    return model


def time_evaluation(model: object, splits: Splits) -> tuple[list[float], dict[str, float | None]]:
    from rec_pipeline.evaluation.evaluate import evaluate_model
    from rec_pipeline.evaluation.options import EvaluationOptions

    options = EvaluationOptions(protocol="full", ks=(10,))
    runs: list[float] = []
    metrics: dict[str, float | None] = {}
    while True:
        started = time.perf_counter()
        result = evaluate_model(model, splits.train, splits.test, options=options)  # type: ignore[arg-type]
        runs.append(time.perf_counter() - started)
        metrics = result.metrics
        if len(runs) == 3 or runs[0] >= REPEAT_UNDER_SECONDS:
            return runs, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--ratings", type=int, default=2_000_000)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    args = parser.parse_args()

    splits = generate(args.users, args.items, args.ratings)
    n_users = splits.test.height
    print(
        f"{splits.train.height:,} training ratings, {n_users:,} test users x {args.items:,} items; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    seconds: dict[str, float] = {}
    rows = []
    for kind in args.models:
        built = time.perf_counter()
        model = build(kind, splits)
        build_seconds = time.perf_counter() - built
        runs, metrics = time_evaluation(model, splits)
        seconds[kind] = statistics.median(runs)
        scale = LARGEST[0] / n_users * LARGEST[1] / args.items
        rows.append(
            {
                "model": kind,
                "evaluation s": f"{seconds[kind]:.1f}" + ("" if len(runs) == 3 else " (1 run)"),
                "runs": " ".join(f"{run:.1f}" for run in runs),
                "pairs/s": f"{n_users * args.items / seconds[kind] / 1e6:,.1f}M",
                "x mf": f"{seconds[kind] / seconds['mf']:.2f}" if "mf" in seconds else "-",
                "1.9M x 368k (extrapolated)": f"{seconds[kind] * scale / 3600:,.1f} h",
                "load": f"{os.getloadavg()[0]:.1f}",
                "ndcg@10": f"{metrics.get('ndcg@10') or 0:.4f}",
            }
        )
        print(f"{kind}: built in {build_seconds:.0f} s; evaluation runs {rows[-1]['runs']} s", flush=True)
        del model
    print()
    print_table(rows)
    print(
        "\n(load: 1-minute load average after the model's runs; ndcg@10 only shows the runs ranked something: the "
        "weights are random. EASE at 368k items is refused by max_items.)"
    )
    if "mf" in seconds:
        print("\nTargets:")
        print(
            f"  [{'met' if seconds['mf'] <= 30 else 'MISSED'}] mf full-ranking evaluation {seconds['mf']:.1f} s "
            f"(target <= 30 s)"
        )
        for kind, value in seconds.items():
            if kind != "mf":
                ratio = value / seconds["mf"]
                print(f"  [{'met' if ratio <= 2 else 'MISSED'}] {kind} at {ratio:.2f}x mf (target <= 2x)")


if __name__ == "__main__":
    main()
