"""The "Dropout" chapter of Dive into Deep Learning (MXNet/Gluon), runnable: `import dropout_gluon as gb`."""
import os
import sys

from .errors import UserError

try:
    from . import numerics

    numerics.load_mxnet()  # first: MXNet reads its settings as it loads

    from .config import RunConfig
    from .data import DataError, load_data_fashion_mnist, load_dataset
    from .gluon_net import get_net
    from .run import build, predict, set_seed, train, train_gluon, train_scratch
    from .scratch import ScratchNet, dropout
    from .trainer import Epoch, History, TrainingDiverged, evaluate_accuracy, sgd, train_ch3
except (KeyboardInterrupt, UserError) as e:  # as MXNet loads: a Ctrl-C, or a numerics mode that cannot be had
    # The command line (cli.main) says so in one line, as it does later on: it is `dropout-gluon`, or
    # `python -m dropout_gluon`, whose argv[0] is '-m' while Python imports the package to find its __main__.
    if os.path.basename(sys.argv[0] if sys.argv else "") not in ("dropout-gluon", "-m"):
        raise
    interrupted = isinstance(e, KeyboardInterrupt)
    print(f"dropout-gluon: {'interrupted' if interrupted else f'error: {e}'}", file=sys.stderr, flush=True)
    os._exit(130 if interrupted else 2)  # not sys.exit: a Ctrl-C inside MXNet's exec() makes Python exit by SIGINT

__all__ = ["DataError", "Epoch", "History", "RunConfig", "ScratchNet", "TrainingDiverged", "build", "dropout",
           "evaluate_accuracy", "get_net", "load_data_fashion_mnist", "load_dataset", "predict", "set_seed", "sgd",
           "train", "train_ch3", "train_gluon", "train_scratch"]
