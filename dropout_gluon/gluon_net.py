"""Gluon implementation of dropout: the same MLP as `nn.Sequential` with `nn.Dropout` layers."""
from __future__ import annotations

from mxnet import init
from mxnet.gluon import nn

from .errors import UserError
from .scratch import check_drop_prob, num_hiddens1, num_hiddens2, num_outputs


def check_gluon_drop_prob(drop_prob, name: str = "drop_prob") -> float:
    """Like `check_drop_prob`, but below 1: MXNet's nn.Dropout(1.0) outputs NaN while training."""
    # Checked here because MXNet checks nothing: nn.Dropout(-0.1) is silently the identity.
    if check_drop_prob(drop_prob, name) == 1:
        raise UserError(f"{name} must be below 1 for the Gluon model (MXNet's nn.Dropout(1.0) "
                         f"outputs NaN), got {drop_prob!r}")
    return float(drop_prob)


def get_net(drop_prob1: float = 0.2, drop_prob2: float = 0.5,
            num_hiddens1: int = num_hiddens1, num_hiddens2: int = num_hiddens2, ctx=None) -> nn.Sequential:
    """The chapter's Gluon model, initialised with `init.Normal(sigma=0.01)`."""
    check_gluon_drop_prob(drop_prob1, "drop_prob1")
    check_gluon_drop_prob(drop_prob2, "drop_prob2")
    net = nn.Sequential()
    net.add(nn.Dense(num_hiddens1, activation="relu"),
            nn.Dropout(drop_prob1),  # after the first fully connected layer
            nn.Dense(num_hiddens2, activation="relu"),
            nn.Dropout(drop_prob2),  # after the second fully connected layer
            nn.Dense(num_outputs))
    net.initialize(init.Normal(sigma=0.01), ctx=ctx)
    return net
