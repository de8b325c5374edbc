"""The "Dropout" chapter of Dive into Deep Learning (MXNet/Gluon), runnable: `import dropout_gluon as gb`."""
import os
import signal
import sys

from .errors import UserError


def command_line() -> bool:
    """Whether this process is `dropout-gluon`, or `python -m dropout_gluon`, whose argv[0] is '-m' as it imports
    the package (Python 3.10+ tells which module; 3.8 and 3.9 do not)."""
    argv = getattr(sys, "orig_argv", ["-m", "dropout_gluon"])
    return (sys.argv[:1] == ["-m"] and ("-m", "dropout_gluon") in zip(argv, argv[1:])
            or os.path.basename(sys.argv[0] if sys.argv else "") == "dropout-gluon")


def interrupted(signum, frame) -> None:
    """The command line's Ctrl-C until cli.main takes over (nothing is written yet; an exception could be lost)."""
    print("dropout-gluon: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


if command_line():
    signal.signal(signal.SIGINT, interrupted)
try:
    from . import numerics

    numerics.load_mxnet()  # first: MXNet reads its settings as it loads

    from .config import RunConfig
    from .data import DataError, load_data_fashion_mnist, load_dataset
    from .gluon_net import get_net
    from .run import build, predict, set_seed, train, train_gluon, train_scratch
    from .scratch import ScratchNet, dropout
    from .trainer import Epoch, History, TrainingDiverged, evaluate_accuracy, sgd, train_ch3
except (UserError, ImportError) as e:  # a numerics mode that cannot be had, or no MXNet: one line on the command line
    if not command_line() or isinstance(e, ImportError) and e.name != "mxnet":
        raise
    print(f"dropout-gluon: error: {e}", file=sys.stderr)
    raise SystemExit(2) from None

__all__ = ["DataError", "Epoch", "History", "RunConfig", "ScratchNet", "TrainingDiverged", "build", "dropout",
           "evaluate_accuracy", "get_net", "load_data_fashion_mnist", "load_dataset", "predict", "set_seed", "sgd",
           "train", "train_ch3", "train_gluon", "train_scratch"]
