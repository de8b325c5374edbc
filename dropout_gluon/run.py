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
from .config import RunConfig
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


def l2_penalty(weights: list):
    """The book's weight-decay term: half the squared L2 norm of the weights."""
    return sum((w ** 2).sum() for w in weights) / 2


class L2PenalizedLoss:
    """`loss(y_hat, y) + lambd * l2_penalty(weights)` per example, as the book's weight-decay chapter.

    The step is `w -= lr * lambd * w` on top of the gradient, Gluon's `wd=lambd`, for every full batch (on an
    epoch's short last batch of b examples, b / batch_size of it); the reported loss includes the penalty."""

    def __init__(self, loss, weights: list, lambd: float):
        self.loss, self.weights, self.lambd = loss, weights, lambd

    def __call__(self, y_hat, y):
        return self.loss(y_hat, y) + self.lambd * l2_penalty(self.weights)


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
        if config.wd:  # the weights only, W1, W2, W3, as the book's weight-decay chapter
            loss = L2PenalizedLoss(loss, net.params[0::2], config.wd)
        return Model(net, FusedSGD(net.params, config.lr), loss)
    net = get_net(config.drop_prob1, config.drop_prob2, config.num_hiddens1, config.num_hiddens2, ctx=ctx)
    hyperparams = {"learning_rate": config.lr}
    if config.wd:  # decay the weights only, as the book's weight-decay chapter (its second trainer for biases)
        net.collect_params(".*bias").setattr("wd_mult", 0.0)
        hyperparams["wd"] = config.wd
    return Model(net, gluon.Trainer(net.collect_params(), "sgd", hyperparams), loss)


def train(config: RunConfig, data_iters: tuple | None = None, *, history: History | None = None,
          on_epoch: Callable[[Epoch], None] | None = None, log: Callable[[str], None] | None = print) -> tuple:
    """Train a fresh model as `config` says; return `(net, history)`. The same seed gives the same history.

    `data_iters` is `(train_iter, test_iter)`, by default the configured release, folder and subset;
    `history` (appended to) and `on_epoch` are train_ch3's.
    """
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
    with numerics.threads():  # (the operators' OpenMP threads, where they run on this thread)
        history = train_ch3(model.net, train_iter, test_iter, model.loss, config.num_epochs, config.batch_size,
                            trainer=model.trainer, log=log, on_epoch=on_epoch, history=history)
    return model.net, history


def _chapter_experiment(model: str, doc: str) -> Callable:
    # train_scratch and train_gluon: the chapter's two experiments, one definition.
    def experiment(num_epochs: int = defaults.num_epochs, lr: float = defaults.lr,
                   batch_size: int = defaults.batch_size, drop_prob1: float = defaults.drop_prob1,
                   drop_prob2: float = defaults.drop_prob2, *, seed: int | None = 0, data_dir=None,
                   data_release: str = DEFAULT_RELEASE, loader: str = "memory", ctx=None,
                   data_iters: tuple | None = None, log: Callable[[str], None] | None = print,
                   on_epoch: Callable[[Epoch], None] | None = None) -> tuple:
        config = RunConfig(model, num_epochs, lr, batch_size, drop_prob1, drop_prob2, seed=seed, data_dir=data_dir,
                           data_release=data_release, loader=loader, ctx="cpu" if ctx is None else ctx)
        return train(config, data_iters, on_epoch=on_epoch, log=log)

    experiment.__name__ = experiment.__qualname__ = f"train_{model}"
    experiment.__doc__ = doc
    return experiment


train_scratch = _chapter_experiment("scratch", "Train a fresh from-scratch `net`; return `(net, history)`. "
                                               "The same seed gives the same history.")
train_gluon = _chapter_experiment("gluon", "Train a fresh Gluon `nn.Sequential` with `nn.Dropout`; return "
                                           "`(net, history)`. The same seed gives the same history.")


def get_ctx(name: str):
    """The MXNet context `name` names, or a UserError saying why a GPU cannot be used."""
    if name.startswith("gpu") and mx.context.num_gpus() == 0:
        raise UserError("--ctx gpu: this MXNet sees no GPU (a CPU-only build, or no CUDA device); "
                        "install a CUDA build of MXNet 1.9.1 (e.g. mxnet-cu112) or use --ctx cpu")
    return RunConfig(ctx=name).context()


def train_models(configs: list, out: str | None = None, *, log: Callable[[str], None] = print) -> Path:
    """Train each configuration into its folder in `out` (None: a new folder under runs/), as 'dropout-gluon
    train' does, printing the book's lines through `log`; returns the run's folder."""
    for config in configs:  # before anything is read or written
        numerics.check(config.ctx)
    out = persist.check_out(out)
    first = configs[0]  # the models share the data (what RunConfig says of it is the same for both)
    dataset = load_dataset(first.data_dir, first.data_release)
    train_iter, test_iter = make_iters(dataset, first.batch_size, first.loader, first.train_size, first.test_size)
    log(f"# data: {dataset.source}")
    log(f"# numerics: {numerics.summary(numerics.record(first.ctx))}")
    if numerics.FALLBACK:
        print(f"dropout-gluon: note: {numerics.FALLBACK}", file=sys.stderr)
    out, histories = persist.start_run(out), {}  # the earlier run there is deleted now, not before
    for config in configs:
        title, folder = TITLES[config.model], out / config.model
        folder.mkdir()
        persist.save_config(config, dataset.source, folder, numerics.record(config.ctx))
        log(f"# {title}: epochs {config.num_epochs}, lr {config.lr}, batch size {config.batch_size}, drop_prob1 "
            f"{config.drop_prob1}, drop_prob2 {config.drop_prob2}, seed {config.seed}")
        history = histories[title] = History(source=dataset.source)
        record = numerics.record(config.ctx)  # how this process computes the run
        save = lambda *_, history=history, folder=folder, record=record: persist.save_history(  # noqa: E731
            history, folder, record)
        save()  # and after every epoch: a run stopped in any way keeps its finished epochs
        try:
            net, _ = train(config, (BatchProgress(train_iter, f"{title} train") if sys.stderr.isatty() else train_iter,
                                    test_iter), history=history, log=log, on_epoch=save)
        except TrainingDiverged as e:
            e.args = (f"{e}; the history of the epochs before is in {folder}",)
            raise
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"interrupted; the finished epochs' history is in {folder}") from None
        persist.save_model(net, folder / persist.PARAMS)
        plot_history({title: history}, folder / persist.CURVES)
        log(f"# {title}: {sum(history.column('seconds')):.1f} s; history, {persist.CURVES}, {persist.PARAMS} and "
            f"{persist.CONFIG} in {folder}")
    if len(histories) > 1:
        log(f"# both models' curves: {plot_history(histories, out / persist.CURVES)}")
    return out


class Prediction(NamedTuple):
    """What `predict` found: the model's kind, its test accuracy (`correct` of `total`), the PNG it drew, and
    `notes` on why the accuracy may not be the one training reported (another release, other numerics)."""
    kind: str
    test_acc: float
    correct: int
    total: int
    data_release: str
    png: Path
    notes: list


def predict(params: os.PathLike | str, n: int = 10, *, data_dir=None, data_release: str | None = None,
            out: os.PathLike | str | None = None, ctx="cpu") -> Prediction:
    """Test a saved model on `data_release` (default: the one it was trained on), and draw its predictions for
    the first `n` test images into `out` (default: predictions.png beside `params`)."""
    if not 1 <= n <= 100:
        raise UserError(f"--n must be between 1 and 100, got {n}")
    ctx, params = get_ctx(ctx), Path(params)
    out = Path(out) if out else params.parent / persist.PREDICTIONS
    if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise UserError(f"cannot write --out {out}: it is a folder, or its folder does not exist or is not "
                        f"writable; give a .png file path")
    net, kind = persist.load_model(params, ctx)
    trained_on, trained_numerics = persist.trained_with(params)
    release, here, notes = data_release or trained_on or DEFAULT_RELEASE, numerics.record(str(ctx)), []
    _, _, test_images, test_labels = load_dataset(data_dir, release).arrays
    if trained_on is None:
        notes.append(f"no config.json beside {params} says which release of Fashion-MNIST the model was trained "
                     f"on; testing it on the {release} release")
    elif trained_on != release:
        notes.append(f"the model was trained on the {trained_on} release and is tested on the {release} release; "
                     f"the two split the images differently (some test images of one are training images of the "
                     f"other), so this is not a test accuracy")
    trained = trained_numerics or {}
    if any(trained[k] != here[k] for k in trained.keys() & here.keys() - {"processor"}):
        notes.append(f"the model was trained under other numerics ({numerics.summary(trained)}) than this process "
                     f"computes with ({numerics.summary(here)}); its predictions may differ in the last digits")
    acc = evaluate_accuracy(ToContext(DataIter(test_images, test_labels, 256, shuffle=False), ctx), net)
    X, y = next(iter(ToContext(DataIter(test_images[:n], test_labels[:n], n, shuffle=False), ctx)))
    png = show_predictions(X.asnumpy()[:, 0], y.asnumpy().astype(int), net(X).argmax(axis=1).asnumpy().astype(int),
                           out)
    return Prediction(kind, acc, round(acc * len(test_labels)), len(test_labels), release, png, notes)
