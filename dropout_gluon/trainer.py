"""Model training and testing: the book's `sgd`, `evaluate_accuracy` and `train_ch3`, shared by both models."""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

from mxnet import autograd, nd


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
    """The `Epoch`s of one training run and the data they came from (`source`: release and folder, if known).

    Its repr is one line, so a notebook cell ending in train_ch3 stays tidy.
    """

    def __init__(self, epochs=(), source=None):
        super().__init__(epochs)
        self.source = source

    def __repr__(self) -> str:
        on = f", {self.source.release} release" if self.source else ""
        if not self:
            return f"History([]{on})"
        last = self[-1]
        return (f"History({len(self)} epochs, last: loss {last.loss:.4f}, train acc {last.train_acc:.3f}, "
                f"test acc {last.test_acc:.3f}{on})")

    def column(self, name: str) -> list:
        """One field over all epochs, e.g. `history.column('test_acc')`."""
        return [getattr(e, name) for e in self]


class TrainingDiverged(RuntimeError):
    """The training loss became infinite or NaN; `history` holds the epochs finished before."""

    def __init__(self, epoch: int, loss: float, lr, history: History):
        hint = f" (lr={lr})" if lr is not None else ""
        super().__init__(f"training diverged in epoch {epoch}: the loss is {loss}; "
                         f"try a smaller learning rate{hint}")
        self.epoch, self.loss, self.history = epoch, loss, history


def sgd(params: list, lr: float, batch_size: int) -> None:
    """Minibatch stochastic gradient descent; the gradient is of a summed loss, hence / batch_size."""
    for param in params:
        # The book writes `param[:] = param - lr * param.grad / batch_size`: four operators and three
        # temporaries per parameter. MXNet's fused `sgd_update` computes the same in one pass, in place,
        # ~0.35 s faster per epoch of the scratch model (benchmarks/epoch.py). It multiplies by
        # lr * (1 / batch_size) instead of dividing lr * grad by batch_size: the same floats whenever
        # batch_size is a power of two, as the chapter's 256 is.
        nd.sgd_update(param, param.grad, lr=lr, rescale_grad=1.0 / batch_size, out=param)


def _correct(y_hat: nd.NDArray, y: nd.NDArray) -> nd.NDArray:
    # Number of right predictions, as an NDArray: reading it would make Python wait for the batch.
    return (y_hat.argmax(axis=1) == y.astype("float32")).sum()


def _mean(total, n: int, what: str) -> float:
    # `total` starts as 0.0 and becomes an NDArray on the batches' device (CPU or GPU) at the first batch.
    if n == 0:
        raise ValueError(f"{what} yielded no examples; check the data iterator")
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
              *, log: Callable[[str], None] | None = print,
              on_epoch: Callable[[Epoch], None] | None = None) -> History:
    """Train `net` as the book's train_ch3 does (sgd on `params` if no `trainer`), printing a line per epoch.

    Returns the `History`, labelled with `train_iter.source` (the data release) where the iterator has one.
    Raises `TrainingDiverged` when an epoch's loss is not finite. `on_epoch`, if given, receives each
    `Epoch` as it finishes (e.g. to draw live curves).
    """
    history = History(source=getattr(train_iter, "source", None))
    for epoch in range(1, num_epochs + 1):
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
        if not math.isfinite(train_l):
            raise TrainingDiverged(epoch, train_l, lr if trainer is None else trainer.learning_rate, history)
        test_acc = evaluate_accuracy(test_iter, net)
        history.append(Epoch(epoch, train_l, train_acc, test_acc, time.perf_counter() - start))
        if on_epoch is not None:  # first, so that an epoch whose line was printed is also recorded
            on_epoch(history[-1])
        if log is not None:
            log(history[-1].line())
    return history
