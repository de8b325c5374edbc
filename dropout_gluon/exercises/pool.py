"""Where a sweep's runs are trained, through one `concurrent.futures` interface: in this process, in worker
processes on this machine, or on Dask. A work item (`work`) is a run's configuration as a dict."""
from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import multiprocessing
import os
import signal
import threading
import time
from unittest import mock

from .. import fashion_mnist, numerics
from ..config import RunConfig
from ..data import DataIter, data_iters, load_dataset
from ..errors import UserError
from ..run import train
from ..trainer import History, TrainingDiverged, evaluate_accuracy

# A worker process trains one run at a time on one OpenMP thread per operator (the other cores have workers
# of their own), in this process's numerics mode, which it learns from here.
WORKER_ENV = {"OMP_NUM_THREADS": "1", numerics.MODE_VAR: numerics.MODE}


def train_run(config: RunConfig, iters: tuple) -> dict:
    """Train one configuration; return its record (divergence recorded, not raised). `iters`: `(train_iter,
    test_iter, train_eval_iter)`, the last unshuffled, for train accuracy in predict mode (the book's: with dropout)."""
    train_iter, test_iter, train_eval_iter = iters
    start = time.perf_counter()
    history, diverged = History(), None
    try:
        net, _ = train(config, (train_iter, test_iter), history=history, log=None)
    except TrainingDiverged as e:
        net, diverged = None, {"kind": e.kind, "epoch": e.epoch, "loss": e.loss}
    source = history.source
    return {"config": config.to_dict(), "data": source and {"data_release": source.data_release,
                                                            "data_dir": source.data_dir},
            "history": [e._asdict() for e in history], "diverged": diverged, "numerics": numerics.record(config.ctx),
            "final_train_acc_eval": None if net is None else evaluate_accuracy(train_eval_iter, net),
            "seconds": time.perf_counter() - start}


def work(config: dict, data_dir: str | None) -> dict:
    """Train `config` (RunConfig.to_dict()) here on the data in `data_dir` (None: searched); return its record."""
    config = RunConfig.from_dict(config)
    return train_run(config, iterators(config.data_release, data_dir, config.train_size, config.test_size,
                                       config.batch_size, config.loader))


_datasets = {}  # the data a sweep in this process gave it, by (release, data_dir); a worker reads its own


@functools.lru_cache(maxsize=4)
def iterators(release: str, data_dir: str | None, train_size, test_size, batch_size: int, loader: str) -> tuple:
    """`(train_iter, test_iter, train_eval_iter)` of a run, made once per process for all its runs."""
    dataset = _datasets.get((release, data_dir)) or load_dataset(data_dir, release)
    train_iter, test_iter = data_iters(dataset, batch_size, loader, train_size, test_size)
    # The last on the same float32 images (0.19 GB), unshuffled.
    if loader == "memory":
        return train_iter, test_iter, train_iter.unshuffled()
    images, labels = dataset.arrays[:2]
    return train_iter, test_iter, DataIter(images[:train_size], labels[:train_size], batch_size, shuffle=False,
                                           source=dataset.source)


def hold(datasets: dict) -> None:
    """Train on these datasets, `{(release, data_dir): Dataset}`, until `release()`."""
    _datasets.update(datasets)


def release() -> None:
    """Let go of every copy of the data in this process (after a sweep; on Dask, run on every worker)."""
    iterators.cache_clear()
    _datasets.clear()
    fashion_mnist.clear_cache()  # the raw arrays of the files read
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
    """Up to `jobs` spawned worker processes (MXNet's engine threads do not survive a fork), each loading the
    data once. A worker that dies breaks the pool: every run in flight fails with `BrokenProcessPool`."""

    def __init__(self, jobs: int):
        super().__init__(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start)
        self.processes = set()  # ours, for kill(): the children that appeared while we submitted

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        # The pool starts workers in here, as needed. They inherit SIGINT blocked, so that a Ctrl-C meant for
        # the sweep waits while they load MXNet (seconds), and _start then drops it: the standard pool has no
        # option to start them ignoring it, and without this each would print a traceback. (POSIX, as MXNet.)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        before = set(multiprocessing.active_children())
        try:
            with mock.patch.dict(os.environ, WORKER_ENV):
                return super().submit(fn, *args, **kwargs)
        finally:
            self.processes |= set(multiprocessing.active_children()) - before
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def kill(self) -> None:
        """Stop every worker now (Ctrl-C): the runs in progress are lost, the finished ones were stored."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)
        self.shutdown(wait=True)  # the pool's thread done with its pipes before a next pool makes its own


def _start() -> None:
    # A worker's first step. Ctrl-C is the sweep's to handle (it stops the workers): ignored, and one that came
    # while loading is dropped. Then exit as soon as the sweep's process is gone (killed, out of memory, a
    # closed terminal) instead of training on, orphaned: the standard pool would not notice, as every worker
    # holds both ends of its task queue. The parent's sentinel is readable once the parent has died.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    parent = multiprocessing.parent_process()
    threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


def dask_executor(address: str) -> tuple:
    """`(client, executor)` for the Dask scheduler at `address`, whose workers must run one thread each."""
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs Dask's distributed; install it with "
                        "pip install 'dropout-gluon[cluster]'") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise UserError(f"cannot reach the Dask scheduler at {address} ({e}); start one with "
                        f"'dask scheduler' and workers with 'dask worker {address} --nthreads 1'") from None
    threads = max(client.nthreads().values(), default=1)
    if threads > 1:  # two runs in one process would interleave the global seeds: not reproducible
        client.close()
        raise UserError(f"the Dask workers at {address} run up to {threads} threads each, and runs sharing a "
                        f"process are not reproducible: start them with 'dask worker {address} --nthreads 1'")
    return client, client.get_executor(pure=False)  # pure=False: a retried run is a new task
