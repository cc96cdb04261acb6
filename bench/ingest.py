"""Ingestion benchmark: rec_pipeline's streaming ingest vs the decompression floor and a pandas baseline.

    python bench/ingest.py                 # 2,000,000 reviews (~350 MB gzipped), generated once into bench/out
    python bench/ingest.py --reviews 200000

Prints, side by side from one run: `zcat file | wc -l` (the floor: nothing can read the file faster), pandas
`read_json(lines=True)` (what notebooks do), and rec_pipeline's ingest on the file and on the file doubled
(two gzip members back to back), and both on a copy with 0.1% bad lines (pandas gives up on the first one),
each with wall time and peak RSS. Two hostile copies (issue 11) follow: a gzip member that expands to one
~1 GB line put before the dump (a gzip bomb: a few MB on disk), and a member of 256 MB of blank lines.
Targets: ingest within 1.5x of the zcat floor; peak RSS under 2 GB and flat when the input doubles; the
hostile copies within the clean run's RSS (the long line is never held) and the blank lines at fast-path speed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Measurement, measure, print_table, python_snippet  # noqa: E402

INGEST = """
import sys, json
from rec_pipeline.ingest.normalize import ingest_dump
r = ingest_dump(sys.argv[1], "reviews", sys.argv[2], sys.argv[3])
print(json.dumps({"rows": r.rows_out, "rejected": r.rejected_total, "lines": r.lines, "slow": r.slow_path_lines}))
"""
PANDAS = """
import sys, pandas as pd
df = pd.read_json(sys.argv[1], lines=True, compression="gzip")
print(len(df))
"""


GENERATE = """
import sys
from pathlib import Path
from rec_pipeline.sample import SampleSpec, write_sample
reviews, dirt = int(sys.argv[2]), float(sys.argv[3])
write_sample(Path(sys.argv[1]), SampleSpec(category="Bench_Toys", release="2018", n_users=max(1000, reviews // 20),
             n_items=max(200, reviews // 100), n_reviews=reviews, dirt_fraction=dirt, seed=11, compresslevel=6, image_size=8))
"""


HOSTILE = """
import sys, zlib
target, source, kind, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
with open(target, "wb") as handle:
    if kind == "bomb":
        handle.write(compressor.compress(b'{"reviewerID": "A", "asin": "B", "overall": 5.0, "reviewText": "'))
        block = b"A" * (1 << 20)
        for _ in range(size >> 20):
            handle.write(compressor.compress(block))
        handle.write(compressor.compress(b'"}\\n'))
    else:
        block = b"\\n" * (1 << 20)
        for _ in range(size >> 20):
            handle.write(compressor.compress(block))
    handle.write(compressor.flush())
    with open(source, "rb") as clean:
        while piece := clean.read(1 << 20):
            handle.write(piece)
"""


def ensure_hostile(dump: Path, kind: str, size: int) -> Path:
    """The clean dump behind one extra gzip member: a bomb (one ``size``-byte line) or ``size`` blank lines."""
    target = dump.with_name(f"Bench_Toys_{kind}.json.gz")
    if not target.exists():
        print(f"writing the {kind} copy ({size >> 20} MB expanded) ...", flush=True)
        subprocess.run(python_snippet(HOSTILE) + [str(target), str(dump), kind, str(size)], check=True)
    return target


def ensure_dump(out: Path, reviews: int, dirt: float) -> Path:
    """Generate once, in a child process: the parent stays small, so forked children do not inherit its RSS."""
    root = out / f"dump_{reviews}_dirt{dirt:g}"
    target = root / "raw" / "Bench_Toys_5.json.gz"
    if not target.exists():
        print(f"generating {reviews:,} reviews (dirt fraction {dirt:g}) into {root} (once) ...", flush=True)
        subprocess.run(python_snippet(GENERATE) + [str(root), str(reviews), str(dirt)], check=True)
    return target


def run_ingest(label: str, source: Path, work: Path, tag: str) -> Measurement:
    return measure(label, python_snippet(INGEST) + [str(source), str(work / f"o{tag}.parquet"), str(work / f"r{tag}.parquet")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--skip-pandas", action="store_true", help="the pandas baseline needs several GB of RAM")
    parser.add_argument("--bomb-mb", type=int, default=1024, help="length of the gzip bomb's one line, in MB")
    args = parser.parse_args()
    dump = ensure_dump(args.out, args.reviews, 0.0)  # clean, so the pandas baseline can parse it at all
    dirty = ensure_dump(args.out, args.reviews, 0.001)
    doubled = dump.with_name("Bench_Toys_x2.json.gz")
    if not doubled.exists():
        with open(doubled, "wb") as target:
            for _ in range(2):
                with open(dump, "rb") as source:
                    shutil.copyfileobj(source, target)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    size_mb = dump.stat().st_size / 1e6
    print(f"input: {dump} ({size_mb:.0f} MB gzipped)")

    runs = [measure("zcat | wc -l (floor)", ["bash", "-c", f"zcat '{dump}' | wc -l"])]
    if not args.skip_pandas:
        runs.append(measure("pandas read_json(lines=True)", python_snippet(PANDAS) + [str(dump)]))
    runs.append(run_ingest("rec_pipeline ingest", dump, work, ""))
    runs.append(run_ingest("rec_pipeline ingest, 0.1% bad lines", dirty, work, "3"))
    if not args.skip_pandas:
        runs.append(measure("pandas, 0.1% bad lines", python_snippet(PANDAS) + [str(dirty)]))
    runs.append(measure("zcat | wc -l, input x2", ["bash", "-c", f"zcat '{doubled}' | wc -l"]))
    runs.append(run_ingest("rec_pipeline ingest, input x2", doubled, work, "2"))
    bomb = ensure_hostile(dump, "bomb", args.bomb_mb << 20)
    flood = ensure_hostile(dump, "blank", 256 << 20)
    runs.append(run_ingest(f"hostile: {args.bomb_mb} MB line + dump", bomb, work, "4"))
    runs.append(run_ingest("hostile: 256M blank lines + dump", flood, work, "5"))

    floor = runs[0].seconds
    rows = [
        {"what": m.label, "wall_s": f"{m.seconds:.1f}", "x_floor": f"{m.seconds / floor:.2f}", "peak_rss_mb": f"{m.peak_rss_mb:.0f}",
         "ok": "yes" if m.returncode == 0 else f"exit {m.returncode}", "output": m.output.splitlines()[-1][:60] if m.output else ""}
        for m in runs
    ]
    print_table(rows)
    ingest = next(m for m in runs if m.label == "rec_pipeline ingest")
    ingest2 = next(m for m in runs if m.label == "rec_pipeline ingest, input x2")
    bombed, flooded = runs[-2], runs[-1]
    print(f"\ntarget: ingest <= 1.5x floor -> {ingest.seconds / floor:.2f}x; peak RSS < 2048 MB -> {ingest.peak_rss_mb:.0f} MB; "
          f"RSS x2 input / x1 input -> {ingest2.peak_rss_mb / ingest.peak_rss_mb:.2f}")
    print(f"hostile: peak RSS clean {ingest.peak_rss_mb:.0f} MB, with a {args.bomb_mb} MB line {bombed.peak_rss_mb:.0f} MB "
          f"({bombed.peak_rss_mb / ingest.peak_rss_mb:.2f}x), with 256M blank lines {flooded.peak_rss_mb:.0f} MB "
          f"({flooded.peak_rss_mb / ingest.peak_rss_mb:.2f}x); extra time for the blank lines "
          f"{flooded.seconds - ingest.seconds:.1f} s")


if __name__ == "__main__":
    main()
