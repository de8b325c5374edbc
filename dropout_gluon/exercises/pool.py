"""Where a sweep's runs are trained: in this process, in worker processes on this machine, or on Dask.

All three take the same work items (`work`, a run's configuration as a dict) through one interface, a
`concurrent.futures` executor's `submit`; the sweep stores what comes back.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from unittest import mock

from .. import numerics
from ..config import RunConfig
from ..data import DataIter, data_iters, load_dataset
from ..errors import UserError
from ..run import train
from ..trainer import History, TrainingDiverged, evaluate_accuracy

# A worker process trains one run at a time on one OpenMP thread per operator and one engine worker (a
# second beside the other processes was slower). It inherits DROPOUT_GLUON_NUMERICS: it computes as we do.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}


def train_run(config: RunConfig, iters: tuple) -> dict:
    """Train one configuration; return its record: config, data, per-epoch history, divergence, seconds.

    Divergence ends the run early and is recorded, never raised; the epochs before it are kept. `iters`
    is `(train_iter, test_iter, train_eval_iter)`, the last unshuffled, for the final train accuracy in
    predict mode (the book's train acc is measured with dropout on).
    """
    train_iter, test_iter, train_eval_iter = iters
    start = time.perf_counter()
    history, diverged = History(), None
    try:
        net, _ = train(config, (train_iter, test_iter), history=history, log=None)
    except TrainingDiverged as e:
        net, diverged = None, {"kind": e.kind, "epoch": e.epoch, "loss": e.loss}
    source = history.source
    return {"config": config.to_dict(),
            "data": {"release": source.release, "folder": source.folder} if source else None,
            "history": [e._asdict() for e in history], "diverged": diverged, "computed_with": numerics.record(),
            "final_train_acc_eval": None if net is None else evaluate_accuracy(train_eval_iter, net),
            "seconds": time.perf_counter() - start}


def work(config: dict, folder: str | None) -> dict:
    """A work item: train the configuration `config` (RunConfig.to_dict()) here; return its record.

    `folder` is the data folder to read (None: this machine's own search for the configured release).
    """
    config = RunConfig.from_dict(config)
    return train_run(config, iterators(config.data_release, folder, config.train_size, config.test_size,
                                       config.batch_size, config.loader))


@functools.lru_cache(maxsize=4)
def iterators(release: str, folder: str | None, train_size, test_size, batch_size: int, loader: str) -> tuple:
    """`(train_iter, test_iter, train_eval_iter)` of a run, made once per process for all its runs."""
    dataset = load_dataset(folder, release)
    train_iter, test_iter = data_iters(dataset, batch_size, loader, train_size, test_size)
    # The last, unshuffled, for the final train accuracy in predict mode: on the same float32 images (0.19 GB).
    if loader == "memory":
        return train_iter, test_iter, train_iter.unshuffled()
    images, labels = dataset.arrays[:2]
    return train_iter, test_iter, DataIter(images[:train_size], labels[:train_size], batch_size, shuffle=False,
                                           source=dataset.source)


def release() -> None:
    """Let go of this process's copies of the data (after a sweep; on Dask, run on every worker)."""
    iterators.cache_clear()
    gc.collect()


class InlineExecutor(cf.Executor):
    """Runs each item at once, in this process (a sweep with one job)."""

    def submit(self, fn, *args, **kwargs) -> cf.Future:
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the sweep, which reports it
            future.set_exception(e)
        return future


class LocalPool(cf.ProcessPoolExecutor):
    """`jobs` worker processes on this machine: the standard library's pool, spawned (MXNet's engine threads
    do not survive a fork), each worker loading the data once (`iterators`) for all its runs.

    A worker that dies, or whose answer cannot be read back, breaks the pool: its runs fail with
    `BrokenProcessPool` and the sweep starts a new pool for the runs it retries. Workers ignore Ctrl-C
    from their first instruction (it is the sweep's to handle) and exit when the sweep's process is gone.
    """

    def __init__(self, jobs: int):
        super().__init__(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_watch_parent,
                         initargs=(os.getpid(),))

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        # Workers are started in here, as they are needed, and inherit the environment and SIGINT blocked from
        # their first instruction. Blocked, not ignored: a Ctrl-C meant for the sweep meanwhile waits and then
        # arrives; a worker ignores it before unblocking it (_watch_parent). (POSIX, as MXNet's wheels are.)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with mock.patch.dict(os.environ, WORKER_ENV):
                return super().submit(fn, *args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def kill(self) -> None:
        """Stop every worker now (Ctrl-C): the runs in progress are lost, the finished ones were stored."""
        processes = list((getattr(self, "_processes", None) or {}).values())  # the pool's own handles on them
        self.shutdown(wait=False, **({"cancel_futures": True} if sys.version_info >= (3, 9) else {}))
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)


def _watch_parent(parent: int) -> None:
    # A worker's first step: exit as soon as the sweep's process is gone (killed, out of memory, a closed
    # terminal), instead of training on, orphaned. Nothing else would tell it: its pipes stay open.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle: it stops the workers
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C that came while loading: dropped

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def dask_executor(address: str):
    """`(client, executor)` for the Dask scheduler at `address`; a ValueError saying why it cannot be used."""
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs Dask's distributed; install it with "
                         "pip install 'dropout-gluon[cluster]'") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise UserError(f"cannot reach the Dask scheduler at {address} ({e}); start one with "
                         f"'dask scheduler' and workers with 'dask worker {address}'") from None
    return client, client.get_executor(pure=False)  # pure=False: a retried run is a new task
