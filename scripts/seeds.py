"""Test accuracy of both of the chapter's models over several seeds, on a release of Fashion-MNIST.

    .venv/bin/python scripts/seeds.py                          # seeds 0-7 on the final release: ~3 min, 2 cores
    .venv/bin/python scripts/seeds.py --data-release first     # the release of the book's published runs

Prints one row per seed and model, then mean ± sample std and the range per model (docs/data.md's table).
"""
from __future__ import annotations

import argparse
import statistics

import dropout_gluon as gb  # before MXNet loads, so that it loads in the package's numerics mode
from dropout_gluon import config, data
from dropout_gluon import fashion_mnist as fm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0 .. N-1 (default 8)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data-release", choices=list(fm.RELEASES), default=fm.DEFAULT_RELEASE)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    try:
        dataset = data.load_dataset(args.data_dir, args.data_release)
    except fm.DataError as e:
        parser.exit(2, f"seeds.py: error: {e}\n")
    print(f"# {dataset.source}; {args.epochs} epochs, the chapter's hyperparameters")
    train_images, train_labels, test_images, test_labels = dataset.arrays
    iters = (data.DataIter(train_images, train_labels, config.batch_size, True, source=dataset.source),
             data.DataIter(test_images, test_labels, config.batch_size, False, source=dataset.source))
    results = {"from scratch": [], "Gluon": []}
    for seed in range(args.seeds):
        for (name, accs), train in zip(results.items(), (gb.train_scratch, gb.train_gluon)):
            history = train(args.epochs, seed=seed, data_iters=iters, log=None)[1]
            accs.append(history[-1].test_acc)
            print(f"seed {seed}, {name}: test acc {accs[-1]:.4f}", flush=True)
    for name, accs in results.items():
        sd = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        print(f"{name}: {statistics.mean(accs):.3f} ± {sd:.3f}, {min(accs):.3f}-{max(accs):.3f} "
              f"(n={len(accs)}, {args.data_release} release)")


if __name__ == "__main__":
    main()
