"""The IDX reader, verification, the search order and the download path, on small files the tests write."""
from __future__ import annotations

import functools
import gzip
import http.server
import socket
import threading

import numpy as np
import pytest
from conftest import idx_bytes, write_idx
from mxnet import gluon, nd

from dropout_gluon import data

NAME = "t10k-labels-idx1-ubyte"


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path, suffix):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / ("x" + suffix), array)
    out = data.read_idx(tmp_path / ("x" + suffix))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_truncated_payload_names_file_and_sizes(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 4, 4)))[:-5]))
    with pytest.raises(data.DataError, match=r"x\.gz is truncated: 171 bytes .* expected 176"):
        data.read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 4, 4))))[:-20])
    with pytest.raises(data.DataError, match="truncated or damaged gzip"):
        data.read_idx(path)


def test_wrong_magic_number(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x0d\x01" + bytes(8))  # type code 0x0d = float, not bytes
    with pytest.raises(data.DataError, match="not an IDX file of bytes .*00000d01"):
        data.read_idx(path)


def test_header_longer_than_file(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x08\x03" + bytes(4))
    with pytest.raises(data.DataError, match="truncated inside its IDX header"):
        data.read_idx(path)


def test_verify_accepts_payload_hash_of_a_regzipped_copy(tmp_path):
    # Debian's copies differ from upstream only in the gzip header: the payload hash still matches.
    array = np.arange(50) % 10
    spec = write_idx(tmp_path / "a.gz", array)
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx_bytes(array), mtime=12345))
    assert (tmp_path / "a.gz").read_bytes() != (tmp_path / "b.gz").read_bytes()
    np.testing.assert_array_equal(data.verify(tmp_path / "b.gz", spec), array)


def test_verify_accepts_a_mirror_gz_hash(tmp_path):
    spec = write_idx(tmp_path / "a.gz", np.arange(50) % 10)
    np.testing.assert_array_equal(data.verify(tmp_path / "a.gz", spec._replace(payload_sha256="0" * 64)),
                                  np.arange(50) % 10)


def test_verify_rejects_wrong_hash_and_wrong_shape(tmp_path):
    spec = write_idx(tmp_path / "a.gz", np.arange(50) % 10)
    write_idx(tmp_path / "b.gz", np.arange(50) % 9)
    with pytest.raises(data.DataError, match=r"b\.gz does not match the published checksums.*apt-get install"):
        data.verify(tmp_path / "b.gz", spec)
    write_idx(tmp_path / "c.gz", np.arange(40) % 10)
    with pytest.raises(data.DataError, match=r"shape \(40,\), expected \(50,\)"):
        data.verify(tmp_path / "c.gz", spec)


def test_real_checksums_reject_a_lookalike(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros(10000))
    with pytest.raises(data.DataError, match="does not match"):
        data.verify(tmp_path / "x.gz", data.FILES[NAME])


# -------------------------------------------------------------------------------------------- search order

def _put(folder, array, monkeypatch, name=NAME, suffix=".gz"):
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setitem(data.FILES, name, write_idx(folder / (name + suffix), array))


def test_search_order_root_env_mxnet_debian(isolated_dirs, monkeypatch):
    array = np.arange(20) % 10
    dirs = {k: isolated_dirs / k for k in ("root", "env", "mxnet_home/datasets/fashion-mnist", "debian")}
    for folder in dirs.values():
        _put(folder, array, monkeypatch)
    monkeypatch.setenv(data.ENV_VAR, str(dirs["env"]))
    assert data.find_file(NAME, dirs["root"])[0].parent == dirs["root"]
    assert data.find_file(NAME)[0].parent == dirs["env"]
    monkeypatch.delenv(data.ENV_VAR)
    assert data.find_file(NAME)[0].parent == dirs["mxnet_home/datasets/fashion-mnist"]
    (dirs["mxnet_home/datasets/fashion-mnist"] / (NAME + ".gz")).unlink()
    assert data.find_file(NAME)[0].parent == dirs["debian"]


def test_uncompressed_copy_is_found(isolated_dirs, monkeypatch):
    _put(isolated_dirs / "debian", np.arange(20) % 10, monkeypatch, suffix="")
    path, array = data.find_file(NAME, download=False)
    assert path.name == NAME and array.shape == (20,)


def test_corrupt_copy_is_passed_over_for_a_good_one(isolated_dirs, monkeypatch):
    _put(isolated_dirs / "debian", np.arange(20) % 10, monkeypatch)
    (isolated_dirs / "root").mkdir()
    (isolated_dirs / "root" / (NAME + ".gz")).write_bytes(b"\x1f\x8bgarbage")
    assert data.find_file(NAME, isolated_dirs / "root", download=False)[0].parent == isolated_dirs / "debian"


def test_missing_everywhere_says_where_and_how(isolated_dirs):
    with pytest.raises(data.DataError) as e:
        data.find_file(NAME, download=False)
    message = str(e.value)
    assert "\n" not in message and NAME in message
    assert str(isolated_dirs / "debian") in message and "apt-get install dataset-fashion-mnist" in message
    assert data.ENV_VAR in message


def test_replaced_file_is_verified_again(isolated_dirs, monkeypatch):
    folder = isolated_dirs / "debian"
    _put(folder, np.arange(20) % 10, monkeypatch)
    data.find_file(NAME, download=False)
    (folder / (NAME + ".gz")).write_bytes(gzip.compress(idx_bytes(np.arange(20) % 7)))
    with pytest.raises(data.DataError, match="does not match"):
        data.find_file(NAME, download=False)


# ------------------------------------------------------------------------------------ download, for real

@pytest.fixture
def http_server(tmp_path):
    """A static file server on 127.0.0.1 serving tmp_path/'served'; yields (base_url, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no request log on stderr
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()
    server.server_close()


def _served_spec(folder):
    return write_idx(folder / (NAME + ".gz"), np.arange(20) % 10)


def _leftovers(dest):
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_download_good_file(http_server, tmp_path):
    url, folder = http_server
    spec = _served_spec(folder)
    dest = tmp_path / "dest"
    path = data.fetch(NAME, dest, files={NAME: spec}, urls=[url], backoff=0)
    assert path == dest / (NAME + ".gz") and _leftovers(dest) == [NAME + ".gz"]
    np.testing.assert_array_equal(data.verify(path, spec), np.arange(20) % 10)


def test_download_corrupt_file_leaves_nothing(http_server, tmp_path):
    url, folder = http_server
    spec = _served_spec(folder)
    raw = bytearray((folder / (NAME + ".gz")).read_bytes())
    raw[-12] ^= 0xFF  # one flipped byte inside the compressed data
    (folder / (NAME + ".gz")).write_bytes(bytes(raw))
    dest = tmp_path / "dest"
    with pytest.raises(data.DataError, match=f"could not download {NAME}.*after 2 tries"):
        data.fetch(NAME, dest, files={NAME: spec}, urls=[url], retries=2, backoff=0)
    assert _leftovers(dest) == []


def test_download_from_dead_server(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(data.DataError, match=f"could not download {NAME}.*refused"):
        data.fetch(NAME, tmp_path / "dest", urls=[f"http://127.0.0.1:{port}/"], retries=2, backoff=0)
    assert _leftovers(tmp_path / "dest") == []


def test_find_file_downloads_into_mxnet_dir_replacing_a_corrupt_copy(http_server, isolated_dirs, monkeypatch):
    url, folder = http_server
    monkeypatch.setitem(data.FILES, NAME, _served_spec(folder))
    mx_dir = data.mxnet_dir()
    mx_dir.mkdir(parents=True)
    (mx_dir / (NAME + ".gz")).write_bytes(b"left by an interrupted download")
    path, array = data.find_file(NAME, urls=[url])
    assert path == mx_dir / (NAME + ".gz") and array.shape == (20,)
    assert _leftovers(mx_dir) == [NAME + ".gz"]


# ------------------------------------------------------------------------------------------- the iterators

def test_iterators_behave_like_the_books(small_dataset):
    folder, arrays = small_dataset
    train_iter, test_iter = data.load_data_fashion_mnist(32, root=folder)
    assert len(train_iter) == 4 and len(test_iter) == 1
    batches = list(train_iter)
    assert [X.shape for X, _ in batches] == [(32, 1, 28, 28)] * 3 + [(4, 1, 28, 28)]
    X, y = batches[0]
    assert X.dtype == np.float32 and y.dtype == np.int32
    assert 0 <= X.min().asscalar() and X.max().asscalar() <= 1
    # Every image once per epoch, with its own label, exactly as ToTensor converts it.
    images, labels = arrays["train-images-idx3-ubyte"].astype(np.uint8), arrays["train-labels-idx1-ubyte"]
    index = {img.tobytes(): i for i, img in enumerate(images)}
    to_tensor = gluon.data.vision.transforms.ToTensor()
    seen = []
    for X, y in batches:
        for x, label in zip(X.asnumpy(), y.asnumpy()):
            i = index[(x[0] * 255).round().astype(np.uint8).tobytes()]
            assert label == labels[i]
            np.testing.assert_array_equal(x, to_tensor(nd.array(images[i][:, :, None], dtype="uint8")).asnumpy())
            seen.append(i)
    assert sorted(seen) == list(range(100))
    # Shuffled anew each epoch; the test set keeps its order.
    order = [y.asnumpy().tolist() for _, y in batches]
    assert order != [y.asnumpy().tolist() for _, y in train_iter]
    test_labels = np.concatenate([y.asnumpy() for _, y in test_iter])
    np.testing.assert_array_equal(test_labels, arrays["t10k-labels-idx1-ubyte"])


def test_resize(small_dataset):
    train_iter, _ = data.load_data_fashion_mnist(16, resize=32, root=small_dataset[0])
    X, _ = next(iter(train_iter))
    assert X.shape == (16, 1, 32, 32) and X.dtype == np.float32


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
    ({"batch_size": 2.5}, "batch_size must be a whole number"),
    ({"batch_size": 8, "resize": -1}, "resize must be None or"),
    ({"batch_size": 8, "loader": "fast"}, "loader must be 'memory' or 'gluon', got 'fast'"),
])
def test_bad_loader_arguments(small_dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_data_fashion_mnist(root=small_dataset[0], **kwargs)
