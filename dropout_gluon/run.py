"""The chapter's experiments as functions: build a fresh model from a `RunConfig`, train it, return its history."""
from __future__ import annotations

import random
from typing import Callable, NamedTuple

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import loss as gloss

from . import config as defaults
from . import numerics
from .config import RunConfig
from .data import ToContext, load_dataset
from .data import data_iters as make_iters
from .fashion_mnist import DEFAULT_RELEASE
from .gluon_net import get_net
from .scratch import ScratchNet, init_params
from .trainer import Epoch, FusedSGD, History, train_ch3


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

    train_ch3 sums over the batch and the update divides by the batch size, so the step is
    `w -= lr * lambd * w` on top of the gradient: Gluon's `wd=lambd` for every full batch. (On an epoch's
    last, short batch of b examples the decay is b / batch_size of Gluon's; and the reported loss
    includes the penalty, which Gluon's does not.)
    """

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
    with numerics.threads():
        history = train_ch3(model.net, train_iter, test_iter, model.loss, config.num_epochs, config.batch_size,
                            trainer=model.trainer, log=log, on_epoch=on_epoch, history=history)
    return model.net, history


def _chapter_experiment(model: str, doc: str) -> Callable:
    # train_scratch and train_gluon: the chapter's two experiments, one definition (root=: data_dir's old name).
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
