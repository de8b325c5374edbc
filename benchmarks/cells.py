"""The benchmark's measurements, each in a fresh process: `python -m benchmarks.cells KIND ARGS_JSON`.

A cell prints its result as JSON on its last line. All but the references (reference.py) load the
package first, and with it MXNet in the package's numerics mode, as a user's program does.
"""
from __future__ import annotations

import importlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import reference

REFERENCES = ("torch", "gemm")  # the cells that must not load MXNet


def chapter() -> dict:
    """The chapter's constants, from the package, for the references (which cannot import it)."""
    from dropout_gluon import config, scratch

    return {"num_epochs": config.num_epochs, "lr": config.lr, "batch_size": config.batch_size,
            "drop_prob1": config.drop_prob1, "drop_prob2": config.drop_prob2,
            "num_hiddens1": config.num_hiddens1, "num_hiddens2": config.num_hiddens2,
            "num_inputs": scratch.num_inputs, "num_outputs": scratch.num_outputs}


def cell_prepare(out: str) -> dict:
    """Write the verified arrays as .npy for the references; describe the machine and the chapter's constants."""
    import mxnet as mx
    import numpy as np

    from dropout_gluon import data, numerics

    dataset = data.load_dataset()
    for name, array in zip(("train_x", "train_y", "test_x", "test_y"), dataset.arrays):
        np.save(Path(out) / f"{name}.npy", array)
    # What MXNet loaded with: the package's settings and the user's own.
    record = numerics.record()
    return {"mxnet": mx.__version__, "numpy": np.__version__, "gpus": mx.context.num_gpus(),
            "engine": numerics.LOADED, "numerics": numerics.summary(record),
            "flags": sorted(numerics.processor()[1] & {"avx", "avx2", "fma", "avx512f"}),
            "threads_per_operator": record["threads_per_operator"], "data": str(dataset.source), "chapter": chapter()}


def cell_mxnet(model: str, loader: str, epochs: int) -> dict:
    """The package's own training (`run.train`, the default path, in the numerics mode DROPOUT_GLUON_NUMERICS
    asks for): seconds of each epoch after a warm-up, and how they were computed."""
    from dropout_gluon import RunConfig, numerics, run

    _, history = run.train(RunConfig(model, num_epochs=epochs + 1, loader=loader), log=None)
    return {"seconds": history.column("seconds")[1:], "test_acc": history[-1].test_acc,
            "numerics": numerics.summary(numerics.record())}


def cell_book(model: str, epochs: int) -> dict:
    """The book's own pipeline: its DataLoader (loader='gluon') and its training loop, written out below.

    The loop differs from the package's `train_ch3` only where speed is concerned: it reads the loss and
    the number of right predictions as Python floats after every batch (and every test batch), and the
    scratch model's update is the book's `sgd`, four operators per parameter (train_ch3 steps `FusedSGD`).
    """
    from mxnet import autograd

    from dropout_gluon import RunConfig, data, run, trainer

    def book_accuracy(data_iter, net):
        acc_sum, n = 0.0, 0
        for X, y in data_iter:
            acc_sum += (net(X).argmax(axis=1) == y.astype("float32")).sum().asscalar()
            n += y.size
        return acc_sum / n

    config = RunConfig(model, loader="gluon")
    lr, batch_size = config.lr, config.batch_size
    run.set_seed(config.seed)
    train_iter, test_iter = data.load_data_fashion_mnist(batch_size, loader=config.loader)
    net, updater, loss = run.build(config)
    seconds, test_acc = [], 0.0
    for _ in range(epochs + 1):
        start = time.perf_counter()
        train_l_sum, train_acc_sum, n = 0.0, 0.0, 0
        for X, y in train_iter:
            with autograd.record():
                y_hat = net(X)
                l = loss(y_hat, y).sum()
            l.backward()
            if model == "scratch":
                trainer.sgd(net.params, lr, batch_size)
            else:
                updater.step(batch_size)
            train_l_sum += l.asscalar()
            train_acc_sum += (y_hat.argmax(axis=1) == y.astype("float32")).sum().asscalar()
            n += y.size
        test_acc = book_accuracy(test_iter, net)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds[1:], "test_acc": test_acc}


def cell_mxnet_scaling(model: str, cells: list, epochs: int) -> dict:
    """Seconds per epoch of (width, batch size, fraction) cells, each from `fraction` of the data, scaled up."""
    from dropout_gluon import RunConfig, data, run

    dataset = data.load_dataset()
    results = []
    for h, batch_size, fraction in cells:
        m, t = round(reference.N_TRAIN * fraction), round(reference.N_TEST * fraction)
        config = RunConfig(model, num_epochs=epochs + 1, batch_size=batch_size, num_hiddens1=h, num_hiddens2=h)
        _, history = run.train(config, data.data_iters(dataset, batch_size, train_size=m, test_size=t), log=None)
        results.append(statistics.median(history.column("seconds")[1:]) / fraction)
    return {"seconds": results}


def cell_profile(model: str) -> dict:
    """Milliseconds of each MXNet operator in one epoch of the default path, after a warm-up epoch."""
    from mxnet import nd, profiler

    from dropout_gluon import RunConfig, data, run, trainer

    config = RunConfig(model)
    run.set_seed(config.seed)
    train_iter, test_iter = data.load_data_fashion_mnist(config.batch_size)
    net, updater, loss = run.build(config)
    args = (net, train_iter, test_iter, loss)
    plain = trainer.train_ch3(*args, 2, config.batch_size, trainer=updater, log=None)
    with tempfile.TemporaryDirectory() as tmp:
        profiler.set_config(profile_imperative=True, aggregate_stats=True, filename=str(Path(tmp) / "p.json"))
        profiler.set_state("run")
        profiled = trainer.train_ch3(*args, 1, config.batch_size, trainer=updater, log=None)
        nd.waitall()
        profiler.set_state("stop")
        stats = json.loads(profiler.dumps(format="json"))
    ops = {name: s["Total"] for name, s in stats["Time"].get("operator", {}).items()}
    return {"ops_ms": ops, "epoch_s": plain[-1].seconds, "profiled_epoch_s": profiled[-1].seconds}


def cell_rss(out: str) -> dict:
    """Peak RSS and output of the main job, `python -m dropout_gluon train` (both models, the chapter's epochs)."""
    from dropout_gluon.config import num_epochs

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dropout_gluon", "train", "--out", out],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    last = [line for line in proc.stdout.splitlines() if line.startswith(f"epoch {num_epochs},")]
    # ru_maxrss of waited-for children: this process has only that one child. Linux counts it in KiB.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_mb": rss, "seconds": seconds, "test_acc": [float(line.rsplit(" ", 1)[1]) for line in last]}


CELLS = {"prepare": cell_prepare, "mxnet": cell_mxnet, "book": cell_book, "mxnet_scaling": cell_mxnet_scaling,
         "profile": cell_profile, "torch": reference.cell_torch, "gemm": reference.cell_gemm, "rss": cell_rss}


def main(argv: list | None = None) -> int:
    kind, kwargs = sys.argv[1:] if argv is None else argv
    if kind not in REFERENCES:
        # Before any cell imports MXNet, as in a user's program: the package chooses its numerics.
        importlib.import_module("dropout_gluon")
    print(json.dumps(CELLS[kind](**json.loads(kwargs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
