"""The chapter's two experiments as functions: train a fresh model with the chapter's hyperparameters."""
from __future__ import annotations

import math
import numbers
import random

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import loss as gloss

from .data import DEFAULT_RELEASE, load_data_fashion_mnist
from .gluon_net import check_gluon_drop_prob, get_net
from .scratch import ScratchNet, check_drop_prob, init_params, num_hiddens1, num_hiddens2
from .trainer import History, train_ch3

# The chapter's hyperparameters, in one place.
num_epochs, lr, batch_size = 5, 0.5, 256
drop_prob1, drop_prob2 = 0.2, 0.5


def set_seed(seed: int) -> None:
    """Seed every generator the training draws from: MXNet's (init, dropout), numpy's (shuffle) and Python's."""
    mx.random.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def check_hyperparams(num_epochs, lr, batch_size) -> None:
    """Raise ValueError naming the first hyperparameter that cannot work."""
    for name, value in (("num_epochs", num_epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")


class ToContext:
    """Wraps a data iterator so that its batches arrive on `ctx` (a GPU), wherever the data lives."""

    def __init__(self, data_iter, ctx):
        self.data_iter, self.ctx = data_iter, ctx
        self.source = getattr(data_iter, "source", None)

    def __len__(self) -> int:
        return len(self.data_iter)

    def __iter__(self):
        for X, y in self.data_iter:
            yield X.as_in_context(self.ctx), y.as_in_context(self.ctx)


def check_seed(seed) -> None:
    """Raise ValueError unless `seed` is None (unseeded) or a whole number numpy accepts, 0 to 2**32 - 1."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or not 0 <= seed < 2 ** 32):
        raise ValueError(f"seed must be a whole number from 0 to 2**32 - 1, got {seed!r}")


def _prepare(num_epochs, lr, batch_size, seed, data_iters, root, loader, ctx, data_release):
    check_hyperparams(num_epochs, lr, batch_size)
    check_seed(seed)
    if seed is not None:
        set_seed(seed)
    if data_iters is None:
        data_iters = load_data_fashion_mnist(batch_size, root=root, loader=loader, data_release=data_release)
    if ctx is not None and ctx != mx.cpu():
        data_iters = tuple(ToContext(data_iter, ctx) for data_iter in data_iters)
    return data_iters


def build(model: str, drop_prob1: float = drop_prob1, drop_prob2: float = drop_prob2, lr: float = lr,
          num_hiddens1: int = num_hiddens1, num_hiddens2: int = num_hiddens2, ctx=None) -> tuple:
    """A fresh model as `train_ch3` takes it, `(net, params, trainer)`.

    'scratch': the chapter's `net` and its `params`, for `sgd` (no trainer); 'gluon': the chapter's
    `nn.Sequential` and its `gluon.Trainer` (no params). Seed first (`set_seed`) for a reproducible init.
    """
    if model == "scratch":
        net = ScratchNet(drop_prob1, drop_prob2, init_params(num_hiddens1, num_hiddens2, ctx=ctx))
        return net, net.params, None
    if model == "gluon":
        net = get_net(drop_prob1, drop_prob2, num_hiddens1, num_hiddens2, ctx=ctx)
        return net, None, gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    raise ValueError(f"model must be 'scratch' or 'gluon', got {model!r}")


def train_scratch(num_epochs: int = num_epochs, lr: float = lr, batch_size: int = batch_size,
                  drop_prob1: float = drop_prob1, drop_prob2: float = drop_prob2, *,
                  seed: int | None = 0, root=None, data_release: str = DEFAULT_RELEASE, loader: str = "memory",
                  data_iters: tuple | None = None, log=print, on_epoch=None, ctx=None) -> tuple:
    """Train a fresh from-scratch `net`; return `(net, history)`. The same seed gives the same history."""
    check_drop_prob(drop_prob1, "drop_prob1")  # bad input fails before any data is read
    check_drop_prob(drop_prob2, "drop_prob2")
    train_iter, test_iter = _prepare(num_epochs, lr, batch_size, seed, data_iters, root, loader, ctx,
                                    data_release)
    net, params, _ = build("scratch", drop_prob1, drop_prob2, lr, ctx=ctx)
    history = train_ch3(net, train_iter, test_iter, gloss.SoftmaxCrossEntropyLoss(), num_epochs,
                        batch_size, params, lr, log=log, on_epoch=on_epoch)
    return net, history


def train_gluon(num_epochs: int = num_epochs, lr: float = lr, batch_size: int = batch_size,
                drop_prob1: float = drop_prob1, drop_prob2: float = drop_prob2, *,
                seed: int | None = 0, root=None, data_release: str = DEFAULT_RELEASE, loader: str = "memory",
                data_iters: tuple | None = None, log=print, on_epoch=None, ctx=None) -> tuple:
    """Train a fresh Gluon `nn.Sequential` with `nn.Dropout`; return `(net, history)`."""
    check_gluon_drop_prob(drop_prob1, "drop_prob1")  # bad input fails before any data is read
    check_gluon_drop_prob(drop_prob2, "drop_prob2")
    train_iter, test_iter = _prepare(num_epochs, lr, batch_size, seed, data_iters, root, loader, ctx,
                                    data_release)
    net, _, trainer = build("gluon", drop_prob1, drop_prob2, lr, ctx=ctx)
    history: History = train_ch3(net, train_iter, test_iter, gloss.SoftmaxCrossEntropyLoss(), num_epochs,
                                 batch_size, None, None, trainer, log=log, on_epoch=on_epoch)
    return net, history
