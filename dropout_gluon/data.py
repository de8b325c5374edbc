"""The book's `load_data_fashion_mnist`: a verified release found (`load_dataset`: MXNet's folder, each of
$XDG_DATA_DIRS (Debian's package), the download cache, else a download), batched as Gluon would batch it."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from mxnet import gluon, nd

from .config import LOADERS, one_of, whole
from .download import fetch_release
from .errors import UserError
from .fashion_mnist import DEFAULT_RELEASE, ENV_VAR, FIX, RELEASES, DataError, Dataset, Source, open_folder


def mxnet_dir() -> Path:
    """Where Gluon keeps Fashion-MNIST (the first release): $MXNET_HOME/datasets/fashion-mnist."""
    home = os.environ.get("MXNET_HOME") or os.path.join(os.path.expanduser("~"), ".mxnet")
    return Path(home) / "datasets" / "fashion-mnist"


def system_dirs() -> list:
    """datasets/fashion-mnist in each folder of $XDG_DATA_DIRS: where Debian's dataset-fashion-mnist puts it."""
    # The XDG base directory spec: unset or empty means /usr/local/share:/usr/share; relative entries are ignored.
    shared = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    return [Path(d) / "datasets" / "fashion-mnist" for d in shared.split(":") if os.path.isabs(d)]


def download_dir(release: str) -> Path:
    """Where a download of `release` goes: the first release where Gluon's FashionMNIST keeps the very same files (one
    copy for both), the final one in the host's cache folder (~/.cache, ~/Library/Caches on macOS), never together."""
    if release == "first":
        return mxnet_dir()
    import pooch

    return pooch.os_cache("dropout-gluon") / "fashion-mnist-final"


def default_dirs() -> list:
    """The folders the default search looks in, in order: MXNet's, $XDG_DATA_DIRS' (Debian's), the final's download."""
    return list(dict.fromkeys([mxnet_dir(), *system_dirs(), download_dir("final")]))


def chosen_dir(data_dir=None) -> tuple | None:
    """`(folder, who chose it)` if the caller chose a folder (`data_dir`, else $DROPOUT_GLUON_DATA), else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "data_dir= / --data-dir"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), ENV_VAR
    return None


def status(data_dir=None, data_release: str = DEFAULT_RELEASE) -> list:
    """`[(folder, problem)]` for each folder a run would look at, in order; `problem` is None where it is usable."""
    release = one_of(data_release, "data_release", tuple(RELEASES))
    chosen = chosen_dir(data_dir)
    return [(folder, open_folder(folder, release)[1]) for folder in ([chosen[0]] if chosen else default_dirs())]


def load_dataset(data_dir=None, data_release: str = DEFAULT_RELEASE, *, download: bool = True,
                 urls: Sequence[str] | None = None) -> Dataset:
    """The four verified files of `data_release`, all from one folder: the one the caller chose (`data_dir`, else
    $DROPOUT_GLUON_DATA), or this fails saying why; else the first of `default_dirs()` holding them; else a download."""
    release = one_of(data_release, "data_release", tuple(RELEASES))
    chosen = chosen_dir(data_dir)
    passed = []
    for folder in [chosen[0]] if chosen else default_dirs():
        dataset, why = open_folder(folder, release)
        if dataset:
            return dataset
        passed.append(why[0])
    if chosen:
        other = f"unset {ENV_VAR}" if chosen[1] == ENV_VAR else "leave out data_dir= / --data-dir"
        raise DataError(f"the data folder ({chosen[1]}): {why[0]}; {why[1]} (or {other} to search the usual folders)")
    if download:
        try:
            fetch_release(release, download_dir(release), urls=urls)
        except DataError as e:
            passed.append(str(e))
        else:  # every file of the release is there now, verified
            return load_dataset(download_dir(release), release)
    raise DataError(f"no folder holds Fashion-MNIST's {release} release whole ({'; '.join(passed)}); "
                    f"{FIX[release]}")


# ------------------------------------------------------------------------------------------ data iterators

class DataIter:
    """Re-iterable batches `(X, y)` of in-memory images as the book's DataLoader gives them (X float32 (B, 1, H, W),
    `ToTensor`'s values; y int32), each an asynchronous `take`: training never waits on Python between batches."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 shuffle: bool, resize: int | None = None, source: Source | None = None):
        # With resize, the book's Resize then ToTensor per batch, on the uint8 (N, H, W, 1) images
        self.images = nd.array(images[..., None], dtype="uint8") if resize else to_tensor(images)
        self.labels = nd.array(labels, dtype="int32")
        self.batch_size, self.shuffle, self.resize = batch_size, shuffle, resize
        self.source = source  # what train_ch3 labels its history with

    def __len__(self) -> int:
        return (self.labels.shape[0] + self.batch_size - 1) // self.batch_size

    def unshuffled(self) -> DataIter:
        """The same batches in order, on the same float32 images (not a second copy of them)."""
        twin = copy.copy(self)
        twin.shuffle = False
        return twin

    def __iter__(self) -> Iterator:
        n, b = self.labels.shape[0], self.batch_size
        # The shuffle draws from numpy's global generator, which `set_seed` seeds with MXNet's.
        order = nd.array(np.random.permutation(n) if self.shuffle else np.arange(n), dtype="int32")
        for i in range(0, n, b):
            X, y = self.images.take(order[i:i + b]), self.labels.take(order[i:i + b])
            if self.resize:
                X = nd.image.to_tensor(nd.image.resize(X, self.resize))
            yield X, y


def to_tensor(images: np.ndarray, chunk: int = 10000) -> nd.NDArray:
    """uint8 images (N, H, W) as one float32 NDArray (N, 1, H, W) in [0, 1], bit for bit what `ToTensor` gives."""
    # Once, not per batch (docs/performance.md). ToTensor computes float(x) / 255.0f, as numpy does in float32.
    # Chunks keep the temporaries small, each copied straight into a view of the result: `out[i:j] = array` would
    # first make an NDArray of it, whose memory MXNet's pool then keeps.
    n, h, w = images.shape
    out = nd.empty((n, 1, h, w), dtype="float32")
    for i in range(0, n, chunk):
        out[i:i + chunk]._sync_copyfrom((images[i:i + chunk].astype(np.float32) / np.float32(255))[:, None])
    return out


def load_data_fashion_mnist(batch_size: int, resize: int | None = None, root=None, loader: str = "memory",
                            data_release: str = DEFAULT_RELEASE, data_dir=None) -> tuple:
    """`(train_iter, test_iter)` over a verified release (`load_dataset`), training batches shuffled each epoch.
    loader='gluon': the book's DataLoader pipeline; `root` (the book's name) is `data_dir`; `source`: the data."""
    if root is not None and data_dir is not None:
        raise UserError("give the data folder as root= or as data_dir= (the same thing), not both")
    batch_size = whole(batch_size, "batch_size")  # bad arguments fail before any data is read
    one_of(loader, "loader", LOADERS)
    if resize is not None:
        resize = whole(resize, "resize")
    return data_iters(load_dataset(data_dir if root is None else root, data_release), batch_size, loader, resize=resize)


def data_iters(dataset: Dataset, batch_size: int, loader: str = "memory", train_size: int | None = None,
               test_size: int | None = None, resize: int | None = None) -> tuple:
    """`(train_iter, test_iter)` over the first `train_size` / `test_size` examples (None: all) of `dataset`."""
    train_images, train_labels, test_images, test_labels = dataset.arrays
    n, m = train_size, test_size
    make = DataIter if loader == "memory" else _book_loader
    return (make(train_images[:n], train_labels[:n], batch_size, True, resize, dataset.source),
            make(test_images[:m], test_labels[:m], batch_size, False, resize, dataset.source))


def _book_loader(images, labels, batch_size, shuffle, resize, source):
    # The book's data path, on the verified arrays (Gluon's FashionMNIST class would reject Debian's
    # re-gzipped files and try to download): samples (28, 28, 1) uint8 with int32 labels, as that class gives.
    gdata = gluon.data
    transformer = [gdata.vision.transforms.Resize(resize)] if resize else []
    transformer = gdata.vision.transforms.Compose(transformer + [gdata.vision.transforms.ToTensor()])
    dataset = gdata.ArrayDataset(nd.array(images[..., None], dtype="uint8"), labels.astype(np.int32))
    loader = gdata.DataLoader(dataset.transform_first(transformer), batch_size, shuffle=shuffle, num_workers=4)
    loader.source = source
    return loader


# ------------------------------------------------------------------------------- wrappers of an iterator

class ToContext:
    """Wraps a data iterator so that its batches arrive on `ctx` (a GPU), wherever the data lives."""

    def __init__(self, data_iter, ctx):
        self.data_iter, self.ctx = data_iter, ctx
        self.source = getattr(data_iter, "source", None)  # what train_ch3 labels its history with

    def __iter__(self):
        for X, y in self.data_iter:
            yield X.as_in_context(self.ctx), y.as_in_context(self.ctx)


class BatchProgress:
    """A tqdm bar over the batches of each pass through `data_iter` (only when stderr is a terminal)."""

    def __init__(self, data_iter, desc: str):
        self.data_iter, self.desc = data_iter, desc

    def __len__(self) -> int:
        return len(self.data_iter)

    def __iter__(self):
        from tqdm import tqdm

        with tqdm(total=len(self.data_iter), desc=self.desc, unit="batch", leave=False) as bar:
            for i, batch in enumerate(self.data_iter):
                yield batch
                # MXNet computes asynchronously: without an occasional wait the bar would fill at once,
                # then sit still while the queued work runs.
                if i % 10 == 9:
                    nd.waitall()
                bar.update(1)
