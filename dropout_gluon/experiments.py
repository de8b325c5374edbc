"""The chapter's four exercises as experiments: every configuration over several seeds, resumable, reported.

Each run is stored as JSON under `cache_dir` as soon as it finishes, keyed by its full configuration and
seed, so an interrupted sweep resumes where it stopped and a rerun only rebuilds the tables and plots.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import numbers
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from mxnet import gluon
from mxnet.gluon import loss as gloss

from . import data, run
from .gluon_net import check_gluon_drop_prob
from .persist import write_text
from .scratch import check_drop_prob, num_inputs, num_outputs
from .trainer import Epoch, TrainingDiverged, evaluate_accuracy, train_ch3

EXERCISES = ("swap", "epochs", "width", "weight-decay")
DEFAULT_SEEDS = (0, 1, 2)
# Epochs per exercise in the default sweep: 39 runs, about 30 minutes on 2 idle cores (docs/exercises.md).
DEFAULT_EPOCHS = {"swap": 10, "epochs": 40, "width": 10, "weight-decay": 40}
WIDTHS = (64, 256, 1024)  # 2048 costs ~30 s an epoch here, 20 times the chapter's 256
WEIGHT_DECAYS = (1e-4, 3e-4, 1e-3)  # at 10 epochs 1e-2 already cost 7 points of test accuracy
# Quick mode: a data subset and a few epochs, to see everything work in seconds (the tests use it).
QUICK = {"seeds": (0, 1), "train_size": 3000, "test_size": 1000,
         "epochs": {"swap": 3, "epochs": 6, "width": 3, "weight-decay": 3}}
CACHE_VERSION = 1  # part of every run's key: bump it when a change to training makes stored runs stale
# A run has diverged when its loss is not finite, exceeds ten times that of guessing uniformly (ln 10),
# or its training accuracy falls back to chance after the model had learned something.
EXPLODED_LOSS = 10 * math.log(num_outputs)
CHANCE_ACC, LEARNED_ACC = 0.2, 0.5
LOSS_SPIKE = 1.1  # an epoch whose training loss is 10% above the previous one's: the run was set back


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run: model, regularisation, hyperparameters, data subset and seed (the cache key)."""
    model: str = "gluon"              # "gluon" (nn.Sequential) or "scratch" (ScratchNet)
    drop_prob1: float = run.drop_prob1
    drop_prob2: float = run.drop_prob2
    num_hiddens: int = 256            # units in each of the two hidden layers
    wd: float = 0.0                   # weight decay on W1..W3: Gluon's `wd`, the scratch model's L2 `lambd`
    num_epochs: int = run.num_epochs
    lr: float = run.lr
    batch_size: int = run.batch_size
    train_size: int | None = None     # the first examples of each set; None is all of it
    test_size: int | None = None
    seed: int = 0
    data_release: str = data.DEFAULT_RELEASE  # the two releases are different data: part of the key

    def __post_init__(self):
        if self.model not in ("gluon", "scratch"):
            raise ValueError(f"model must be 'gluon' or 'scratch', got {self.model!r}")
        data.check_release(self.data_release)
        check = check_gluon_drop_prob if self.model == "gluon" else check_drop_prob
        run.check_hyperparams(self.num_epochs, self.lr, self.batch_size)
        for name in ("drop_prob1", "drop_prob2"):
            object.__setattr__(self, name, check(getattr(self, name), name))
        if isinstance(self.wd, bool) or not isinstance(self.wd, numbers.Real) or not 0 <= self.wd < math.inf:
            raise ValueError(f"wd must be a finite number >= 0, got {self.wd!r}")
        # Floats normalised so that wd=0 and wd=0.0 are one configuration, with one key.
        object.__setattr__(self, "wd", float(self.wd))
        object.__setattr__(self, "lr", float(self.lr))
        for name in ("num_hiddens", "train_size", "test_size", "seed"):
            value = getattr(self, name)
            if value is None and name.endswith("size"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (name != "seed"):
                raise ValueError(f"{name} must be a whole number >= {int(name != 'seed')}, got {value!r}")

    def key(self) -> str:
        """A digest of the whole configuration, seed included: the run's file name in the cache."""
        text = json.dumps({"version": CACHE_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------- one run

def l2_penalty(weights: list):
    """The book's weight-decay term: half the squared L2 norm of the weights."""
    return sum((w ** 2).sum() for w in weights) / 2


class L2PenalizedLoss:
    """`loss(y_hat, y) + lambd * l2_penalty(weights)` per example, as the book's weight-decay chapter.

    train_ch3 sums over the batch and `sgd` divides by the batch size, so the update is `w -= lr * lambd * w`
    on top of the gradient: the same as Gluon's `wd=lambd` for every full batch. (On an epoch's last, short
    batch of b examples the decay is b / batch_size of Gluon's; and the reported loss includes the
    penalty, which Gluon's does not.)
    """

    def __init__(self, loss, weights: list, lambd: float):
        self.loss, self.weights, self.lambd = loss, weights, lambd

    def __call__(self, y_hat, y):
        return self.loss(y_hat, y) + self.lambd * l2_penalty(self.weights)


def build(config: RunConfig) -> tuple:
    """`(net, params, trainer, loss)` for train_ch3; call `run.set_seed` first for a reproducible init."""
    h, loss = config.num_hiddens, gloss.SoftmaxCrossEntropyLoss()
    net, params, trainer = run.build(config.model, config.drop_prob1, config.drop_prob2, config.lr, h, h)
    if config.wd and trainer is not None:
        # Decay the weights only, as the book's weight-decay chapter does (its second trainer for biases).
        net.collect_params(".*bias").setattr("wd_mult", 0.0)
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": config.lr, "wd": config.wd})
    elif config.wd:
        loss = L2PenalizedLoss(loss, params[0::2], config.wd)  # W1, W2, W3
    return net, params, trainer, loss


class _Diverged(Exception):
    def __init__(self, kind: str, epoch: Epoch):
        super().__init__(kind)
        self.kind, self.epoch = kind, epoch


def _check_epoch(history: list, epoch: Epoch) -> None:
    history.append(epoch)
    if epoch.loss > EXPLODED_LOSS:
        raise _Diverged("exploding", epoch)
    if epoch.train_acc < CHANCE_ACC and any(e.train_acc > LEARNED_ACC for e in history):
        raise _Diverged("collapsed", epoch)


def train_run(config: RunConfig, data_iters: tuple) -> dict:
    """Train one configuration; return its record: config, per-epoch history, divergence (or None), timings.

    Divergence ends the run early and is recorded, never raised; the epochs before it are kept.
    `data_iters` is `(train_iter, test_iter, train_eval_iter)`, the last unshuffled for the final
    train accuracy in predict mode (the book's train acc is measured with dropout on); the record names
    their `source`, the data release and folder.
    """
    train_iter, test_iter, train_eval_iter = data_iters
    start = time.perf_counter()
    run.set_seed(config.seed)
    net, params, trainer, loss = build(config)
    history, diverged = [], None
    try:
        train_ch3(net, train_iter, test_iter, loss, config.num_epochs, config.batch_size, params,
                  None if trainer else config.lr, trainer, log=None,
                  on_epoch=lambda e: _check_epoch(history, e))
    except TrainingDiverged as e:
        diverged = {"kind": "non-finite", "epoch": e.epoch, "loss": e.loss}
    except _Diverged as e:
        diverged = {"kind": e.kind, "epoch": e.epoch.epoch, "loss": e.epoch.loss}
    train_acc_eval = evaluate_accuracy(train_eval_iter, net) if diverged is None else None
    source = train_iter.source
    return {"key": config.key(), "config": dataclasses.asdict(config),
            "data": {"release": source.release, "folder": source.folder} if source else None,
            "history": [e._asdict() for e in history], "diverged": diverged,
            "final_train_acc_eval": train_acc_eval, "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------------ cache and sweep

class RunCache:
    """Finished runs as `<key>.json` files in `folder`, each written atomically (temp file, then rename)."""

    def __init__(self, folder: os.PathLike | str):
        self.folder = Path(folder)

    def path(self, config: RunConfig) -> Path:
        return self.folder / f"{config.key()}.json"

    def get(self, config: RunConfig) -> dict | None:
        """The stored record, or None if there is none (or it belongs to another configuration)."""
        try:
            record = json.loads(self.path(config).read_text())
        except (OSError, ValueError):
            return None
        return record if record.get("config") == dataclasses.asdict(config) else None

    def put(self, config: RunConfig, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text(self.path(config), json.dumps(record, indent=1) + "\n")


def _work(config: RunConfig) -> float:
    # Rough cost of a run, for the ETA: multiply-adds per example times examples times epochs.
    h = config.num_hiddens
    return config.num_epochs * (config.train_size or 60000) * (num_inputs * h + h * h + h * num_outputs + 2e5)


class Progress:
    """Runs done out of the total and the ETA, on one line of stderr (a line per run when not a terminal)."""

    def __init__(self, total: int, done: int, work: float, enabled: bool = True, stream=None):
        self.total, self.done, self.work_left = total, done, work
        self.work_done, self.start, self.enabled = 0.0, time.perf_counter(), enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, label: str, work: float) -> None:
        self.done, self.work_done, self.work_left = self.done + 1, self.work_done + work, self.work_left - work
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.work_done * self.work_left if self.work_done else 0.0
        width = 24
        filled = round(width * self.done / self.total) if self.total else width
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} runs, "
                f"{_clock(elapsed)} elapsed, ETA {_clock(eta)}  {label}")
        self.stream.write(f"\r{line[:150]:<150}" if self.tty else line + "\n")
        if self.tty and self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _label(config: RunConfig) -> str:
    return (f"{config.model} p=({config.drop_prob1:g}, {config.drop_prob2:g}) h={config.num_hiddens} "
            f"wd={config.wd:g} epochs={config.num_epochs} seed={config.seed}")


def sweep(configs: Sequence[RunConfig], *, cache_dir: os.PathLike | str = "runs/exercises",
          dataset: data.Dataset | None = None, root=None, progress: bool = True,
          after_run: Callable[[dict], None] | None = None) -> dict:
    """Run every configuration not already in the cache; return `{key: record}` for all of them.

    The data is `dataset` if given (it must be the configurations' release), else `data.load_dataset(root,
    release)`. `after_run(record)` is called after each run that was computed (and stored) by this call.
    """
    cache = RunCache(cache_dir)
    configs = list({c.key(): c for c in configs}.values())  # a configuration shared by two arms runs once
    records = {c.key(): cache.get(c) for c in configs}
    todo = [c for c in configs if records[c.key()] is None]
    bar = Progress(len(configs), len(configs) - len(todo), sum(map(_work, todo)), enabled=progress and bool(todo))
    iters = {}
    for config in todo:
        subset = (config.data_release, config.train_size, config.test_size, config.batch_size)
        if subset not in iters:
            dataset = _dataset(dataset, root, config.data_release)
            (train_images, train_labels, test_images, test_labels), source = dataset.arrays, dataset.source
            n, m, b = config.train_size, config.test_size, config.batch_size
            iters[subset] = (data.DataIter(train_images[:n], train_labels[:n], b, shuffle=True, source=source),
                             data.DataIter(test_images[:m], test_labels[:m], b, shuffle=False, source=source),
                             data.DataIter(train_images[:n], train_labels[:n], b, shuffle=False, source=source))
        record = train_run(config, iters[subset])
        cache.put(config, record)
        records[config.key()] = record
        bar.update(_label(config), _work(config))
        if after_run is not None:
            after_run(record)
    return records


def _dataset(given: data.Dataset | None, root, release: str) -> data.Dataset:
    # A dataset passed in is never silently swapped for another release: that is the caller's mistake.
    if given is not None and given.source.release != release:
        raise ValueError(f"the dataset passed in is the {given.source.release} release, but the configurations "
                         f"ask for the {release} release; pass data_release='{given.source.release}'")
    return given if given is not None else data.load_dataset(root, release)


# ------------------------------------------------------------------------------------------- summaries

def _mean_std(values: list) -> tuple:
    if not values:
        return (math.nan, math.nan)
    # Sample standard deviation: the seed-to-seed spread; undefined for one seed.
    return (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan)


def summarize(records: list) -> dict:
    """Mean and std over seeds of final and best test acc, final train acc and the gap; divergences, spikes."""
    finished = [r for r in records if r["diverged"] is None and r["history"]]
    started = [r for r in records if r["history"]]
    test = [[e["test_acc"] for e in r["history"]] for r in started]
    return {
        "runs": len(records),
        "finished": len(finished),
        "diverged": [dict(r["diverged"], seed=r["config"]["seed"]) for r in records if r["diverged"]],
        "final_test_acc": _mean_std([r["history"][-1]["test_acc"] for r in finished]),
        "best_test_acc": _mean_std([max(t) for t in test]),
        "best_epoch": _mean_std([int(np.argmax(t)) + 1 for t in test]),
        "final_train_acc": _mean_std([r["history"][-1]["train_acc"] for r in finished]),
        "final_train_acc_eval": _mean_std([r["final_train_acc_eval"] for r in finished]),
        "gap": _mean_std([r["final_train_acc_eval"] - r["history"][-1]["test_acc"] for r in finished]),
        "final_loss": _mean_std([r["history"][-1]["loss"] for r in finished]),
        "spiked": sum(any(b["loss"] > LOSS_SPIKE * a["loss"] for a, b in zip(r["history"], r["history"][1:]))
                      for r in records),
        "seconds": float(sum(r["seconds"] for r in records)),
    }


# ----------------------------------------------------------------------------------------- exercises

def arms(name: str, *, num_epochs: int, model: str = "gluon", train_size: int | None = None,
         test_size: int | None = None, data_release: str = data.DEFAULT_RELEASE) -> list:
    """The exercise's configurations without a seed, as `[(label, RunConfig), ...]`."""
    base = RunConfig(model=model, num_epochs=num_epochs, train_size=train_size, test_size=test_size,
                     data_release=data_release)
    p1, p2 = run.drop_prob1, run.drop_prob2
    none = dataclasses.replace(base, drop_prob1=0.0, drop_prob2=0.0)
    if name == "swap":
        return [(f"{p1:g}, {p2:g} (chapter)", base),
                (f"{p2:g}, {p1:g} (swapped)", dataclasses.replace(base, drop_prob1=p2, drop_prob2=p1)),
                ("0, 0 (no dropout)", none)]
    if name == "epochs":
        return [(f"dropout {p1:g}, {p2:g}", base), ("no dropout", none)]
    if name == "width":
        return [(f"{h} units, {what}", dataclasses.replace(c, num_hiddens=h))
                for h in WIDTHS for what, c in ((f"dropout {p1:g}, {p2:g}", base), ("no dropout", none))]
    if name == "weight-decay":
        return ([("neither", none), (f"dropout {p1:g}, {p2:g}", base)]
                + [(f"wd {wd:g}", dataclasses.replace(none, wd=wd)) for wd in WEIGHT_DECAYS]
                + [(f"dropout + wd {WEIGHT_DECAYS[1]:g}", dataclasses.replace(base, wd=WEIGHT_DECAYS[1]))])
    raise ValueError(f"unknown exercise {name!r}; choose one of {', '.join(EXERCISES)} (or 'all')")


@dataclasses.dataclass
class ExerciseResult:
    """What an exercise produced: the Markdown table, the plot, the per-arm summaries and the raw runs."""
    name: str
    table: str
    table_path: Path
    plots: list
    summary: dict           # label -> summarize(...)
    runs: dict              # label -> [record per seed]
    settings: dict          # epochs, seeds, data release and subset, model


def _seeds(seeds, quick: bool) -> tuple:
    if seeds is None:
        return QUICK["seeds"] if quick else DEFAULT_SEEDS
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {seeds}")
        return tuple(range(int(seeds)))
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a count >= 1 or a list of whole numbers, got {seeds!r}")
    return seeds


def plan(name: str, *, quick: bool = False, seeds=None, epochs: int | None = None,
         model: str = "gluon", data_release: str = data.DEFAULT_RELEASE) -> tuple:
    """`(settings, arms, configs)` of an exercise: what `run_exercise` would train."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; choose one of {', '.join(EXERCISES)} (or 'all')")
    seeds = _seeds(seeds, quick)
    if epochs is None:
        epochs = (QUICK["epochs"] if quick else DEFAULT_EPOCHS)[name]
    sizes = {"train_size": QUICK["train_size"], "test_size": QUICK["test_size"]} if quick else {}
    the_arms = arms(name, num_epochs=epochs, model=model, data_release=data_release, **sizes)
    configs = [dataclasses.replace(c, seed=s) for _, c in the_arms for s in seeds]
    settings = {"exercise": name, "model": model, "epochs": epochs, "seeds": list(seeds), "lr": run.lr,
                "batch_size": run.batch_size, "train_size": sizes.get("train_size"),
                "test_size": sizes.get("test_size"), "data_release": data_release, "quick": quick}
    return settings, the_arms, configs


def run_exercise(name: str, *, quick: bool = False, seeds=None, epochs: int | None = None,
                 out_dir: os.PathLike | str = "docs/exercises", cache_dir: os.PathLike | str = "runs/exercises",
                 progress: bool = True, model: str = "gluon", root=None,
                 data_release: str = data.DEFAULT_RELEASE, dataset: data.Dataset | None = None,
                 after_run: Callable[[dict], None] | None = None) -> ExerciseResult:
    """Run (or reuse) an exercise's runs, then write `<out_dir>/<name>.md` (table) and `<name>.png`."""
    from .exercise_report import write_report  # matplotlib only when a report is written

    settings, the_arms, configs = plan(name, quick=quick, seeds=seeds, epochs=epochs, model=model,
                                       data_release=data_release)
    records = sweep(configs, cache_dir=cache_dir, dataset=dataset, root=root, progress=progress,
                    after_run=after_run)
    runs = {label: [records[dataclasses.replace(c, seed=s).key()] for s in settings["seeds"]]
            for label, c in the_arms}
    summary = {label: summarize(rs) for label, rs in runs.items()}
    result = ExerciseResult(name, "", Path(out_dir) / f"{name}.md", [], summary, runs, settings)
    write_report(result)
    return result


def run_all(*, quick: bool = False, seeds=None, epochs: int | None = None,
            out_dir: os.PathLike | str = "docs/exercises", cache_dir: os.PathLike | str = "runs/exercises",
            progress: bool = True, model: str = "gluon", root=None, data_release: str = data.DEFAULT_RELEASE,
            dataset: data.Dataset | None = None, after_run: Callable[[dict], None] | None = None) -> dict:
    """All four exercises as one sweep (one progress bar, shared runs trained once); `{name: result}`."""
    settings = dict(quick=quick, seeds=seeds, epochs=epochs, model=model, data_release=data_release)
    configs = [c for name in EXERCISES for c in plan(name, **settings)[2]]
    sweep(configs, cache_dir=cache_dir, dataset=dataset, root=root, progress=progress, after_run=after_run)
    # Every run is in the cache now: the reports read them from there.
    return {name: run_exercise(name, out_dir=out_dir, cache_dir=cache_dir, progress=False, **settings)
            for name in EXERCISES}


# ------------------------------------------------------------------------------------------ command line

def add_exercise_parser(subparsers) -> argparse.ArgumentParser:
    """Add `exercise swap|epochs|width|weight-decay|all` to the CLI's subparsers."""
    p = subparsers.add_parser("exercise", help="answer the chapter's exercises by experiments (resumable)")
    p.add_argument("name", choices=list(EXERCISES) + ["all"])
    p.add_argument("--quick", action="store_true", help="a data subset and a few epochs (seconds, not minutes)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds per configuration (default "
                   f"{len(DEFAULT_SEEDS)}, quick {len(QUICK['seeds'])})")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: per exercise, "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items()) + ")")
    p.add_argument("--model", choices=["gluon", "scratch"], default="gluon")
    p.add_argument("--out", default="docs/exercises", help="folder for the tables and plots")
    p.add_argument("--cache", default="runs/exercises", help="folder of finished runs (reused on a rerun)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def cmd_exercise(args) -> None:
    """Run the exercise(s) named in `args` and print each table with the files written."""
    kwargs = dict(quick=args.quick, seeds=args.seeds, epochs=args.epochs, out_dir=args.out,
                  cache_dir=args.cache, progress=args.progress, model=args.model, root=args.data_dir,
                  data_release=args.data_release)
    try:
        results = run_all(**kwargs) if args.name == "all" else {args.name: run_exercise(args.name, **kwargs)}
    except KeyboardInterrupt:
        print(f"dropout-gluon: finished runs are kept in {args.cache}; the same command resumes from there",
              file=sys.stderr)
        raise
    for result in results.values():
        print(result.table)
        print(f"wrote {result.table_path} and {', '.join(map(str, result.plots))}\n", flush=True)
