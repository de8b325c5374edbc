"""Seconds per epoch of the chapter's training, side by side: the book's pipeline, ours, PyTorch, the GEMM floor.

    python -m benchmarks.epoch            # or `make bench`; about 5-7 minutes on 2 cores
    python -m benchmarks.epoch --quick    # about 2-4 minutes

Every measurement runs in a fresh process of this script (`--cell`), one after another, so no two share
MXNet's engine, an OpenMP runtime or memory. The machine may be busy: the goals are ratios of numbers
measured in the same run, the cells are interleaved over rounds, and every time reported is a median.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_TRAIN, N_TEST, NUM_INPUTS, NUM_OUTPUTS = 60000, 10000, 784, 10
# The chapter's, as dropout_gluon.run has them: repeated for the cells that must not load MXNet (PyTorch's,
# the GEMM floor's); tests/test_benchmark.py checks that they agree.
LR, DROP_PROB1, DROP_PROB2 = 0.5, 0.2, 0.5
GOALS = {"vs_torch": 1.0, "vs_book": 3.0, "vs_floor": 2.0, "rss_mb": 700, "test_acc": 0.84}
WIDTHS, BATCHES = (256, 512, 1024, 2048), (64, 256, 1024)
# Settings of MXNet and its OpenMP runtime that --env-sweep measures against the default. Setting any of them
# replaces the engine settings the package adds on small x86 machines (dropout_gluon/engine.py), so the first
# row, MXNET_CPU_WORKER_NTHREADS=1, is MXNet's own defaults. MXNet 1.9 gives its operators half the
# processors (it assumes two hyperthreads per core), so without hyperthreads its matrix products use half
# the cores unless OMP_NUM_THREADS says otherwise.
ENV_SWEEP = ["MXNET_CPU_WORKER_NTHREADS=1", "OMP_NUM_THREADS=1", "OMP_WAIT_POLICY=PASSIVE",
             "MXNET_ENGINE_TYPE=NaiveEngine", f"OMP_NUM_THREADS={os.cpu_count()}",
             f"OMP_NUM_THREADS={os.cpu_count()} MXNET_ENGINE_TYPE=NaiveEngine"]
CELL_TIMEOUT = 1200  # seconds; a cell that takes longer is reported as hung (e.g. an OpenMP deadlock)


# ------------------------------------------------------------------------------------------------ the model

def batches(n: int, batch_size: int) -> list:
    """Sizes of the batches of one pass over n examples (the last one may be short)."""
    return [min(batch_size, n - i) for i in range(0, n, batch_size)]


def gemms(b: int, h: int, train: bool) -> list:
    """(m, k, n) of each matrix product of one batch of b examples through 784-h-h-10, forward (and backward)."""
    fwd = [(b, NUM_INPUTS, h), (b, h, h), (b, h, NUM_OUTPUTS)]
    if not train:
        return fwd
    weight_grads = [(NUM_INPUTS, b, h), (h, b, h), (h, b, NUM_OUTPUTS)]  # X^T dY for each layer
    input_grads = [(b, NUM_OUTPUTS, h), (b, h, h)]  # dY W^T for layers 3 and 2; the images need none
    return fwd + weight_grads + input_grads


def epoch_flops(h: int, batch_size: int, fraction: float = 1.0, test_only: bool = False) -> float:
    """Floating-point operations of one epoch's matrix products: training and the test pass (or the test only)."""
    total = 0
    for n, train in ([] if test_only else [(N_TRAIN, True)]) + [(N_TEST, False)]:
        for b in batches(round(n * fraction), batch_size):
            total += sum(2 * m * k * n_ for m, k, n_ in gemms(b, h, train))
    return float(total)


# ------------------------------------------------------------------------------------- cells (own process)

def cell_prepare(out: str) -> dict:
    """Write the verified arrays as .npy for the cells that must not import MXNet; describe the machine."""
    import mxnet as mx
    import numpy as np

    import dropout_gluon
    from dropout_gluon import data, engine

    dataset = data.load_dataset()
    for name, array in zip(("train_x", "train_y", "test_x", "test_y"), dataset.arrays):
        np.save(Path(out) / f"{name}.npy", array)
    # The user's choices, or what the package applied (it unsets the worker count once MXNet has read it).
    settings = {name: os.environ[name] for name in engine.USER_CHOICES if name in os.environ}
    settings.update(dropout_gluon.ENGINE_SETTINGS)
    threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or engine.threads_per_operator(engine.usable_cpus(),
                                                                                        platform.machine())
    return {"mxnet": mx.__version__, "numpy": np.__version__, "gpus": mx.context.num_gpus(), "engine": settings,
            "threads_per_operator": threads, "data": str(dataset.source)}


def cell_mxnet(model: str, loader: str, epochs: int) -> dict:
    """The package's own training (`train_scratch` / `train_gluon`): seconds of each epoch after a warm-up."""
    from dropout_gluon import run

    train = run.train_scratch if model == "scratch" else run.train_gluon
    _, history = train(epochs + 1, loader=loader, log=None)
    return {"seconds": history.column("seconds")[1:], "test_acc": history[-1].test_acc}


def cell_book(model: str, epochs: int) -> dict:
    """The book's own pipeline: its DataLoader (loader='gluon') and its training loop, written out below.

    The loop differs from the package's `train_ch3` only where speed is concerned: it reads the loss and
    the number of right predictions as Python floats after every batch (and every test batch), and its
    `sgd` updates a parameter with four operators, `param[:] = param - lr * param.grad / batch_size`.
    """
    from mxnet import autograd
    from mxnet.gluon import loss as gloss

    from dropout_gluon import data, run

    def book_accuracy(data_iter, net):
        acc_sum, n = 0.0, 0
        for X, y in data_iter:
            acc_sum += (net(X).argmax(axis=1) == y.astype("float32")).sum().asscalar()
            n += y.size
        return acc_sum / n

    lr, batch_size = run.lr, run.batch_size
    run.set_seed(0)
    train_iter, test_iter = data.load_data_fashion_mnist(batch_size, loader="gluon")
    net, params, trainer = run.build(model)
    loss = gloss.SoftmaxCrossEntropyLoss()
    seconds, test_acc = [], 0.0
    for _ in range(epochs + 1):
        start = time.perf_counter()
        train_l_sum, train_acc_sum, n = 0.0, 0.0, 0
        for X, y in train_iter:
            with autograd.record():
                y_hat = net(X)
                l = loss(y_hat, y).sum()
            l.backward()
            if trainer is None:
                for param in params:
                    param[:] = param - lr * param.grad / batch_size
            else:
                trainer.step(batch_size)
            train_l_sum += l.asscalar()
            train_acc_sum += (y_hat.argmax(axis=1) == y.astype("float32")).sum().asscalar()
            n += y.size
        test_acc = book_accuracy(test_iter, net)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds[1:], "test_acc": test_acc}


def cell_mxnet_scaling(model: str, cells: list, epochs: int) -> dict:
    """Seconds per epoch of (width, batch size, fraction) cells, each from `fraction` of the data, scaled up."""
    from mxnet.gluon import loss as gloss

    from dropout_gluon import data, run, trainer

    arrays = data.load_dataset().arrays
    results = []
    for h, batch_size, fraction in cells:
        m, t = round(N_TRAIN * fraction), round(N_TEST * fraction)
        train_iter = data.DataIter(arrays[0][:m], arrays[1][:m], batch_size, shuffle=True)
        test_iter = data.DataIter(arrays[2][:t], arrays[3][:t], batch_size, shuffle=False)
        run.set_seed(0)
        net, params, tr = run.build(model, num_hiddens1=h, num_hiddens2=h)
        history = trainer.train_ch3(net, train_iter, test_iter, gloss.SoftmaxCrossEntropyLoss(), epochs + 1,
                                    batch_size, params, LR, tr, log=None)
        results.append(statistics.median(history.column("seconds")[1:]) / fraction)
    return {"seconds": results}


def cell_profile(model: str) -> dict:
    """Milliseconds of each MXNet operator in one epoch of the default path, after a warm-up epoch."""
    from mxnet import nd, profiler
    from mxnet.gluon import loss as gloss

    from dropout_gluon import data, run, trainer

    run.set_seed(0)
    train_iter, test_iter = data.load_data_fashion_mnist(256)
    net, params, tr = run.build(model)
    args = (params, LR, tr)
    loss = gloss.SoftmaxCrossEntropyLoss()
    plain = trainer.train_ch3(net, train_iter, test_iter, loss, 2, 256, *args, log=None)
    with tempfile.TemporaryDirectory() as tmp:
        profiler.set_config(profile_imperative=True, aggregate_stats=True, filename=str(Path(tmp) / "p.json"))
        profiler.set_state("run")
        profiled = trainer.train_ch3(net, train_iter, test_iter, loss, 1, 256, *args, log=None)
        nd.waitall()
        profiler.set_state("stop")
        stats = json.loads(profiler.dumps(format="json"))
    ops = {name: s["Total"] for name, s in stats["Time"].get("operator", {}).items()}
    return {"ops_ms": ops, "epoch_s": plain[-1].seconds, "profiled_epoch_s": profiled[-1].seconds}


def cell_torch(cells: list, epochs: int, threads: int, budget: float = 60.0) -> dict:
    """The same model, data in memory, in PyTorch: seconds per epoch of each (width, batch size, fraction).

    A cell stops after one timed epoch once it has used `budget` seconds (a starved thread count).
    """
    try:
        import torch
    except ImportError:
        return {"error": "not installed (pip install -e '.[bench]' for the CPU build, torch==2.13.0)"}
    import numpy as np

    # Both thread counts are measured: on a busy 2-core machine two OpenMP threads can be 10x slower
    # than one (each parallel region waits for a descheduled thread), on an idle one nearly 2x faster.
    torch.set_num_threads(threads)

    folder = Path(os.environ["BENCH_ARRAYS"])
    # Images exactly as ToTensor gives them, flattened; labels int64 as cross_entropy wants.
    train_x = torch.from_numpy(np.load(folder / "train_x.npy").reshape(-1, NUM_INPUTS).astype(np.float32) / 255)
    train_y = torch.from_numpy(np.load(folder / "train_y.npy").astype(np.int64))
    test_x = torch.from_numpy(np.load(folder / "test_x.npy").reshape(-1, NUM_INPUTS).astype(np.float32) / 255)
    test_y = torch.from_numpy(np.load(folder / "test_y.npy").astype(np.int64))
    results = []
    for h, batch_size, fraction in cells:
        torch.manual_seed(0)
        nn = torch.nn
        net = nn.Sequential(nn.Linear(NUM_INPUTS, h), nn.ReLU(), nn.Dropout(DROP_PROB1),
                            nn.Linear(h, h), nn.ReLU(), nn.Dropout(DROP_PROB2), nn.Linear(h, NUM_OUTPUTS))
        for layer in net:
            if isinstance(layer, nn.Linear):  # init.Normal(sigma=0.01) for weights, zero biases, as Gluon's
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
        # Summed loss and lr / batch_size: the chapter's sgd (and gluon.Trainer.step(batch_size)).
        opt = torch.optim.SGD(net.parameters(), lr=LR / batch_size)
        loss = nn.CrossEntropyLoss(reduction="sum")
        m, t = round(N_TRAIN * fraction), round(N_TEST * fraction)
        seconds, test_acc, cell_start = [], 0.0, time.perf_counter()
        for _ in range(epochs + 1):
            if len(seconds) >= 2 and time.perf_counter() - cell_start > budget:
                break
            start = time.perf_counter()
            net.train()
            order = torch.randperm(m)
            loss_sum, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
            for i in range(0, m, batch_size):
                idx = order[i:i + batch_size]
                X, y = train_x[idx], train_y[idx]
                y_hat = net(X)
                l = loss(y_hat, y)
                opt.zero_grad()
                l.backward()
                opt.step()
                loss_sum += l.detach()
                correct += (y_hat.argmax(1) == y).sum()
            net.eval()
            right = torch.zeros((), dtype=torch.int64)
            with torch.no_grad():
                for i in range(0, t, batch_size):
                    right += (net(test_x[i:i + batch_size]).argmax(1) == test_y[i:i + batch_size]).sum()
            loss_sum.item(), correct.item()  # read once per epoch, as train_ch3 does
            test_acc = right.item() / t
            seconds.append(time.perf_counter() - start)
        results.append({"seconds": seconds[1:], "test_acc": test_acc})
    return {"cells": results, "version": torch.__version__, "threads": torch.get_num_threads()}


def cell_gemm(cells: list, repeats: int) -> dict:
    """Seconds of one epoch's matrix products alone, in numpy (its BLAS), for each (width, batch size) cell."""
    import numpy as np

    def timed(products) -> float:
        operands = [(np.random.rand(m, k).astype(np.float32), np.random.rand(k, n).astype(np.float32),
                     np.empty((m, n), np.float32)) for m, k, n in products]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for a, b, c in operands:
                np.matmul(a, b, out=c)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    results = []
    for h, batch_size in cells:
        seconds = 0.0
        for n, train in ((N_TRAIN, True), (N_TEST, False)):
            sizes = batches(n, batch_size)
            full, last = len(sizes) - (sizes[-1] != batch_size), sizes[-1]
            seconds += full * timed(gemms(batch_size, h, train))
            if last != batch_size:
                seconds += timed(gemms(last, h, train))
        results.append(seconds)
    square = 2048
    peak = 2 * square ** 3 / timed([(square, square, square)])
    return {"seconds": results, "square_gflops": peak / 1e9, "numpy": np.__version__}


def cell_rss(out: str) -> dict:
    """Peak RSS and output of the main job, `python -m dropout_gluon train` (both models, 5 epochs)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dropout_gluon", "train", "--out", out],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    last = [line for line in proc.stdout.splitlines() if line.startswith("epoch 5,")]
    # ru_maxrss of waited-for children: this process has only that one child. Linux counts it in KiB.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_mb": rss, "seconds": seconds, "test_acc": [float(line.rsplit(" ", 1)[1]) for line in last]}


CELLS = {"prepare": cell_prepare, "mxnet": cell_mxnet, "book": cell_book, "mxnet_scaling": cell_mxnet_scaling,
         "profile": cell_profile, "torch": cell_torch, "gemm": cell_gemm, "rss": cell_rss}


# -------------------------------------------------------------------------------------------- orchestration

def run_cell(kind: str, env: dict, **kwargs) -> dict:
    """Run one cell in a fresh Python process; return what it printed as JSON (or an error)."""
    print(f"  {kind} {' '.join(f'{k}={v}' for k, v in kwargs.items() if k != 'cells')}",
          file=sys.stderr, flush=True)
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cell", kind, json.dumps(kwargs)],
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


def ratio_or_none(a, b):
    return None if a is None or not b else a / b


def mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def fmt(x, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


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
    parser.add_argument("--cell", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:  # a worker: run one cell, print its result as the last line
        if args.cell[0] not in ("torch", "gemm"):  # these must not load MXNet
            # Before any cell imports MXNet, as in a user's program: the package's engine settings apply.
            importlib.import_module("dropout_gluon")
        print(json.dumps(CELLS[args.cell[0]](**json.loads(args.cell[1]))))
        return 0

    if args.report:
        try:
            report(json.loads(Path(args.report).read_text()))
        except OSError as e:
            print(f"benchmark: cannot read {args.report}: {e.strerror}", file=sys.stderr)
            return 2
        except (ValueError, KeyError, TypeError) as e:
            print(f"benchmark: {args.report} is not a file written by --json ({type(e).__name__}: {e})",
                  file=sys.stderr)
            return 2
        return 0

    epochs = args.epochs or (2 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 2)
    started, load_start = time.perf_counter(), os.getloadavg()
    tmp = tempfile.TemporaryDirectory(prefix="bench-")
    env = dict(os.environ, BENCH_ARRAYS=tmp.name)
    print("benchmark cells (each in its own process):", file=sys.stderr)
    info = run_cell("prepare", env, out=tmp.name)
    if "error" in info:
        print(f"benchmark: {info['error']}", file=sys.stderr)
        return 1
    results: dict = {"machine": machine(), "info": info, "epochs": epochs, "rounds": rounds}

    # 1. Peak memory of the main job, first, while nothing else of ours is running.
    results["rss"] = run_cell("rss", env, out=str(Path(tmp.name) / "run"))

    # 2. Seconds per epoch, {scratch, Gluon} x {book, default}, and PyTorch, interleaved over rounds.
    main_cells = [("default", "scratch"), ("default", "gluon"), ("torch", 1), ("torch", 2),
                  ("book", "scratch"), ("book", "gluon"), ("loader", "scratch"), ("loader", "gluon")]
    secs: dict = {key: [] for key in main_cells}
    for _ in range(rounds):
        for loader, model in main_cells:
            if loader == "torch":
                r = run_cell("torch", env, cells=[(256, 256, 1.0)], epochs=epochs, threads=model)
                if "error" not in r:
                    results["torch"] = {"version": r["version"]}
                    r = r["cells"][0]
            elif loader == "book":
                r = run_cell("book", env, model=model, epochs=epochs)
            else:
                r = run_cell("mxnet", env, model=model, loader={"loader": "gluon", "default": "memory"}[loader],
                             epochs=epochs)
            if "error" in r:
                secs[loader, model] = r["error"]
                continue
            if isinstance(secs[loader, model], list):
                secs[loader, model] += r["seconds"]
    seconds = {f"{a}/{b}": v for (a, b), v in secs.items()}
    torch_threads = medians(seconds)["torch_threads"]

    # 3. The GEMM floor and where the default path's time goes.
    gemm = run_cell("gemm", env, cells=[(256, 256)], repeats=20)
    # The same products on one thread: what an MXNet operator gets when MXNet gives it one OpenMP thread.
    gemm1 = run_cell("gemm", dict(env, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"), cells=[(256, 256)],
                     repeats=20)
    profiles = {model: run_cell("profile", env, model=model) for model in ("scratch", "gluon")}

    # 4. Optional: MXNet and OpenMP settings, each against a default run just before it.
    sweep = None
    if args.env_sweep:
        sweep = {}
        for setting in ENV_SWEEP:
            variables = dict(pair.split("=") for pair in setting.split())
            for model in ("scratch", "gluon"):
                ratios, same = [], True
                for _ in range(rounds):
                    base = run_cell("mxnet", env, model=model, loader="memory", epochs=epochs)
                    other = run_cell("mxnet", dict(env, **variables), model=model, loader="memory",
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
                   "floor": run_cell("gemm", env, cells=[(h, b) for h, b, _ in cells], repeats=5),
                   "scratch": run_cell("mxnet_scaling", env, model="scratch", cells=cells, epochs=se),
                   "gluon": run_cell("mxnet_scaling", env, model="gluon", cells=cells, epochs=se),
                   "torch": run_cell("torch", env, cells=cells, epochs=se, threads=torch_threads or 1)}
    tmp.cleanup()

    results.update(seconds=seconds, torch_threads=torch_threads,
                   gemm=gemm, gemm1=gemm1, profiles=profiles, sweep=sweep,
                   scaling=scaling, load=[load_start, os.getloadavg()],
                   total_s=time.perf_counter() - started)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


# ------------------------------------------------------------------------------------------------ the report

PHASES = [  # operator name -> phase of the training step; the first matching rule wins
    ("matrix products", ("dot", "_backward_dot", "FullyConnected", "_backward_FullyConnected")),
    ("dropout", ("_random_uniform", "_lesser_scalar", "broadcast_mul", "_backward_broadcast_mul",
                 "_div_scalar", "_backward_div_scalar", "Dropout", "_backward_Dropout")),
    ("bias add (scratch), ReLU", ("broadcast_add", "_backward_broadcast_add", "relu", "_backward_relu",
                                  "Activation", "_backward_Activation")),
    ("parameter update", ("sgd_update", "multi_sgd_update", "broadcast_sub", "_mul_scalar")),
    ("loss", ("log_softmax", "_backward_log_softmax", "pick", "_backward_pick", "mean", "_backward_mean",
              "sum", "_backward_sum", "_backward_mul_scalar", "negative", "_backward_negative")),
    ("batch gather", ("take", "_image_to_tensor", "slice")),
]


def phase_of(op: str) -> str:
    for phase, names in PHASES:
        if op in names:
            return phase
    return "bookkeeping (argmax, casts, copies, ...)"


def medians(seconds: dict) -> dict:
    """Median seconds per epoch of each main cell, keyed (loader, model); ("torch", None) is the reference,
    PyTorch at its faster thread count in this run (the stricter comparison), "torch_threads" that count."""
    med: dict = {}
    for key, values in seconds.items():
        loader, model = key.split("/")
        med[loader, int(model) if loader == "torch" else model] = (
            statistics.median(values) if isinstance(values, list) and values else None)  # else an error
    torch_meds = [(med["torch", t], t) for t in (1, 2) if med.get(("torch", t)) is not None]
    med["torch", None], med["torch_threads"] = min(torch_meds) if torch_meds else (None, None)
    return med


def report(results: dict) -> None:
    """Print the tables from the measurements (a run's, or one saved with --json)."""
    epochs, rounds = results["epochs"], results["rounds"]
    med = medians(results["seconds"])
    floor = results["gemm"]["seconds"][0] if "error" not in results["gemm"] else None
    torch_info = results.get("torch")
    versions = f"mxnet {results['info']['mxnet']}, numpy {results['info']['numpy']}"
    if torch_info:
        versions += f", torch {torch_info['version']}"
    gpus = results["info"]["gpus"]
    print(f"machine: {results['machine']}, {'no GPU' if not gpus else f'{gpus} GPUs (unused)'}; {versions}")
    if "data" in results["info"]:  # (runs saved before the data was recorded lack it)
        print(f"data: {results['info']['data']}")
    la, lb = results["load"]
    print(f"load average (1 min) at start {la[0]:.1f}, at end {lb[0]:.1f}; "
          f"benchmark took {results['total_s'] / 60:.1f} min")
    engine = results["info"].get("engine") or {}
    in_effect = ", ".join(f"{k}={v}" for k, v in engine.items()) or "MXNet's defaults"
    print(f"MXNet engine settings in effect: {in_effect}")
    print()
    print(f"Seconds per epoch (60000 training + 10000 test images, batch 256; median of {epochs} epochs after "
          f"a warm-up, x {rounds} rounds)")
    print(f"{'':28s}{'scratch':>10s}{'Gluon':>10s}")
    for loader, label in (("book", "book (DataLoader, loop)"), ("loader", "book DataLoader, train_ch3"),
                          ("default", "default (memory)")):
        row = [med[loader, m] for m in ("scratch", "gluon")]
        print(f"{label:28s}{fmt(row[0]):>10s}{fmt(row[1]):>10s}")
    torch_s = med["torch", None]
    if torch_s is None:
        print(f"{'PyTorch reference':28s}  {results['seconds']['torch/1']}")
    else:
        t1, t2 = med["torch", 1], med["torch", 2]
        print(f"{'PyTorch reference':28s}{fmt(torch_s):>10s}{fmt(torch_s):>10s}   (the same model; "
              f"{results['torch_threads']} thread(s), the faster here: 1 thread {fmt(t1)}, 2 threads {fmt(t2)})")
    gemm = results["gemm"]
    if floor is not None:
        flops = epoch_flops(256, 256)
        print(f"{'GEMM floor':28s}{fmt(floor):>10s}{fmt(floor):>10s}   ({flops / 1e9:.1f} GFLOP of matrix "
              f"products at {flops / floor / 1e9:.0f} GFLOP/s, numpy on the model's shapes; "
              f"{gemm['square_gflops']:.0f} GFLOP/s on 2048^2)")
    gemm1 = results["gemm1"]
    floor1 = gemm1["seconds"][0] if "error" not in gemm1 else None
    if floor1 is not None:
        print(f"{'GEMM floor, 1 thread':28s}{fmt(floor1):>10s}{fmt(floor1):>10s}   (the same at "
              f"{epoch_flops(256, 256) / floor1 / 1e9:.0f} GFLOP/s, numpy's BLAS on one thread)")
    print()
    print(f"{'goal':40s}{'scratch':>10s}{'Gluon':>10s}")
    for key, label, ref in (("torch", f"default / PyTorch       <= {GOALS['vs_torch']:.1f}", torch_s),
                            ("book", f"book / default          >= {GOALS['vs_book']:.0f}", None),
                            ("floor", f"default / GEMM floor    <= {GOALS['vs_floor']:.0f}", floor)):
        cells = []
        for m in ("scratch", "gluon"):
            d = med["default", m]
            if d is None or (key != "book" and ref is None) or (key == "book" and med["book", m] is None):
                cells.append("-")
                continue
            ratio = med["book", m] / d if key == "book" else d / ref
            ok = ratio >= GOALS["vs_book"] if key == "book" else ratio <= GOALS[f"vs_{key}"]
            cells.append(f"{ratio:.2f} {'ok' if ok else 'NO'}")
        print(f"{label:40s}{cells[0]:>10s}{cells[1]:>10s}")
    threads = results["info"].get("threads_per_operator")
    if floor1 is not None and torch_s is not None and threads == 1:
        # Each product needs the one before it (the test pass's, ~7% of the FLOPs, excepted: its batches
        # are independent), so on one thread each they add up: the epoch takes about the 1-thread floor or more.
        test_share = epoch_flops(256, 256, test_only=True) / epoch_flops(256, 256)
        vs_floor1, vs_t1 = ({m: fmt(ratio_or_none(med["default", m], ref)) for m in ("scratch", "gluon")}
                            for ref in (floor1, med["torch", 1]))
        print(f"bound: MXNet runs each operator here on 1 OpenMP thread and the products depend on one another "
              f"(but the test pass's, {test_share:.0%} of the FLOPs),\n  so a default epoch takes at least about "
              f"the 1-thread GEMM floor, {floor1:.2f} s; PyTorch's {torch_s:.2f} s is {torch_s / floor1:.2f}x "
              f"that floor.\n  default / 1-thread floor: scratch {vs_floor1['scratch']}, Gluon {vs_floor1['gluon']}; "
              f"default / PyTorch on 1 thread: scratch {vs_t1['scratch']}, Gluon {vs_t1['gluon']}")
    rss = results["rss"]
    if "error" in rss:
        print(f"peak RSS of the main job: {rss['error']}")
    else:
        acc_ok = all(a >= GOALS["test_acc"] for a in rss["test_acc"])
        print(f"peak RSS of `python -m dropout_gluon train` (both models, 5 epochs, {rss['seconds']:.0f} s): "
              f"{rss['rss_mb']:.0f} MB, goal <= {GOALS['rss_mb']}: {mark(rss['rss_mb'] <= GOALS['rss_mb'])}; "
              f"final test acc {', '.join(f'{a:.3f}' for a in rss['test_acc'])}, book's band >= "
              f"{GOALS['test_acc']}: {mark(acc_ok)}")

    print()
    print("Where the default path's time goes (MXNet profiler, one epoch after a warm-up; ms per epoch; "
          "operators on MXNet's workers can overlap, so they can sum to more than the wall clock)")
    profiles = results["profiles"]
    if all("error" not in p for p in profiles.values()):
        phases: dict = {}
        for m, p in profiles.items():
            for op, ms in p["ops_ms"].items():
                phases.setdefault(phase_of(op), {}).setdefault(m, 0.0)
                phases[phase_of(op)][m] += ms
        print(f"{'phase':42s}{'scratch':>10s}{'Gluon':>10s}")
        for phase, by_model in sorted(phases.items(), key=lambda kv: -sum(kv[1].values())):
            print(f"{phase:42s}{by_model.get('scratch', 0):>10.0f}{by_model.get('gluon', 0):>10.0f}")
        total = {m: sum(p["ops_ms"].values()) for m, p in profiles.items()}
        print(f"{'all operators':42s}{total['scratch']:>10.0f}{total['gluon']:>10.0f}")
        print(f"{'epoch, wall clock (unprofiled)':42s}{profiles['scratch']['epoch_s'] * 1e3:>10.0f}"
              f"{profiles['gluon']['epoch_s'] * 1e3:>10.0f}")
        for m, p in profiles.items():
            top = sorted(p["ops_ms"].items(), key=lambda kv: -kv[1])[:6]
            print(f"  top operators, {m}: " + ", ".join(f"{op} {ms:.0f}" for op, ms in top))
    else:
        print("  " + "; ".join(p.get("error", "") for p in profiles.values()))

    if results["sweep"]:
        print()
        print("Other settings (each replaces the package's engine settings): epoch time with the setting / "
              "the default's, same run; < 1 is faster; 'changes' = another test accuracy from the same seed")
        print(f"{'setting':52s}{'scratch':>16s}{'Gluon':>16s}")
        for setting, by_model in results["sweep"].items():
            cells = [f"{fmt(by_model[m])}{'' if by_model[m + '_same'] else ' changes'}" for m in ("scratch", "gluon")]
            print(f"{setting:52s}{cells[0]:>16s}{cells[1]:>16s}")

    scaling = results["scaling"]
    if scaling:
        print()
        print("Scaling: seconds per epoch against hidden width (both hidden layers) and batch size; "
              "each cell timed on a fraction of the epoch and scaled up; "
              f"PyTorch at {results['torch_threads'] or 1} thread(s)")
        print(f"{'width':>6s}{'batch':>7s}{'GFLOP':>8s}{'floor':>8s}{'scratch':>9s}{'Gluon':>8s}{'PyTorch':>9s}"
              f"{'Gluon/floor':>13s}{'measured on':>13s}")
        torch_cells = scaling["torch"].get("cells")
        for i, (h, b, fraction) in enumerate(scaling["cells"]):
            fl = scaling["floor"]["seconds"][i] if "error" not in scaling["floor"] else None
            s = scaling["scratch"]["seconds"][i] if "error" not in scaling["scratch"] else None
            g = scaling["gluon"]["seconds"][i] if "error" not in scaling["gluon"] else None
            t = statistics.median(torch_cells[i]["seconds"]) / fraction if torch_cells else None
            ratio = g / fl if g and fl else None
            print(f"{h:>6d}{b:>7d}{epoch_flops(h, b) / 1e9:>8.0f}{fmt(fl):>8s}{fmt(s):>9s}{fmt(g):>8s}"
                  f"{fmt(t):>9s}{fmt(ratio, '.1f'):>13s}{f'1/{round(1 / fraction)} epoch':>13s}")
        if not torch_cells:
            print(f"  PyTorch: {scaling['torch'].get('error')}")


if __name__ == "__main__":
    sys.exit(main())
