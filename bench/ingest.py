"""Ingestion benchmark: rec_pipeline's streaming ingest against the decompression floor, on a realistic dump.

    python bench/ingest.py                      # 2,000,000 reviews: ~340 MB gzipped, ~1.2 GB of JSON lines
    python bench/ingest.py --reviews 200000     # a quick check (~30 MB)
    python bench/ingest.py --inflaters          # only the inflate comparison (zlib, isal, zlib-ng, rapidgzip)

(zlib-ng and rapidgzip are measured when installed: ``pip install zlib-ng rapidgzip``; isal is a dependency.)

Why a generated dump and not a template: a 10:1 compressible file inflates fast and parses fast, and flatters
every number. This one draws review texts and summaries word by word from the vocabulary of the real 2018 files
in ``../shared/data/real`` (read in place, never copied; their word frequencies, text lengths, styles, votes and
image lists), plus a long tail of rare words as a whole category has, so it compresses about 3.5:1 like the real
files. Lines are grouped by asin as in the real 5-core files. A copy with 0.1% bad lines (the sample
generator's dirt kinds: truncated JSON, missing user id, non-numeric or out-of-range rating, empty line) holds
the same good lines, so clean and dirty runs read the same rows.

Every row is the median of ``--repeats`` runs (3), each in a fresh child process (wall time, CPU time, peak RSS);
rows compared with each other run in the same rounds (floor, clean, serial, dirty, floor, clean, ...), as the
machine's load may change during the bench. On a machine shared with other work, note the load average printed:
the ingest parses two chunks at once, which buys wall time only when a second core is free.
Floors: ``gzip -dc | wc -l`` (what the shell does; gzip's CPU is not what the ingest pays) and the ingest's own
inflate loop with zlib and with the chosen inflater, alone in a process (nothing can ingest faster). Then the
ingest on the file, again with one parse thread (``parse_workers=1``: what parsing chunks in parallel buys), on
the file doubled (two gzip members back to back), on the dirty copy, and on two hostile copies (issue 11): a gzip
member expanding to one ~1 GB line put before the dump (a bomb: a few MB on disk), and a member of 256 MB of
blank lines. pandas ``read_json(lines=True)`` is shown with ``--pandas`` (it needs ~10 GB).

Targets, printed with met/missed and the gap: ingest wall <= 1.0x ``gzip -dc``; peak RSS <= 1 GB and flat (within
10%) when the input doubles; dirty <= 1.3x clean; the hostile copies within the clean run's RSS.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _measure import print_table, python_snippet  # noqa: E402

from rec_pipeline.ingest.release_2018 import REVIEW as F  # noqa: E402  (the 2018 field names, from their one owner)

REAL_DIR = ROOT.parent / "shared" / "data" / "real"
REAL_FILES = ("All_Beauty_5.json.gz", "Magazine_Subscriptions_5.json.gz", "Appliances_5.json.gz")
DIRT_FRACTION = 0.001
BATCH = 50_000
# Rare words: a whole category uses hundreds of thousands of distinct words, the real sample files a few thousand.
TAIL_WORDS = 400_000
ITEM_SPAN = 4_000  # words of real text that one item's reviews are excerpted from
SWAP_SHARE = 0.1
TAIL_SHARE = 0.03

INGEST = """
import sys, json
from rec_pipeline.ingest.normalize import IngestOptions, ingest_dump
options = IngestOptions(parse_workers=int(sys.argv[4])) if len(sys.argv) > 4 else IngestOptions()
r = ingest_dump(sys.argv[1], "reviews", sys.argv[2], sys.argv[3], options)
print(json.dumps({"rows": r.rows_out, "rejected": r.rejected_total, "slow": r.slow_path_lines, "inflater": r.inflater}))
"""
INFLATE = """
import sys
from rec_pipeline.ingest.chunks import INFLATERS, inflate_file
print(inflate_file(sys.argv[1], INFLATERS[sys.argv[2]]))
"""
RAPIDGZIP = """
import sys, rapidgzip
size = 0
with rapidgzip.open(sys.argv[1], parallelization=int(sys.argv[2])) as handle:
    while piece := handle.read(4 << 20):
        size += len(piece)
print(size)
"""
PANDAS = """
import sys, pandas as pd
print(len(pd.read_json(sys.argv[1], lines=True, compression="gzip")))
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


# --- the realistic dump ---------------------------------------------------------------------------------------------


@dataclass
class Shapes:
    """What real 2018 review lines look like, as distributions to draw from (strings already JSON-escaped)."""

    words: np.ndarray  # object array of words, real ones by frequency, then the rare tail
    word_p: np.ndarray
    corpus: np.ndarray  # the real texts as word ids, in reading order: excerpts keep real phrasing
    text_words: np.ndarray  # words per real review text
    summaries: np.ndarray  # real summaries (escaped), each as often as in the real files: "Five Stars" is common
    styles: list[str]  # '"style": {...}, ' fragments, '' for none, in their real proportions
    names: list[str]
    votes: list[str]  # '"vote": "3", ' fragments, '' for none
    overall: np.ndarray
    overall_p: np.ndarray
    image_share: float
    source: str


def _escaped(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _tail_words(rng: np.random.Generator, n: int) -> list[str]:
    """Made-up rare words (brand names, misspellings, jargon) built from syllables.

    So they read and compress like words."""
    onsets = [
        "",
        "b",
        "c",
        "d",
        "f",
        "g",
        "h",
        "j",
        "k",
        "l",
        "m",
        "n",
        "p",
        "r",
        "s",
        "t",
        "v",
        "w",
        "z",
        "br",
        "ch",
        "cl",
        "cr",
        "dr",
        "fl",
        "gr",
        "pl",
        "pr",
        "sh",
        "sl",
        "st",
        "str",
        "th",
        "tr",
    ]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "oo", "ou", "y"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "ck", "nd", "ng", "rt", "st", "x"]
    syllables = np.array([o + v + c for o in onsets for v in nuclei for c in codas], dtype=object)
    count = rng.integers(2, 5, n)
    parts = syllables[rng.integers(0, len(syllables), int(count.sum()))]
    cuts = np.concatenate([[0], np.cumsum(count)])
    words = sorted({"".join(parts[a:b]) for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)})
    return [words[i] for i in rng.permutation(len(words))]  # sorted first: a set's order changes from run to run


def real_shapes(real_dir: Path, rng: np.random.Generator) -> Shapes:
    """Distributions from the real files (read in place); a synthetic stand-in when they are not there."""
    records = []
    for name in REAL_FILES:
        if (real_dir / name).exists():
            with gzip.open(real_dir / name, "rt", encoding="utf-8") as handle:
                records += [json.loads(line) for line in handle]
    tail = _tail_words(rng, TAIL_WORDS)
    if not records:
        words = np.array(tail, dtype=object)
        p = 1.0 / np.arange(1, len(words) + 1)
        p /= p.sum()
        return Shapes(
            words=words,
            word_p=p,
            corpus=rng.choice(len(words), 100_000, p=p),
            text_words=rng.integers(5, 120, 1000),
            summaries=np.array(["Five Stars", "Great"], dtype=object),
            styles=[""],
            names=["Reader"],
            votes=["" for _ in range(9)] + [f'"{F.votes}": "2", '],
            overall=np.array([1.0, 2, 3, 4, 5]),
            overall_p=np.array([0.05, 0.05, 0.1, 0.2, 0.6]),
            image_share=0.02,
            source="synthetic (no real files found)",
        )
    distinct = {(r.get("reviewText", ""), r.get("summary", "")): r for r in records}.values()  # variant copies once
    counts: Counter[str] = Counter()
    text_words = []
    for record in distinct:
        text, summary = record.get("reviewText", "").split(), record.get("summary", "").split()
        counts.update(text)
        counts.update(summary)
        text_words.append(len(text))
    ranked = [word for word, _ in counts.most_common()]
    rank = {word: i for i, word in enumerate(ranked)}
    corpus = np.array(
        [rank[w] for r in distinct for w in (*r.get("reviewText", "").split(), *r.get("summary", "").split())]
    )
    real_words = [_escaped(word) for word in ranked]
    real_p = np.array([count for _, count in counts.most_common()], dtype=float)
    words = np.array(real_words + tail, dtype=object)
    tail_p = 1.0 / np.arange(1, len(tail) + 1)  # rare words are Zipfian too
    word_p = np.concatenate([real_p / real_p.sum() * (1 - TAIL_SHARE), tail_p / tail_p.sum() * TAIL_SHARE])
    overall = Counter(float(r["overall"]) for r in distinct)
    values = np.array(sorted(overall))
    return Shapes(
        words=words,
        word_p=word_p,
        corpus=corpus,
        text_words=np.array(text_words),
        summaries=np.array([_escaped(r.get("summary", "")) for r in records], dtype=object),
        styles=[
            f'"{F.style}": {json.dumps(r[F.style], ensure_ascii=False)}, ' if F.style in r else "" for r in distinct
        ],
        names=sorted({_escaped(r.get("reviewerName", "Amazon Customer")) for r in records}),
        votes=[f'"{F.votes}": "{r[F.votes]}", ' if F.votes in r else "" for r in distinct],
        overall=values,
        overall_p=np.array([overall[v] for v in values], dtype=float) / sum(overall.values()),
        image_share=sum(F.images in r for r in distinct) / len(distinct),
        source=f"{len(records):,} real reviews from {', '.join(n for n in REAL_FILES if (real_dir / n).exists())}",
    )


def _ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> np.ndarray:
    alphabet = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    body = alphabet[rng.integers(0, len(alphabet), (n, length))]
    return np.array([prefix + row.tobytes().decode() for row in body], dtype=object)


def _texts(rng: np.random.Generator, shapes: Shapes, lengths: np.ndarray, anchors: np.ndarray) -> list[str]:
    """Texts of the given word counts: excerpts of real text with ``SWAP_SHARE`` of the words drawn afresh.

    Real phrasing is what makes review text compress like real text (words drawn one by one compress worse, a
    template far better); reviews of one item are excerpts from near its ``anchors`` position in the real texts, as
    reviews of one product share its words; the fresh draws, a long tail of rare words among them, keep excerpts
    from repeating. One C-level join and split builds the whole batch.
    """
    total = int(lengths.sum())
    room = len(shapes.corpus) - int(lengths.max()) - 1
    starts = (anchors + rng.integers(0, ITEM_SPAN, len(lengths))) % room
    ids = shapes.corpus[np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(total)]
    swap = rng.random(total) < SWAP_SHARE
    ids[swap] = rng.choice(len(shapes.words), size=int(swap.sum()), p=shapes.word_p)
    stream = np.insert(shapes.words[ids], np.cumsum(lengths)[:-1], "\x1e")
    return " ".join(stream.tolist()).split(" \x1e ") if len(lengths) > 1 else [" ".join(stream.tolist())]


def _review_lines(
    rng: np.random.Generator, shapes: Shapes, users: np.ndarray, names: np.ndarray, items: np.ndarray
) -> list[str]:
    n = len(items)
    anchors = (
        np.frombuffer(b"".join(i.encode() for i in items.tolist()), dtype=np.uint8).reshape(n, -1).astype(np.int64)
    )
    anchors = (anchors * np.arange(1, anchors.shape[1] + 1) ** 3).sum(
        axis=1
    ) * 7919  # a fixed spot in the texts per asin
    text = _texts(rng, shapes, np.maximum(shapes.text_words[rng.integers(0, len(shapes.text_words), n)], 1), anchors)
    summary = shapes.summaries[rng.integers(0, len(shapes.summaries), n)].tolist()
    day = rng.integers(np.datetime64("2005-01-01", "D").astype(int), np.datetime64("2018-10-01", "D").astype(int), n)
    dates = day.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    months = dates.astype("datetime64[M]").astype(int) % 12 + 1
    days = (dates - dates.astype("datetime64[M]")).astype(int) + 1
    overall = rng.choice(shapes.overall, size=n, p=shapes.overall_p)
    styles = [shapes.styles[i] for i in rng.integers(0, len(shapes.styles), n)]
    votes = [shapes.votes[i] for i in rng.integers(0, len(shapes.votes), n)]
    verified = np.where(rng.random(n) < 0.9, "true", "false")
    has_image = rng.random(n) < shapes.image_share
    photo = _ids(rng, int(has_image.sum()), "", 11)
    images = np.full(n, "", dtype=object)
    images[has_image] = [
        f'"{F.images}": ["https://images-na.ssl-images-amazon.com/images/I/{p}._SY88.jpg"], ' for p in photo
    ]
    return [
        f'{{"{F.rating}": {o}, {im}{vo}"{F.verified}": {ve}, "{F.date}": "{m:02d} {d}, {y}", '
        f'"{F.user}": "{u}", "{F.item}": "{i}", '
        f'{st}"{F.user_name}": "{na}", "{F.text}": "{t}", "{F.summary}": "{s}", "{F.time}": {sec}}}'
        for o, vo, ve, m, d, y, u, i, st, na, t, s, sec, im in zip(
            overall.tolist(),
            votes,
            verified.tolist(),
            months.tolist(),
            days.tolist(),
            years.tolist(),
            users.tolist(),
            items.tolist(),
            styles,
            names.tolist(),
            text,
            summary,
            (day * 86400).tolist(),
            images.tolist(),
            strict=True,
        )
    ]


def generate(clean: Path, dirty: Path, reviews: int, real_dir: Path, seed: int = 12) -> None:
    """Write the clean dump and its dirty copy (the same lines plus 0.1% bad ones), gzip level 6, in one pass."""
    from rec_pipeline.sample.dumps import DIRT_KINDS, corrupt_line

    rng = np.random.default_rng(seed)
    shapes = real_shapes(real_dir, rng)
    print(f"shapes from {shapes.source}; {len(shapes.words):,} words", flush=True)
    n_users, n_items = max(1000, reviews // 6), max(200, reviews // 25)
    user_ids, item_ids = _ids(rng, n_users, "A", 13), np.sort(_ids(rng, n_items, "B0", 8))
    user_names = np.array(shapes.names, dtype=object)[rng.integers(0, len(shapes.names), n_users)]
    popularity = rng.pareto(1.2, n_items) + 1
    item_of = np.sort(
        rng.choice(n_items, size=reviews, p=popularity / popularity.sum())
    )  # grouped by asin, as real files are
    dirty_at = rng.random(reviews) < DIRT_FRACTION
    clean.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(clean, "wb") as clean_raw,
        open(dirty, "wb") as dirty_raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=clean_raw, compresslevel=6, mtime=0) as clean_out,
        gzip.GzipFile(filename="", mode="wb", fileobj=dirty_raw, compresslevel=6, mtime=0) as dirty_out,
    ):
        kinds = 0
        for start in range(0, reviews, BATCH):
            stop = min(reviews, start + BATCH)
            users = rng.integers(0, n_users, stop - start)
            lines = _review_lines(rng, shapes, user_ids[users], user_names[users], item_ids[item_of[start:stop]])
            clean_out.write(("\n".join(lines) + "\n").encode())
            for offset in np.flatnonzero(dirty_at[start:stop])[::-1].tolist():
                lines.insert(offset, corrupt_line(lines[offset], DIRT_KINDS[kinds % len(DIRT_KINDS)], "2018", rng))
                kinds += 1
            dirty_out.write(("\n".join(lines) + "\n").encode())
            print(f"  {stop:,}/{reviews:,} reviews", flush=True)


def ensure_dumps(out: Path, reviews: int, real_dir: Path) -> tuple[Path, Path]:
    """Generate once, in a child process: the parent stays small, so forked children do not inherit its RSS."""
    root = out / f"realistic_{reviews}"
    clean, dirty = root / "Bench_Reviews_5.json.gz", root / "Bench_Reviews_dirty_5.json.gz"
    if not (clean.exists() and dirty.exists()):
        print(
            f"generating {reviews:,} reviews and a copy with {DIRT_FRACTION:.1%} bad lines into {root} (once) ...",
            flush=True,
        )
        command = [
            sys.executable,
            __file__,
            "--generate-into",
            str(root),
            "--reviews",
            str(reviews),
            "--real-dir",
            str(real_dir),
        ]
        subprocess.run(command, check=True)
    return clean, dirty


def ensure_hostile(dump: Path, kind: str, size: int) -> Path:
    """The clean dump behind one extra gzip member: a bomb (one ``size``-byte line) or ``size`` blank lines."""
    target = dump.with_name(f"Bench_Reviews_{kind}.json.gz")
    if not target.exists():
        print(f"writing the {kind} copy ({size >> 20} MB expanded) ...", flush=True)
        subprocess.run(python_snippet(HOSTILE) + [str(target), str(dump), kind, str(size)], check=True)
    return target


def ensure_doubled(dump: Path) -> Path:
    doubled = dump.with_name("Bench_Reviews_x2.json.gz")
    if not doubled.exists():
        with open(doubled, "wb") as target:
            for _ in range(2):
                with open(dump, "rb") as source:
                    shutil.copyfileobj(source, target)
    return doubled


# --- measuring ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """The median of several runs of one command (wall, CPU and peak RSS each the median)."""

    label: str
    seconds: float
    low: float
    high: float
    cpu: float
    peak_rss_mb: float
    ok: bool
    output: str


def _once(argv: list[str]) -> tuple[float, float, float, int, str]:
    """wait4() gives the rusage of exactly this child, including descendants it waited for (``gzip -dc | wc``)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    cpu, code = usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, cpu, usage.ru_maxrss / 1024, code, output


def measure(label: str, argv: list[str], repeats: int) -> Run:
    return measure_rounds([(label, argv)], repeats)[0]


def measure_rounds(commands: list[tuple[str, list[str]]], repeats: int) -> list[Run]:
    """Run the commands in turn, ``repeats`` rounds, and take each one's medians.

    Rows that are compared with each other (the floor, the clean and the dirty ingest) are measured in the same
    rounds, so a change in the machine's load in the middle of the bench falls on all of them alike.
    """
    samples: dict[str, list[tuple[float, float, float, int, str]]] = {label: [] for label, _ in commands}
    for _ in range(repeats):
        for label, argv in commands:
            samples[label].append(_once(argv))
    runs = []
    for label, _ in commands:
        walls = [s[0] for s in samples[label]]
        last = samples[label][-1][4].strip().splitlines()
        print(f"  {label}: {', '.join(f'{w:.1f}' for w in walls)} s", flush=True)
        runs.append(
            Run(
                label,
                statistics.median(walls),
                min(walls),
                max(walls),
                statistics.median(s[1] for s in samples[label]),
                statistics.median(s[2] for s in samples[label]),
                all(s[3] == 0 for s in samples[label]),
                last[-1][:70] if last else "",
            )
        )
    return runs


def ingest_command(source: Path, work: Path, tag: str, parse_workers: int | None = None) -> list[str]:
    """The ingest in a child process; ``parse_workers`` None keeps ``IngestOptions``' default."""
    argv = python_snippet(INGEST) + [str(source), str(work / f"o{tag}.parquet"), str(work / f"r{tag}.parquet")]
    return argv if parse_workers is None else [*argv, str(parse_workers)]


def run_ingest(label: str, source: Path, work: Path, tag: str, repeats: int) -> Run:
    return measure(label, ingest_command(source, work, tag), repeats)


def inflate_floor(label: str, source: Path, inflater: str, repeats: int) -> Run:
    return measure(label, python_snippet(INFLATE) + [str(source), inflater], repeats)


def _verdict(value: float, target: float, unit: str = "x") -> str:
    if value <= target:
        return f"{value:.2f}{unit} (target <= {target:g}{unit}: met)"
    missed = f"MISSED by {value - target:.2f}{unit}, {value / target - 1:+.0%}"
    return f"{value:.2f}{unit} (target <= {target:g}{unit}: {missed})"


def compare_inflaters(dump: Path, repeats: int) -> list[Run]:
    """The ingest's inflate loop with each installed library, alone in a process, on the same file; and rapidgzip.

    rapidgzip is no drop-in for ``decompressobj`` (it reads a whole file, in parallel): it is measured to see what
    parallel inflate would buy on this machine, where its threads compete with polars' for the same cores.
    """
    from rec_pipeline.ingest.chunks import INFLATERS

    runs = [inflate_floor(f"inflate: {name}", dump, name, repeats) for name in INFLATERS if INFLATERS[name].available()]
    if importlib.util.find_spec("rapidgzip") is not None:
        for threads in sorted({1, os.cpu_count() or 1}):
            argv = python_snippet(RAPIDGZIP) + [str(dump), str(threads)]
            runs.append(measure(f"inflate: rapidgzip, {threads} thread(s)", argv, repeats))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--real-dir", type=Path, default=REAL_DIR)
    parser.add_argument(
        "--pandas", action="store_true", help="add pandas read_json(lines=True): needs ~10 GB at full size"
    )
    parser.add_argument("--inflaters", action="store_true", help="only compare the inflate implementations")
    parser.add_argument("--bomb-mb", type=int, default=1024, help="length of the gzip bomb's one line, in MB")
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_into:
        generate(
            args.generate_into / "Bench_Reviews_5.json.gz",
            args.generate_into / "Bench_Reviews_dirty_5.json.gz",
            args.reviews,
            args.real_dir,
        )
        return
    dump, dirty = ensure_dumps(args.out, args.reviews, args.real_dir)
    from rec_pipeline.ingest.chunks import choose_inflater, inflate_file

    expanded = inflate_file(dump, choose_inflater())
    size_mb = dump.stat().st_size / 1e6
    print(
        f"input: {dump} ({size_mb:.0f} MB gzipped, {expanded / 1e6:.0f} MB of JSON lines, "
        f"{expanded / 1e6 / size_mb:.1f}:1)"
    )
    print(
        f"each row: median of {args.repeats} runs; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    inflaters = compare_inflaters(dump, args.repeats)
    if args.inflaters:
        print_table(
            [
                {
                    "inflater": r.label,
                    "wall_s": f"{r.seconds:.2f}",
                    "cpu_s": f"{r.cpu:.2f}",
                    "MB/s out": f"{expanded / 1e6 / r.seconds:.0f}",
                    "ok": "yes" if r.ok else "no",
                }
                for r in inflaters
            ]
        )
        return
    chosen = choose_inflater().name
    doubled = ensure_doubled(dump)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    gzip_floor, ingest, serial, dirty_run = measure_rounds(
        [
            ("gzip -dc | wc -l (floor)", ["bash", "-c", f"gzip -dc '{dump}' | wc -l"]),
            ("rec_pipeline ingest", ingest_command(dump, work, "1")),
            ("rec_pipeline ingest, 1 parse thread", ingest_command(dump, work, "6", parse_workers=1)),
            (f"rec_pipeline ingest, {DIRT_FRACTION:.1%} bad lines", ingest_command(dirty, work, "3")),
        ],
        args.repeats,
    )
    runs = [gzip_floor, *inflaters]
    zlib_floor = next(r for r in inflaters if r.label == "inflate: zlib")
    if args.pandas:
        runs.append(measure("pandas read_json(lines=True)", python_snippet(PANDAS) + [str(dump)], args.repeats))
    gzip_x2, ingest_x2 = measure_rounds(
        [
            ("gzip -dc | wc -l, input x2", ["bash", "-c", f"gzip -dc '{doubled}' | wc -l"]),
            ("rec_pipeline ingest, input x2", ingest_command(doubled, work, "2")),
        ],
        args.repeats,
    )
    bomb = run_ingest(
        f"hostile: {args.bomb_mb} MB line + dump",
        ensure_hostile(dump, "bomb", args.bomb_mb << 20),
        work,
        "4",
        args.repeats,
    )
    flood = run_ingest(
        "hostile: 256M blank lines + dump", ensure_hostile(dump, "blank", 256 << 20), work, "5", args.repeats
    )
    runs += [ingest, serial, dirty_run, gzip_x2, ingest_x2, bomb, flood]
    print()
    print_table(
        [
            {
                "what": r.label,
                "wall_s": f"{r.seconds:.2f}",
                "min-max": f"{r.low:.2f}-{r.high:.2f}",
                "cpu_s": f"{r.cpu:.1f}",
                "x gzip -dc": f"{r.seconds / gzip_floor.seconds:.2f}",
                "x zlib": f"{r.seconds / zlib_floor.seconds:.2f}",
                "peak_rss_mb": f"{r.peak_rss_mb:.0f}",
                "ok": "yes" if r.ok else "NO",
                "output": r.output,
            }
            for r in runs
        ]
    )
    print(f"\nchosen inflater: {chosen}; load average now {os.getloadavg()[0]:.1f}")
    print(f"ingest wall / gzip -dc:            {_verdict(ingest.seconds / gzip_floor.seconds, 1.0)}")
    alone = next(r for r in inflaters if r.label == f"inflate: {chosen}")
    print(
        f"ingest wall / inflate alone ({chosen}): {ingest.seconds / alone.seconds:.2f}x "
        "(no target: the floor the ingest itself pays)"
    )
    print(
        f"ingest wall / 1 parse thread:      {ingest.seconds / serial.seconds:.2f}x "
        f"(no target: what parsing chunks in parallel buys at this load; CPU {ingest.cpu / serial.cpu:.2f}x)"
    )
    print(f"ingest x2 wall / gzip -dc x2:      {_verdict(ingest_x2.seconds / gzip_x2.seconds, 1.0)}")
    print(f"peak RSS:                          {_verdict(ingest.peak_rss_mb, 1024, ' MB')}")
    print(f"peak RSS input x2 / input x1:      {_verdict(ingest_x2.peak_rss_mb / ingest.peak_rss_mb, 1.1)}")
    print(
        f"dirty / clean wall:                {_verdict(dirty_run.seconds / ingest.seconds, 1.3)} "
        f"(CPU {dirty_run.cpu / ingest.cpu:.2f}x)"
    )
    print(
        f"hostile RSS / clean RSS:           bomb {bomb.peak_rss_mb / ingest.peak_rss_mb:.2f}x, blank lines "
        f"{flood.peak_rss_mb / ingest.peak_rss_mb:.2f}x; "
        f"extra time for the blank lines {flood.seconds - ingest.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
