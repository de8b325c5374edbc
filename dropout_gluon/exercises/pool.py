"""Where a sweep's runs are trained: in this process, in worker processes on this machine, or on Dask.

All three take the same work items (`work`, a run's configuration as a dict) through one interface, a
`concurrent.futures` executor's `submit`; the sweep stores what comes back.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time

from .. import engine
from ..config import RunConfig
from ..data import DataIter, data_iters, load_dataset
from ..run import train
from ..trainer import History, TrainingDiverged, evaluate_accuracy

# A worker process trains one run at a time on one OpenMP thread per operator and one engine worker (a
# second beside the other processes was slower). It inherits DROPOUT_GLUON_NUMERICS: it computes as we do.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}


class WorkerLost(RuntimeError):
    """The process training a run died (killed, out of memory, a crash in MXNet)."""


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
            "history": [e._asdict() for e in history], "diverged": diverged, "computed_with": engine.describe(),
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
    train_images, train_labels = dataset.arrays[:2]
    # The last, unshuffled, for the final train accuracy in predict mode.
    return (*data_iters(dataset, batch_size, loader, train_size, test_size),
            DataIter(train_images[:train_size], train_labels[:train_size], batch_size, shuffle=False,
                     source=dataset.source))


class InlineExecutor(cf.Executor):
    """Runs each item at once, in this process (a sweep with one job)."""

    def submit(self, fn, *args, **kwargs) -> cf.Future:
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the sweep, which reports it
            future.set_exception(e)
        return future


class LocalPool(cf.Executor):
    """`jobs` worker processes on this machine, each training one run at a time.

    Submit at most `jobs` items at once (the sweep does). A worker that dies fails its item with
    `WorkerLost` and is replaced; `shutdown` stops them all, at once if `kill`.
    """

    def __init__(self, jobs: int):
        self.context = multiprocessing.get_context("spawn")  # no fork: MXNet's engine threads do not survive it
        self.lock, self.stopping = threading.Lock(), False
        self.idle, self.busy = [self._start() for _ in range(jobs)], {}
        self.collector = threading.Thread(target=self._collect, daemon=True)
        self.collector.start()

    def _start(self):
        parent, child = self.context.Pipe()
        with _environ(WORKER_ENV):  # a spawned process reads the environment as it starts
            process = self.context.Process(target=_worker, args=(child,), daemon=True)
            process.start()
        child.close()
        return process, parent

    def submit(self, fn, *args, **kwargs) -> cf.Future:
        future = cf.Future()
        with self.lock:
            worker = self.idle.pop()
            try:
                worker[1].send((fn, args, kwargs))
            except OSError:  # it died while idle: a new one takes the item
                worker = self._start()
                worker[1].send((fn, args, kwargs))
            self.busy[worker] = future
        return future

    def _collect(self) -> None:
        # Hands each answer to its future; a worker whose process ended fails its future and is replaced.
        while not self.stopping:
            with self.lock:
                waits = {w[1]: w for w in self.busy} | {w[0].sentinel: w for w in self.busy}
            for ready in multiprocessing.connection.wait(list(waits), timeout=0.2):
                worker = waits[ready]
                with self.lock:
                    future = self.busy.pop(worker, None)
                    if future is None:
                        continue
                    try:
                        status, value = worker[1].recv()
                    except (EOFError, OSError):
                        worker[0].join(1)
                        status, value = "error", WorkerLost(f"a worker process died (exit code "
                                                            f"{worker[0].exitcode})")
                        worker = self._start()
                    self.idle.append(worker)
                (future.set_result if status == "ok" else future.set_exception)(value)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, kill: bool = False) -> None:
        self.stopping = True
        self.collector.join()
        workers = self.idle + list(self.busy)
        for process, conn in workers:
            if kill:
                process.terminate()
            else:
                with contextlib.suppress(OSError):
                    conn.send(None)
        for process, conn in workers:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()


def _worker(conn) -> None:
    # A worker's life: items in, answers out, until told to stop (None) or its pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle: it stops the workers
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        fn, args, kwargs = item
        try:
            answer = ("ok", fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - sent to the sweep, which reports it
            answer = ("error", e)
        try:
            conn.send(answer)
        except Exception as e:  # noqa: BLE001 - an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(answer[1]).__name__}: {answer[1]} ({e})")))


@contextlib.contextmanager
def _environ(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dask_executor(address: str):
    """`(client, executor)` for the Dask scheduler at `address`; a ValueError saying why it cannot be used."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask's distributed; install it with "
                         "pip install 'dropout-gluon[cluster]'") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise ValueError(f"cannot reach the Dask scheduler at {address} ({e}); start one with "
                         f"'dask scheduler' and workers with 'dask worker {address}'") from None
    return client, client.get_executor(pure=False)  # pure=False: a retried run is a new task
