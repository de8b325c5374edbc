"""Fashion-MNIST: find the files, verify them, read them, and batch them like the book's loader."""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
from mxnet import gluon, nd

from .persist import atomic_write

ENV_VAR = "DROPOUT_GLUON_DATA"  # a folder holding the four files (.gz or raw IDX)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian/Ubuntu: apt-get install dataset-fashion-mnist
HOW_TO_FIX = (f"install the verified copy with 'apt-get install dataset-fashion-mnist', "
              f"or set {ENV_VAR} to a folder holding the four Fashion-MNIST files")

TEXT_LABELS = ["t-shirt", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle boot"]


class FileSpec(NamedTuple):
    """What a genuine copy of one file looks like (shared/data/fashion-mnist-checksums.txt)."""
    shape: tuple          # dimensions in the IDX header
    payload_sha256: str   # of the decompressed IDX bytes: how Debian's re-gzipped copies verify
    gz_sha1: str          # of the .gz on Gluon's mirror
    gz_md5: str           # of the .gz published by Zalando Research


FILES = {
    "train-images-idx3-ubyte": FileSpec(
        (60000, 28, 28), "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "0cf37b0d40ed5169c6b3aba31069a9770ac9043d", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte": FileSpec(
        (60000,), "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "236021d52f1e40852b06a4c3008d8de8aef1e40b", "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte": FileSpec(
        (10000, 28, 28), "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "626ed6a7c06dd17c0eec72fa3be1740f146a2863", "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte": FileSpec(
        (10000,), "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "17f9ab60e7257a1620f4ad76bbbaf857c3920701", "bb300cfdad3c16e7a12a480ee83cd310"),
}


def mirrors() -> list:
    """Download locations, most likely first: Gluon's repository (honours MXNET_GLUON_REPO), then Zalando's."""
    repo = os.environ.get("MXNET_GLUON_REPO", "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/")
    return [repo.rstrip("/") + "/gluon/dataset/fashion-mnist/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]


class DataError(Exception):
    """Missing, unreadable or corrupt data; the message says which file, what was wrong and what to do."""


# ---------------------------------------------------------------------------------------------- IDX files

def read_idx(path: os.PathLike | str) -> np.ndarray:
    """Read an IDX file of unsigned bytes (.gz or raw), checking its magic number and length."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    return _parse_idx(path, _payload(path, raw))


def _payload(path: Path, raw: bytes) -> bytes:
    if raw[:2] != b"\x1f\x8b":  # not gzip: take it as raw IDX bytes
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path} is a truncated or damaged gzip file ({e}); delete it and {HOW_TO_FIX}") from None


def _parse_idx(path: Path, payload: bytes) -> np.ndarray:
    # Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
    # big-endian uint32 per dimension.
    if len(payload) < 4 or payload[:3] != b"\x00\x00\x08" or not 1 <= payload[3] <= 4:
        raise DataError(f"{path} is not an IDX file of bytes (magic number {payload[:4].hex() or 'missing'}, "
                        f"expected 0000080N); {HOW_TO_FIX}")
    ndim = payload[3]
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{path} is truncated inside its IDX header; delete it and {HOW_TO_FIX}")
    shape = tuple(int(d) for d in np.frombuffer(payload, ">u4", ndim, 4))
    expected = header + int(np.prod(shape))
    if len(payload) != expected:
        what = "truncated" if len(payload) < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: {len(payload)} bytes of IDX data, expected {expected} "
                        f"for shape {shape}; delete it and {HOW_TO_FIX}")
    return np.frombuffer(payload, np.uint8, offset=header).reshape(shape)


def verify(path: os.PathLike | str, spec: FileSpec) -> np.ndarray:
    """Read a file and check it is the genuine one: dimensions, then payload SHA-256 or a mirror's .gz hash."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    payload = _payload(path, raw)
    array = _parse_idx(path, payload)
    if array.shape != tuple(spec.shape):
        raise DataError(f"{path} has shape {array.shape}, expected {tuple(spec.shape)}: is it the right file? "
                        f"{HOW_TO_FIX}")
    if (hashlib.sha256(payload).hexdigest() != spec.payload_sha256
            and hashlib.sha1(raw).hexdigest() != spec.gz_sha1
            and hashlib.md5(raw).hexdigest() != spec.gz_md5):
        raise DataError(f"{path} does not match the published checksums (a damaged or different file); "
                        f"delete it and {HOW_TO_FIX}")
    array.setflags(write=False)  # shared by the cache below: nobody may change it in place
    return array


@functools.lru_cache(maxsize=8)
def _verified(path: str, size: int, mtime_ns: int, spec: FileSpec) -> np.ndarray:
    # Keyed by size and mtime, so a file replaced on disk is read and verified again.
    return verify(path, spec)


def load_verified(path: Path, spec: FileSpec) -> np.ndarray:
    """`verify`, remembered for the life of the process (hashing 47 MB on every call costs ~0.3 s)."""
    st = path.stat()
    return _verified(str(path), st.st_size, st.st_mtime_ns, spec)


# ------------------------------------------------------------------------------------- finding the files

def mxnet_dir() -> Path:
    """Where Gluon keeps Fashion-MNIST: $MXNET_HOME/datasets/fashion-mnist (default ~/.mxnet/...)."""
    home = os.environ.get("MXNET_HOME") or os.path.join(os.path.expanduser("~"), ".mxnet")
    return Path(home) / "datasets" / "fashion-mnist"


def search_dirs(root: os.PathLike | str | None = None) -> list:
    """The folders searched, in order: `root`, $DROPOUT_GLUON_DATA, MXNet's folder, Debian's folder."""
    dirs = [Path(root).expanduser()] if root is not None else []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs += [mxnet_dir(), DEBIAN_DIR]
    return list(dict.fromkeys(dirs))  # drop repeats, keep the order


def find_file(name: str, root=None, *, files: dict = FILES, download: bool = True,
              urls: Sequence[str] | None = None) -> tuple:
    """Return `(path, array)` for the first verified copy of `name`; download into MXNet's folder if none.

    A copy that is present but fails verification is passed over (and named in the error if nothing
    verifies); a download replaces it atomically.
    """
    spec = files[name]
    problems = []
    for folder in search_dirs(root):
        for path in (folder / (name + ".gz"), folder / name):
            if path.is_file():
                try:
                    return path, load_verified(path, spec)
                except DataError as e:
                    problems.append(str(e).split(";")[0])
    if download:
        try:
            path = fetch(name, mxnet_dir(), files=files, urls=urls)
            return path, load_verified(path, spec)
        except DataError as e:
            problems.append(str(e).split(";")[0])
    where = ", ".join(str(d) for d in search_dirs(root))
    found = ("; ".join(problems) + "; ") if problems else ""
    raise DataError(f"Fashion-MNIST file {name} not found or not valid (searched {where}): {found}{HOW_TO_FIX}")


def fetch(name: str, dest: Path, *, files: dict = FILES, urls: Sequence[str] | None = None,
          retries: int = 3, backoff: float = 1.0, timeout: float = 30.0) -> Path:
    """Download `name`.gz into `dest`, verified before it gets its final name (never a corrupt file there)."""
    spec = files[name]
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {dest} to download {name}: {e.strerror}; {HOW_TO_FIX}") from None
    final = dest / (name + ".gz")
    errors = []
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        for base in urls if urls is not None else mirrors():
            url = base + name + ".gz"
            try:
                return atomic_write(final, lambda tmp, url=url: _download(url, tmp, spec, timeout))
            except (OSError, urllib.error.URLError, DataError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
    last = f"{errors[-1]}, after {retries} tries" if errors else "no mirror to download from"
    raise DataError(f"could not download {name} ({last}); {HOW_TO_FIX}")


def _download(url: str, tmp: str, spec: FileSpec, timeout: float) -> None:
    # Into a temp file that `atomic_write` renames only if this returns: a failed check leaves nothing.
    from tqdm import tqdm

    with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        print(f"downloading {url}", file=sys.stderr)
        size = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=size, unit="B", unit_scale=True, leave=False, disable=not sys.stderr.isatty()) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    try:
        verify(tmp, spec)
    except DataError as e:
        raise DataError(str(e).replace(tmp, "the downloaded file")) from None


def load_arrays(root=None, *, download: bool = True) -> tuple:
    """Verified `(train_images, train_labels, test_images, test_labels)` as uint8 arrays, images (N, 28, 28)."""
    return tuple(find_file(name, root, download=download)[1] for name in
                 ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


# ------------------------------------------------------------------------------------------ data iterators

class DataIter:
    """Batches `(X, y)` of in-memory images, re-iterable, like a Gluon DataLoader over the book's transforms.

    X is float32 in [0, 1] shaped (B, 1, H, W), exactly what `ToTensor` gives; y is int32. The images are
    converted once, into one float32 NDArray, and each batch is gathered from it by an asynchronous `take`,
    so the training loop never waits on Python between batches.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 shuffle: bool, resize: int | None = None):
        if resize:  # Resize works on the uint8 (N, H, W, 1) images, then ToTensor, per batch as the book does
            self.images = nd.array(images[..., None], dtype="uint8")
        else:
            self.images = to_tensor(images)
        self.labels = nd.array(labels, dtype="int32")
        self.batch_size, self.shuffle, self.resize = batch_size, shuffle, resize

    def __len__(self) -> int:
        return (self.labels.shape[0] + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator:
        n, b = self.labels.shape[0], self.batch_size
        # The shuffle draws from numpy's global generator, which `set_seed` seeds with MXNet's.
        order = nd.array(np.random.permutation(n), dtype="int32") if self.shuffle else None
        for i in range(0, n, b):
            if order is None:
                X, y = self.images[i:i + b], self.labels[i:i + b]
            else:
                idx = order[i:i + b]
                X, y = self.images.take(idx), self.labels.take(idx)
            if self.resize:
                X = nd.image.to_tensor(nd.image.resize(X, self.resize))
            yield X, y


def to_tensor(images: np.ndarray, chunk: int = 10000) -> nd.NDArray:
    """uint8 images (N, H, W) as one float32 NDArray (N, 1, H, W) in [0, 1], bit for bit what `ToTensor` gives."""
    # Converting once instead of per batch makes an epoch ~0.2 s faster (nd.image.to_tensor costs ~0.6 ms a
    # batch, a take from float32 ~0.08 ms). ToTensor computes float(x) / 255.0f: so does numpy in float32.
    # Chunks keep the float32 temporaries small. Each is copied straight into a view of the result:
    # `out[i:j] = array` would first make an NDArray of it, whose memory MXNet's pool then keeps (~150 MB).
    n, h, w = images.shape
    out = nd.empty((n, 1, h, w), dtype="float32")
    for i in range(0, n, chunk):
        out[i:i + chunk]._sync_copyfrom((images[i:i + chunk].astype(np.float32) / np.float32(255))[:, None])
    return out


def load_data_fashion_mnist(batch_size: int, resize: int | None = None, root=None,
                            loader: str = "memory") -> tuple:
    """Return `(train_iter, test_iter)` over verified Fashion-MNIST; training batches are shuffled each epoch.

    loader='memory' (default) batches in-memory arrays; loader='gluon' is the book's pipeline (a Gluon
    DataLoader with per-sample transforms and 4 worker processes), kept to compare against.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if resize is not None and (not isinstance(resize, int) or resize < 1):
        raise ValueError(f"resize must be None or a whole number >= 1, got {resize!r}")
    train_images, train_labels, test_images, test_labels = load_arrays(root)
    if loader == "memory":
        return (DataIter(train_images, train_labels, batch_size, shuffle=True, resize=resize),
                DataIter(test_images, test_labels, batch_size, shuffle=False, resize=resize))
    if loader == "gluon":
        return (_book_loader(train_images, train_labels, batch_size, True, resize),
                _book_loader(test_images, test_labels, batch_size, False, resize))
    raise ValueError(f"loader must be 'memory' or 'gluon', got {loader!r}")


def _book_loader(images, labels, batch_size, shuffle, resize):
    # The book's data path, on the verified arrays (Gluon's FashionMNIST class would reject Debian's
    # re-gzipped files and try to download): samples (28, 28, 1) uint8 with int32 labels, as that class gives.
    gdata = gluon.data
    transformer = [gdata.vision.transforms.Resize(resize)] if resize else []
    transformer = gdata.vision.transforms.Compose(transformer + [gdata.vision.transforms.ToTensor()])
    dataset = gdata.ArrayDataset(nd.array(images[..., None], dtype="uint8"), labels.astype(np.int32))
    num_workers = 0 if sys.platform.startswith("win") else 4
    return gdata.DataLoader(dataset.transform_first(transformer), batch_size, shuffle=shuffle,
                            num_workers=num_workers)
