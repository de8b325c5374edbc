"""Command line: `dropout-gluon train` (the chapter's main job) and `dropout-gluon data`."""
from __future__ import annotations

import argparse
import sys

from . import data, run
from .gluon_net import check_gluon_drop_prob
from .scratch import check_drop_prob
from .trainer import TrainingDiverged

EXAMPLES = """examples:
  dropout-gluon train                      both models, the chapter's hyperparameters
  dropout-gluon train --model gluon --epochs 10 --drop-prob1 0.5 --drop-prob2 0.2
  dropout-gluon data status                where the dataset is found and whether it verifies
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dropout-gluon", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="The Dropout chapter of Dive into Deep Learning, runnable.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the chapter's models, printing the book's lines")
    train.add_argument("--model", choices=["scratch", "gluon", "both"], default="both")
    train.add_argument("--epochs", type=int, default=run.num_epochs)
    train.add_argument("--lr", type=float, default=run.lr)
    train.add_argument("--batch-size", type=int, default=run.batch_size)
    train.add_argument("--drop-prob1", type=float, default=run.drop_prob1)
    train.add_argument("--drop-prob2", type=float, default=run.drop_prob2)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data-dir", default=None, help=f"folder with the four files (or set {data.ENV_VAR})")
    train.add_argument("--loader", choices=["memory", "gluon"], default="memory",
                       help="'gluon' is the book's DataLoader pipeline (slower)")
    status = sub.add_parser("data", help="find and verify Fashion-MNIST (fetch: download what is missing)")
    status.add_argument("action", nargs="?", choices=["status", "fetch"], default="status")
    status.add_argument("--data-dir", default=None, help=f"folder with the four files (or set {data.ENV_VAR})")
    return parser.parse_args(argv)


def cmd_train(args) -> None:
    models = {"scratch": ("from scratch", run.train_scratch), "gluon": ("Gluon", run.train_gluon)}
    names = ["scratch", "gluon"] if args.model == "both" else [args.model]
    # Every argument is checked before the first model trains, not after it.
    run.check_hyperparams(args.epochs, args.lr, args.batch_size)
    check = check_gluon_drop_prob if "gluon" in names else check_drop_prob
    check(args.drop_prob1, "drop_prob1")
    check(args.drop_prob2, "drop_prob2")
    for name in names:
        title, train = models[name]
        print(f"# {title}: epochs {args.epochs}, lr {args.lr}, batch size {args.batch_size}, "
              f"drop_prob1 {args.drop_prob1}, drop_prob2 {args.drop_prob2}, seed {args.seed}", flush=True)
        _, history = train(args.epochs, args.lr, args.batch_size, args.drop_prob1, args.drop_prob2,
                           seed=args.seed, root=args.data_dir, loader=args.loader)
        print(f"# {title}: {sum(history.column('seconds')):.1f} s", flush=True)


def cmd_data(args) -> None:
    for name in data.FILES:
        path, _ = data.find_file(name, args.data_dir, download=args.action == "fetch")
        print(f"{name}: verified, {path}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        {"train": cmd_train, "data": cmd_data}[args.command](args)
    except (ValueError, data.DataError) as e:
        print(f"dropout-gluon: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"dropout-gluon: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("dropout-gluon: interrupted", file=sys.stderr)
        return 130
    return 0
