"""The exercise sweep's wall time with one worker and with several, and projected for more cores.

    .venv/bin/python -m benchmarks.sweep --json benchmarks/results/sweep.json   # default sweep: ~50 min, 2 cores
    .venv/bin/python -m benchmarks.sweep --quick                                # the quick sweep: ~1 min
    .venv/bin/python -m benchmarks.sweep --report benchmarks/results/sweep.json # the tables of a saved run

Each measurement is `dropout-gluon exercise all --jobs J` in a fresh process with a fresh cache (nothing
reused), timed from start to end; the runs of the two measurements must be the same to the last digit.
The projection schedules the one-worker run's per-run times on P workers, longest first.
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.epoch import machine


def measure(jobs: int, quick: bool, folder: Path) -> dict:
    """Time the whole sweep with `jobs` workers; return its wall time and its records."""
    cache = folder / f"cache-{jobs}"
    command = [sys.executable, "-m", "dropout_gluon", "exercise", "all", "--jobs", str(jobs), "--no-progress",
               "--cache", str(cache), "--out", str(folder / f"out-{jobs}")] + (["--quick"] if quick else [])
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    records = sorted((json.loads(p.read_text()) for p in cache.glob("*.json")), key=lambda r: r["key"])
    # What the runs computed (all but wall-clock seconds), and the tables and plots the sweep wrote.
    numbers = [dict(r, seconds=None, history=[dict(e, seconds=None) for e in r["history"]]) for r in records]
    outputs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / f"out-{jobs}").iterdir())}
    return {"jobs": jobs, "wall": wall, "outputs": outputs,
            "numbers": hashlib.sha256(json.dumps(numbers, sort_keys=True).encode()).hexdigest(),
            "runs": [{"key": r["key"], "seconds": r["seconds"]} for r in records]}


def same_numbers(a: dict, b: dict) -> bool:
    """The two sweeps trained the same runs to the same numbers and wrote the same tables and plots."""
    return a["numbers"] == b["numbers"] and a["outputs"] == b["outputs"]


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def makespan(seconds: list, workers: int) -> float:
    """How long `workers` take for runs of these lengths, each next run to the first free worker, longest first."""
    free = [0.0] * workers
    for s in sorted(seconds, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free)


def report(results: dict) -> str:
    """The measured table and the projection, as Markdown."""
    one, many = results["measured"]
    seconds = [r["seconds"] for r in one["runs"]]
    lines = [f"Exercise sweep ({len(seconds)} runs{', quick' if results['quick'] else ''}) on {results['machine']}; "
             f"the same numbers with both: {'yes' if results['same_numbers'] else 'NO'}", "",
             "| workers | wall time | speed-up |", "|---:|---:|---:|"]
    for m in (one, many):
        lines.append(f"| {m['jobs']} | {duration(m['wall'])} | {one['wall'] / m['wall']:.2f}x |")
    lines += ["", f"Projected from the one-worker run's per-run times ({duration(sum(seconds))} of training; "
              f"the longest run, {duration(max(seconds))}, bounds any number of workers; worker start-up and "
              f"contention for memory bandwidth left out):", "",
              "| workers | projected wall time | speed-up | bound: longest run |", "|---:|---:|---:|---:|"]
    for p in (1, 2, 4, 8, 16, 64):
        t = makespan(seconds, p)
        lines.append(f"| {p} | {duration(t)} | {sum(seconds) / t:.1f}x | {duration(max(seconds))} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick sweep (3,000 images, a few epochs)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="the workers to compare with one")
    parser.add_argument("--json", default=None, help="save the measurements here")
    parser.add_argument("--report", default=None, help="print the tables of measurements saved with --json")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(Path(args.report).read_text())), end="")
        return 0
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as folder:
        measured = [measure(jobs, args.quick, Path(folder)) for jobs in (1, args.jobs)]
    results = {"machine": machine(), "quick": args.quick, "measured": measured,
               "same_numbers": same_numbers(*measured)}
    if args.json:
        Path(args.json).write_text(json.dumps(results) + "\n")
    print(report(results), end="")
    return 0 if results["same_numbers"] else 1


if __name__ == "__main__":
    sys.exit(main())
