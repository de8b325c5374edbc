"""A resumable sweep: train each configuration not yet in the cache, and store its record at once.

Each run is stored as JSON under the cache folder as soon as it comes back, named by a digest of its
configuration and seed, so an interrupted sweep resumes where it stopped and a rerun only redraws. The
runs are trained in this process, by worker processes on every core, or on a Dask cluster (`pool`).
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from ..config import RunConfig, whole
from ..data import load_dataset
from ..errors import UserError
from ..fashion_mnist import Dataset
from ..numerics import usable_cpus
from ..persist import write_text
from ..scratch import num_inputs, num_outputs
from . import pool

CACHE_VERSION = 1  # part of every run's key: bump it when a change to training makes stored runs stale


def key(config: RunConfig) -> str:
    """A digest of what decides the run's numbers, seed and numerics included: the run's file name in the cache.

    Portable numerics give the same digits on every processor; native ones are this process's kernel,
    oneDNN, threads and processor, so a cache made under other native numerics is never mixed in.
    """
    numerics = {}
    text = json.dumps({"version": CACHE_VERSION, **config.identity(), **numerics}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class RunCache:
    """Finished runs as `<key>.json` files in `folder`, each written atomically (temp file, then rename)."""

    def __init__(self, folder: os.PathLike | str):
        self.folder = Path(folder)

    def path(self, config: RunConfig) -> Path:
        return self.folder / f"{key(config)}.json"

    def get(self, config: RunConfig) -> dict | None:
        """The stored record, or None if there is none (or it belongs to another configuration)."""
        try:
            record = json.loads(self.path(config).read_text())
        except (OSError, ValueError):
            return None
        stored = record.get("config") if isinstance(record, dict) else None
        if not isinstance(stored, dict) or {k: v for k, v in stored.items() if k != "data_dir"} != config.identity():
            return None
        return record

    def put(self, config: RunConfig, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text(self.path(config), json.dumps(record, indent=1) + "\n")


def _work(config: RunConfig) -> float:
    # Rough cost of a run, for the ETA: multiply-adds per example times examples times epochs.
    h1, h2 = config.num_hiddens1, config.num_hiddens2
    return config.num_epochs * (config.train_size or 60000) * (num_inputs * h1 + h1 * h2 + h2 * num_outputs + 2e5)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def label(config: RunConfig) -> str:
    """One run, in a few words."""
    h = config.num_hiddens1 if config.num_hiddens1 == config.num_hiddens2 else (config.num_hiddens1,
                                                                               config.num_hiddens2)
    return (f"{config.model} p=({config.drop_prob1:g}, {config.drop_prob2:g}) h={h} "
            f"wd={config.wd:g} epochs={config.num_epochs} seed={config.seed}")


class SweepProgress:
    """Runs done out of the total and the ETA, on one line of stderr (a line per run when not a terminal)."""

    def __init__(self, total: int, done: int, work: float, enabled: bool = True, stream=None):
        self.total, self.done, self.work_left = total, done, work
        self.work_done, self.start, self.enabled = 0.0, time.perf_counter(), enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, text: str, work: float) -> None:
        self.done, self.work_done, self.work_left = self.done + 1, self.work_done + work, self.work_left - work
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.work_done * self.work_left if self.work_done else 0.0
        width = 24
        filled = round(width * self.done / self.total) if self.total else width
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} runs, "
                f"{_clock(elapsed)} elapsed, ETA {_clock(eta)}  {text}")
        self.stream.write(f"\r{line[:150]:<150}" if self.tty else line + "\n")
        if self.tty and self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (a failed run), above the bar."""
        self.stream.write(f"\r{text:<150}\n" if self.tty else text + "\n")
        self.stream.flush()


# Why a local worker's run ended without an answer: its process died, or its answer could not be read back.
LOST = "a worker process died, or its answer could not be read back (e.g. an exception that does not unpickle)"


class SweepFailed(UserError):
    """Runs of a sweep failed (the data missing on a worker, a worker lost twice...); the others are stored."""


def sweep(configs: Sequence[RunConfig], *, cache_dir: os.PathLike | str = "runs/exercises",
          dataset: Dataset | None = None, jobs: int | None = 1, scheduler: str | None = None,
          progress: bool = True, after_run: Callable[[dict], None] | None = None) -> dict:
    """Run every configuration not already in the cache; return `{key: record}` for all of them.

    Runs go to `jobs` worker processes on this machine (1, the default: this process, so a script needs no
    `if __name__ == "__main__":` guard; None: one per core, as the command line does), or to the
    Dask scheduler at `scheduler`; each record is stored as soon as it comes back, and `after_run(record)`
    is called. The data is `dataset` if given (it must be the configurations' release), else the
    configured release and folder; on Dask, each worker's own. A run whose worker dies is retried once;
    runs that fail are reported, the others kept, and `SweepFailed` raised at the end.
    """
    jobs = usable_cpus() if jobs is None else whole(jobs, "jobs")  # (None: the command line's default)
    cache = RunCache(cache_dir)
    configs = list({key(c): c for c in configs}.values())  # a configuration shared by two arms runs once
    records = {key(c): cache.get(c) for c in configs}
    # Longest first: on several workers the sweep then ends soonest (and the results do not depend on it).
    todo = sorted((c for c in configs if records[key(c)] is None), key=_work, reverse=True)
    bar = SweepProgress(len(configs), len(configs) - len(todo), sum(map(_work, todo)),
                        enabled=progress and bool(todo))
    if not todo:
        return records
    # The folder each release is read from (checked here, before any worker starts); on Dask, each worker's own.
    wheres = {} if scheduler else {(c.data_release, c.data_dir): c for c in todo}  # one configuration of each
    folders = {where: _dataset(dataset, c).source.folder for where, c in wheres.items()}
    client, executor, capacity = _executor(jobs, scheduler, len(todo))
    running, failures, attempts = {}, [], {}

    def failed(config: RunConfig, error: BaseException) -> None:
        # A run's failure is reported in one line; a lost worker's run is tried once more.
        lost = isinstance(error, cf.BrokenExecutor) or type(error).__name__ == "KilledWorker"
        again = lost and attempts[key(config)] < 2
        reason = LOST if isinstance(error, cf.BrokenExecutor) else _one_line(error)
        bar.note(f"{label(config)}: {reason}" + ("; trying it once more" if again else ""))
        if again:
            todo.insert(0, config)
        else:
            failures.append((config, reason))

    broken = False  # the local pool lost a worker: its runs fail, and a new pool takes the ones retried
    try:
        while todo or running:
            if broken and not running:
                executor.kill()
                executor, broken = pool.LocalPool(min(jobs, len(todo))), False
            while todo and len(running) < capacity and not broken:
                config = todo.pop(0)
                attempts[key(config)] = attempts.get(key(config), 0) + 1
                folder = folders.get((config.data_release, config.data_dir), config.data_dir)
                try:
                    running[executor.submit(pool.work, config.to_dict(), folder)] = config
                except cf.BrokenExecutor:  # broken by a run that just failed: submitted again to the next pool
                    attempts[key(config)] -= 1
                    todo.insert(0, config)
                    broken = True
                except OSError as e:  # a worker could not be started (EMFILE, ENOMEM, ...)
                    failures.append((config, f"cannot start a worker process: {_one_line(e)}"))
                    bar.note(f"{label(config)}: {failures[-1][1]}")
            if not running:
                continue
            done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for future in done:
                config = running.pop(future)
                try:
                    record = {"key": key(config), **future.result()}
                except Exception as e:  # noqa: BLE001 - a run's failure is reported; the sweep goes on
                    broken = broken or isinstance(e, cf.BrokenExecutor)
                    failed(config, e)
                    continue
                cache.put(config, record)
                records[key(config)] = record
                bar.update(label(config), _work(config))
                if after_run is not None:
                    after_run(record)
    except BaseException:
        _stop(client, executor, kill=True)  # Ctrl-C: every worker stops now; finished runs are stored
        raise
    finally:
        pool.release()  # this process's copies of the data, if it trained
    _stop(client, executor)
    if failures:
        config, reason = failures[0]
        raise SweepFailed(f"{len(failures)} of {len(configs)} runs failed, e.g. {label(config)}: {reason}; "
                          f"the other runs are stored in {cache_dir}, and the same command retries the failed ones")
    return records


def _executor(jobs: int, scheduler: str | None, todo: int) -> tuple:
    # `(client, executor, how many runs to have in flight)`.
    if scheduler is not None:
        client, executor = pool.dask_executor(scheduler)
        return client, executor, todo  # Dask queues them and balances its workers
    if jobs == 1:
        return None, pool.InlineExecutor(), 1
    return None, pool.LocalPool(min(jobs, todo)), min(jobs, todo)


def _stop(client, executor, kill: bool = False) -> None:
    if isinstance(executor, pool.LocalPool):
        executor.kill() if kill else executor.shutdown()
    elif client is not None:  # closing the client releases its futures: the scheduler drops their tasks
        executor.shutdown(wait=False)
        client.run(pool.release, on_error="ignore")  # each worker's copies of the data (`iterators` keeps them)
        client.close()


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _dataset(given: Dataset | None, config: RunConfig) -> Dataset:
    # A dataset passed in is never silently swapped for another release: that is the caller's mistake.
    if given is None:
        return load_dataset(config.data_dir, config.data_release)
    if given.source.release != config.data_release:
        raise UserError(f"the dataset passed in is the {given.source.release} release, but the configurations "
                         f"ask for the {config.data_release} release; pass data_release="
                         f"'{given.source.release}'")
    return given
