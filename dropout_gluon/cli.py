"""The command line: `dropout-gluon train | predict | data` (also `python -m dropout_gluon ...`)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

from . import data, experiments, run
from .gluon_net import check_gluon_drop_prob
from .persist import ModelFileError, load_model, save_history, save_model, write_text
from .plots import plot_history, show_predictions
from .scratch import check_drop_prob
from .trainer import History, TrainingDiverged, evaluate_accuracy

EXAMPLES = """examples:
  dropout-gluon train                          both models, the chapter's hyperparameters, outputs in runs/
  dropout-gluon train --model gluon --epochs 10 --drop-prob1 0.5 --drop-prob2 0.2 --out runs/swapped
  dropout-gluon predict --params runs/swapped/gluon/model.params --n 10
  dropout-gluon data status                    each folder searched, its release, and the one a run uses
  dropout-gluon train --data-release first     the release every published run of the book used
"""
MODELS = {"scratch": ("from scratch", run.train_scratch), "gluon": ("Gluon", run.train_gluon)}


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, and where to look), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def parse_args(argv=None) -> argparse.Namespace:
    parser = Parser(prog="dropout-gluon", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="The Dropout chapter of Dive into Deep Learning, runnable.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train the chapter's models, printing the book's lines",
                           epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--model", choices=["scratch", "gluon", "both"], default="both")
    train.add_argument("--epochs", type=int, default=run.num_epochs)
    train.add_argument("--lr", type=float, default=run.lr)
    train.add_argument("--batch-size", type=int, default=run.batch_size)
    train.add_argument("--drop-prob1", type=float, default=run.drop_prob1)
    train.add_argument("--drop-prob2", type=float, default=run.drop_prob2)
    train.add_argument("--seed", type=int, default=0)
    add_data_arguments(train)
    train.add_argument("--out", default=None, help="folder for history, plot, parameters and configuration "
                                                   "(default: a new folder under runs/)")
    train.add_argument("--loader", choices=["memory", "gluon"], default="memory",
                       help="'gluon' is the book's DataLoader pipeline (slower)")
    train.add_argument("--ctx", choices=["cpu", "gpu"], default="cpu")

    predict = sub.add_parser("predict", help="test accuracy and a picture of predictions of a saved model")
    predict.add_argument("--params", required=True, help="a model.params written by 'dropout-gluon train'")
    predict.add_argument("--n", type=int, default=10, help="how many test images to show (1-100)")
    predict.add_argument("--out", default=None, help="the PNG to write (default: predictions.png beside --params)")
    add_data_arguments(predict, release=None)
    predict.add_argument("--ctx", choices=["cpu", "gpu"], default="cpu")

    status = sub.add_parser("data", help="find and verify Fashion-MNIST; 'fetch' downloads what is missing")
    status.add_argument("action", nargs="?", choices=["status", "verify", "fetch"], default="status")
    add_data_arguments(status)
    add_data_arguments(experiments.add_exercise_parser(sub))
    return parser.parse_args(argv)


def add_data_arguments(parser, release: str | None = data.DEFAULT_RELEASE) -> None:
    """--data-dir and --data-release, the same for every command that reads the data."""
    parser.add_argument("--data-dir", default=None, help=f"folder with the four files of one release (or set "
                                                         f"{data.ENV_VAR}); without it, the default search")
    parser.add_argument("--data-release", choices=list(data.RELEASES), default=release,
                        help="'final' (2017-08-31, what Debian, torchvision and Keras ship) or 'first' (2017-08-26, "
                             "Gluon's mirror: what the book's published runs used)"
                             + (f"; default {release}" if release else "; default: the model's own"))


def get_ctx(name: str):
    """The MXNet context for --ctx, or a UsageError saying why a GPU cannot be used."""
    import mxnet as mx

    if name == "cpu":
        return mx.cpu()
    if mx.context.num_gpus() == 0:
        raise UsageError("--ctx gpu: this MXNet sees no GPU (a CPU-only build, or no CUDA device); "
                         "install a CUDA build of MXNet 1.9.1 (e.g. mxnet-cu112) or use --ctx cpu")
    return mx.gpu()


def make_out_dir(out: str | None) -> Path:
    """Create the output folder (default: a new one under runs/) and check that it can be written."""
    try:
        if out is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            Path("runs").mkdir(exist_ok=True)
            for k in range(1, 1000):  # mkdir without exist_ok claims the name: two runs never share one
                path = Path("runs") / (stamp if k == 1 else f"{stamp}-{k}")
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
        else:
            path = Path(out)
            path.mkdir(parents=True, exist_ok=True)
        write_text(path / ".write-test", "")
        (path / ".write-test").unlink()
    except OSError as e:
        raise UsageError(f"cannot write to --out {out or 'runs/'}: {e.strerror}; choose another folder") from None
    return path


class Progress:
    """A tqdm bar over the batches of each pass through `data_iter` (only when stderr is a terminal)."""

    def __init__(self, data_iter, desc: str):
        self.data_iter, self.desc = data_iter, desc
        self.source = getattr(data_iter, "source", None)

    def __len__(self) -> int:
        return len(self.data_iter)

    def __iter__(self):
        from mxnet import nd
        from tqdm import tqdm

        with tqdm(total=len(self.data_iter), desc=self.desc, unit="batch", leave=False) as bar:
            for i, batch in enumerate(self.data_iter):
                yield batch
                # MXNet computes asynchronously: without an occasional wait the bar would fill at once,
                # then sit still while the queued work runs.
                if i % 10 == 9:
                    nd.waitall()
                bar.update(1)


def cmd_train(args) -> None:
    names = ["scratch", "gluon"] if args.model == "both" else [args.model]
    # Every argument is checked before anything is read, trained or written.
    run.check_hyperparams(args.epochs, args.lr, args.batch_size)
    run.check_seed(args.seed)
    check = check_gluon_drop_prob if "gluon" in names else check_drop_prob
    check(args.drop_prob1, "drop_prob1")
    check(args.drop_prob2, "drop_prob2")
    ctx = get_ctx(args.ctx)
    train_iter, test_iter = data.load_data_fashion_mnist(args.batch_size, root=args.data_dir, loader=args.loader,
                                                         data_release=args.data_release)
    source = train_iter.source
    out = make_out_dir(args.out)
    print(f"# data: {source}", flush=True)
    histories = {}
    for name in names:
        title, train = MODELS[name]
        folder = out / name
        folder.mkdir(exist_ok=True)
        for stale in ("model.params", "curves.png", "predictions.png", "history.json", "history.csv"):
            (folder / stale).unlink(missing_ok=True)  # a rerun into the same --out must not mix two runs
        config = {"model": name, "num_epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                  "drop_prob1": args.drop_prob1, "drop_prob2": args.drop_prob2, "seed": args.seed,
                  "data_release": source.release, "data_dir": source.folder, "loader": args.loader,
                  "ctx": str(ctx)}
        write_text(folder / "config.json", json.dumps(config, indent=1) + "\n")
        print(f"# {title}: epochs {args.epochs}, lr {args.lr}, batch size {args.batch_size}, "
              f"drop_prob1 {args.drop_prob1}, drop_prob2 {args.drop_prob2}, seed {args.seed}", flush=True)
        iters = ((Progress(train_iter, f"{title} train"), test_iter) if sys.stderr.isatty()
                 else (train_iter, test_iter))
        done = []  # the finished epochs, on disk after each one: a stopped run keeps them

        def on_epoch(epoch, folder=folder, done=done):
            done.append(epoch)
            save_history(History(done, source), folder)

        try:
            net, history = train(args.epochs, args.lr, args.batch_size, args.drop_prob1, args.drop_prob2,
                                 seed=args.seed, data_iters=iters, on_epoch=on_epoch, log=_print_flush, ctx=ctx)
        except (TrainingDiverged, KeyboardInterrupt) as e:
            save_history(History(done, source), folder)  # also when no epoch finished: an empty table, not nothing
            e.out = folder  # main() says where the finished epochs went
            raise
        save_model(net, folder / "model.params")
        plot_history({title: history}, folder / "curves.png")
        histories[title] = history
        print(f"# {title}: {sum(history.column('seconds')):.1f} s; history, curves.png, model.params and "
              f"config.json in {folder}", flush=True)
    if len(histories) > 1:
        print(f"# both models' curves: {plot_history(histories, out / 'curves.png')}")


def _print_flush(line: str) -> None:
    print(line, flush=True)


def cmd_predict(args) -> None:
    if not 1 <= args.n <= 100:
        raise UsageError(f"--n must be between 1 and 100, got {args.n}")
    ctx = get_ctx(args.ctx)
    params = Path(args.params)
    out = Path(args.out) if args.out else params.parent / "predictions.png"
    if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise UsageError(f"cannot write --out {out}: it is a folder, or its folder does not exist or is not "
                         f"writable; give a .png file path")
    net, kind = load_model(params, ctx)
    trained_on = trained_release(params)
    release = args.data_release or trained_on or data.DEFAULT_RELEASE
    _, _, test_images, test_labels = data.load_dataset(args.data_dir, release).arrays
    if trained_on is None:
        print(f"dropout-gluon: note: no config.json beside {params} says which release of Fashion-MNIST the model "
              f"was trained on; testing it on the {release} release", file=sys.stderr)
    elif trained_on != release:
        print(f"dropout-gluon: note: the model was trained on the {trained_on} release and is tested on the "
              f"{release} release; the two split the images differently (some test images of one are training "
              f"images of the other), so this is not a test accuracy", file=sys.stderr)
    test_iter = run.ToContext(data.DataIter(test_images, test_labels, 256, shuffle=False), ctx)
    acc = evaluate_accuracy(test_iter, net)
    n_test = len(test_labels)
    print(f"{kind} model {params}: test acc {acc:.4f} ({round(acc * n_test)}/{n_test}), {release} release")
    X, y = next(iter(run.ToContext(data.DataIter(test_images[:args.n], test_labels[:args.n], args.n,
                                                 shuffle=False), ctx)))
    preds = net(X).argmax(axis=1).asnumpy().astype(int)
    path = show_predictions(X.asnumpy()[:, 0], y.asnumpy().astype(int), preds, out)
    print(f"predictions for {args.n} test images: {path}")


def trained_release(params: Path) -> str | None:
    """The data release in the config.json that 'train' wrote beside `params`, or None if there is none."""
    try:
        release = json.loads((params.parent / "config.json").read_text()).get("data_release")
    except (OSError, ValueError, AttributeError):
        return None
    return release if release in data.RELEASES else None


def cmd_data(args) -> None:
    release = args.data_release
    if args.action == "fetch":
        data.load_dataset(args.data_dir, release)  # downloads the release if no folder holds it whole
    rows = data.status(args.data_dir, release)
    used = next((folder for folder, why in rows if why is None), None)
    print(f"Fashion-MNIST {release} release ({data.RELEASES[release]}); the folders searched, in order (* = used):")
    for folder, why in rows:
        print(f"  * {folder}: the {release} release, all four files verified" if folder == used
              else f"    {why[0]}")
    if used is None:
        data.load_dataset(args.data_dir, release, download=False)  # raises the error a run would give


def main(argv=None) -> int:
    args = parse_args(argv)
    commands = {"train": cmd_train, "predict": cmd_predict, "data": cmd_data, "exercise": experiments.cmd_exercise}
    try:
        commands[args.command](args)
    except (ValueError, UsageError, data.DataError, ModelFileError) as e:
        print(f"dropout-gluon: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # whoever read our output stopped (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else flushing at exit fails again
        return 1
    except OSError as e:  # e.g. a full disk while writing an output: say which file, no traceback
        print(f"dropout-gluon: error: cannot write {e.filename or 'an output file'}: {e.strerror}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"dropout-gluon: {e}; the history of the epochs before is in {e.out}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as e:
        where = f"; the finished epochs' history is in {e.out}" if getattr(e, "out", None) else ""
        print(f"dropout-gluon: interrupted{where}", file=sys.stderr)
        return 130
    return 0
