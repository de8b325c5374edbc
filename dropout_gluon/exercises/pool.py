"""Where a sweep's runs train, behind one `concurrent.futures` interface: this process, or Dask workers started here
(a process per job) or elsewhere (a scheduler). A work item (`work`): a run's configuration and its data or folder."""
from __future__ import annotations

import concurrent.futures as cf
import logging
import signal
import time
from multiprocessing import resource_tracker

from .. import numerics
from ..config import RunConfig
from ..data import DataIter, data_iters, load_dataset
from ..errors import UserError
from ..fashion_mnist import Dataset
from ..run import train
from ..trainer import History, TrainingDiverged, evaluate_accuracy

# A worker process trains one run at a time on one OpenMP thread per operator (the other cores have workers
# of their own), in this process's numerics mode.
WORKER_ENV = {"OMP_NUM_THREADS": "1", numerics.MODE_VAR: numerics.MODE}
WORKER_MEMORY = 0.75e9  # bytes: a worker's peak, 0.70 GB measured training the widest arm (1024 units) on all the data


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
    return {"config": config.to_dict(), "data": history.source and history.source._asdict(),
            "history": [e._asdict() for e in history], "diverged": diverged, "numerics": numerics.record(config.ctx),
            "final_train_acc_eval": None if net is None else evaluate_accuracy(train_eval_iter, net),
            "seconds": time.perf_counter() - start}


def work(config: dict, data: Dataset | str | None) -> dict:
    """Train `config` (RunConfig.to_dict()) here on `data`, a dataset or its folder (None: the search); its record."""
    config = RunConfig.from_dict(config)
    dataset = data if isinstance(data, Dataset) else load_dataset(data, config.data_release)
    n = config.train_size
    train_iter, test_iter = data_iters(dataset, config.batch_size, config.loader, n, config.test_size)
    # Train accuracy in predict mode, on the same float32 images where the loader made them (0.19 GB), unshuffled.
    train_eval_iter = (train_iter.unshuffled() if config.loader == "memory" else
                       DataIter(dataset.arrays[0][:n], dataset.arrays[1][:n], config.batch_size, shuffle=False,
                                source=dataset.source))
    return train_run(config, (train_iter, test_iter, train_eval_iter))


def default_jobs() -> int:
    """A worker per processor this process may use (within a container's CPU quota), as many as free memory holds;
    one, this process, without Dask's `distributed` (the extra `cluster`)."""
    try:
        import psutil
        from dask.system import cpu_count
        from distributed.system import memory_limit  # the machine's, or a container's limit
    except ImportError:
        return 1
    memory = min(psutil.virtual_memory().available, memory_limit())
    return max(1, min(cpu_count(), int(memory // WORKER_MEMORY)))


class InlineExecutor(cf.Executor):
    """Runs each item at once, in this process (a sweep with one job)."""
    def submit(self, fn, *args, **kwargs) -> cf.Future:
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed to the sweep, which reports it
            future.set_exception(e)
        return future


def local_cluster(jobs: int) -> tuple:
    """`(client, executor)` of a Dask cluster here: one worker (one thread), up to `jobs` as the sweep scales it. A run
    whose worker dies goes to another once, a second death fails it; workers exit with this process, however it ends."""
    Client = dask_client(f"{jobs} jobs (--jobs) run on a local Dask cluster", "or use one job")
    import dask

    # Every worker sets WORKER_ENV as it starts (env=); Dask's nannies put pre-spawn-environ in this process's
    # environment (sweep() gives the user's back). Dask's threads, which start the workers, start with SIGINT
    # blocked, and so do the workers: a Ctrl-C reaches the sweep alone (multiprocessing unblocks it in the thread
    # that starts its resource tracker: started here first). memory_limit=0: no memory manager (default_jobs).
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                              "distributed.nanny.pre-spawn-environ": WORKER_ENV}):
            client = Client(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", memory_limit=0,
                            dashboard_address="127.0.0.1:0", env=WORKER_ENV, silence_logs=logging.CRITICAL)
    except (OSError, RuntimeError) as e:  # EMFILE, ENOMEM...: Dask's "Nanny failed to start" comes from it
        while not isinstance(e, OSError) and (e.__cause__ or e.__context__):
            e = e.__cause__ or e.__context__
        guard = "" if isinstance(e, OSError) else " (a script that sweeps on jobs needs `if __name__ == '__main__':`)"
        raise UserError(f"cannot start a worker process: {e}{guard}") from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return client, client.get_executor(pure=False)  # pure=False: each run is a task of its own


def dask_client(what: str, otherwise: str) -> type:
    """Dask's `distributed.Client`, or a UserError: `what` needs it, and it is not installed."""
    try:
        from distributed import Client
    except ImportError:
        raise UserError(f"{what}, and Dask's 'distributed' is not installed: pip install 'dropout-gluon[cluster]', "
                        f"{otherwise}") from None
    return Client


def dask_executor(address: str) -> tuple:
    """`(client, executor)` for the Dask scheduler at `address`, whose workers must run one thread each."""
    try:
        client = dask_client("--scheduler sends the runs to a Dask cluster", "or leave it out")(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise UserError(f"cannot reach the Dask scheduler at {address} ({e}); start one with "
                        f"'dask scheduler' and workers with 'dask worker {address} --nthreads 1'") from None
    threads = max(client.nthreads().values(), default=1)
    if threads > 1:  # two runs in one process would interleave the global seeds: not reproducible
        client.close()
        raise UserError(f"the Dask workers at {address} run up to {threads} threads each, and runs sharing a "
                        f"process are not reproducible: start them with 'dask worker {address} --nthreads 1'")
    return client, client.get_executor(pure=False)
