"""Shared fixtures: small IDX files written by the tests, and the real Fashion-MNIST (required in CI)."""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from dropout_gluon import data

CHAPTER = Path(__file__).resolve().parents[1].parent / "shared" / "chapter" / "dropout.md"


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes holding `array`."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> data.FileSpec:
    """Write `array` as IDX (gzip if the name ends in .gz); return the spec a genuine copy must meet."""
    payload = idx_bytes(array)
    raw = gzip.compress(payload) if path.suffix == ".gz" else payload
    path.write_bytes(raw)
    return data.FileSpec(array.shape, hashlib.sha256(payload).hexdigest(),
                         hashlib.sha1(raw).hexdigest(), hashlib.md5(raw).hexdigest())


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Point every place the loader searches at empty folders under tmp_path."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet_home"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path


@pytest.fixture
def small_dataset(isolated_dirs, monkeypatch):
    """A tiny Fashion-MNIST lookalike (100 train, 30 test images) that verifies as genuine."""
    rng = np.random.default_rng(0)
    folder = isolated_dirs / "small"
    folder.mkdir()
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (100, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(100) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(30) % 10}
    for name, array in arrays.items():
        monkeypatch.setitem(data.FILES, name, write_idx(folder / (name + ".gz"), array))
    return folder, arrays


@pytest.fixture(scope="session")
def real_data():
    """The real Fashion-MNIST arrays; skipped locally when missing, a failure in CI (it must run there)."""
    try:
        return data.load_arrays(download=False)
    except data.DataError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-data tests: {e}")
        pytest.skip(f"real Fashion-MNIST not available: {e}")
