"""Dropout implementation starting from scratch: `dropout`, the model's parameters and the model `net`."""
from __future__ import annotations

import math
import numbers

from mxnet import autograd, nd

from .errors import UserError

num_inputs, num_outputs, num_hiddens1, num_hiddens2 = 784, 10, 256, 256


def check_drop_prob(drop_prob, name: str = "drop_prob") -> float:
    """Return `drop_prob` as a float, or raise ValueError if it is not a number in [0, 1]."""
    # A ValueError, not the chapter's assert, which `python -O` removes.
    if (isinstance(drop_prob, bool) or not isinstance(drop_prob, numbers.Real)
            or math.isnan(drop_prob) or not 0 <= drop_prob <= 1):
        raise UserError(f"{name} must be a probability in [0, 1], got {drop_prob!r}")
    return float(drop_prob)


def dropout(X: nd.NDArray, drop_prob: float) -> nd.NDArray:
    """Inverted dropout: zero each element of X with probability drop_prob, divide the rest by 1 - drop_prob."""
    keep_prob = 1 - check_drop_prob(drop_prob)
    if keep_prob == 0:  # every element is dropped (and 1/keep_prob would be a division by zero)
        return X.zeros_like()
    mask = nd.random.uniform(0, 1, X.shape, ctx=X.context) < keep_prob
    return mask * X / keep_prob


def init_params(num_hiddens1: int = num_hiddens1, num_hiddens2: int = num_hiddens2, ctx=None) -> list:
    """`[W1, b1, W2, b2, W3, b3]`: weights normal with scale 0.01, biases zero, gradients attached."""
    W1 = nd.random.normal(scale=0.01, shape=(num_inputs, num_hiddens1), ctx=ctx)
    b1 = nd.zeros(num_hiddens1, ctx=ctx)
    W2 = nd.random.normal(scale=0.01, shape=(num_hiddens1, num_hiddens2), ctx=ctx)
    b2 = nd.zeros(num_hiddens2, ctx=ctx)
    W3 = nd.random.normal(scale=0.01, shape=(num_hiddens2, num_outputs), ctx=ctx)
    b3 = nd.zeros(num_outputs, ctx=ctx)
    params = [W1, b1, W2, b2, W3, b3]
    for param in params:
        param.attach_grad()
    return params


class ScratchNet:
    """The chapter's `net`: two ReLU hidden layers, each followed by `dropout` only while training.

    The chapter keeps W1 ... b3 as module globals; here each model owns its `params`, so a second
    model (or a second call of `train_scratch`) never shares the first one's weights.
    """

    def __init__(self, drop_prob1: float = 0.2, drop_prob2: float = 0.5, params: list | None = None, ctx=None):
        self.drop_prob1 = check_drop_prob(drop_prob1, "drop_prob1")
        self.drop_prob2 = check_drop_prob(drop_prob2, "drop_prob2")
        self.params = init_params(ctx=ctx) if params is None else params

    def __call__(self, X: nd.NDArray) -> nd.NDArray:
        W1, b1, W2, b2, W3, b3 = self.params
        X = X.reshape((-1, W1.shape[0]))
        H1 = (nd.dot(X, W1) + b1).relu()
        if autograd.is_training():  # dropout only while training the model
            H1 = dropout(H1, self.drop_prob1)  # after the first fully connected layer
        H2 = (nd.dot(H1, W2) + b2).relu()
        if autograd.is_training():
            H2 = dropout(H2, self.drop_prob2)  # after the second fully connected layer
        return nd.dot(H2, W3) + b3
