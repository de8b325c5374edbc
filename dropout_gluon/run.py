"""The chapter's experiments as functions: build a fresh model from a `RunConfig`, train it, return its history;
train runs into a folder (`dropout-gluon train`), and test a saved model (`predict`)."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import loss as gloss

from . import config as defaults
from . import numerics, persist
from .config import RunConfig, whole
from .data import BatchProgress, DataIter, ToContext, load_dataset
from .data import data_iters as make_iters
from .errors import UserError
from .fashion_mnist import DEFAULT_RELEASE
from .gluon_net import get_net
from .plots import plot_history, show_predictions
from .scratch import ScratchNet, init_params
from .trainer import Epoch, FusedSGD, History, TrainingDiverged, evaluate_accuracy, train_ch3

TITLES = {"scratch": "from scratch", "gluon": "Gluon"}


def set_seed(seed: int) -> None:
    """Seed every generator the training draws from: MXNet's (init, dropout), numpy's (shuffle) and Python's."""
    mx.random.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class Model(NamedTuple):
    """A fresh model as train_ch3 takes it: `trainer.step(batch_size)` updates `net`'s parameters."""
    net: object       # ScratchNet or nn.Sequential
    trainer: object   # FusedSGD (scratch) or gluon.Trainer
    loss: object


def build(config: RunConfig) -> Model:
    """The model `config` describes, initialised from MXNet's generator (call `set_seed` first)."""
    ctx, loss = config.context(), gloss.SoftmaxCrossEntropyLoss()
    if config.model == "scratch":
        net = ScratchNet(config.drop_prob1, config.drop_prob2,
                         init_params(config.num_hiddens1, config.num_hiddens2, ctx=ctx))
        weights = net.params[0::2]  # W1, W2, W3: the book's weight-decay chapter decays no bias

        # The book's L2 term, which the reported loss includes: a full batch then steps as Gluon's wd does
        # (`w -= lr * wd * w` on top of the gradient), an epoch's short last batch of b examples b / batch_size of it.
        def penalized(y_hat, y):
            return loss(y_hat, y) + config.wd * sum((w ** 2).sum() for w in weights) / 2

        return Model(net, FusedSGD(net.params, config.lr), penalized if config.wd else loss)
    net = get_net(config.drop_prob1, config.drop_prob2, config.num_hiddens1, config.num_hiddens2, ctx=ctx)
    hyperparams = {"learning_rate": config.lr}
    if config.wd:  # decay the weights only, as the book's weight-decay chapter (its second trainer for biases)
        net.collect_params(".*bias").setattr("wd_mult", 0.0)
        hyperparams["wd"] = config.wd
    return Model(net, gluon.Trainer(net.collect_params(), "sgd", hyperparams), loss)


def train(config: RunConfig, data_iters: tuple | None = None, *, history: History | None = None,
          on_epoch: Callable[[Epoch], None] | None = None, log: Callable[[str], None] | None = print) -> tuple:
    """Train a fresh model as `config` says; return `(net, history)`, the same history for the same seed.
    `data_iters`: `(train_iter, test_iter)`, by default the configured data; `history`, `on_epoch`: train_ch3's."""
    numerics.check(config.ctx)
    if config.seed is not None:
        set_seed(config.seed)
    if data_iters is None:
        dataset = load_dataset(config.data_dir, config.data_release)
        data_iters = make_iters(dataset, config.batch_size, config.loader, config.train_size, config.test_size)
    ctx = config.context()
    if ctx != mx.cpu():
        data_iters = tuple(ToContext(data_iter, ctx) for data_iter in data_iters)
    train_iter, test_iter = data_iters
    model = build(config)
    history = train_ch3(model.net, train_iter, test_iter, model.loss, config.num_epochs, config.batch_size,
                        trainer=model.trainer, log=log, on_epoch=on_epoch, history=history)
    return model.net, history


def train_scratch(num_epochs: int = defaults.num_epochs, lr: float = defaults.lr, batch_size: int = defaults.batch_size,
                  drop_prob1: float = defaults.drop_prob1, drop_prob2: float = defaults.drop_prob2, *,
                  data_iters: tuple | None = None, log: Callable[[str], None] | None = print, **config) -> tuple:
    """Train a fresh from-scratch `net`; return `(net, history)`. `config`: RunConfig's other fields (seed=0,
    data_dir, data_release, loader, ctx, ...). The same seed gives the same history."""
    return train(RunConfig("scratch", num_epochs, lr, batch_size, drop_prob1, drop_prob2, **config), data_iters,
                 log=log)


def train_gluon(num_epochs: int = defaults.num_epochs, lr: float = defaults.lr, batch_size: int = defaults.batch_size,
                drop_prob1: float = defaults.drop_prob1, drop_prob2: float = defaults.drop_prob2, *,
                data_iters: tuple | None = None, log: Callable[[str], None] | None = print, **config) -> tuple:
    """Train a fresh Gluon `nn.Sequential` with `nn.Dropout`; return `(net, history)`, as `train_scratch`."""
    return train(RunConfig("gluon", num_epochs, lr, batch_size, drop_prob1, drop_prob2, **config), data_iters,
                 log=log)


def train_models(configs: list, out: str | None = None, *, log: Callable[[str], None] = print) -> Path:
    """Train each configuration into its folder in `out` (None: a new folder under runs/), as 'dropout-gluon
    train' does, printing the book's lines through `log`; returns the run's folder."""
    for config in configs:  # before anything is read or written
        numerics.check(config.ctx)
        config.context()  # a GPU that this MXNet cannot use
    out = persist.check_out(out)
    first = configs[0]  # the models share the data (what RunConfig says of it is the same for both)
    dataset = load_dataset(first.data_dir, first.data_release)
    data_iters = make_iters(dataset, first.batch_size, first.loader, first.train_size, first.test_size)
    log(f"# data: {dataset.source}")
    log(f"# numerics: {numerics.summary(numerics.record(first.ctx))}")
    if numerics.FALLBACK:
        print(f"dropout-gluon: note: {numerics.FALLBACK}", file=sys.stderr)
    with persist.run_folder(out) as out:  # an earlier run there is deleted now, not before
        histories = {TITLES[config.model]: _train_into(out / config.model, config, dataset.source, data_iters, log)
                     for config in configs}
        if len(histories) > 1:
            log(f"# both models' curves: {plot_history(histories, out / persist.CURVES)}")
    return out


def _train_into(folder: Path, config: RunConfig, source, data_iters: tuple, log: Callable[[str], None]) -> History:
    # One model of 'dropout-gluon train': its configuration, then its history after every epoch (a run stopped
    # in any way keeps its finished epochs), then its parameters and curves.
    title, (train_iter, test_iter) = TITLES[config.model], data_iters
    folder.mkdir()
    record = numerics.record(config.ctx)  # how this process computes the run
    persist.save_config(config, source, folder, record)
    log(f"# {title}: epochs {config.num_epochs}, lr {config.lr}, batch size {config.batch_size}, drop_prob1 "
        f"{config.drop_prob1}, drop_prob2 {config.drop_prob2}, seed {config.seed}")
    history = History(source=source)
    persist.save_history(history, folder, record)
    try:
        net, _ = train(config, (BatchProgress(train_iter, f"{title} train") if sys.stderr.isatty() else train_iter,
                                test_iter), history=history, log=log,
                       on_epoch=lambda _: persist.save_history(history, folder, record))
        persist.save_model(net, folder / persist.PARAMS)
        plot_history({title: history}, folder / persist.CURVES)
    except TrainingDiverged as e:
        e.args = (f"{e}; the history of the epochs before is in {folder}",)
        raise
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted; the finished epochs' history is in {folder}") from None
    except OSError as e:  # e.g. a full disk
        raise UserError(f"cannot write {e.filename}: {e.strerror}; {folder} keeps the history saved until then; "
                        f"make room (is the disk full?) and train again") from None
    log(f"# {title}: {sum(history.column('seconds')):.1f} s; history, {persist.CURVES}, {persist.PARAMS} and "
        f"{persist.CONFIG} in {folder}")
    return history


class Prediction(NamedTuple):
    """What `predict` found: which model, its test accuracy (`correct` of `total`), the PNG it drew, and
    `notes` on why the accuracy may not be the one training reported (another release, other numerics)."""
    model: str
    test_acc: float
    correct: int
    total: int
    data_release: str
    png: Path
    notes: list


def predict(params: os.PathLike | str, n: int = 10, *, data_dir=None, data_release: str | None = None,
            png: os.PathLike | str | None = None, ctx="cpu") -> Prediction:
    """Test a saved model on `data_release` (default: the one it was trained on), and draw its predictions for
    the first `n` test images into `png` (default: predictions.png beside `params`)."""
    n = whole(n, "--n", 1, 100)
    ctx, params = RunConfig(ctx=ctx).context(), Path(params)
    png = Path(png) if png else params.parent / persist.PREDICTIONS
    if png.is_dir() or not png.parent.is_dir() or not os.access(png.parent, os.W_OK):
        raise UserError(f"cannot write --png {png}: it is a folder, or its folder does not exist or is not "
                        f"writable; give a .png file's path")
    net, model = persist.load_model(params, ctx)
    trained_on, trained = persist.trained_with(params)
    release, here, notes = data_release or trained_on or DEFAULT_RELEASE, numerics.record(str(ctx)), []
    _, _, test_images, test_labels = load_dataset(data_dir, release).arrays
    if trained_on is None:
        notes.append(f"no config.json beside {params} says which release of Fashion-MNIST the model was trained "
                     f"on; testing it on the {release} release")
    elif trained_on != release:
        notes.append(f"the model was trained on the {trained_on} release and is tested on the {release} release; "
                     f"the two split the images differently (some test images of one are training images of the "
                     f"other), so this is not a test accuracy")
    if trained and numerics.deciding(trained) != numerics.deciding(here):
        notes.append(f"the model was trained under other numerics ({numerics.summary(trained)}) than this process "
                     f"computes with ({numerics.summary(here)}); its predictions may differ in the last digits")
    acc = evaluate_accuracy(ToContext(DataIter(test_images, test_labels, 256, shuffle=False), ctx), net)
    X, y = next(iter(ToContext(DataIter(test_images[:n], test_labels[:n], n, shuffle=False), ctx)))
    show_predictions(X.asnumpy()[:, 0], y.asnumpy().astype(int), net(X).argmax(axis=1).asnumpy().astype(int), png)
    return Prediction(model, acc, round(acc * len(test_labels)), len(test_labels), release, png, notes)
