"""Quality benchmark: every model on generated data whose noise is known, through the real Dagster job.

    python bench/quality.py                  # ~60k reviews; a few minutes on 2 cores
    python bench/quality.py --reviews 150000 --epochs 30

Targets (issue "Models, training and evaluation"): the bias baseline beats the global mean; MF and neural CF beat
the bias baseline; the hybrid beats the collaborative-only models on items with few ratings and on cold items; the
best test RMSE is within 10% of the noise floor. Ranking (issue "recommendations worth having"): every model is
ranked on the same candidates with random tie-breaks; popularity beats the global mean on NDCG@10, and the model
chosen for recommendations (best validation NDCG@10) beats the bias baseline on test NDCG@10.

Ratings are integers (rounded, clipped), so the floor is not sigma itself but the RMSE of the Bayes-optimal
predictor E[rating | true score], which the generator computes exactly and saves beside the data; both are printed.

Cold items come from the pipeline's own protocol (asset `cold_items`): 10% of the items with content are held out
of every model's training, and model_metrics reports `rmse_cold` and `ndcg_cold@10` on their ratings. The sample
generator's default `choice_affinity` makes item choice personal, so the selected ranker must also beat popularity.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["REC_PIPELINE_REGISTER_ON_LOAD"] = "0"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from _measure import print_table  # noqa: E402

CATEGORY = "Quality_Toys"


def run_pipeline(root: Path, epochs: int) -> float:
    import dagster as dg

    from rec_pipeline.automation import MAIN_JOB_NAME
    from rec_pipeline.definitions import build_definitions
    from rec_pipeline.demo import demo_ops_config

    ops = demo_ops_config()
    for key, value in ops.items():
        if key.startswith("model_"):
            value["config"]["epochs"] = epochs
    defs = build_definitions(str(root))
    job = defs.resolve_job_def(MAIN_JOB_NAME)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("category", [CATEGORY])
    started = time.perf_counter()
    result = job.execute_in_process(
        partition_key=CATEGORY, instance=instance, run_config={"ops": ops}, raise_on_error=True
    )
    assert result.success
    return time.perf_counter() - started


def few_rating_rmse(root: Path, share: float = 0.2) -> dict[str, float]:
    """RMSE of each saved model on the test ratings of the ``share`` least-rated items in training.

    The k-core filter leaves no item with only a handful of ratings, so "few" is relative: the bottom quintile
    by training count, where collaborative item terms are least certain and content should help most.
    """
    from rec_pipeline.assets.training import warm_split
    from rec_pipeline.models import load_model
    from rec_pipeline.paths import DataLayout

    layout = DataLayout(root)
    train, test = warm_split(layout, CATEGORY, "train"), warm_split(layout, CATEGORY, "test")
    counts = train.group_by("item_id").len().sort(["len", "item_id"])
    few = counts.head(max(1, int(round(share * counts.height))))["item_id"]
    rows = test.filter(pl.col("item_id").is_in(few.implode()))
    out: dict[str, float] = {}
    for directory in sorted(layout.category_dir(CATEGORY).joinpath("models").iterdir()):
        if (directory / "model.json").is_file():
            predicted = load_model(directory).predict(rows["user_id"].to_list(), rows["item_id"].to_list())
            out[directory.name] = float(np.sqrt(np.mean((rows["rating"].to_numpy() - predicted) ** 2)))
    return out


def attainable_rmse(root: Path, sigma: float) -> float:
    """Test RMSE of an oracle that knows every item's true bias and factors and estimates each user's from their
    training ratings by Bayesian ridge under the generator's own prior.

    No model can beat this by more than noise: the user side has only the user's own ratings to learn from
    (median ~30 here), so it bounds what is reachable far more tightly than the noise floor does.
    """
    from rec_pipeline.assets.training import warm_split
    from rec_pipeline.paths import DataLayout
    from rec_pipeline.sample.truth import expected_rating
    from rec_pipeline.sample.world import INTERACTION_STD, USER_BIAS_STD

    truth_dir = root / "sample_truth"
    meta = json.loads((truth_dir / f"{CATEGORY}.json").read_text())
    items = pl.read_parquet(truth_dir / f"{CATEGORY}_items.parquet")
    k = len(items["factors"][0])
    factor_std = (INTERACTION_STD**2 / k) ** 0.25
    item_row = {item: row for row, item in enumerate(items["item_id"].to_list())}
    item_bias = items["bias"].to_numpy()
    item_factors = np.stack(items["factors"].to_numpy()).astype(np.float64)
    layout = DataLayout(root)
    train, test = warm_split(layout, CATEGORY, "train"), warm_split(layout, CATEGORY, "test")
    # Residual variance of an observed integer rating around r* is ~ sigma^2 + 1/12 (rounding).
    noise = sigma**2 + 1 / 12
    prior = np.diag([noise / USER_BIAS_STD**2, *([noise / factor_std**2] * k)])
    weights = {}
    for user, user_items, ratings in train.group_by("user_id").agg("item_id", "rating").iter_rows():
        rows = np.array([item_row[item] for item in user_items])
        x = np.column_stack([np.ones(len(rows)), item_factors[rows]])
        y = np.asarray(ratings, np.float64) - meta["mu"] - item_bias[rows]
        weights[user] = np.linalg.solve(x.T @ x + prior, x.T @ y)
    rows = np.array([item_row[item] for item in test["item_id"].to_list()])
    w = np.stack([weights[user] for user in test["user_id"].to_list()])
    score = meta["mu"] + item_bias[rows] + w[:, 0] + np.einsum("ij,ij->i", w[:, 1:], item_factors[rows])
    return float(np.sqrt(np.mean((expected_rating(score, sigma) - test["rating"].to_numpy()) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=60_000)
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "quality")
    args = parser.parse_args()

    from rec_pipeline.sample import SampleSpec, write_sample

    shutil.rmtree(args.out, ignore_errors=True)
    spec = SampleSpec(
        category=CATEGORY,
        release="2018",
        n_users=args.users,
        n_items=args.items,
        n_reviews=args.reviews,
        sigma=args.sigma,
        seed=3,
    )
    write_sample(args.out, spec)
    truth = json.loads((args.out / "sample_truth" / f"{CATEGORY}.json").read_text())
    wall = run_pipeline(args.out, args.epochs)
    metrics = json.loads((args.out / "warehouse" / CATEGORY / "metrics" / "metrics.json").read_text())
    models = metrics["models"]
    few = few_rating_rmse(args.out)
    for name, row in models.items():
        row["metrics"]["rmse_few"] = few.get(name)
    rows = []
    for name, row in models.items():
        m = row["metrics"]
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        rows.append(
            {
                "model": name,
                "val_rmse": fmt(m.get("val_rmse")),
                "test_rmse": fmt(m.get("rmse")),
                "mae": fmt(m.get("mae")),
                "rmse_few": fmt(m.get("rmse_few")),
                "val_ndcg@10": fmt(m.get("val_ndcg@10")),
                "ndcg@10": fmt(m.get("ndcg@10")),
                "recall@10": fmt(m.get("recall@10")),
                "coverage@10": fmt(m.get("coverage@10")),
                "rmse_cold": fmt(m.get("rmse_cold")),
                "ndcg_cold@10": fmt(m.get("ndcg_cold@10")),
                "train_examples/s": f"{(m.get('train_examples_per_s') or 0):,.0f}",
            }
        )
    print(
        f"\n{args.reviews:,} generated reviews, sigma={truth['sigma']}, "
        f"noise floor RMSE={truth['noise_floor_rmse']:.4f}; "
        f"pipeline wall time {wall:.0f} s; ranking protocol: {metrics['protocol']}\n"
    )
    print_table(rows)
    attainable = attainable_rmse(args.out, truth["sigma"])
    print(
        f"\nrmse_few: test ratings of the 20% least-rated training items. Attainable test RMSE (true items, "
        f"Bayes-estimated users): {attainable:.4f}"
    )

    held_out = metrics["cold"]
    print(
        f"\nrmse_cold, ndcg_cold@10: {held_out['items']} held-out items with content ({held_out['interactions']:,} "
        f"ratings), ranked among {held_out['candidates']} candidates (themselves and as many warm items)."
    )

    recs = json.loads((args.out / "warehouse" / CATEGORY / "recommendations.json").read_text())
    nesting = "; ".join(f"{r['model']} > {r['contains']}: {r['verdict']}" for r in metrics["nesting"])
    print(
        f"\nRecommendations from `{recs['model']}` ({recs['selected_by']}): "
        f"{recs['distinct_items']} distinct items for "
        f"{recs['users']} users. Nesting check: {nesting}"
    )

    rmse = {name: row["metrics"].get("rmse") for name, row in models.items()}
    ndcg = {name: row["metrics"].get("ndcg@10") or 0.0 for name, row in models.items()}
    cold = {name: row["metrics"].get("rmse_cold") or float("inf") for name, row in models.items()}
    ndcg_cold = {name: row["metrics"].get("ndcg_cold@10") or 0.0 for name, row in models.items()}
    content_models = ("hybrid", "two_tower")
    floor = truth["noise_floor_rmse"]
    best = min(v for v in rmse.values() if v is not None)
    checks = [
        ("biases beats global_mean", rmse["biases"] < rmse["global_mean"]),
        ("mf beats biases", rmse["mf"] < rmse["biases"]),
        ("ncf beats biases", rmse["ncf"] < rmse["biases"]),
        (
            "hybrid beats mf and ncf on few-rating items",
            few.get("hybrid") is not None and few["hybrid"] < min(few["mf"], few["ncf"]),
        ),
        ("hybrid beats mf and ncf on cold items (rmse_cold)", cold["hybrid"] < min(cold["mf"], cold["ncf"])),
        (
            "a content model beats every other model on ndcg_cold@10",
            max(ndcg_cold[m] for m in content_models) > max(v for m, v in ndcg_cold.items() if m not in content_models),
        ),
        (f"best test RMSE {best:.4f} within 10% of the floor {floor:.4f}", best <= 1.10 * floor),
        ("popularity beats global_mean on NDCG@10", ndcg["popularity"] > ndcg["global_mean"]),
        (
            f"selected model `{metrics['best_model']}` beats biases on test NDCG@10",
            ndcg[metrics["best_model"]] > ndcg["biases"],
        ),
        (
            f"selected model `{metrics['best_model']}` beats popularity on test NDCG@10",
            ndcg[metrics["best_model"]] > ndcg["popularity"],
        ),
    ]
    print(
        f"\n(best test RMSE is {best / attainable - 1:+.1%} from the attainable {attainable:.4f}, "
        f"{best / floor - 1:+.1%} from the floor)"
    )
    print("\nTargets:")
    for label, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {label}")


if __name__ == "__main__":
    main()
