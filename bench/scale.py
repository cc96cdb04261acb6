"""A large category end to end: wall time and peak RSS of every step, and whether memory grows with users x items.

    python bench/scale.py                           # the full size: 10M reviews, 1M users, 200k items
    python bench/scale.py --scale 0.05 0.1          # fractions of it, extrapolated to the full size
    python bench/scale.py --reviews 2000000 --users 200000 --items 40000

Per scale: the project's sample generator writes a 2018-format category of ``scale x --reviews`` reviews by
``scale x --users`` users over ``scale x --items`` items (text for every item, mirror images for a seeded
``--image-share`` of them; the other items have no image URL, as many real listings have none), then every asset
of the main job runs, in dependency order, one step per process.

Settings (written to the data root's ``settings.yaml``, so every step reads them as a deployment would): the
demo's offline settings (random CNN weights at 64 px, 32-d Word2Vec), ``epochs: 1`` and ``search: false`` for every
model (``--search`` tunes first, as the pipeline does by default: the same memory, x candidates the time), images from
the local mirror only (``item_images.offline``), and for ``model_metrics`` the full ranking protocol on a seeded
sample of ``--eval-users`` users (``max_eval_users``, 10,000 here, 50,000 by default): every model is measured on
the same users, and the step's cost grows with the catalogue, not with users x items. EASE is capped at
``--ease-max-items`` (default 12,000 here): its closed form is dense items x items by design and it refuses
larger catalogues, so at the full size it is skipped either way; the lower cap keeps the fractional runs from a
multi-GB spike on a shared machine.

How peak RSS is measured, and why this way: each step runs in a child process of its own
(``dagster.materialize`` of that one asset, steps in process), and the benchmark reaps it with ``wait4()``,
whose ``ru_maxrss`` is the kernel's own high-water mark of that process's resident set (and of any child it
waited for). That is exact, without sampling: polling ``/proc/<pid>/status`` ``VmHWM`` of the multiprocess
executor's step processes misses whatever a step allocates between the last poll and its exit, and
``RUSAGE_CHILDREN`` of a run worker folds all its steps into one maximum. One process per step is also what the
multiprocess executor does, so the figures are the ones a deployment's steps reach. A step process that imports
nothing of its own still costs the interpreter, Dagster, Polars and the asset modules: the ``(baseline)`` row
measures that floor.

With two or more scales, the projection table takes the two largest: RSS is projected along the straight line
through the two peaks (a fixed part, the imports and TensorFlow's runtime, plus a part linear in the data). Two
points cannot tell a line from a parabola, so users x items growth is checked by size instead: between the two
scales one dense float32 users x items matrix would add ``4 x users x items x (s2^2 - s1^2)`` bytes (about 1.4 GB
from 0.025 to 0.05), and a step that grows by a quarter of that is flagged. Time is projected from each step's own
duration as linear in the data, except for ``recommendations``, which scores every user against every candidate
item (batched, so memory stays bounded but time does not): x (1/scale)^2 for it (``model_metrics`` ranks a capped
number of users, so it is linear in the catalogue once the cap applies); the process start-up is added as measured.

Target: every step <= 8 GB peak RSS at the full size, on this 2-core, 24 GB machine.

The generator itself (not a pipeline step) is measured the same way and reported apart. With ``--workdir`` each
scale's results are saved as they come (``generator.json``, ``steps.json``, each step's output in
``step_<asset>.log``); ``--report-only`` prints the tables again from them, an interrupted run's included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _measure import Measurement, measure, print_table  # noqa: E402

TARGET_RSS_MB = 8 * 1024
FULL = {"reviews": 10_000_000, "users": 1_000_000, "items": 200_000}
CATEGORY = "Scale_Toys"
BASELINE = "(baseline)"
# Steps that score every user against every candidate item (batched: memory bounded, time is not).
USERS_X_ITEMS_TIME = ("recommendations",)


# --- children ---------------------------------------------------------------------------------------------------


def _asset_modules() -> list[Any]:
    from rec_pipeline.assets import catalog, evaluation, features, images, ingestion, interactions, training

    return [ingestion, interactions, catalog, features, images, training, evaluation]


def _child_generate(root: Path, n_reviews: int, n_users: int, n_items: int, image_share: float, seed: int) -> None:
    """Write the sample, with mirror images (and image URLs) for ``image_share`` of the items only."""
    import dataclasses

    import numpy as np

    import rec_pipeline.sample.dumps as dumps
    from rec_pipeline.sample import SampleSpec, write_sample
    from rec_pipeline.sample.world import IMAGE_NONE

    generate = dumps.generate_world

    def with_image_sample(spec: Any) -> Any:
        world = generate(spec)
        keep = np.random.default_rng([seed, 0x1A6E]).random(len(world.item_image_state)) < image_share
        state = np.where(keep, world.item_image_state, IMAGE_NONE).astype(world.item_image_state.dtype)
        return dataclasses.replace(world, item_image_state=state)

    dumps.generate_world = with_image_sample  # write_sample looks it up in its module at call time
    spec = SampleSpec(category=CATEGORY, n_users=n_users, n_items=n_items, n_reviews=n_reviews, seed=seed)
    manifest = write_sample(root, spec)
    (root / "sample_counts.json").write_text(json.dumps(getattr(manifest, "counts", {}), default=str))


def _child_step(root: Path, asset: str, out: Path) -> None:
    """Materialize one asset (steps in this process); write its step seconds, status and a few metadata values."""
    import dagster as dg

    from rec_pipeline.resources import DataLake

    assets = dg.load_assets_from_modules(_asset_modules())
    if asset == BASELINE:  # the imports every step pays, nothing else
        out.write_text(json.dumps({"seconds": 0.0, "success": True, "metadata": {}}))
        return
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("category", [CATEGORY])
    result = dg.materialize(
        assets,
        selection=[asset],
        instance=instance,
        partition_key=CATEGORY,
        resources={"lake": DataLake(data_dir=str(root))},
        raise_on_error=False,
    )
    seconds = sum(  # a failed step's data carries no duration: it counts 0 here, its process time is still shown
        getattr(e.event_specific_data, "duration_ms", 0.0) / 1000
        for e in result.all_events
        if e.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and e.event_specific_data is not None
    )
    failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
    metadata: dict[str, Any] = {}
    events = result.asset_materializations_for_node(asset) if result.success else []
    if events:
        for key, value in events[0].metadata.items():
            raw = getattr(value, "value", value)
            if isinstance(raw, (bool, int, float)) or (isinstance(raw, str) and len(raw) < 200):
                metadata[key] = raw
    error = None
    if failure is not None and failure.step_failure_data is not None:
        error = (
            failure.step_failure_data.error.message.strip().splitlines()[-1][:300]
            if failure.step_failure_data.error
            else "failed"
        )
    out.write_text(json.dumps({"seconds": seconds, "success": result.success, "metadata": metadata, "error": error}))


# --- the benchmark ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    wall_s: float  # the whole process: start-up, imports, the step
    step_s: float  # the step itself (Dagster's STEP_SUCCESS duration)
    peak_rss_mb: float
    ok: bool
    note: str


def toposorted_assets() -> list[str]:
    import dagster as dg

    from rec_pipeline.resources import DataLake

    defs = dg.Definitions(assets=dg.load_assets_from_modules(_asset_modules()), resources={"lake": DataLake()})
    return [key.to_user_string() for key in defs.resolve_asset_graph().toposorted_asset_keys]


def bench_settings(args: argparse.Namespace) -> dict[str, Any]:
    from rec_pipeline.assets.training import MODEL_NAMES
    from rec_pipeline.demo import demo_ops_config

    ops = demo_ops_config()
    ops["item_images"]["config"]["offline"] = True
    for name in MODEL_NAMES:
        config = ops.setdefault(f"model_{name}", {"config": {}})["config"]
        config["epochs"] = args.epochs
        config["search"] = args.search
        config.setdefault("batch_size", 1024)
    ops["model_ease"]["config"]["model_params"] = {"max_items": args.ease_max_items}
    ops["model_metrics"] = {"config": {"protocol": "full", "max_eval_users": args.eval_users}}
    return {"ops": ops}


def _python(*argv: str) -> list[str]:
    return [sys.executable, __file__, *argv]


def run_scale(args: argparse.Namespace, scale: float, work: Path, assets: list[str]) -> tuple[Measurement, list[Step]]:
    import yaml

    n_reviews, n_users, n_items = (max(1, round(scale * getattr(args, k))) for k in ("reviews", "users", "items"))
    root = work / f"scale_{scale:g}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    print(f"\n== scale {scale:g}: {n_reviews:,} reviews, {n_users:,} users, {n_items:,} items in {root}", flush=True)
    gen = measure(
        "generate",
        _python(
            "--child-generate", str(root), "--n", str(n_reviews), str(n_users), str(n_items), str(args.image_share)
        ),
    )
    if gen.returncode != 0:
        raise SystemExit(f"the generator failed:\n{gen.output[-3000:]}")
    print(f"generated in {gen.seconds:.0f} s, peak RSS {gen.peak_rss_mb:,.0f} MB", flush=True)
    (root / "generator.json").write_text(json.dumps({"seconds": gen.seconds, "peak_rss_mb": gen.peak_rss_mb}))
    (root / "settings.yaml").write_text(yaml.safe_dump(bench_settings(args), sort_keys=False))
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", "REC_PIPELINE_DATA_DIR": str(root)}
    steps = []
    for asset in [BASELINE, *assets]:
        out = root / f"step_{asset.strip('()')}.json"
        m = measure(asset, _python("--child-step", asset, "--root", str(root), "--out", str(out)), env=env)
        out.with_suffix(".log").write_text(m.output)
        done = json.loads(out.read_text()) if out.exists() else {"seconds": 0.0, "success": False, "metadata": {}}
        ok = m.returncode == 0 and bool(done["success"])
        note = _note(asset, done)
        if not ok:
            note = f"FAILED (exit {m.returncode}): " + (done.get("error") or m.output.strip().splitlines()[-1][:200])
        steps.append(Step(asset, m.seconds, float(done["seconds"]), m.peak_rss_mb, ok, note))
        print(
            f"  {asset:<28} {m.seconds:8.1f} s  {m.peak_rss_mb:8,.0f} MB  {'ok' if ok else 'FAILED'}  {note}",
            flush=True,
        )
        (root / "steps.json").write_text(json.dumps([s.__dict__ for s in steps]))
    if not args.keep:
        for sub in ("raw", "images", "warehouse", "sample_truth"):
            shutil.rmtree(root / sub, ignore_errors=True)
    return gen, steps


def load_scale(work: Path, scale: float) -> tuple[Measurement, list[Step]]:
    """A scale's results as a run (possibly an interrupted one) left them in ``--workdir``."""
    root = work / f"scale_{scale:g}"
    gen = json.loads((root / "generator.json").read_text())
    steps = [Step(**row) for row in json.loads((root / "steps.json").read_text())]
    return Measurement("generate", gen["seconds"], gen["peak_rss_mb"], 0, ""), steps


def _note(asset: str, done: dict[str, Any]) -> str:
    """A model the step declined to train (EASE over max_items) says so in its metadata."""
    skipped = done.get("metadata", {}).get("skipped")
    return f"skipped: {str(skipped)[:90]}" if skipped else ""


def _autorec_refusal(args: argparse.Namespace) -> str | None:
    """Why the default AutoRec refuses the full size, from its own memory estimate (``memory_budget_gb``), or
    ``None`` when it would train: the step then ends at its guard, like EASE at ``max_items``."""
    from rec_pipeline.models.autorec import AutoRecRecommender

    model = AutoRecRecommender()
    ratings = int(0.8 * args.reviews)  # about the training split
    estimate = model.fit_gigabytes(args.users, args.items, ratings)
    if estimate <= model.memory_budget_gb:
        return None
    flipped = model.fit_gigabytes(args.users, args.items, ratings, item_based=not model.item_based)
    return (
        f"refused at full size: fit estimate {estimate:.1f} GB > memory_budget_gb {model.memory_budget_gb:g} "
        f"(item_based: false ~{flipped:.1f} GB)"
    )


def report(args: argparse.Namespace, results: dict[float, tuple[Measurement, list[Step]]]) -> None:
    scales = sorted(results)
    print("\n== per step, side by side (wall s = the step's process; RSS = its peak, wait4 ru_maxrss)")
    by_scale = {s: {step.name: step for step in results[s][1]} for s in scales}
    names = list(dict.fromkeys(step.name for s in sorted(scales, reverse=True) for step in results[s][1]))
    rows = []
    for name in names:
        row: dict[str, object] = {"step": name}
        for s in scales:
            step = by_scale[s].get(name)
            row[f"{s:g} wall s"] = f"{step.wall_s:.1f}" if step else "-"
            row[f"{s:g} step s"] = f"{step.step_s:.1f}" if step else "-"
            row[f"{s:g} RSS MB"] = (f"{step.peak_rss_mb:,.0f}" + ("" if step.ok else " FAIL")) if step else "-"
        rows.append(row)
    gen_row: dict[str, object] = {"step": "(generator)"}
    for s in scales:
        gen = results[s][0]
        gen_row.update(
            {f"{s:g} wall s": f"{gen.seconds:.1f}", f"{s:g} step s": "-", f"{s:g} RSS MB": f"{gen.peak_rss_mb:,.0f}"}
        )
    print_table([*rows, gen_row])
    if len(scales) < 2:
        full = scales[-1]
        peak = max(results[full][1], key=lambda step: step.peak_rss_mb)
        total = sum(step.wall_s for step in results[full][1])
        failed = [step.name for step in results[full][1] if not step.ok]
        print(
            f"\nscale {full:g}: all steps {total / 60:.1f} min; largest peak RSS {peak.peak_rss_mb:,.0f} MB "
            f"({peak.name}); target <= {TARGET_RSS_MB:,} MB per step: "
            + ("met" if peak.peak_rss_mb <= TARGET_RSS_MB else f"MISSED by {peak.peak_rss_mb - TARGET_RSS_MB:,.0f} MB")
            + (f"; FAILED steps: {', '.join(failed)}" if failed else "")
        )
        return
    small, large = scales[-2], scales[-1]
    base_large = by_scale[large][BASELINE].peak_rss_mb if BASELINE in by_scale[large] else 0.0
    # What one dense float32 users x items matrix adds between the two scales: a step holding one grows by this.
    dense_mb = 4 * args.users * args.items * (large**2 - small**2) / 2**20
    print(
        f"\n== projected to the full size ({args.reviews:,} reviews, {args.users:,} users, {args.items:,} items) "
        f"from scales {small:g} and {large:g}\n"
        f"RSS: a straight line through the two peaks (fixed part + a part linear in the data). Users x items check: "
        f"a dense float32 users x items matrix would grow by {dense_mb:,.0f} MB between these scales; a step whose "
        f"growth reaches a quarter of that is flagged. Time: the step's own duration x (1 / scale) (linear), "
        f"x (1 / scale)^2 for steps that score every user against every item ({', '.join(USERS_X_ITEMS_TIME)}), "
        "+ process start-up."
    )
    rows, total_wall, missed, quadratic = [], 0.0, [], []
    for name in names:
        if name == BASELINE:
            continue
        # The two largest scales where the step ran to the end (an interrupted run may lack the last steps).
        done = [sc for sc in scales if name in by_scale[sc] and by_scale[sc][name].ok]
        if len(done) < 2:
            continue
        s1, s2 = done[-2], done[-1]
        a, b = by_scale[s1][name], by_scale[s2][name]
        growth = b.peak_rss_mb - a.peak_rss_mb
        rss_full = b.peak_rss_mb + max(0.0, growth) * (1 - s2) / (s2 - s1)
        power = 2 if name in USERS_X_ITEMS_TIME else 1
        wall_full = (b.wall_s - b.step_s) + b.step_s * (1 / s2) ** power
        # Three scales in a row doubling: a linear step's growth doubles from one interval to the next, a
        # users x items one quadruples.
        shape = "-"
        if len(done) >= 3 and done[-3] * 2 == s1 and s1 * 2 == s2:
            first_growth = a.peak_rss_mb - by_scale[done[-3]][name].peak_rss_mb
            if first_growth > 20 and growth > 0:
                shape = f"x{growth / first_growth:.1f}"
        note = "" if (s1, s2) == (small, large) else f"from scales {s1:g} and {s2:g}"
        if name == "model_ease" and args.items > args.ease_max_items:
            rss_full, wall_full = base_large, 10.0
            note = f"skipped at full size: {args.items:,} items > max_items {args.ease_max_items:,} (items^2 by design)"
        refusal = _autorec_refusal(args) if name == "model_autorec" else None
        if refusal is not None:
            note = f"{refusal}; the line through the two scales gives {rss_full / 1024:.1f} GB"
            rss_full, wall_full = base_large, 10.0
        total_wall += wall_full
        verdict = "fits" if rss_full <= TARGET_RSS_MB else f"MISSED by {(rss_full - TARGET_RSS_MB) / 1024:.1f} GB"
        if rss_full > TARGET_RSS_MB:
            missed.append(f"{name} ({rss_full / 1024:.1f} GB)")
        dense = 4 * args.users * args.items * (s2**2 - s1**2) / 2**20
        if growth >= dense / 4 and "items^2" not in note:
            quadratic.append(f"{name} (+{growth:,.0f} MB)")
            verdict += "; users x items?"
        rows.append(
            {
                "step": name,
                "RSS at the two scales": f"{a.peak_rss_mb:,.0f} -> {b.peak_rss_mb:,.0f} MB",
                "growth": f"{growth:+,.0f} MB",
                "growth vs previous (linear x2, users x items x4)": shape,
                "full RSS GB": f"{rss_full / 1024:.1f}",
                "full wall min": f"{wall_full / 60:.1f}",
                "target <= 8 GB": verdict,
                "note": note,
            }
        )
    print_table(rows)
    gen_small, gen_large = results[small][0], results[large][0]
    gen_full = gen_large.seconds / large
    gen_rss = gen_large.peak_rss_mb + max(0.0, gen_large.peak_rss_mb - gen_small.peak_rss_mb) * (1 - large) / (
        large - small
    )
    print(
        f"\nprojected full run: {total_wall / 60:.0f} min of steps (one process per step, as measured here) + "
        f"~{gen_full / 60:.0f} min generating the sample (generator peak ~{gen_rss / 1024:.1f} GB)"
    )
    print(
        f"target (every step <= {TARGET_RSS_MB / 1024:.0f} GB peak RSS at the full size): "
        + ("met" if not missed else f"MISSED by {len(missed)} steps: " + ", ".join(missed))
    )
    print("memory growing with users x items: " + ("none" if not quadratic else ", ".join(quadratic)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=FULL["reviews"])
    parser.add_argument("--users", type=int, default=FULL["users"])
    parser.add_argument("--items", type=int, default=FULL["items"])
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0], help="fractions of the sizes above")
    parser.add_argument("--image-share", type=float, default=0.1, help="share of items with an image")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of every model")
    parser.add_argument(
        "--search", action="store_true", help="tune each Keras model first (the pipeline's default; x candidates)"
    )
    parser.add_argument("--eval-users", type=int, default=10_000, help="model_metrics' max_eval_users")
    parser.add_argument("--ease-max-items", type=int, default=12_000, help="EASE refuses larger catalogues")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed afterwards")
    parser.add_argument("--keep", action="store_true", help="keep each scale's data root (with --workdir)")
    parser.add_argument(
        "--report-only", action="store_true", help="print the tables from the results a run left in --workdir"
    )
    parser.add_argument("--child-generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-step", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_generate is not None:
        reviews, users, items, share = args.n
        _child_generate(args.child_generate, int(reviews), int(users), int(items), float(share), seed=17)
        return
    if args.child_step is not None:
        _child_step(args.root, args.child_step, args.out)
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.report_only:
        if args.workdir is None:
            raise SystemExit("--report-only reads the results of a run made with --workdir")
        report(args, {scale: load_scale(args.workdir, scale) for scale in sorted(args.scale)})
        return
    assets = toposorted_assets()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = args.workdir or Path(tmp)
        results = {scale: run_scale(args, scale, work, assets) for scale in sorted(args.scale)}
    report(args, results)
    print(
        f"\nbenchmark wall time: {(time.perf_counter() - started) / 60:.1f} min (load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
