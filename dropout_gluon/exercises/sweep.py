"""A resumable sweep: train each configuration not yet in the cache, and store its record (JSON, named by a
digest of its configuration and numerics record) as soon as it comes back, so a stopped sweep resumes."""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence
from unittest import mock

from tqdm import tqdm

from .. import fashion_mnist, numerics
from ..config import RunConfig, whole
from ..data import load_dataset
from ..errors import UserError
from ..fashion_mnist import Dataset
from ..persist import write_text
from ..scratch import num_inputs, num_outputs
from . import pool

CACHE_VERSION = 2  # part of every run's key: bump it when a change to training makes stored runs stale


def key(config: RunConfig, record: dict) -> str:
    """The run's file name in the cache: a digest of what decides its numbers, numerics.deciding(record) included."""
    text = json.dumps({"version": CACHE_VERSION, **config.identity(), "numerics": numerics.deciding(record)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class RunCache:
    """Finished runs as `<key>.json` files in `folder`, looked up for the numerics `record` (None: this process's)."""

    def __init__(self, folder: os.PathLike | str, record: dict | None = None):
        self.folder, self.numerics = Path(folder), record or numerics.record()

    def get(self, config: RunConfig) -> dict | None:
        """The stored record, or None if there is none (or it belongs to another configuration)."""
        try:
            record = json.loads((self.folder / f"{key(config, self.numerics)}.json").read_text())
            stored = RunConfig.from_dict(record["config"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        return record if stored.identity() == config.identity() else None

    def put(self, config: RunConfig, record: dict) -> dict:
        """Store `record` under the key of the numerics it was computed with (its own); return it, keyed."""
        record = {"key": key(config, record["numerics"]), **record}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text(self.folder / f"{record['key']}.json", json.dumps(record, indent=1) + "\n")
        return record


def _work(config: RunConfig) -> float:
    # Rough cost of a run, for the ETA: multiply-adds per example times examples times epochs.
    h1, h2 = config.num_hiddens1, config.num_hiddens2
    return config.num_epochs * (config.train_size or 60000) * (num_inputs * h1 + h1 * h2 + h2 * num_outputs + 2e5)


def label(config: RunConfig) -> str:
    """One run, in a few words."""
    h = config.num_hiddens1 if config.num_hiddens1 == config.num_hiddens2 else (config.num_hiddens1,
                                                                               config.num_hiddens2)
    return (f"{config.model} p=({config.drop_prob1:g}, {config.drop_prob2:g}) h={h} "
            f"wd={config.wd:g} epochs={config.num_epochs} seed={config.seed}")


class Progress:
    """Runs done of the total and the ETA (by work left): a tqdm bar on a terminal, else a line per run."""

    def __init__(self, total: int, done: int, work: float, enabled: bool = True, stream=None):
        self.total, self.done, self.enabled, self.stream = total, done, enabled, stream or sys.stderr
        self.bar = tqdm(total=work, desc=f"{done}/{total} runs ", file=self.stream, mininterval=0, dynamic_ncols=True,
                        bar_format="{desc}{bar:24} {elapsed}, ETA {remaining}",
                        disable=not (enabled and self.stream.isatty()))

    def update(self, text: str, work: float) -> None:
        self.done += 1
        if self.bar.disable and self.enabled:
            print(f"{self.done}/{self.total} runs: {text}", file=self.stream, flush=True)
        self.bar.set_description_str(f"{self.done}/{self.total} runs ", refresh=False)
        self.bar.update(work)

    def note(self, text: str) -> None:
        """A line of its own (a failed run), above the bar."""
        self.bar.write(text, file=self.stream)

    def close(self) -> None:
        self.bar.close()


LOST = "its worker process died twice while training it (out of memory?)"


class SweepFailed(UserError):
    """Runs of a sweep failed (a worker lost twice...); the others are stored."""


def sweep(configs: Sequence[RunConfig], *, cache_dir: os.PathLike | str = "runs/exercises",
          dataset: Dataset | None = None, jobs: int | None = 1, scheduler: str | None = None,
          progress: bool = True, after_run: Callable[[dict], None] | None = None) -> dict:
    """Run every configuration not already in the cache; return `{config: record}` for all of them. Runs go to `jobs`
    worker processes here (1: this process, so a script needs no `__main__` guard; None: as many as processors and
    memory allow), or to the Dask scheduler at `scheduler`; `after_run(record)` is called as each is stored. Data:
    `dataset` (jobs=1 only), else the configured release and folder. Failed runs raise `SweepFailed` at the end."""
    jobs = pool.default_jobs() if jobs is None else whole(jobs, "jobs")
    configs = list(configs)
    if dataset is not None and (scheduler or jobs > 1):
        raise UserError("dataset= is trained on in this process only: leave out jobs= and scheduler=, or leave out "
                        "dataset= (each worker then reads data_dir)")
    if dataset is not None and {c.data_release for c in configs} - {dataset.source.data_release}:
        raise UserError(f"the dataset passed in is the {dataset.source.data_release} release, but the configurations "
                        f"ask for another; pass data_release='{dataset.source.data_release}'")
    failures = []
    with mock.patch.dict(os.environ):  # the user's environment back after Dask's nannies (pool.local_cluster)
        client, executor = (pool.dask_executor(scheduler) if scheduler else
                            pool.local_cluster(jobs) if jobs > 1 else (None, pool.InlineExecutor()))
        try:
            cache = RunCache(cache_dir, _numerics(client))
            keys = {c: key(c, cache.numerics) for c in configs}
            records = {k: cache.get(c) for c, k in keys.items()}
            # Longest first: on several workers the sweep then ends soonest (and the results do not depend on it).
            todo = sorted({k: c for c, k in keys.items() if records[k] is None}.values(), key=_work, reverse=True)
            bar = Progress(len(records), len(records) - len(todo), sum(map(_work, todo)),
                           enabled=progress and bool(todo))
            # The folder each release is read from, checked here before any run starts; on Dask, each worker's own.
            data = {} if scheduler else {(r, d): dataset or load_dataset(d, r) for r, d in
                                         {(c.data_release, c.data_dir) for c in todo}}
            if client is not None:
                data = {where: d.source.data_dir for where, d in data.items()}
                if not scheduler:
                    client.cluster.scale(min(jobs, len(todo)))

            def submit(config: RunConfig) -> cf.Future:
                return executor.submit(pool.work, config.to_dict(),
                                       data.get((config.data_release, config.data_dir), config.data_dir))

            if client is None:  # each run trains as the loop comes to it
                done = ((config, submit(config)) for config in todo)
            else:
                futures = {submit(config): config for config in todo}
                done = ((futures[future], future) for future in cf.as_completed(futures))
            for config, future in done:
                error = future.exception()
                if error is not None:
                    failures.append((config, LOST if type(error).__name__ == "KilledWorker" else _one_line(error)))
                    bar.note(f"{label(config)}: {failures[-1][1]}")
                    continue
                records[keys[config]] = cache.put(config, future.result())
                bar.update(label(config), _work(config))
                if after_run is not None:
                    after_run(records[keys[config]])
            bar.close()
        finally:  # Ctrl-C too: every local worker stops now, a scheduler drops the runs; finished runs are stored
            if scheduler:
                client.run(fashion_mnist.clear_cache, on_error="ignore")  # each worker's copy of the data
            if client is not None:
                client.close()
    if failures:
        config, reason = failures[0]
        raise SweepFailed(f"{len(failures)} of {len(records)} runs failed, e.g. {label(config)}: {reason}; the "
                          f"other runs are stored in {cache_dir}, and the same command retries the failed ones")
    return {c: records[k] for c, k in keys.items()}


def _numerics(client) -> dict:
    # The numerics record of the processes that will train the runs (theirs: threads differ from ours).
    if client is None:
        return numerics.record()
    records = client.run(numerics.record)
    if len({json.dumps(numerics.deciding(r), sort_keys=True) for r in records.values()}) != 1:
        raise UserError(f"the Dask workers must compute alike (the same installation and {numerics.MODE_VAR}), and "
                        f"they do not (or there are none): {sorted(map(numerics.summary, records.values()))}")
    return next(iter(records.values()))


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
