"""The references the default path is measured against: the same model in PyTorch, and the GEMM floor.

Their cells run in processes that never load MXNet (its OpenMP runtime and engine threads would share the
cores with PyTorch's or numpy's BLAS), so they cannot import the package: they take the chapter's
constants as an argument, `chapter`, which the prepare cell reads from the package (cells.chapter).
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

N_TRAIN, N_TEST = 60000, 10000  # Fashion-MNIST's training and test images


def layers(chapter: dict, width: int | None = None) -> list:
    """Widths of the chapter's MLP from input to output; `width` (the scaling table's) replaces both hidden ones."""
    hidden = [chapter["num_hiddens1"], chapter["num_hiddens2"]] if width is None else [width, width]
    return [chapter["num_inputs"], *hidden, chapter["num_outputs"]]


def batches(n: int, batch_size: int) -> list:
    """Sizes of the batches of one pass over n examples (the last one may be short)."""
    return [min(batch_size, n - i) for i in range(0, n, batch_size)]


def gemms(b: int, widths: list, train: bool) -> list:
    """(m, k, n) of each matrix product of a batch of b examples through an MLP of `widths`, forward (and backward)."""
    dense = list(zip(widths, widths[1:]))  # (inputs, outputs) of each layer
    fwd = [(b, i, o) for i, o in dense]
    if not train:
        return fwd
    weight_grads = [(i, b, o) for i, o in dense]  # X^T dY for each layer
    input_grads = [(b, o, i) for i, o in reversed(dense[1:])]  # dY W^T from the last layer down; the images need none
    return fwd + weight_grads + input_grads


def epoch_flops(widths: list, batch_size: int, fraction: float = 1.0, test_only: bool = False) -> float:
    """Floating-point operations of one epoch's matrix products: training and the test pass (or the test only)."""
    total = 0
    for n, train in ([] if test_only else [(N_TRAIN, True)]) + [(N_TEST, False)]:
        for b in batches(round(n * fraction), batch_size):
            total += sum(2 * m * k * n_ for m, k, n_ in gemms(b, widths, train))
    return float(total)


def cell_torch(cells: list, epochs: int, threads: int, chapter: dict, budget: float = 60.0) -> dict:
    """The same model, data in memory, in PyTorch: seconds per epoch of each (width, batch size, fraction).

    A width of None is the chapter's. A cell stops after one timed epoch once it has used `budget` seconds
    (a starved thread count).
    """
    try:
        import torch
    except ImportError:
        return {"error": "not installed (pip install -e '.[bench]' for the CPU build, torch==2.13.0)"}
    import numpy as np

    # Both thread counts are measured: on a busy 2-core machine two OpenMP threads can be 10x slower
    # than one (each parallel region waits for a descheduled thread), on an idle one nearly 2x faster.
    torch.set_num_threads(threads)

    folder, num_inputs = Path(os.environ["BENCH_ARRAYS"]), chapter["num_inputs"]
    # Images exactly as ToTensor gives them, flattened; labels int64 as cross_entropy wants.
    train_x = torch.from_numpy(np.load(folder / "train_x.npy").reshape(-1, num_inputs).astype(np.float32) / 255)
    train_y = torch.from_numpy(np.load(folder / "train_y.npy").astype(np.int64))
    test_x = torch.from_numpy(np.load(folder / "test_x.npy").reshape(-1, num_inputs).astype(np.float32) / 255)
    test_y = torch.from_numpy(np.load(folder / "test_y.npy").astype(np.int64))
    results = []
    for h, batch_size, fraction in cells:
        torch.manual_seed(0)
        nn = torch.nn
        n_in, h1, h2, n_out = layers(chapter, h)
        net = nn.Sequential(nn.Linear(n_in, h1), nn.ReLU(), nn.Dropout(chapter["drop_prob1"]),
                            nn.Linear(h1, h2), nn.ReLU(), nn.Dropout(chapter["drop_prob2"]), nn.Linear(h2, n_out))
        for layer in net:
            if isinstance(layer, nn.Linear):  # init.Normal(sigma=0.01) for weights, zero biases, as Gluon's
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
        # Summed loss and lr / batch_size: the chapter's sgd (and gluon.Trainer.step(batch_size)).
        opt = torch.optim.SGD(net.parameters(), lr=chapter["lr"] / batch_size)
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


def cell_gemm(cells: list, repeats: int, chapter: dict) -> dict:
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
        widths, seconds = layers(chapter, h), 0.0
        for n, train in ((N_TRAIN, True), (N_TEST, False)):
            sizes = batches(n, batch_size)
            full, last = len(sizes) - (sizes[-1] != batch_size), sizes[-1]
            seconds += full * timed(gemms(batch_size, widths, train))
            if last != batch_size:
                seconds += timed(gemms(last, widths, train))
        results.append(seconds)
    square = 2048
    peak = 2 * square ** 3 / timed([(square, square, square)])
    return {"seconds": results, "square_gflops": peak / 1e9, "numpy": np.__version__}
