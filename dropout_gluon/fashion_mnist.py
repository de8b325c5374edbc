"""Fashion-MNIST, the data set: its two releases, their files and hashes, and which release a file is.

Published twice, the releases are different data (docs/data.md): the *first* (2017-08-26), which Gluon's mirror
serves and every published run of the book used, and the *final* (2017-08-31), which Zalando, torchvision, Keras
and Debian ship. So a data set is four files of one release from one folder (`open_folder`), never mixed."""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import UserError

ENV_VAR = "DROPOUT_GLUON_DATA"  # a folder holding the four files (.gz or raw IDX) of one release
RELEASES = {"final": "2017-08-31", "first": "2017-08-26"}
DEFAULT_RELEASE = "final"  # available offline everywhere, and what every other library ships
NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FIX = {  # what to do when a release cannot be found
    "final": f"install it with 'apt-get install dataset-fashion-mnist', or set {ENV_VAR} to a folder "
             f"holding the final release's four files",
    "first": f"download it with 'dropout-gluon data fetch --data-release first' where Gluon's mirror is "
             f"reachable, or set {ENV_VAR} to a folder holding the first release's four files",
}

TEXT_LABELS = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


class FileSpec(NamedTuple):
    """What a genuine copy of one file of one release looks like (None: not known)."""
    shape: tuple                 # dimensions in the IDX header
    payload_sha256: str | None   # of the decompressed IDX bytes: how Debian's re-gzipped copies verify
    gz_sha1: str | None          # of the .gz as published (Gluon's mirror lists these)
    gz_md5: str | None           # of the .gz as published by Zalando Research


_TRAIN, _TEST = (60000, 28, 28), (10000, 28, 28)
FILES = {  # release -> file -> spec, from shared/data/fashion-mnist-checksums.txt
    "final": {
        "train-images-idx3-ubyte": FileSpec(
            _TRAIN, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            None, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte": FileSpec(
            _TRAIN[:1], "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "09814cfef5a041118ceace42f8dae995319d331a", "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte": FileSpec(
            _TEST, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            None, "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte": FileSpec(
            _TEST[:1], "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            "9caad14e1aff9adac77d3744963212d36af15bee", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    "first": {  # its image files' payload hashes are not known here: they verify by the .gz SHA-1
        "train-images-idx3-ubyte": FileSpec(_TRAIN, None, "0cf37b0d40ed5169c6b3aba31069a9770ac9043d", None),
        "train-labels-idx1-ubyte": FileSpec(
            _TRAIN[:1], "c7673bb30764062aa9ddeaf6184d7043075ded6a31aee7d16f38402434ad395d",
            "236021d52f1e40852b06a4c3008d8de8aef1e40b", "c25fcebcfee76fc70679a885c08e7783"),
        "t10k-images-idx3-ubyte": FileSpec(_TEST, None, "626ed6a7c06dd17c0eec72fa3be1740f146a2863", None),
        "t10k-labels-idx1-ubyte": FileSpec(
            _TEST[:1], "0106d6dfb86a77b9299271c292262daad9001d5a44d251a3880227436b8ce3b1",
            "17f9ab60e7257a1620f4ad76bbbaf857c3920701", "db06173b3df7891d78edf9cae5fe8f8a"),
    },
}


class DataError(UserError):
    """Missing, unreadable, corrupt or mixed data; the message says which folder or file, what and what to do."""


class Source(NamedTuple):
    """What a run trained and tested on: a release of Fashion-MNIST and the folder its four files came from."""
    data_release: str
    data_dir: str

    def __str__(self) -> str:
        return f"Fashion-MNIST {self.data_release} release ({RELEASES[self.data_release]}), {self.data_dir}"


class Dataset(NamedTuple):
    """A verified set: `arrays` is `(train_images, train_labels, test_images, test_labels)`, uint8."""
    source: Source
    arrays: tuple


# ---------------------------------------------------------------------------------------------- IDX files

def read_idx(path: os.PathLike | str) -> tuple:
    """`(the file's bytes, its IDX payload, the array)` of an IDX file of unsigned bytes (.gz or raw), its magic
    number and length checked; a DataError saying what is wrong with the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    try:
        payload = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw  # not gzip: taken as raw IDX bytes
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path} is a truncated or damaged gzip file ({e})") from None
    # Header: two zero bytes, a type code (0x08: unsigned byte), the number of dimensions, a big-endian uint32 each.
    if len(payload) < 4 or payload[:3] != b"\x00\x00\x08" or not 1 <= payload[3] <= 4:
        raise DataError(f"{path} is not an IDX file of bytes (magic number {payload[:4].hex() or 'missing'}, "
                        f"expected 0000080N)")
    ndim = payload[3]
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{path} is truncated inside its IDX header")
    shape = tuple(int(d) for d in np.frombuffer(payload, ">u4", ndim, 4))
    expected = header + int(np.prod(shape))
    if len(payload) != expected:
        what = "truncated" if len(payload) < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: {len(payload)} bytes of IDX data, expected {expected} "
                        f"for shape {shape}")
    return raw, payload, np.frombuffer(payload, np.uint8, offset=header).reshape(shape)


def verify(path: os.PathLike | str, name: str) -> tuple:
    """`(release, array, the checksum that matched)` of a genuine copy of file `name`, hashed anew; else a DataError."""
    path = Path(path)
    raw, payload, array = read_idx(path)
    shape = FILES[DEFAULT_RELEASE][name].shape  # each file's is the same in both releases
    if array.shape != shape:
        raise DataError(f"{path} has shape {array.shape}, expected {shape}: is it {name}?")
    # The payload first: its hash is how Debian's re-gzipped copies verify.
    for how, field, digest in (("payload SHA-256", "payload_sha256", hashlib.sha256(payload).hexdigest()),
                               (".gz SHA-1", "gz_sha1", hashlib.sha1(raw).hexdigest()),
                               (".gz MD5", "gz_md5", hashlib.md5(raw).hexdigest())):
        for release, files in FILES.items():
            if getattr(files[name], field) == digest:
                array.setflags(write=False)  # shared by the cache below: nobody may change it in place
                return release, array, f"{how} {digest}"
    raise DataError(f"{path} matches no release's published checksums (a damaged or different file)")


@functools.lru_cache(maxsize=16)
def _verified(path: Path, size: int, mtime_ns: int, name: str) -> tuple:
    # For the process's life (each caller would hash 55 MB again), by size and mtime: a replaced file is verified anew.
    return verify(path, name)


# ------------------------------------------------------------------------------- folders and releases

class Found(NamedTuple):
    """One of the four files in a folder: its path (None if missing), and its release or what is wrong."""
    path: Path | None
    release: str | None
    problem: str | None
    array: np.ndarray | None


def scan(folder: Path) -> dict:
    """`{name: Found}` for the four files in `folder` (the .gz where both it and the raw file are there)."""
    try:
        present = set(os.listdir(folder)) if folder.is_dir() else set()
    except OSError as e:
        raise DataError(f"cannot read {folder}: {e.strerror}") from None
    found = {}
    for name in NAMES:
        path = next((folder / n for n in (name + ".gz", name) if n in present), None)
        if path is None:
            found[name] = Found(None, None, "missing", None)
            continue
        try:
            st = path.stat()
            release, array, _ = _verified(path, st.st_size, st.st_mtime_ns, name)
            found[name] = Found(path, release, None, array)
        except OSError as e:
            found[name] = Found(path, None, f"cannot read {path}: {e.strerror}", None)
        except DataError as e:
            found[name] = Found(path, None, str(e), None)
    return found


def open_folder(folder: Path, release: str) -> tuple:
    """`(Dataset, None)` if `folder` holds `release` whole, else `(None, (what is wrong, what to do))`."""
    try:
        found = scan(folder)
    except DataError as e:
        return None, (str(e), FIX[release])
    held = {}  # release -> the files of it that verify
    for name, f in found.items():
        if f.release:
            held.setdefault(f.release, []).append(name)
    broken = [f.problem for f in found.values() if f.path is not None and f.release is None]
    missing = [name for name, f in found.items() if f.path is None]
    other = next(iter(held), None)
    if not folder.is_dir():
        why = f"{folder} {'is not a folder' if folder.exists() else 'does not exist'}", FIX[release]
    elif len(held) > 1:
        parts = "; ".join(f"{r} release: {', '.join(names)}" for r, names in held.items())
        why = (f"{folder} mixes files of two releases ({parts}), which are different data",
               "keep each release's four files in a folder of their own")
    elif broken:
        why = broken[0], f"replace it with a genuine copy, or {FIX[release]}"
    elif len(missing) == len(NAMES):
        why = f"{folder} holds none of the four files", FIX[release]
    elif missing:
        why = (f"{folder} is incomplete: no {', '.join(missing)} (it holds the {other} release's "
               f"{', '.join(held[other])})", FIX[release])
    elif other != release:
        why = (f"{folder} holds the {other} release ({RELEASES[other]}), not the {release} release asked for",
               f"pass data_release='{other}' (--data-release {other}) to use it, or {FIX[release]}")
    else:
        return Dataset(Source(release, str(folder)), tuple(found[name].array for name in NAMES)), None
    return None, why


def clear_cache() -> None:
    """Let go of the arrays verified so far in this process (a long-lived worker, between sweeps)."""
    _verified.cache_clear()
