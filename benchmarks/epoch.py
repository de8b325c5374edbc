"""Seconds per epoch of the chapter's training, side by side: the book's pipeline, ours, PyTorch, the GEMM floor.

    python -m benchmarks.epoch            # or `make bench`; about 5-7 minutes on 2 cores
    python -m benchmarks.epoch --quick    # about 2-4 minutes
    python -m benchmarks.epoch --report RESULTS.json --markdown docs/performance.md   # the page's tables

Every measurement runs in a fresh process (cells.py), one after another, so no two share MXNet's engine,
an OpenMP runtime or memory. The machine may be busy: the goals are ratios of numbers measured in the same
run, the cells are interleaved over rounds, and every time reported is a median. The tables are report.py's,
the page's block page.py's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# No import may load the package here: MXNet's OpenMP runtime would then be in this process, and the
# orchestrator's only job is to start each cell in a fresh one.
from . import page, report

ROOT = Path(__file__).resolve().parents[1]
WIDTHS, BATCHES = (256, 512, 1024, 2048), (64, 256, 1024)
# Settings of MXNet and its OpenMP runtime that --env-sweep measures against the default (in native numerics,
# a user's own value stands: dropout_gluon/numerics.py). MXNet 1.9 gives its operators half the
# processors (it assumes two hyperthreads per core), so without hyperthreads its matrix products use half
# the cores unless OMP_NUM_THREADS says otherwise.
ENV_SWEEP = ["MXNET_CPU_WORKER_NTHREADS=1", "OMP_NUM_THREADS=1", "OMP_WAIT_POLICY=PASSIVE",
             "MXNET_ENGINE_TYPE=NaiveEngine", f"OMP_NUM_THREADS={os.cpu_count()}",
             f"OMP_NUM_THREADS={os.cpu_count()} MXNET_ENGINE_TYPE=NaiveEngine"]
CELL_TIMEOUT = 1200  # seconds; a cell that takes longer is reported as hung (e.g. an OpenMP deadlock)


def run_cell(kind: str, env: dict, **kwargs) -> dict:
    """Run one cell in a fresh Python process; return what it printed as JSON (or an error)."""
    print(f"  {kind} {' '.join(f'{k}={v}' for k, v in kwargs.items() if k not in ('cells', 'chapter'))}",
          file=sys.stderr, flush=True)
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.cells", kind, json.dumps(kwargs)], cwd=ROOT,
                              capture_output=True, text=True, env=env, timeout=CELL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": f"cell {kind} did not finish in {CELL_TIMEOUT} s (hung?)"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"cell {kind} failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


def machine() -> str:
    """CPU model, cores and memory, as lscpu and /proc/meminfo give them."""
    model = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:"))
        memory = f"{mem_kib / 2 ** 20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown memory"
    return f"{model}, {os.cpu_count()} cores, {memory}, {platform.system()}"


def scaling_cells(quick: bool) -> list:
    """(width, batch size, fraction of the epoch measured): fractions keep each cell to about a second."""
    cells = []
    for h in WIDTHS:
        for b in BATCHES:
            fraction = {256: 1 / 4, 512: 1 / 4, 1024: 1 / 8, 2048: 1 / 16}[h]
            cells.append((h, b, fraction / 2 if quick else fraction))
    return cells


def measure(args) -> dict | None:
    """Run every cell as `args` says; return the results (None if the data could not be prepared)."""
    epochs = args.epochs or (2 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 2)
    started, load_start = time.perf_counter(), os.getloadavg()
    tmp = tempfile.TemporaryDirectory(prefix="bench-")
    env = dict(os.environ, BENCH_ARRAYS=tmp.name)
    print("benchmark cells (each in its own process):", file=sys.stderr)
    info = run_cell("prepare", env, out=tmp.name)
    if "error" in info:
        print(f"benchmark: {info['error']}", file=sys.stderr)
        return None
    chapter = info["chapter"]  # the references' constants: their processes cannot import the package
    results: dict = {"machine": machine(), "info": info, "epochs": epochs, "rounds": rounds}

    # 1. Peak memory of the main job, first, while nothing else of ours is running.
    results["rss"] = run_cell("rss", env, out=str(Path(tmp.name) / "run"))

    # 2. Seconds per epoch, {scratch, Gluon} x {book, default (portable), native}, and PyTorch, interleaved.
    main_cells = [("default", "scratch"), ("default", "gluon"), ("native", "scratch"), ("native", "gluon"),
                  ("torch", 1), ("torch", 2),
                  ("book", "scratch"), ("book", "gluon"), ("loader", "scratch"), ("loader", "gluon")]
    secs: dict = {key: [] for key in main_cells}
    for _ in range(rounds):
        for loader, model in main_cells:
            if loader == "torch":
                r = run_cell("torch", env, cells=[(None, chapter["batch_size"], 1.0)], epochs=epochs, threads=model,
                             chapter=chapter)
                if "error" not in r:
                    results["torch"] = {"version": r["version"]}
                    r = r["cells"][0]
            elif loader == "book":
                r = run_cell("book", env, model=model, epochs=epochs)
            else:
                r = run_cell("mxnet", dict(env, DROPOUT_GLUON_NUMERICS="native") if loader == "native" else env,
                             model=model, loader="gluon" if loader == "loader" else "memory", epochs=epochs)
                if loader == "native" and "numerics" in r:
                    results["native"] = r["numerics"]
            if "error" in r:
                secs[loader, model] = r["error"]
                continue
            if isinstance(secs[loader, model], list):
                secs[loader, model] += r["seconds"]
    seconds = {f"{a}/{b}": v for (a, b), v in secs.items()}
    torch_threads = report.medians(seconds)["torch_threads"]

    # 3. The GEMM floor and where the default path's time goes.
    floor_cells = [(None, chapter["batch_size"])]
    gemm = run_cell("gemm", env, cells=floor_cells, repeats=20, chapter=chapter)
    # The same products on one thread: what an MXNet operator gets when MXNet gives it one OpenMP thread.
    gemm1 = run_cell("gemm", dict(env, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"), cells=floor_cells,
                     repeats=20, chapter=chapter)
    profiles = {model: run_cell("profile", env, model=model) for model in ("scratch", "gluon")}

    # 4. Optional: MXNet and OpenMP settings, each against a default run just before it.
    sweep = None
    if args.env_sweep:
        sweep = {}
        for setting in ENV_SWEEP:
            variables = dict(pair.split("=") for pair in setting.split())
            for model in ("scratch", "gluon"):
                ratios, same = [], True
                for _ in range(rounds):  # in native mode: portable would pin the threads these settings change
                    native = dict(env, DROPOUT_GLUON_NUMERICS="native")
                    base = run_cell("mxnet", native, model=model, loader="memory", epochs=epochs)
                    other = run_cell("mxnet", dict(native, **variables), model=model, loader="memory",
                                     epochs=epochs)
                    if "error" not in base and "error" not in other:
                        ratios.append(statistics.median(other["seconds"]) / statistics.median(base["seconds"]))
                        same = same and other["test_acc"] == base["test_acc"]
                sweep.setdefault(setting, {})[model] = statistics.median(ratios) if ratios else None
                sweep[setting][model + "_same"] = same

    # 5. Scaling: width x batch size, each implementation in one process.
    scaling = None
    if not args.no_scaling:
        cells = scaling_cells(args.quick)
        se = max(1, epochs - 1)
        scaling = {"cells": cells,
                   "floor": run_cell("gemm", env, cells=[(h, b) for h, b, _ in cells], repeats=5, chapter=chapter),
                   "scratch": run_cell("mxnet_scaling", env, model="scratch", cells=cells, epochs=se),
                   "gluon": run_cell("mxnet_scaling", env, model="gluon", cells=cells, epochs=se),
                   "torch": run_cell("torch", env, cells=cells, epochs=se, threads=torch_threads or 1,
                                     chapter=chapter)}
    tmp.cleanup()

    results.update(seconds=seconds, torch_threads=torch_threads,
                   gemm=gemm, gemm1=gemm1, profiles=profiles, sweep=sweep,
                   scaling=scaling, load=[load_start, os.getloadavg()],
                   total_s=time.perf_counter() - started)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.epoch", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and rounds, smaller scaling cells")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per cell, after one warm-up")
    parser.add_argument("--rounds", type=int, default=None, help="times each main cell runs, interleaved")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    parser.add_argument("--env-sweep", action="store_true",
                        help=f"also time the default path under each of: {', '.join(ENV_SWEEP)}")
    parser.add_argument("--json", default=None, help="also write every measurement to this file")
    parser.add_argument("--report", default=None, metavar="JSON",
                        help="print the report of measurements saved with --json, without measuring")
    parser.add_argument("--markdown", default=None, metavar="PAGE",
                        help="also rewrite the report block of this page (e.g. docs/performance.md) with the "
                             "tables of --report JSON, or of this run if saved with --json")
    args = parser.parse_args(argv)
    if args.markdown and not (args.report or args.json):
        parser.error("--markdown needs the file its tables come from: --report JSON, or --json FILE to save this run")

    if args.report:
        try:
            results = json.loads(Path(args.report).read_text())
            report.report(results)
        except OSError as e:
            print(f"benchmark: cannot read {args.report}: {e.strerror}", file=sys.stderr)
            return 2
        except (ValueError, KeyError, TypeError) as e:
            print(f"benchmark: {args.report} is not a file written by --json ({type(e).__name__}: {e})",
                  file=sys.stderr)
            return 2
    else:
        results = measure(args)
        if results is None:
            return 1
        report.report(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))

    if args.markdown:
        try:
            page.write(args.markdown, results, args.report or args.json)
        except OSError as e:
            print(f"benchmark: cannot rewrite {args.markdown}: {e.strerror}", file=sys.stderr)
            return 2
        except ValueError as e:
            print(f"benchmark: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
