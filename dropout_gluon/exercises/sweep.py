"""A resumable sweep: train each configuration not yet in the cache, and store its record at once.

Each run is stored as JSON under the cache folder as soon as it finishes, named by a digest of its
configuration and seed, so an interrupted sweep resumes where it stopped and a rerun only redraws.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from ..config import RunConfig
from ..data import DataIter, data_iters, load_dataset
from ..fashion_mnist import Dataset
from ..persist import write_text
from ..run import train
from ..scratch import num_inputs, num_outputs
from ..trainer import History, TrainingDiverged, evaluate_accuracy

CACHE_VERSION = 1  # part of every run's key: bump it when a change to training makes stored runs stale


def key(config: RunConfig) -> str:
    """A digest of what decides the run's numbers, seed included: the run's file name in the cache."""
    text = json.dumps({"version": CACHE_VERSION, **config.identity()}, sort_keys=True)
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


def train_run(config: RunConfig, iters: tuple) -> dict:
    """Train one configuration; return its record: config, data, per-epoch history, divergence, timings.

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
    return {"key": key(config), "config": config.to_dict(),
            "data": {"release": source.release, "folder": source.folder} if source else None,
            "history": [e._asdict() for e in history], "diverged": diverged,
            "final_train_acc_eval": None if net is None else evaluate_accuracy(train_eval_iter, net),
            "seconds": time.perf_counter() - start}


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


def sweep(configs: Sequence[RunConfig], *, cache_dir: os.PathLike | str = "runs/exercises",
          dataset: Dataset | None = None, progress: bool = True,
          after_run: Callable[[dict], None] | None = None) -> dict:
    """Run every configuration not already in the cache; return `{key: record}` for all of them.

    The data is `dataset` if given (it must be the configurations' release), else the configurations'
    release and folder. `after_run(record)` is called after each run this call computed and stored.
    """
    cache = RunCache(cache_dir)
    configs = list({key(c): c for c in configs}.values())  # a configuration shared by two arms runs once
    records = {key(c): cache.get(c) for c in configs}
    todo = [c for c in configs if records[key(c)] is None]
    bar = SweepProgress(len(configs), len(configs) - len(todo), sum(map(_work, todo)),
                        enabled=progress and bool(todo))
    datasets, iters = {}, {}
    for config in todo:
        where = (config.data_release, config.data_dir)
        if where not in datasets:
            datasets[where] = _dataset(dataset, config)
        subset = (*where, config.train_size, config.test_size, config.batch_size, config.loader)
        if subset not in iters:
            ds, n, b = datasets[where], config.train_size, config.batch_size
            iters[subset] = (*data_iters(ds, b, config.loader, n, config.test_size),
                             DataIter(ds.arrays[0][:n], ds.arrays[1][:n], b, shuffle=False, source=ds.source))
        record = train_run(config, iters[subset])
        cache.put(config, record)
        records[key(config)] = record
        bar.update(label(config), _work(config))
        if after_run is not None:
            after_run(record)
    return records


def _dataset(given: Dataset | None, config: RunConfig) -> Dataset:
    # A dataset passed in is never silently swapped for another release: that is the caller's mistake.
    if given is None:
        return load_dataset(config.data_dir, config.data_release)
    if given.source.release != config.data_release:
        raise ValueError(f"the dataset passed in is the {given.source.release} release, but the configurations "
                         f"ask for the {config.data_release} release; pass data_release="
                         f"'{given.source.release}'")
    return given
