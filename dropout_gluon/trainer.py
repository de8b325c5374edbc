"""Model training and testing: the book's `sgd`, `evaluate_accuracy` and `train_ch3`, shared by both models."""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

from mxnet import autograd, nd

from .errors import UserError
from .scratch import num_outputs


class Epoch(NamedTuple):
    """One line of the book's output, plus the seconds the epoch took (training and testing)."""
    epoch: int
    loss: float
    train_acc: float
    test_acc: float
    seconds: float

    def line(self) -> str:
        """The book's printed line."""
        return (f"epoch {self.epoch}, loss {self.loss:.4f}, train acc {self.train_acc:.3f}, "
                f"test acc {self.test_acc:.3f}")


class History(list):
    """The `Epoch`s of one training run and `source`, the data (release, folder) if known; a one-line repr."""

    def __init__(self, epochs=(), source=None):
        super().__init__(epochs)
        self.source = source

    def __repr__(self) -> str:
        last = f", last: {self[-1].line()}" if self else ""
        on = f", {self.source.data_release} release" if self.source else ""
        return f"History({len(self)} epochs{last}{on})"

    def column(self, name: str) -> list:
        """One field over all epochs, e.g. `history.column('test_acc')`."""
        return [getattr(e, name) for e in self]


# Diverged, after an epoch: its training loss is not finite, or over ten times that of guessing uniformly among
# the classes, or its training accuracy fell back to chance after the model had learned something.
EXPLODED_LOSS = 10 * math.log(num_outputs)
CHANCE_ACC, LEARNED_ACC = 0.2, 0.5


def divergence(loss: float, train_acc: float, history: list) -> str | None:
    """How training diverged in an epoch with this loss and train accuracy after `history`, or None."""
    if not math.isfinite(loss):
        return "non-finite"
    if loss > EXPLODED_LOSS:
        return "exploding"
    if train_acc < CHANCE_ACC and any(e.train_acc > LEARNED_ACC for e in history):
        return "collapsed"
    return None


class TrainingDiverged(RuntimeError):
    """Training diverged (`kind`, see `divergence`) in `epoch`; `history` holds the epochs finished before."""

    def __init__(self, epoch: int, kind: str, loss: float, lr, history: History):
        what = {"non-finite": f"the loss is {loss}", "exploding": f"the loss is {loss:.4g}, over ten times "
                f"that of guessing", "collapsed": "the training accuracy fell back to chance"}[kind]
        hint = f" (lr={lr})" if lr is not None else ""
        super().__init__(f"training diverged in epoch {epoch}: {what}; try a smaller learning rate{hint}")
        self.epoch, self.kind, self.loss, self.history = epoch, kind, loss, history


def sgd(params: list, lr: float, batch_size: int) -> None:
    """Minibatch stochastic gradient descent, the book's line; the gradient is of a summed loss."""
    for param in params:
        param[:] = param - lr * param.grad / batch_size


def sgd_fused(params: list, lr: float, batch_size: int) -> None:
    """`sgd` in one MXNet operator per parameter (`sgd_update`, in place) instead of the book's four."""
    for param in params:
        # It multiplies by lr * (1 / batch_size) where the book divides lr * grad by batch_size: the same
        # floats whenever batch_size is a power of two, as the chapter's 256 is (tested).
        nd.sgd_update(param, param.grad, lr=lr, rescale_grad=1.0 / batch_size, out=param)


class FusedSGD:
    """The scratch model's updater, shaped like a gluon.Trainer: `step(batch_size)` runs `sgd_fused`."""

    def __init__(self, params: list, learning_rate: float):
        self.params, self.learning_rate = params, learning_rate

    def step(self, batch_size: int) -> None:
        sgd_fused(self.params, self.learning_rate, batch_size)


def _correct(y_hat: nd.NDArray, y: nd.NDArray) -> nd.NDArray:
    # Number of right predictions, as an NDArray: reading it would make Python wait for the batch.
    return (y_hat.argmax(axis=1) == y.astype("float32")).sum()


def _mean(total, n: int, what: str) -> float:
    # `total` starts as 0.0 and becomes an NDArray on the batches' device (CPU or GPU) at the first batch.
    if n == 0:
        raise UserError(f"{what} yielded no examples; check the data iterator")
    return float(total.asscalar()) / n


def evaluate_accuracy(data_iter, net) -> float:
    """Fraction of the examples in `data_iter` that `net` classifies correctly."""
    acc_sum, n = 0.0, 0
    for X, y in data_iter:
        acc_sum = acc_sum + _correct(net(X), y).astype("float64")
        n += y.size
    return _mean(acc_sum, n, "the evaluation data")


def train_ch3(net, train_iter, test_iter, loss, num_epochs: int, batch_size: int,
              params: list | None = None, lr: float | None = None, trainer=None,
              *, log: Callable[[str], None] | None = print, on_epoch: Callable[[Epoch], None] | None = None,
              history: History | None = None) -> History:
    """Train `net` as the book's train_ch3 does (sgd on `params` if no `trainer`: anything with `step(batch_size)`),
    printing a line per epoch. Each epoch goes into `history` (new if None; its source `train_iter.source`), then to
    `on_epoch` (e.g. live curves), then `log`. Raises `TrainingDiverged` as `divergence` says."""
    if history is None:
        history = History()
    if history.source is None:
        history.source = getattr(train_iter, "source", None)
    for epoch in range(len(history) + 1, len(history) + num_epochs + 1):
        start = time.perf_counter()
        # Sums stay NDArrays (float64, as the book's Python floats) and are read once per epoch, so
        # MXNet's engine runs ahead instead of pausing for two reads per batch as the book's loop does.
        train_l_sum, train_acc_sum, n = 0.0, 0.0, 0
        for X, y in train_iter:
            with autograd.record():
                y_hat = net(X)
                l = loss(y_hat, y).sum()
            l.backward()
            if trainer is None:
                sgd(params, lr, batch_size)
            else:
                trainer.step(batch_size)
            train_l_sum = train_l_sum + l.astype("float64")
            train_acc_sum = train_acc_sum + _correct(y_hat, y).astype("float64")
            n += y.size
        train_l, train_acc = _mean(train_l_sum, n, "train_iter"), _mean(train_acc_sum, n, "train_iter")
        kind = divergence(train_l, train_acc, history)
        if kind:
            used_lr = lr if trainer is None else getattr(trainer, "learning_rate", None)
            raise TrainingDiverged(epoch, kind, train_l, used_lr, history)
        test_acc = evaluate_accuracy(test_iter, net)
        history.append(Epoch(epoch, train_l, train_acc, test_acc, time.perf_counter() - start))
        if on_epoch is not None:  # first, so that an epoch whose line was printed is also recorded
            on_epoch(history[-1])
        if log is not None:
            log(history[-1].line())
    return history
