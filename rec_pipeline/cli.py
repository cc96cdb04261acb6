"""``rec-pipeline``: sample data, partition sync, the demo run, summaries and recommendations from the shell.

Materializing individual assets is Dagster's job (``dagster asset materialize`` / ``dg launch --assets``); this
CLI covers what Dagster's does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rec_pipeline.paths import DataLayout, default_data_dir
from rec_pipeline.recommend import UserInputError
from rec_pipeline.warehouse import Artifact

DEMO_CATEGORY = "Sample_Toys"


def _layout(args: argparse.Namespace) -> DataLayout:
    return DataLayout(Path(args.data_dir).expanduser().resolve() if args.data_dir else default_data_dir())


def cmd_make_sample(args: argparse.Namespace) -> int:
    from rec_pipeline.sample import SampleSpec, write_sample

    layout = _layout(args).ensure()
    spec = SampleSpec(
        category=args.category,
        release=args.release,
        n_users=args.users,
        n_items=args.items,
        n_reviews=args.reviews,
        sigma=args.sigma,
        seed=args.seed,
        variant_families=args.variant_families,
        coincidental_copies=args.coincidental_copies,
    )
    manifest = write_sample(layout.root, spec)
    print(
        json.dumps(
            {
                "category": spec.category,
                "release": spec.release,
                "data_dir": str(layout.root),
                "files": [str(p) for p in manifest.paths],
            },
            indent=2,
        )
    )
    return 0


def cmd_partitions_sync(args: argparse.Namespace) -> int:
    import dagster as dg

    from rec_pipeline.assets.partitions import sync_category_partitions

    layout = _layout(args)
    from rec_pipeline.ingest.sources import ignored_files

    with dg.DagsterInstance.get() as instance:
        added = sync_category_partitions(instance, layout.raw_dir)
        known = instance.get_dynamic_partitions("category")
    ignored = {f.path.name: f.reason for f in ignored_files(layout.raw_dir)}
    for name, reason in ignored.items():
        print(f"ignored {name}: {reason}", file=sys.stderr)
    print(json.dumps({"added": added, "partitions": known, "ignored": ignored}))
    return 0


def cmd_runs_reap(args: argparse.Namespace) -> int:
    """What the `run_reaper` sensor does, by hand (no daemon needed)."""
    import dagster as dg

    from rec_pipeline.run_reaper import reap_dead_runs

    with dg.DagsterInstance.get() as instance:
        report = reap_dead_runs(instance)
    print(json.dumps({"failed_runs": report.failed_runs, "freed_runs": report.freed_runs}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate sample dumps if needed, write the demo's settings if none exist, run the whole pipeline on them
    (recorded in $DAGSTER_HOME), and end on what a user came for: the model comparison and one user's top-10."""
    import dagster as dg

    from rec_pipeline.assets.partitions import sync_category_partitions
    from rec_pipeline.automation import MAIN_JOB_NAME
    from rec_pipeline.definitions import build_definitions
    from rec_pipeline.demo import write_demo_settings
    from rec_pipeline.sample import SampleSpec, write_sample
    from rec_pipeline.settings import settings_path

    layout = _layout(args).ensure()
    if not any(layout.raw_dir.glob(f"*{args.category}*")):
        print(f"generating sample dumps for {args.category} in {layout.raw_dir} ...", flush=True)
        # With variant copies, as real 2014/2018 dumps have them, so the demo shows them collapsed.
        write_sample(
            layout.root,
            SampleSpec(category=args.category, release=args.release, variant_families=0.1, coincidental_copies=5),
        )
    settings_file = settings_path(layout.root)
    if write_demo_settings(settings_file):
        print(
            f"wrote the demo's offline settings to {settings_file} (every later launch on this data reads them)",
            flush=True,
        )
    else:
        print(f"using the settings in {settings_file}", flush=True)
    defs = build_definitions(str(layout.root))
    # Dagster's per-event DEBUG lines are for the UI; the console keeps the steps' own progress lines.
    run_config = {"loggers": {"console": {"config": {"log_level": "DEBUG" if args.verbose else "INFO"}}}}
    with dg.DagsterInstance.get() as instance:
        sync_category_partitions(instance, layout.raw_dir)
        job = defs.resolve_job_def(MAIN_JOB_NAME)
        print(f"running job {MAIN_JOB_NAME} for partition {args.category} (open the UI with `make ui`)", flush=True)
        result = job.execute_in_process(
            partition_key=args.category, instance=instance, run_config=run_config, raise_on_error=False
        )
    if not result.success:
        print("the demo run failed; see the step errors above", file=sys.stderr)
        return 1
    print(demo_screen(layout, args.category))
    return 0


def demo_screen(layout: DataLayout, category: str) -> str:
    """The demo's last screen: the comparison table with its protocol, then one user's history and top-10."""
    import polars as pl

    from rec_pipeline.recommend import user_report

    lines = []
    metrics = layout.artifact(category, Artifact.METRICS)
    table = layout.artifact(category, Artifact.COMPARISON)
    if table.exists():
        protocol = json.loads(metrics.read_text()).get("protocol") if metrics.exists() else None
        lines += [
            "",
            f"Model comparison on the test split of {category} (protocol: {protocol}):",
            "",
            table.read_text().rstrip(),
        ]
    recs = layout.artifact(category, Artifact.RECOMMENDATIONS)
    if recs.exists():
        counts = pl.read_parquet(layout.artifact(category, Artifact.INTERACTIONS), columns=["user_id"])[
            "user_id"
        ].value_counts()
        user = counts.sort(["count", "user_id"], descending=[True, False])["user_id"][0]
        lines += ["", format_report(user_report(layout, category, user, 10), 10)]
        lines += [
            "",
            f"More: rec-pipeline recommend --category {category} --user <USER_ID>   (or open the UI: make ui)",
        ]
    return "\n".join(lines)


def format_report(report: dict[str, Any], n: int) -> str:
    lines = [f"User {report['user_id']} in {report['category']} (model: {report['model']})", "", "Top-rated history:"]
    lines += [f"  {row['rating']:.0f}*  {row['item_id']}  {row.get('title') or ''}" for row in report["history"]]
    lines += ["", f"Top {n} recommendations:"]
    lines += [
        f"  {row['rank']:>2}. {row['item_id']}  {row['score']:.2f}  {row.get('title') or ''}"
        for row in report["recommendations"]
    ]
    return "\n".join(lines)


def cmd_summary(args: argparse.Namespace) -> int:
    from rec_pipeline.summary import category_summary

    print(json.dumps(category_summary(_layout(args), args.category), indent=2, default=str))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from rec_pipeline.recommend import user_report

    report = user_report(_layout(args), args.category, args.user, args.n)
    print(json.dumps(report, indent=2, default=str) if args.json else format_report(report, args.n))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rec-pipeline", description=__doc__)
    parser.add_argument("--data-dir", help="data root (default: $REC_PIPELINE_DATA_DIR or ./data)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    sample = sub.add_parser("make-sample", help="write realistic sample dumps with a known rating model into raw/")
    sample.add_argument("--category", default=DEMO_CATEGORY)
    sample.add_argument("--release", choices=["2014", "2018", "2023"], default="2018")
    sample.add_argument("--users", type=int, default=2000)
    sample.add_argument("--items", type=int, default=400)
    sample.add_argument("--reviews", type=int, default=30000)
    sample.add_argument("--sigma", type=float, default=0.5)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument(
        "--variant-families",
        type=float,
        default=0.1,
        help="share of items listed under extra variant asins (2014/2018)",
    )
    sample.add_argument("--coincidental-copies", type=int, default=5, help="reviews copied once onto an unrelated item")
    sample.set_defaults(func=cmd_make_sample)

    parts = sub.add_parser("partitions", help="manage category partitions")
    parts_sub = parts.add_subparsers(dest="action", required=True)
    sync = parts_sub.add_parser("sync", help="add a partition for every category landed in raw/")
    sync.set_defaults(func=cmd_partitions_sync)

    runs = sub.add_parser("runs", help="operate on the Dagster instance's runs")
    runs_sub = runs.add_subparsers(dest="action", required=True)
    reap = runs_sub.add_parser("reap", help="fail this host's runs whose worker died and free the pool slots they held")
    reap.set_defaults(func=cmd_runs_reap)

    demo = sub.add_parser("demo", help="generate sample dumps (if absent) and run the whole pipeline on them")
    demo.add_argument("--category", default=DEMO_CATEGORY)
    demo.add_argument("--release", choices=["2014", "2018", "2023"], default="2018")
    demo.set_defaults(func=cmd_demo)

    summary = sub.add_parser("summary", help="print the materialized state of a category as JSON")
    summary.add_argument("--category", required=True)
    summary.set_defaults(func=cmd_summary)

    rec = sub.add_parser("recommend", help="print a user's top-rated history and recommendations")
    rec.add_argument("--category", required=True)
    rec.add_argument("--user", required=True)
    rec.add_argument("--n", type=int, default=10)
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=cmd_recommend)
    return parser


def _quiet(verbose: bool) -> None:
    """Keep the default output to what a user reads: no library INFO chatter, beta warnings or TF banners."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("alembic", "gensim", "smart_open", "absl", "tensorflow", "h5py", "matplotlib", "httpx", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="dagster")
    try:
        from dagster import BetaWarning, PreviewWarning

        warnings.filterwarnings("ignore", category=BetaWarning)
        warnings.filterwarnings("ignore", category=PreviewWarning)
    except ImportError:  # pragma: no cover - older Dagster
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet(args.verbose)
    try:
        return int(args.func(args))
    except (FileNotFoundError, UserInputError) as exc:
        print(f"rec-pipeline: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
