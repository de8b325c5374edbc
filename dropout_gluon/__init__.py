"""The "Dropout" chapter of Dive into Deep Learning (MXNet/Gluon), runnable: `import dropout_gluon as gb`."""
from . import numerics

numerics.load_mxnet()  # first: MXNet reads its settings as it loads

from .config import RunConfig
from .data import DataError, load_data_fashion_mnist, load_dataset
from .gluon_net import get_net
from .run import build, predict, set_seed, train, train_gluon, train_scratch
from .scratch import ScratchNet, dropout
from .trainer import Epoch, History, TrainingDiverged, evaluate_accuracy, sgd, train_ch3

__all__ = ["DataError", "Epoch", "History", "RunConfig", "ScratchNet", "TrainingDiverged", "build", "dropout",
           "evaluate_accuracy", "get_net", "load_data_fashion_mnist", "load_dataset", "predict", "set_seed", "sgd",
           "train", "train_ch3", "train_gluon", "train_scratch"]
