"""The five seed projects, reproduced: each seed's preset on the closest data here, beside the pipeline's best.

    nice python bench/seeds.py                  # all five; a few minutes on 2 cores
    nice python bench/seeds.py --only seed003   # one seed

For each seed the whole pipeline runs in-process on a data root of its own (``bench/out/seeds/<seed>``) whose
``settings.yaml`` says ``preset: <seed>``: the seed's filter, split, training settings and model, exactly what a
user coming from that project would run. The seeds' datasets are not here (AMAZON_FASHION, Electronics and Movies
& TV 2018, an unnamed 2023 category), so each runs on the closest data: generated dumps shaped like the seed's
dataset (``rec_pipeline.sample.write_sample``: release, size, per-user activity, variant copies), or a real file
from ``../shared/data/real`` read in place (linked, never copied). What differs is printed with the figures.

"The pipeline's best" is the pipeline's own model with the best *validation* figure in the seed's metric among a
small roster trained on the same split (so the test figure stays a report, never a selection); rosters are
kept small so the whole bench stays within a few minutes. Features run offline as in the demo (images from the
local mirror, random CNN weights, a small word2vec). The last column says what each protocol's figure is worth:
one-pass filters that are not k-cores, random splits that would leak variant copies had ``interactions`` not
collapsed them (the copies it collapsed are counted), cross-validation on the training data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["REC_PIPELINE_REGISTER_ON_LOAD"] = "0"

import polars as pl  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_REAL_DIR = BENCH_DIR.parent.parent / "shared" / "data" / "real"
DEFAULT_OUT = BENCH_DIR / "out" / "seeds"
RATING_ROSTER = ("biases", "mf", "mf_als", "hybrid")
# Rating noise of the generated seeds: gives a rating std of ~1.0, near real dumps' (Magazine_Subscriptions: 1.1);
# the generator's default 0.5 gives 0.75, which would make every RMSE look better than on the seeds' data.
GENERATED_SIGMA = 1.2


@dataclass(frozen=True)
class Generated:
    """A generated dump: ``SampleSpec`` arguments, and what the seed's dataset was, for the table."""

    spec: dict[str, Any]
    seed_dataset: str


@dataclass(frozen=True)
class Real:
    """Real files linked into the data root (read in place)."""

    files: tuple[str, ...]
    seed_dataset: str


@dataclass(frozen=True)
class SeedRun:
    preset: str
    data: Generated | Real
    metric: str  # the seed's figure, as metrics.json names it; the pipeline's best is chosen on "val_" + metric
    published: str
    reproduced: dict[str, str]  # the seed's models -> the pipeline model that runs them
    roster: tuple[str, ...]  # the pipeline's candidates for "best", trained on the same split
    differences: str  # how the run differs from the seed's, beyond the dataset's numbers
    weaknesses: str
    extra_assets: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # per-seed additions to the offline feature settings


SEEDS = (
    SeedRun(
        "seed000",
        Generated(
            {
                "category": "Seed000_Fashion",
                "release": "2018",
                "n_users": 400,
                "n_items": 30,
                "n_reviews": 3_200,
                "variant_families": 0.3,
                "seed": 0,
            },
            "2018 AMAZON_FASHION 5-core, 3,176 reviews",
        ),
        "rmse",
        "RMSE 0.7526, MAE 0.5157, Pearson 0.820",
        {"hybrid (seed network)": "hybrid_seed000"},
        RATING_ROSTER,
        "ratings drawn from a known model (fewer 1 and 5 stars than real dumps: a narrower spread, so Pearson "
        "is not comparable); the towers read the pipeline's 32-d word2vec title vectors and 64-d random-CNN image "
        "embeddings where the seed had 64-d and 512-d",
        "random row hold-out ignores time (later ratings train the model that predicts earlier ones); it would put "
        "copies of one review on sibling variants on both sides, had `interactions` not collapsed them (count in "
        "'data used'), and the seed's figures invite the suspicion: RMSE 0.75 with Pearson 0.82 means two thirds of "
        "the test variance explained (test std ~1.3), rare on 3k ratings; ~600 test ratings move figures by hundredths",
    ),
    SeedRun(
        "seed001",
        Generated(
            {
                "category": "Seed001_Electronics",
                "release": "2018",
                "n_users": 2_500,
                "n_items": 500,
                "n_reviews": 30_000,
                "variant_families": 0.1,
                "seed": 1,
            },
            "2018 Electronics (20.9M reviews) after the > 10 filter",
        ),
        "rmse",
        "RMSE: MF 1.5478, deep 1.0620, hybrid 1.0528",
        {"MF": "mf", "deep": "ncf", "hybrid": "hybrid"},
        RATING_ROSTER,
        "a dense, small stand-in for a catalogue of 786k products; the seed's models map onto the pipeline's: "
        "MF is biased here, deep is NCF (64-32-16), hybrid is the project's content-augmented MF (text and images) "
        "where the seed's added averaged title word2vec to the deep model",
        "> 10 filter in one pass is not a 10-core (users and items fall below 11 once the others are dropped); "
        "random 70/30 rows ignore time and would leak variant copies had they not been collapsed; with no validation "
        "split in the seed, its epoch counts could only be chosen on test; its bare-dot MF (no biases) explains 1.55",
    ),
    SeedRun(
        "seed002",
        Real(("Magazine_Subscriptions_5.json.gz", "meta_Magazine_Subscriptions.json.gz"), "unnamed 2018 category"),
        "ndcg@10",
        "(qualitative: top-10 for a given user)",
        {"AutoRec": "autorec"},
        ("popularity", "ease", "biases", "mf"),
        "the seed's split is unknown: the pipeline's default (temporal leave-last-out) is used; a real but tiny file",
        "no figure: a top-10 list judged by eye says nothing about ranking quality; here every user's held-out "
        "last rating is ranked among all training items",
        extra_assets=("recommendations",),
    ),
    SeedRun(
        "seed003",
        Generated(
            {
                "category": "Seed003_Home",
                "release": "2023",
                "n_users": 1_000,
                "n_items": 200,
                "n_reviews": 32_000,
                "seed": 3,
            },
            "a 2023 category (parent_asin)",
        ),
        "rmse",
        "(loss curves only)",
        {"MF by ALS": "mf_als", "MF by SGD": "mf"},
        RATING_ROSTER,
        "ALS and Adam fit one model (biased MF, per-rating L2: 0.2 for ALS's exact minimum, 0.05 with Adam's early "
        "stopping; 50-d); "
        "the seed's third model, MF with metadata embeddings (main category, price), is not here",
        "no test figure published; random 80/20 rows (time leaks into training); the 2023 release keys items by "
        "parent_asin, so no variant copies to leak",
    ),
    SeedRun(
        "seed004",
        Generated(
            {
                "category": "Seed004_Movies",
                "release": "2018",
                "n_users": 1_000,
                "n_items": 300,
                "n_reviews": 20_000,
                "variant_families": 0.1,
                "seed": 4,
            },
            "2018 Movies & TV (2018 reviews only)",
        ),
        "mae",
        "MAE 0.43 (test), CV 0.39 +- 0.012",
        {"dense (NCF)": "ncf"},
        ("biases", "mf", "mf_als", "ncf"),
        "reviews of every year, not 2018's alone; the seed's hidden sizes are unknown, NCF's (64-32-16, dropout "
        "0.2) stand in; the pipeline's CV folds all interactions, the seed's only its training part; the test "
        "split is the pipeline's default (temporal leave-last-out)",
        "CV on the training data reports the fit to folds of data the model was tuned on, not a held-out figure: "
        "the seed's CV 0.39 +- 0.012 sits 0.04 below its own test 0.43, far outside the folds' spread; MAE rewards "
        "predicting the median (5 stars) on skewed ratings",
    ),
)


def offline_settings(run: SeedRun) -> dict[str, Any]:
    """``preset: <seed>`` plus the demo's offline feature settings (and the seed's own additions)."""
    from rec_pipeline.demo import demo_ops_config

    demo = demo_ops_config()
    ops = {
        "word2vec_model": demo["word2vec_model"],
        "image_embeddings": demo["image_embeddings"],
        "item_images": {"config": {**demo["item_images"]["config"], "offline": True}},
    }
    return {"preset": run.preset, "ops": {**ops, **run.settings}}


def prepare_root(root: Path, run: SeedRun, real_dir: Path) -> str:
    """Write or link the seed's data into ``root/raw`` and its settings; returns the category."""
    from rec_pipeline.sample import SampleSpec, write_sample
    from rec_pipeline.settings import dump_settings

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if isinstance(run.data, Generated):
        category = str(run.data.spec["category"])
        write_sample(root, SampleSpec(**{"sigma": GENERATED_SIGMA, "image_size": 32, **run.data.spec}))
    else:
        raw = root / "raw"
        raw.mkdir()
        for name in run.data.files:
            if not (real_dir / name).is_file():
                raise FileNotFoundError(f"{real_dir / name} is absent (needed by {run.preset})")
            (raw / name).symlink_to((real_dir / name).resolve())
        category = run.data.files[0].removesuffix(".json.gz").removesuffix("_5")
    (root / "settings.yaml").write_text(dump_settings(offline_settings(run)), encoding="utf-8")
    return category


def run_pipeline(root: Path, category: str, run: SeedRun) -> float:
    """Materialize what the seed's and the roster's models need, the models, ``model_metrics`` (and extras)."""
    import dagster as dg

    from rec_pipeline.automation import MAIN_JOB_NAME
    from rec_pipeline.definitions import build_definitions

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    defs = build_definitions(str(root))
    models = [f"model_{name}" for name in dict.fromkeys([*run.reproduced.values(), *run.roster])]
    selection = dg.AssetSelection.assets(*models).upstream() | dg.AssetSelection.assets(
        "model_metrics", *run.extra_assets
    )
    keys = list(selection.resolve(defs.resolve_asset_graph()))
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("category", [category])
        result = defs.resolve_job_def(MAIN_JOB_NAME).execute_in_process(
            partition_key=category,
            instance=instance,
            asset_selection=keys,
            raise_on_error=True,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
    assert result.success
    return time.perf_counter() - started


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def describe_data(root: Path, category: str, run: SeedRun) -> str:
    """What the models saw: size, users, items, rating skew, and the variant copies collapsed."""
    from rec_pipeline.paths import DataLayout

    layout = DataLayout(root)
    frame = pl.read_parquet(layout.artifact(category, "interactions.parquet"))
    summary = json.loads(layout.artifact(category, "interactions.summary.json").read_text())
    copies = int(summary.get("variants", {}).get("copies_collapsed", 0))
    ratings = frame["rating"]
    origin = "generated" if isinstance(run.data, Generated) else "real"
    truth = root / "sample_truth" / f"{category}.json"
    floor = f", noise floor RMSE {json.loads(truth.read_text())['noise_floor_rmse']:.3f}" if truth.exists() else ""
    release = run.data.spec["release"] if isinstance(run.data, Generated) else "2018"
    return (
        f"{origin} {release} `{category}`: {frame.height:,} ratings, {frame['user_id'].n_unique():,} users x "
        f"{frame['item_id'].n_unique():,} items, mean {ratings.mean():.2f} (std {ratings.std():.2f}), "
        f"{float((ratings == 5).mean()):.0%} 5-star{floor}; {copies:,} variant copies collapsed. "
        f"Seed: {run.data.seed_dataset}. "
        f"Also: {run.differences}"
    )


def seed_row(root: Path, category: str, run: SeedRun) -> dict[str, str]:
    from rec_pipeline.paths import DataLayout

    layout = DataLayout(root)
    metrics = json.loads(layout.artifact(category, "metrics/metrics.json").read_text())["models"]

    def test(name: str, metric: str) -> Any:
        return metrics.get(name, {}).get("metrics", {}).get(metric)

    figures = ("rmse", "mae", "pearson") if run.preset == "seed000" else (run.metric,)
    reproduced = []
    for label, name in run.reproduced.items():
        values = ", ".join(f"{m} {_figure(test(name, m))}" for m in figures)
        reproduced.append(f"{label} (`{name}`): {values}")
    cv_path = layout.artifact(category, "metrics/cross_validation.json")
    if cv_path.exists():
        for name, cv in json.loads(cv_path.read_text()).items():
            reproduced.append(
                f"CV {name} ({cv['k']} folds): {run.metric} {cv['mean'][run.metric]:.4f} +- {cv['std'][run.metric]:.4f}"
            )
    lower_is_better = run.metric in ("rmse", "mae")
    candidates = {
        name: test(name, f"val_{run.metric}") for name in run.roster if test(name, f"val_{run.metric}") is not None
    }
    best = (min if lower_is_better else max)(candidates, key=lambda name: candidates[name])
    best_text = ", ".join(f"{m} {_figure(test(best, m))}" for m in figures)
    return {
        "seed": run.preset,
        "data used": describe_data(root, category, run),
        "published": run.published,
        "reproduced (test)": "; ".join(reproduced),
        "pipeline best (test)": f"`{best}` (by val {run.metric}): {best_text}",
        "protocol weaknesses": run.weaknesses,
    }


def print_markdown(rows: list[dict[str, str]]) -> None:
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(row[c].replace("|", "/") for c in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=[run.preset for run in SEEDS], action="append")
    parser.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    rows = []
    for run in SEEDS:
        if args.only and run.preset not in args.only:
            continue
        root = args.out / run.preset
        category = prepare_root(root, run, args.real_dir)
        seconds = run_pipeline(root, category, run)
        print(f"{run.preset}: pipeline on {category} in {seconds:.0f} s", file=sys.stderr)
        rows.append(seed_row(root, category, run))
    print_markdown(rows)


if __name__ == "__main__":
    main()
