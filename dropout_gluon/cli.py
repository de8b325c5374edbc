"""The command line: `dropout-gluon train | predict | data | exercise` (also `python -m dropout_gluon ...`)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from . import data, numerics as engine, exercises, fashion_mnist, persist, run
from .config import RunConfig
from .download import fetch_release
from .errors import UserError
from .fashion_mnist import DEFAULT_RELEASE, ENV_VAR, RELEASES
from .persist import CONFIG, CURVES, PARAMS, PREDICTIONS
from .plots import plot_history, show_predictions
from .trainer import History, TrainingDiverged, evaluate_accuracy

EXAMPLES = """examples:
  dropout-gluon train                          both models, the chapter's hyperparameters, outputs in runs/
  dropout-gluon train --model gluon --epochs 10 --drop-prob1 0.5 --drop-prob2 0.2 --out runs/swapped
  dropout-gluon train --config runs/swapped/gluon/config.json     the same run again
  dropout-gluon predict --params runs/swapped/gluon/model.params --n 10
  dropout-gluon data status                    each folder searched, its release, and the one a run uses
  dropout-gluon train --data-release first     the release every published run of the book used
  dropout-gluon exercise all --quick           the chapter's exercises on a subset, in a minute

numerics (--numerics, or DROPOUT_GLUON_NUMERICS before the package is imported):
  portable  the default: OpenBLAS's Sandybridge kernel, oneDNN off, one thread per operator; the same digits
            on every x86-64 processor with AVX (the README's)
  native    the fastest setting measured for this processor, and its own digits; on a 2-core AVX-512 Xeon,
            1.74 s (scratch) and 1.20 s (Gluon) an epoch against portable's 2.27 s and 2.25 s
"""
TITLES = {"scratch": "from scratch", "gluon": "Gluon"}
# train's options and the RunConfig fields they set (None: not given, the configuration's value stands)
TRAIN_OPTIONS = {"epochs": "num_epochs", "lr": "lr", "batch_size": "batch_size", "drop_prob1": "drop_prob1",
                 "drop_prob2": "drop_prob2", "seed": "seed", "data_dir": "data_dir", "data_release": "data_release",
                 "loader": "loader", "ctx": "ctx"}


class Stopped(Exception):
    """A command that stopped before its end (diverged, interrupted): one line, and its exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, and where to look), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def parse_args(argv=None) -> argparse.Namespace:
    parser = Parser(prog="dropout-gluon", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="The Dropout chapter of Dive into Deep Learning, runnable.")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}  # for the help (nothing to validate)

    train = sub.add_parser("train", help="train the chapter's models, printing the book's lines",
                           epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--model", choices=["scratch", "gluon", "both"], default=None,
                       help="default: both (with --config, the configuration's)")
    train.add_argument("--config", default=None, help="a config.json that 'train' wrote: train that run again "
                                                      "(the options given change it)")
    for option, type_ in (("epochs", int), ("lr", float), ("batch-size", int), ("drop-prob1", float),
                          ("drop-prob2", float), ("seed", int)):
        field = TRAIN_OPTIONS[option.replace("-", "_")]
        train.add_argument(f"--{option}", type=type_, default=None, help=f"default {defaults[field]}")
    add_data_arguments(train, release=None)
    train.add_argument("--out", default=None, help="folder for history, plot, parameters and configuration "
                                                   "(default: a new folder under runs/)")
    train.add_argument("--loader", choices=["memory", "gluon"], default=None,
                       help="'gluon' is the book's DataLoader pipeline (slower); default memory")
    train.add_argument("--ctx", choices=["cpu", "gpu"], default=None, help="default cpu")

    predict = sub.add_parser("predict", help="test accuracy and a picture of predictions of a saved model")
    predict.add_argument("--params", required=True, help="a model.params written by 'dropout-gluon train'")
    predict.add_argument("--n", type=int, default=10, help="how many test images to show (1-100)")
    predict.add_argument("--out", default=None, help="the PNG to write (default: predictions.png beside --params)")
    add_data_arguments(predict, release=None)
    predict.add_argument("--ctx", choices=["cpu", "gpu"], default="cpu")

    status = sub.add_parser("data", help="find Fashion-MNIST ('status'), check every file's hashes again "
                                         "('verify'), or download what is missing ('fetch', into --data-dir if given)")
    status.add_argument("action", nargs="?", choices=["status", "verify", "fetch"], default="status")
    add_data_arguments(status)

    exercise = sub.add_parser("exercise", help="answer the chapter's exercises by experiments (resumable)")
    exercise.add_argument("name", choices=list(exercises.EXERCISES) + ["all"])
    exercise.add_argument("--quick", action="store_true", help="a data subset and a few epochs (a minute)")
    exercise.add_argument("--seeds", type=int, default=None, help=f"seeds per configuration (default "
                          f"{len(exercises.DEFAULT_SEEDS)}, quick {len(exercises.QUICK['seeds'])})")
    exercise.add_argument("--epochs", type=int, default=None, help="epochs per run (default: per exercise, "
                          + ", ".join(f"{k} {v}" for k, v in exercises.DEFAULT_EPOCHS.items()) + ")")
    exercise.add_argument("--model", choices=["gluon", "scratch"], default="gluon")
    exercise.add_argument("--out", default="runs/exercises", help="folder for the tables and plots (docs/exercises, "
                                                                  "the committed ones: only 'make exercises')")
    exercise.add_argument("--cache", default="runs/exercises", help="folder of finished runs (reused on a rerun)")
    exercise.add_argument("--jobs", type=int, default=None, help="worker processes on this machine (default: "
                                                                 "one per core; 1: this process)")
    exercise.add_argument("--scheduler", default=None, help="train on the Dask cluster of this scheduler, e.g. "
                                                            "tcp://10.0.0.5:8786 (the extra 'cluster')")
    add_data_arguments(exercise)
    exercise.add_argument("--no-progress", dest="progress", action="store_false")
    return parser.parse_args(argv)


def add_data_arguments(parser, release: str | None = DEFAULT_RELEASE) -> None:
    """--data-dir and --data-release, the same for every command that reads the data."""
    parser.add_argument("--data-dir", default=None, help=f"folder with the four files of one release (or set "
                                                         f"{ENV_VAR}); without it, the default search")
    parser.add_argument("--data-release", choices=list(RELEASES), default=release,
                        help="'final' (2017-08-31, what Debian, torchvision and Keras ship) or 'first' (2017-08-26, "
                             "Gluon's mirror: what the book's published runs used); default "
                             + (release or "final (predict: the model's own)"))


def add_numerics_argument(parser) -> None:
    parser.add_argument("--numerics", choices=list(engine.MODES), default=None,
                        help="'portable': the same digits on every x86-64 processor with AVX (the README's); "
                             "'native': the fastest setting for this processor, its own digits (docs/performance.md)"
                             f"; default {engine.MODE_VAR} or portable")


def run_configs(args) -> list:
    """The runs 'train' asks for, one per model, each validated: bad input fails before any work."""
    base = persist.load_config(args.config) if args.config else RunConfig()
    given = {field: getattr(args, option) for option, field in TRAIN_OPTIONS.items()
             if getattr(args, option) is not None}
    model = args.model or ("both" if args.config is None else base.model)
    models = ["scratch", "gluon"] if model == "both" else [model]
    configs = [dataclasses.replace(base, model=m, **given) for m in models]
    for config in configs:
        get_ctx(config.ctx)
    return configs


def get_ctx(name: str):
    """The MXNet context `name` names, or a ValueError saying why a GPU cannot be used."""
    import mxnet as mx

    if name.startswith("gpu") and mx.context.num_gpus() == 0:
        raise UserError("--ctx gpu: this MXNet sees no GPU (a CPU-only build, or no CUDA device); "
                         "install a CUDA build of MXNet 1.9.1 (e.g. mxnet-cu112) or use --ctx cpu")
    return RunConfig(ctx=name).context()


def cmd_train(args) -> None:
    configs = run_configs(args)
    out = persist.RunFolder(args.out)  # checked before the data is read; the run takes its place as it ends
    try:
        train_models(configs, out)
    finally:
        out.finish()


def train_models(configs: list, out: persist.RunFolder) -> None:
    first = configs[0]  # the models share the data (what RunConfig says of it is the same for both)
    dataset = data.load_dataset(first.data_dir, first.data_release)
    train_iter, test_iter = data.data_iters(dataset, first.batch_size, first.loader, first.train_size,
                                            first.test_size)
    print(f"# data: {dataset.source}", flush=True)
    print(f"# numerics: {engine.summary(engine.record())}", flush=True)
    if engine.FALLBACK:
        print(f"dropout-gluon: note: {engine.FALLBACK}", file=sys.stderr)
    histories = {}
    for config in configs:
        # Written in out.work, named as it will be when the run ends: out.path.
        title, folder, final = TITLES[config.model], out.work / config.model, out.path / config.model
        folder.mkdir()
        persist.save_config(config, dataset.source, folder)
        print(f"# {title}: epochs {config.num_epochs}, lr {config.lr}, batch size {config.batch_size}, drop_prob1 "
              f"{config.drop_prob1}, drop_prob2 {config.drop_prob2}, seed {config.seed}", flush=True)
        iters = ((data.BatchProgress(train_iter, f"{title} train"), test_iter) if sys.stderr.isatty()
                 else (train_iter, test_iter))
        history = History(source=dataset.source)  # on disk after each epoch: a stopped run keeps them
        try:
            net, _ = run.train(config, iters, history=history, log=_print_flush,
                               on_epoch=lambda _, history=history, folder=folder: persist.save_history(history, folder))
        except TrainingDiverged as e:
            persist.save_history(history, folder)  # also when no epoch finished: an empty table, not nothing
            raise Stopped(f"{e}; the history of the epochs before is in {final}", 3) from None
        except KeyboardInterrupt:
            persist.save_history(history, folder)
            raise Stopped(f"interrupted; the finished epochs' history is in {final}", 130) from None
        persist.save_model(net, folder / PARAMS)
        plot_history({title: history}, folder / CURVES)
        histories[title] = history
        print(f"# {title}: {sum(history.column('seconds')):.1f} s; history, {CURVES}, {PARAMS} and {CONFIG} in "
              f"{final}", flush=True)
    if len(histories) > 1:
        plot_history(histories, out.work / CURVES)
        print(f"# both models' curves: {out.path / CURVES}")


def _print_flush(line: str) -> None:
    print(line, flush=True)


def cmd_predict(args) -> None:
    if not 1 <= args.n <= 100:
        raise UserError(f"--n must be between 1 and 100, got {args.n}")
    ctx = get_ctx(args.ctx)
    params = Path(args.params)
    out = Path(args.out) if args.out else params.parent / PREDICTIONS
    if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise UserError(f"cannot write --out {out}: it is a folder, or its folder does not exist or is not "
                         f"writable; give a .png file path")
    net, kind = persist.load_model(params, ctx)
    trained_on, numerics = persist.trained_with(params)
    release = args.data_release or trained_on or DEFAULT_RELEASE
    _, _, test_images, test_labels = data.load_dataset(args.data_dir, release).arrays
    if trained_on is None:
        print(f"dropout-gluon: note: no config.json beside {params} says which release of Fashion-MNIST the model "
              f"was trained on; testing it on the {release} release", file=sys.stderr)
    elif trained_on != release:
        print(f"dropout-gluon: note: the model was trained on the {trained_on} release and is tested on the "
              f"{release} release; the two split the images differently (some test images of one are training "
              f"images of the other), so this is not a test accuracy", file=sys.stderr)
    here = engine.record()
    if numerics and {k: v for k, v in numerics.items() if k != "processor"} != {
            k: v for k, v in here.items() if k != "processor"}:
        print(f"dropout-gluon: note: the model was trained under other numerics ({engine.summary(numerics)}) than "
              f"this process computes with ({engine.summary(here)}); its predictions may differ in the last "
              f"digits", file=sys.stderr)
    test_iter = data.ToContext(data.DataIter(test_images, test_labels, 256, shuffle=False), ctx)
    acc = evaluate_accuracy(test_iter, net)
    n_test = len(test_labels)
    print(f"{kind} model {params}: test acc {acc:.4f} ({round(acc * n_test)}/{n_test}), {release} release")
    X, y = next(iter(data.ToContext(data.DataIter(test_images[:args.n], test_labels[:args.n], args.n,
                                                 shuffle=False), ctx)))
    preds = net(X).argmax(axis=1).asnumpy().astype(int)
    path = show_predictions(X.asnumpy()[:, 0], y.asnumpy().astype(int), preds, out)
    print(f"predictions for {args.n} test images: {path}")


def cmd_data(args) -> None:
    release, chosen = args.data_release, data.chosen_dir(args.data_dir)
    if args.action == "fetch" and chosen:
        fetch_release(release, chosen[0])  # into the folder chosen: what it lacks of the release
    elif args.action == "fetch":
        data.load_dataset(None, release)  # downloads the release if no folder of the search holds it whole
    rows = data.status(args.data_dir, release)
    used = next((folder for folder, why in rows if why is None), None)
    print(f"Fashion-MNIST {release} release ({RELEASES[release]}); the folders searched, in order (* = used):")
    for folder, why in rows:
        print(f"  * {folder}: the {release} release, all four files verified" if folder == used
              else f"    {why[0]}")
    if used is None:
        data.load_dataset(args.data_dir, release, download=False)  # raises the error a run would give
    if args.action == "verify":
        print(f"{used}, each file read and hashed again:")
        for name, found in fashion_mnist.scan(used).items():
            got, _, checksum = fashion_mnist.verify(found.path, name)
            print(f"  {found.path.name}: the {got} release ({checksum})")


def cmd_exercise(args) -> None:
    names = exercises.EXERCISES if args.name == "all" else [args.name]
    try:
        results = exercises.run_all(names, quick=args.quick, seeds=args.seeds, epochs=args.epochs, model=args.model,
                                    data_release=args.data_release, data_dir=args.data_dir, out_dir=args.out,
                                    cache_dir=args.cache, jobs=args.jobs, scheduler=args.scheduler,
                                    progress=args.progress)
    except KeyboardInterrupt:
        raise Stopped(f"interrupted; the finished runs are kept in {args.cache}, and the same command resumes "
                      f"from there", 130) from None
    for result in results.values():
        print(result.table)
        print(f"wrote {result.table_path} and {', '.join(map(str, result.plots))}\n", flush=True)


def reexec_for(numerics: str | None, argv) -> None:
    """Start this command again in a fresh process computing in `numerics`, if this one computes otherwise
    (MXNet's numerics are chosen as it loads)."""
    if numerics is None or numerics == engine.MODE or engine.PROBLEM:
        return  # (engine.PROBLEM: RunConfig reports why the mode asked for cannot be had)
    if argv is not None:  # called from Python, not as a command: the caller's process cannot be replaced
        engine.check_mode(numerics)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "dropout_gluon", *sys.argv[1:]], engine.environ_for(numerics))


def saved_numerics(config: str | None) -> str | None:
    """The numerics mode a config.json names ('train --config' reruns the run as it was computed), if any."""
    try:
        mode = json.loads(Path(config).read_text()).get("numerics") if config else None
    except (OSError, ValueError, AttributeError):
        return None  # persist.load_config says what is wrong with the file
    return mode if mode in engine.MODES else None


def main(argv=None) -> int:
    commands = {"train": cmd_train, "predict": cmd_predict, "data": cmd_data, "exercise": cmd_exercise}
    try:
        args = parse_args(argv)
        commands[args.command](args)
    except UserError as e:  # one class: a ValueError of any other kind is a bug, and keeps its traceback
        print(f"dropout-gluon: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:
        print(f"dropout-gluon: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("dropout-gluon: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # whoever read our output stopped (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else flushing at exit fails again
        return 1
    except OSError as e:  # e.g. a full disk while writing an output: say which file, no traceback
        print(f"dropout-gluon: error: cannot write {e.filename or 'an output file'}: {e.strerror}", file=sys.stderr)
        return 2
    return 0
