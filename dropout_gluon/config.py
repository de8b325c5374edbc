"""One training run's configuration, with the chapter's names and defaults, validated once when it is made."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import os
import re

from .errors import UserError
from .fashion_mnist import DEFAULT_RELEASE, RELEASES
from .gluon_net import check_gluon_drop_prob
from .scratch import check_drop_prob, num_hiddens1, num_hiddens2  # the chapter's model's widths

# The chapter's hyperparameters: `num_epochs, lr, batch_size = 5, 0.5, 256` and its drop probabilities.
num_epochs, lr, batch_size = 5, 0.5, 256
drop_prob1, drop_prob2 = 0.2, 0.5

MODELS = ("scratch", "gluon")
LOADERS = ("memory", "gluon")
CONTEXT = re.compile(r"(cpu|gpu)(?:\((\d+)\))?")


def whole(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int (numpy integers too), or a ValueError saying which rule it breaks."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise UserError(f"{name} must be a whole number {bound}, got {value!r}")
    return int(value)


def real(value, name: str, *, positive: bool) -> float:
    """`value` as a finite float, > 0 if `positive` else >= 0, or a ValueError."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or value < 0 or (positive and value == 0)):
        raise UserError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def one_of(value, name: str, choices: tuple) -> str:
    """`value` if it is one of `choices`, or a ValueError listing them."""
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run: model, the chapter's hyperparameters, data and seed. `config.json` holds one."""
    model: str = "scratch"              # "scratch" (the hand-written `net`) or "gluon" (nn.Sequential)
    num_epochs: int = num_epochs
    lr: float = lr
    batch_size: int = batch_size
    drop_prob1: float = drop_prob1      # after the first hidden layer
    drop_prob2: float = drop_prob2      # after the second
    num_hiddens1: int = num_hiddens1
    num_hiddens2: int = num_hiddens2
    wd: float = 0.0                     # weight decay on W1..W3 (the exercises): Gluon's wd, the scratch L2 lambd
    seed: int | None = 0                # seeds MXNet, numpy and random together; None: unseeded
    data_release: str = DEFAULT_RELEASE  # "final" or "first": different data (fashion_mnist.py)
    data_dir: str | None = None         # a folder of one's own, used strictly; None: the default search
    loader: str = "memory"              # "gluon": the book's DataLoader pipeline (slower, other shuffles)
    ctx: str = "cpu"                    # "cpu", "gpu", or e.g. "gpu(1)"; an mx.Context is taken too
    train_size: int | None = None       # the first examples of each set (quick exercises); None: all
    test_size: int | None = None

    def __post_init__(self):
        # The one place where a run's settings are checked; numpy scalars become Python numbers, so that
        # equal settings are equal configurations, with one key and one config.json.
        set_ = functools.partial(object.__setattr__, self)  # a frozen dataclass
        set_("model", one_of(self.model, "model", MODELS))
        for name in ("num_epochs", "batch_size", "num_hiddens1", "num_hiddens2"):
            set_(name, whole(getattr(self, name), name))
        set_("lr", real(self.lr, "lr", positive=True))
        set_("wd", real(self.wd, "wd", positive=False))
        check = check_gluon_drop_prob if self.model == "gluon" else check_drop_prob
        for name in ("drop_prob1", "drop_prob2"):
            set_(name, check(getattr(self, name), name))
        if self.seed is not None:
            set_("seed", whole(self.seed, "seed", 0, 2 ** 32 - 1))
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                set_(name, whole(getattr(self, name), name))
        set_("data_release", one_of(self.data_release, "data_release", tuple(RELEASES)))
        if self.data_dir is not None:  # absolute: a config.json names the same folder wherever it is run from
            if not isinstance(self.data_dir, (str, os.PathLike)):
                raise UserError(f"data_dir must be a folder's path (a string), got {self.data_dir!r}")
            set_("data_dir", os.path.abspath(os.path.expanduser(self.data_dir)))
        set_("loader", one_of(self.loader, "loader", LOADERS))
        ctx = CONTEXT.fullmatch(str(self.ctx))
        if not ctx:
            raise UserError(f"ctx must be 'cpu', 'gpu' or e.g. 'gpu(1)', got {self.ctx!r}")
        set_("ctx", f"{ctx[1]}({ctx[2] or 0})")

    def context(self):
        """The MXNet context to train on, or a UserError saying why a GPU cannot be used."""
        import mxnet as mx

        device, index = CONTEXT.fullmatch(self.ctx).groups()
        if device == "gpu" and mx.context.num_gpus() == 0:
            raise UserError("--ctx gpu: this MXNet sees no GPU (a CPU-only build, or no CUDA device); "
                            "install a CUDA build of MXNet 1.9.1 (e.g. mxnet-cu112) or use --ctx cpu")
        return mx.Context(device, int(index))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """A configuration from `to_dict`'s output (e.g. a config.json); a ValueError names a key it does not know."""
        fields = [f.name for f in dataclasses.fields(cls)]
        for name in values:
            if name not in fields:
                close = difflib.get_close_matches(str(name), fields, n=1)
                raise UserError(f"unknown configuration key {name!r}" + (f" (did you mean {close[0]!r}?)" if close
                                 else "") + f"; the keys are {', '.join(fields)}")
        return cls(**values)

    def identity(self) -> dict:
        """What decides the run's numbers: every field but the data folder (a verified release is the same data)."""
        return {k: v for k, v in self.to_dict().items() if k != "data_dir"}
