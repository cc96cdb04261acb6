"""Run a command in a child process and report its wall time and peak RSS (the child and its children)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    label: str
    seconds: float
    peak_rss_mb: float
    returncode: int
    output: str


def measure(label: str, argv: list[str], env: dict[str, str] | None = None) -> Measurement:
    """wait4() gives the rusage of exactly this child, including descendants it waited for (``zcat | wc``)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    return Measurement(label, seconds, usage.ru_maxrss / 1024, proc.returncode, output.strip())


def python_snippet(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def print_table(rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
