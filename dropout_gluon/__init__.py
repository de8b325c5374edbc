"""The "Dropout" chapter of Dive into Deep Learning (MXNet/Gluon), runnable: `import dropout_gluon as gb`."""
import os
import signal
import sys


def command_line() -> bool:
    """Whether this is `dropout-gluon`, or `python -m dropout_gluon` (argv[0] '-m'; 3.8 and 3.9 tell no module)."""
    argv = getattr(sys, "orig_argv", ["-m", "dropout_gluon"])
    return (sys.argv[:1] == ["-m"] and ("-m", "dropout_gluon") in zip(argv, argv[1:])
            or os.path.basename(sys.argv[0] if sys.argv else "") == "dropout-gluon")


def interrupted(signum, frame) -> None:
    """The command line's Ctrl-C until cli.main takes over (nothing is written yet; an exception could be lost)."""
    print("dropout-gluon: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


try:  # (a Ctrl-C may land before the handler is in place)
    if command_line():
        signal.signal(signal.SIGINT, interrupted)
except KeyboardInterrupt:
    if not command_line():
        raise
    interrupted(signal.SIGINT, None)
from .errors import UserError  # noqa: E402 - after the handler: a Ctrl-C from here on is one line

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
