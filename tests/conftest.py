"""Shared fixtures: small IDX files written by the tests, and the real Fashion-MNIST (required in CI)."""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from dropout_gluon import data
from dropout_gluon import fashion_mnist as fm

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CHAPTER = SHARED / "chapter" / "dropout.md"
FIRST_RELEASE = SHARED / "data" / "first-release"
DEBIAN = "share/datasets/fashion-mnist"  # under `isolated_dirs`: where the search looks for Debian's copy


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes holding `array`."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> fm.FileSpec:
    """Write `array` as IDX (gzip if the name ends in .gz); return the spec a genuine copy must meet."""
    payload = idx_bytes(array)
    raw = gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload
    path.write_bytes(raw)
    return fm.FileSpec(array.shape, hashlib.sha256(payload).hexdigest(),
                         hashlib.sha1(raw).hexdigest(), hashlib.md5(raw).hexdigest())


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Point every place the loader searches at empty folders under tmp_path (Debian's: tmp_path / DEBIAN)."""
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet_home"))
    monkeypatch.setenv("XDG_DATA_DIRS", str(tmp_path / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


class Releases:
    """Two small synthetic releases of the four files (100 train, 30 test images each), as fashion_mnist.FILES.

    Like the real ones they share shapes and differ in content; the first release's image files verify
    only by their .gz SHA-1, as the real first release's do.
    """

    def __init__(self, monkeypatch):
        rng = np.random.default_rng(0)
        self.arrays = {release: {"train-images-idx3-ubyte": rng.integers(0, 256, (100, 28, 28)),
                                 "train-labels-idx1-ubyte": (np.arange(100) + shift) % 10,
                                 "t10k-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)),
                                 "t10k-labels-idx1-ubyte": (np.arange(30) + shift) % 10}
                       for release, shift in (("final", 0), ("first", 3))}
        files = {}
        for release, arrays in self.arrays.items():
            files[release] = {}
            for name, array in arrays.items():
                payload = idx_bytes(array)
                raw = self.gz(release, name)
                known = release == "final" or "labels" in name
                files[release][name] = fm.FileSpec(array.shape, hashlib.sha256(payload).hexdigest() if known
                                                     else None, hashlib.sha1(raw).hexdigest(),
                                                     hashlib.md5(raw).hexdigest())
        monkeypatch.setattr(fm, "FILES", files)
        fm.clear_cache()  # what was verified against the real table

    def gz(self, release: str, name: str) -> bytes:
        """The file as 'published': gzip with a fixed header, so its .gz hashes are fixed."""
        return gzip.compress(idx_bytes(self.arrays[release][name]), mtime=0)

    def put(self, folder: Path, release: str, names=fm.NAMES) -> Path:
        """Write `names` of `release` into `folder` as .gz files."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / (name + ".gz")).write_bytes(self.gz(release, name))
        return folder


@pytest.fixture
def releases(isolated_dirs, monkeypatch):
    """Two synthetic releases installed as the known ones, and every search folder empty."""
    return Releases(monkeypatch)


@pytest.fixture
def small_dataset(releases, isolated_dirs):
    """A folder holding the synthetic final release: `(folder, {name: array})`."""
    return releases.put(isolated_dirs / "small", "final"), releases.arrays["final"]


def required(what: str, error) -> None:
    """Skip a test whose real inputs are missing; in CI (`CI` set) fail instead: they must run there."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the tests that need {what}: {error}")
    pytest.skip(f"{what} not available: {error}")


@pytest.fixture(scope="session")
def real_dataset():
    """The real Fashion-MNIST, final release, as the default search finds it."""
    try:
        return data.load_dataset(download=False)
    except fm.DataError as e:
        required("the real Fashion-MNIST", e)


@pytest.fixture(scope="session")
def real_data(real_dataset):
    """The real Fashion-MNIST arrays: `(train_images, train_labels, test_images, test_labels)`."""
    return real_dataset.arrays


@pytest.fixture(scope="session")
def first_release_labels():
    """The folder with the real first release's two label files (shared/data/first-release)."""
    if not (FIRST_RELEASE / "t10k-labels-idx1-ubyte.gz").is_file():
        required("shared/data/first-release", f"{FIRST_RELEASE} is missing")
    return FIRST_RELEASE
