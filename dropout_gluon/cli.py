"""The command line: `dropout-gluon train | predict | data | exercise` (also `python -m dropout_gluon ...`)."""
from __future__ import annotations

import _thread
import argparse
import dataclasses
import os
import signal
import sys
import threading

from . import data, fashion_mnist, numerics, persist, run
from .config import RunConfig
from .download import fetch_release
from .errors import UserError
from .fashion_mnist import DEFAULT_RELEASE, ENV_VAR, RELEASES
from .trainer import TrainingDiverged

EXAMPLES = """examples:
  dropout-gluon train                          both models, the chapter's hyperparameters, outputs in runs/
  dropout-gluon train --model gluon --epochs 10 --drop-prob1 0.5 --drop-prob2 0.2 --out runs/swapped
  dropout-gluon train --config runs/swapped/gluon/config.json     the same run again
  dropout-gluon predict --params runs/swapped/gluon/model.params --n 10 --png swapped.png
  dropout-gluon data status                    each folder searched, its release, and the one a run uses
  dropout-gluon train --data-release first     the release every published run of the book used
  dropout-gluon exercise all --quick           the chapter's exercises on a subset of the data

numerics (DROPOUT_GLUON_NUMERICS=portable|native before the command):
  portable  the default: the same digits on every x86-64 processor with AVX (the README's)
  native    the fastest setting for this processor, and its own digits (docs/performance.md)
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, and where to look), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def parse_args(argv=None) -> argparse.Namespace:
    from . import exercises  # here, not at the top: inside main's `try`, which takes a Ctrl-C as it loads

    parser = Parser(prog="dropout-gluon", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="The Dropout chapter of Dive into Deep Learning, runnable.")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}  # for the help (nothing to validate)

    train = sub.add_parser("train", help="train the chapter's models, printing the book's lines",
                           epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--model", choices=["scratch", "gluon", "both"], help="default: both (with --config, its own)")
    train.add_argument("--config", help="a config.json that 'train' wrote: train it again (options given change it)")
    for option, type_ in (("epochs", int), ("lr", float), ("batch-size", int), ("drop-prob1", float),
                          ("drop-prob2", float), ("seed", int)):
        field = "num_epochs" if option == "epochs" else option.replace("-", "_")
        train.add_argument(f"--{option}", dest=field, type=type_, help=f"default {defaults[field]}")
    add_data_arguments(train, release=None)
    train.add_argument("--out", help="folder for history, plot, parameters and configuration: new, empty, or an "
                                     "earlier run's, which this one replaces (default: a new folder under runs/)")
    train.add_argument("--loader", choices=["memory", "gluon"],
                       help="'gluon' is the book's DataLoader pipeline (slower); default memory")
    train.add_argument("--ctx", choices=["cpu", "gpu"], help="default cpu")

    predict = sub.add_parser("predict", help="test accuracy and a picture of predictions of a saved model")
    predict.add_argument("--params", required=True, help="a model.params written by 'dropout-gluon train'")
    predict.add_argument("--n", type=int, default=10, help="how many test images to show (1-100)")
    predict.add_argument("--png", help="the picture to write (default: predictions.png beside --params)")
    add_data_arguments(predict, release=None)
    predict.add_argument("--ctx", choices=["cpu", "gpu"], default="cpu")

    status = sub.add_parser("data", help="find Fashion-MNIST ('status'), check every file's hashes again "
                                         "('verify'), or download what is missing ('fetch', into --data-dir if given)")
    status.add_argument("action", nargs="?", choices=["status", "verify", "fetch"], default="status")
    add_data_arguments(status)

    exercise = sub.add_parser("exercise", help="answer the chapter's exercises by experiments (resumable)")
    exercise.add_argument("name", choices=list(exercises.EXERCISES) + ["all"])
    exercise.add_argument("--quick", action="store_true", help="a data subset and a few epochs")
    exercise.add_argument("--seeds", type=int, help=f"seeds per configuration (default "
                          f"{len(exercises.DEFAULT_SEEDS)}, quick {len(exercises.QUICK['seeds'])})")
    exercise.add_argument("--epochs", type=int, help="epochs per run (default: per exercise, "
                          + ", ".join(f"{k} {v}" for k, v in exercises.DEFAULT_EPOCHS.items()) + ")")
    exercise.add_argument("--model", choices=["gluon", "scratch"], default="gluon")
    exercise.add_argument("--out", default="runs/exercises", help="folder for the tables and plots "
                          "(dropout_gluon/exercises/results, the committed ones: only 'make exercises')")
    exercise.add_argument("--cache", default="runs/exercises", help="folder of finished runs (reused on a rerun)")
    exercise.add_argument("--jobs", type=int, help="worker processes on this machine (default: one per core; 1: "
                                                   "this process)")
    exercise.add_argument("--scheduler", help="train on the Dask cluster of this scheduler, e.g. tcp://10.0.0.5:8786 "
                                              "(the extra 'cluster')")
    add_data_arguments(exercise)
    exercise.add_argument("--no-progress", dest="progress", action="store_false")
    return parser.parse_args(argv)


def add_data_arguments(parser, release: str | None = DEFAULT_RELEASE) -> None:
    """--data-dir and --data-release, the same for every command that reads the data."""
    parser.add_argument("--data-dir", help=f"folder with the four files of one release (or set {ENV_VAR}); "
                                           f"without it, the default search")
    parser.add_argument("--data-release", choices=list(RELEASES), default=release,
                        help="'final' (2017-08-31, what Debian, torchvision and Keras ship) or 'first' (2017-08-26, "
                             "Gluon's mirror: what the book's published runs used); default "
                             + (release or "final (predict: the model's own)"))


def run_configs(args) -> list:
    """The runs 'train' asks for, one per model, each validated: bad input fails before any work."""
    base, mode = persist.load_config(args.config) if args.config else (RunConfig(), None)
    if mode is not None and mode != numerics.MODE:  # MXNet's numerics are chosen as it loads, not by a run
        note(f"{args.config} was computed in {mode} numerics and this process computes in {numerics.MODE}, so the "
             f"digits will differ; for {mode}'s, run the command with {numerics.MODE_VAR}={mode} before it")
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"model"}  # train's options are named as they are
    given = {field: value for field, value in vars(args).items() if field in fields and value is not None}
    model = args.model or ("both" if args.config is None else base.model)
    return [dataclasses.replace(base, model=m, **given) for m in (("scratch", "gluon") if model == "both"
                                                                  else (model,))]


def note(text: str) -> None:
    print(f"dropout-gluon: note: {text}", file=sys.stderr)


def cmd_train(args) -> None:
    run.train_models(run_configs(args), args.out, log=lambda line: print(line, flush=True))


def cmd_predict(args) -> None:
    found = run.predict(args.params, args.n, data_dir=args.data_dir, data_release=args.data_release, png=args.png,
                        ctx=args.ctx)
    for text in found.notes:
        note(text)
    print(f"{found.model} model {args.params}: test acc {found.test_acc:.4f} ({found.correct}/{found.total}), "
          f"{found.data_release} release")
    print(f"predictions for {args.n} test images: {found.png}")


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
    from . import exercises

    names = exercises.EXERCISES if args.name == "all" else [args.name]
    try:
        results = exercises.run_all(names, quick=args.quick, seeds=args.seeds, epochs=args.epochs, model=args.model,
                                    data_release=args.data_release, data_dir=args.data_dir, out_dir=args.out,
                                    cache_dir=args.cache, jobs=args.jobs, scheduler=args.scheduler,
                                    progress=args.progress)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted; the finished runs are kept in {args.cache}, and the same command "
                                f"resumes from there") from None
    for result in results.values():
        print(result.table)
        print(f"wrote {result.table_path} and {', '.join(map(str, result.plots))}\n", flush=True)


def main(argv=None) -> int:
    timers = []

    def interrupt_again(unraisable) -> None:
        """sys.unraisablehook: a Ctrl-C dropped in a finalizer (MXNet's `__del__`) is raised again 10 ms later."""
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            timers.append(threading.Timer(0.01, _thread.interrupt_main))
            timers[-1].start()
        else:
            sys.__unraisablehook__(unraisable)

    hook, sys.unraisablehook = sys.unraisablehook, interrupt_again
    try:  # a Ctrl-C from here on is a KeyboardInterrupt (before, the package's __init__ exits with 130)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        commands = {"train": cmd_train, "predict": cmd_predict, "data": cmd_data, "exercise": cmd_exercise}
        for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show '±' gets '?', not a traceback
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="replace")
        args = parse_args(argv)
        commands[args.command](args)
    except UserError as e:  # one class: a ValueError of any other kind is a bug, and keeps its traceback
        print(f"dropout-gluon: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"dropout-gluon: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as e:
        print(f"dropout-gluon: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # whoever read our output stopped (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else flushing at exit fails again
        return 1
    except OSError as e:  # e.g. a full disk, or a file that cannot be read: what happened, to which file
        print(f"dropout-gluon: error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 2
    finally:
        sys.unraisablehook = hook
        for timer in timers:
            timer.cancel()
    return 0
