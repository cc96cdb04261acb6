"""``rec-pipeline``: sample data, partition sync, the demo run, summaries and recommendations from the shell.

Materializing individual assets is Dagster's job (``dagster asset materialize`` / ``dg launch --assets``); this
CLI covers what Dagster's does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rec_pipeline.paths import DataLayout, default_data_dir

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
    )
    manifest = write_sample(layout.root, spec)
    print(json.dumps({"category": spec.category, "release": spec.release, "data_dir": str(layout.root), "files": [str(p) for p in manifest.paths]}, indent=2))
    return 0


def cmd_partitions_sync(args: argparse.Namespace) -> int:
    import dagster as dg

    from rec_pipeline.assets.partitions import sync_category_partitions

    layout = _layout(args)
    with dg.DagsterInstance.get() as instance:
        added = sync_category_partitions(instance, layout.raw_dir)
        known = instance.get_dynamic_partitions("category")
    print(json.dumps({"added": added, "partitions": known}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate sample dumps if needed and run the whole pipeline on them, recorded in $DAGSTER_HOME."""
    import dagster as dg

    from rec_pipeline.assets.partitions import sync_category_partitions
    from rec_pipeline.automation import DEMO_JOB_NAME
    from rec_pipeline.definitions import build_definitions
    from rec_pipeline.sample import SampleSpec, write_sample

    layout = _layout(args).ensure()
    if not any(layout.raw_dir.glob(f"*{args.category}*")):
        print(f"generating sample dumps for {args.category} in {layout.raw_dir} ...", flush=True)
        write_sample(layout.root, SampleSpec(category=args.category, release=args.release))
    defs = build_definitions(str(layout.root), demo=True)
    with dg.DagsterInstance.get() as instance:
        sync_category_partitions(instance, layout.raw_dir)
        job = defs.resolve_job_def(DEMO_JOB_NAME)
        print(f"running job {DEMO_JOB_NAME} for partition {args.category} (logs below; open the UI with `make ui`)", flush=True)
        result = job.execute_in_process(partition_key=args.category, instance=instance, raise_on_error=False)
    from rec_pipeline.summary import category_summary

    summary = category_summary(layout, args.category)
    table = layout.artifact(args.category, "metrics/comparison.md")
    if table.exists():
        print("\nModel comparison (test split):\n" + table.read_text())
    print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}, indent=2, default=str))
    if not result.success:
        print("the demo run failed; see the step errors above", file=sys.stderr)
        return 1
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from rec_pipeline.summary import category_summary

    print(json.dumps(category_summary(_layout(args), args.category), indent=2, default=str))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from rec_pipeline.recommend import user_report

    report = user_report(_layout(args), args.category, args.user, args.n)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"User {args.user} in {args.category} (model: {report['model']})")
    print("\nTop-rated history:")
    for row in report["history"]:
        print(f"  {row['rating']:.0f}*  {row['item_id']}  {row.get('title') or ''}")
    print(f"\nTop {args.n} recommendations:")
    for row in report["recommendations"]:
        print(f"  {row['rank']:>2}. {row['item_id']}  {row['score']:.2f}  {row.get('title') or ''}")
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
    sample.set_defaults(func=cmd_make_sample)

    parts = sub.add_parser("partitions", help="manage category partitions")
    parts_sub = parts.add_subparsers(dest="action", required=True)
    sync = parts_sub.add_parser("sync", help="add a partition for every category landed in raw/")
    sync.set_defaults(func=cmd_partitions_sync)

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except FileNotFoundError as exc:
        print(f"rec-pipeline: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
