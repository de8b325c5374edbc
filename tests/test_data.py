"""The data layer, on small files the tests write (two synthetic releases) and the real first-release labels:

- the IDX reader (gzip and raw, truncated, wrong magic, short header);
- which release a file is: by payload SHA-256 (re-gzipped copies) or the published .gz hashes;
- a data set is four files of one release from one folder: complete, partial, mixed, corrupt and
  other-release folders, chosen (strict, one-line errors) or found by the default search, in its order
  (Debian's folder through $XDG_DATA_DIRS);
- downloads: each release from its own mirror, into its own folder, only what is missing; a corrupt file,
  the wrong release or a dead server leave nothing (an HTTP server on 127.0.0.1); with no copy anywhere, the
  final release from its published URLs (a proxy standing in for Zalando's mirror, serving its real files)
  into the host's cache, once, each file announced on stderr, with a bar in a Jupyter kernel; two processes
  downloading into one folder at once both succeed;
- the iterators against the book's `ToTensor`; a sweep worker's one float32 copy of the images; every
  history names the release it came from;
- `data verify` hashes every file again, `data fetch` downloads into the folder chosen and never into a
  folder of the other release; `root=` and `data_dir=` in the book's function; read errors are read errors.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import types
from pathlib import Path

import mirror
import numpy as np
import pytest
from conftest import DEBIAN, idx_bytes, required, write_idx
from mxnet import gluon, nd

from dropout_gluon import data, download, numerics, run
from dropout_gluon import fashion_mnist as fm
from dropout_gluon.persist import save_history

NAME = "t10k-labels-idx1-ubyte"
ZALANDO = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # where Zalando publishes the final release


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path, suffix):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / ("x" + suffix), array)
    out = fm.read_idx(tmp_path / ("x" + suffix))[2]
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_truncated_payload_names_file_and_sizes(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 4, 4)))[:-5]))
    with pytest.raises(fm.DataError, match=r"x\.gz is truncated: 171 bytes .* expected 176"):
        fm.read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 4, 4))))[:-20])
    with pytest.raises(fm.DataError, match="truncated or damaged gzip"):
        fm.read_idx(path)


def test_wrong_magic_number(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x0d\x01" + bytes(8))  # type code 0x0d = float, not bytes
    with pytest.raises(fm.DataError, match="not an IDX file of bytes .*00000d01"):
        fm.read_idx(path)


def test_header_longer_than_file(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x08\x03" + bytes(4))
    with pytest.raises(fm.DataError, match="truncated inside its IDX header"):
        fm.read_idx(path)


# ------------------------------------------------------------------------------------ which release a file is

@pytest.mark.parametrize("release", ["final", "first"])
@pytest.mark.parametrize("name", fm.NAMES)
def test_verify_names_each_files_release(releases, tmp_path, release, name):
    path = tmp_path / (name + ".gz")
    path.write_bytes(releases.gz(release, name))
    got, array, _ = fm.verify(path, name)
    assert got == release
    np.testing.assert_array_equal(array, releases.arrays[release][name])
    assert not array.flags.writeable  # shared by the cache: nobody may change it in place


def test_a_regzipped_copy_verifies_by_its_payload(releases, tmp_path):
    # Debian's copies differ from upstream only in the gzip header: the payload hash still matches.
    name = "t10k-images-idx3-ubyte"
    payload = gzip.decompress(releases.gz("final", name))
    (tmp_path / "a.gz").write_bytes(gzip.compress(payload, mtime=12345))
    (tmp_path / "b").write_bytes(payload)  # and uncompressed
    assert (tmp_path / "a.gz").read_bytes() != releases.gz("final", name)
    assert fm.verify(tmp_path / "a.gz", name)[0] == fm.verify(tmp_path / "b", name)[0] == "final"
    # The first release's images are known only by their .gz hashes: a re-gzipped copy cannot be verified.
    (tmp_path / "c.gz").write_bytes(gzip.compress(gzip.decompress(releases.gz("first", name)), mtime=12345))
    with pytest.raises(fm.DataError, match=r"c\.gz matches no release's published checksums"):
        fm.verify(tmp_path / "c.gz", name)


def test_verify_rejects_wrong_content_and_wrong_shape(releases, tmp_path):
    write_idx(tmp_path / "b.gz", np.arange(30) % 9)
    with pytest.raises(fm.DataError, match=r"b\.gz matches no release's published checksums"):
        fm.verify(tmp_path / "b.gz", NAME)
    write_idx(tmp_path / "c.gz", np.arange(40) % 10)
    with pytest.raises(fm.DataError, match=r"shape \(40,\), expected \(30,\): is it t10k-labels"):
        fm.verify(tmp_path / "c.gz", NAME)


def test_real_checksums_reject_a_lookalike(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros(10000))
    with pytest.raises(fm.DataError, match="matches no release"):
        fm.verify(tmp_path / "x.gz", NAME)


def test_the_real_first_release_labels_are_identified_as_such(first_release_labels, tmp_path):
    # The real files (shared/data/first-release) against the package's own table of hashes: by their .gz
    # SHA-1s (the ones Gluon checks), and re-gzipped, as Debian would ship them, by their payload SHA-256s.
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        release, labels, _ = fm.verify(first_release_labels / (name + ".gz"), name)
        assert release == "first" and labels.shape == fm.FILES["first"][name].shape
        assert np.bincount(labels).tolist() == [len(labels) // 10] * 10
        regzipped = tmp_path / (name + ".gz")
        regzipped.write_bytes(gzip.compress(gzip.decompress((first_release_labels / (name + ".gz")).read_bytes()),
                                            mtime=1))
        assert fm.verify(regzipped, name)[0] == "first"
    test_labels = fm.verify(first_release_labels / (NAME + ".gz"), NAME)[1]
    assert test_labels[:10].tolist() == [0, 1, 2, 2, 3, 2, 8, 6, 5, 0]  # the final release's: 9 2 1 1 6 1 4 6 5 7


# -------------------------------------------------------------------------------- a data set is one release

def test_a_complete_folder_gives_its_release(releases, isolated_dirs):
    for release in ("final", "first"):
        folder = releases.put(isolated_dirs / release, release)
        dataset = data.load_dataset(folder, release)
        assert dataset.source == fm.Source(release, str(folder))
        for name, array in zip(fm.NAMES, dataset.arrays):
            np.testing.assert_array_equal(array, releases.arrays[release][name])


def test_default_search_order_mxnet_debian_then_downloads(releases, isolated_dirs):
    mx_dir, final_dir = data.mxnet_dir(), data.download_dir("final")
    assert final_dir == isolated_dirs / "cache" / "dropout-gluon" / "fashion-mnist-final"  # $XDG_CACHE_HOME's
    assert data.default_dirs() == [mx_dir, isolated_dirs / DEBIAN, final_dir]
    assert data.download_dir("first") == mx_dir  # where Gluon keeps the same files
    for folder in data.default_dirs():
        releases.put(folder, "final")
    assert data.load_dataset(download=False).source.data_dir == str(mx_dir)
    shutil.rmtree(mx_dir)
    assert data.load_dataset(download=False).source.data_dir == str(isolated_dirs / DEBIAN)
    shutil.rmtree(isolated_dirs / DEBIAN)
    assert data.load_dataset(download=False).source.data_dir == str(final_dir)


def test_debians_folder_is_found_through_xdg_data_dirs(releases, isolated_dirs, monkeypatch):
    # The XDG base directory spec: each folder of $XDG_DATA_DIRS in order, relative ones ignored, and
    # /usr/local/share:/usr/share where it is unset or empty (Debian's package installs into /usr/share).
    first, second = isolated_dirs / "a", isolated_dirs / "b"
    monkeypatch.setenv("XDG_DATA_DIRS", f"{first}:relative:{second}/")
    assert data.system_dirs() == [first / "datasets/fashion-mnist", second / "datasets/fashion-mnist"]
    assert data.default_dirs()[1:3] == data.system_dirs()
    releases.put(second / "datasets/fashion-mnist", "final")
    assert data.load_dataset(download=False).source.data_dir == str(second / "datasets/fashion-mnist")
    releases.put(first / "datasets/fashion-mnist", "final")
    assert data.load_dataset(download=False).source.data_dir == str(first / "datasets/fashion-mnist")
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv("XDG_DATA_DIRS")
        else:
            monkeypatch.setenv("XDG_DATA_DIRS", unset)
        assert data.system_dirs() == [Path("/usr/local/share/datasets/fashion-mnist"),
                                      Path("/usr/share/datasets/fashion-mnist")]


def test_a_chosen_folder_comes_first_root_then_the_environment(releases, isolated_dirs, monkeypatch):
    releases.put(data.mxnet_dir(), "final")
    root, env = releases.put(isolated_dirs / "root", "final"), releases.put(isolated_dirs / "env", "final")
    monkeypatch.setenv(fm.ENV_VAR, str(env))
    assert data.load_dataset(root).source.data_dir == str(root)
    assert data.load_dataset().source.data_dir == str(env)


def test_an_uncompressed_copy_is_found(releases, isolated_dirs):
    folder = isolated_dirs / "raw"
    folder.mkdir()
    for name in fm.NAMES:
        (folder / name).write_bytes(gzip.decompress(releases.gz("final", name)))
    assert data.load_dataset(folder).source == fm.Source("final", str(folder))


def test_a_partial_first_release_is_passed_over_for_a_whole_final_one(releases, isolated_dirs):
    # The defect this guards against: the first release's test labels left in MXNet's folder were
    # combined with Debian's final images, and a run scored chance (0.10) without a word.
    releases.put(data.mxnet_dir(), "first", ["t10k-labels-idx1-ubyte"])
    releases.put(isolated_dirs / DEBIAN, "final")
    dataset = data.load_dataset(download=False)
    assert dataset.source == fm.Source("final", str(isolated_dirs / DEBIAN))
    np.testing.assert_array_equal(dataset.arrays[3], releases.arrays["final"][NAME])
    why = dict(data.status())[data.mxnet_dir()]
    assert "is incomplete" in why[0] and "first release's t10k-labels-idx1-ubyte" in why[0]


def test_a_mixed_folder_is_refused_and_passed_over(releases, isolated_dirs):
    mixed = releases.put(isolated_dirs / "mixed", "final")
    (mixed / (NAME + ".gz")).write_bytes(releases.gz("first", NAME))
    with pytest.raises(fm.DataError, match=r"mixed mixes files of two releases \(final release: train-images"
                                             r".*; first release: t10k-labels-idx1-ubyte\)"):
        data.load_dataset(mixed, download=False)
    releases.put(data.mxnet_dir(), "final")
    (data.mxnet_dir() / (NAME + ".gz")).write_bytes(releases.gz("first", NAME))
    releases.put(isolated_dirs / DEBIAN, "final")
    assert data.load_dataset(download=False).source.data_dir == str(isolated_dirs / DEBIAN)


def _damaged(folder):
    (folder / (NAME + ".gz")).write_bytes(b"\x1f\x8bgarbage")


@pytest.mark.parametrize("case, words", [
    ("missing", ["does not exist"]),
    ("empty", ["holds none of the four files"]),
    ("incomplete", ["is incomplete: no t10k-images-idx3-ubyte", "final release's"]),
    ("corrupt", [NAME + ".gz is a truncated or damaged gzip file", "replace it"]),
    ("mixed", ["mixes files of two releases"]),
    ("other release", ["holds the first release (2017-08-26), not the final release asked for",
                       "data_release='first'"]),
])
@pytest.mark.parametrize("how", ["root", "env"])
def test_a_chosen_folder_is_strict(releases, isolated_dirs, monkeypatch, case, words, how):
    releases.put(data.mxnet_dir(), "final")  # a good copy elsewhere, which must not be used instead
    folder = isolated_dirs / "chosen"
    if case != "missing":
        folder.mkdir()
    if case in ("incomplete", "corrupt", "mixed"):
        releases.put(folder, "final", [n for n in fm.NAMES if not (case == "incomplete" and "t10k-im" in n)])
    if case == "corrupt":
        _damaged(folder)
    if case == "mixed":
        (folder / (NAME + ".gz")).write_bytes(releases.gz("first", NAME))
    if case == "other release":
        releases.put(folder, "first")
    if how == "env":
        monkeypatch.setenv(fm.ENV_VAR, str(folder))
    with pytest.raises(fm.DataError) as e:
        data.load_dataset(folder if how == "root" else None, "final")
    message = str(e.value)
    assert "\n" not in message and str(folder) in message
    assert ("data_dir= / --data-dir" if how == "root" else fm.ENV_VAR) in message
    for word in words:
        assert word in message


def test_asking_for_a_release_that_is_not_there(releases, isolated_dirs, monkeypatch):
    releases.put(isolated_dirs / DEBIAN, "final")
    monkeypatch.setattr(download, "mirrors", lambda release: [])
    with pytest.raises(fm.DataError) as e:
        data.load_dataset(data_release="first")
    message = str(e.value)
    assert "\n" not in message and "no folder holds Fashion-MNIST's first release whole" in message
    assert "holds the final release (2017-08-31), not the first release asked for" in message
    assert "dropout-gluon data fetch --data-release first" in message
    with pytest.raises(ValueError, match="data_release must be one of 'final', 'first', got 'second'"):
        data.load_dataset(data_release="second")


def test_missing_everywhere_says_where_and_how(releases, isolated_dirs):
    with pytest.raises(fm.DataError) as e:
        data.load_dataset(download=False)
    message = str(e.value)
    assert "\n" not in message and str(isolated_dirs / DEBIAN) in message
    assert "apt-get install dataset-fashion-mnist" in message and fm.ENV_VAR in message


def test_a_replaced_file_is_verified_again(small_dataset):
    folder, _ = small_dataset
    data.load_dataset(folder)
    (folder / (NAME + ".gz")).write_bytes(gzip.compress(idx_bytes(np.arange(30) % 7)))
    with pytest.raises(fm.DataError, match="matches no release"):
        data.load_dataset(folder)


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


def _serve(folder, releases, release, names=fm.NAMES):
    for name in names:
        (folder / (name + ".gz")).write_bytes(releases.gz(release, name))


def _leftovers(dest):
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_download_good_file(http_server, releases, tmp_path):
    url, folder = http_server
    _serve(folder, releases, "first", [NAME])
    dest = tmp_path / "dest"
    path = download.fetch(NAME, dest, "first", urls=[url])
    assert path == dest / (NAME + ".gz") and _leftovers(dest) == [NAME + ".gz"]
    assert path.read_bytes() == releases.gz("first", NAME)


def test_download_of_the_wrong_release_leaves_nothing(http_server, releases, tmp_path):
    url, folder = http_server
    _serve(folder, releases, "first", [NAME])
    dest = tmp_path / "dest"
    with pytest.raises(fm.DataError, match=f"{NAME}.gz: not the file published \\(MD5 differs\\), after 1 tries"):
        download.fetch(NAME, dest, "final", urls=[url], retries=1)
    assert _leftovers(dest) == []


def test_download_corrupt_file_leaves_nothing(http_server, releases, tmp_path):
    url, folder = http_server
    raw = bytearray(releases.gz("final", NAME))
    raw[-12] ^= 0xFF  # one flipped byte inside the compressed data
    (folder / (NAME + ".gz")).write_bytes(bytes(raw))
    dest = tmp_path / "dest"
    with pytest.raises(fm.DataError, match=f"could not download the final release's {NAME}.*after 2 tries"):
        download.fetch(NAME, dest, "final", urls=[url], retries=2)
    assert _leftovers(dest) == []


def test_a_download_is_verified_again_after_decompressing(http_server, releases, tmp_path, monkeypatch):
    # A .gz that matches the hash published for it but does not decompress to the release's data (here: cut
    # short before it was compressed) is refused by `verify`, and nothing is left.
    url, folder = http_server
    raw = gzip.compress(gzip.decompress(releases.gz("final", NAME))[:-3], mtime=0)
    (folder / (NAME + ".gz")).write_bytes(raw)
    spec = fm.FILES["final"][NAME]
    monkeypatch.setitem(fm.FILES["final"], NAME, spec._replace(gz_md5=hashlib.md5(raw).hexdigest()))
    dest = tmp_path / "dest"
    with pytest.raises(fm.DataError, match=f"{NAME}.gz: the downloaded file is truncated: 35 bytes"):
        download.fetch(NAME, dest, "final", urls=[url], retries=1)
    assert _leftovers(dest) == []


def test_download_from_dead_server(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(fm.DataError, match=f"could not download the final release's {NAME} .*: Connection refused, "
                                           f"after 1 tries\\)$"):
        download.fetch(NAME, tmp_path / "new" / "dest", urls=[f"http://127.0.0.1:{port}/"], retries=1)
    assert list(tmp_path.iterdir()) == []  # no folder made for it is left behind


def test_a_gluon_repo_without_a_scheme_is_one_line(isolated_dirs, monkeypatch):
    # Not urllib's "unknown url type" traceback: one line (Gluon too needs a URL there).
    monkeypatch.setenv("MXNET_GLUON_REPO", "example.com/mirror")
    with pytest.raises(fm.DataError, match="MXNET_GLUON_REPO must start with http:// or https://, got "
                                           "'example.com/mirror'"):
        download.mirrors("first")
    with pytest.raises(fm.DataError) as e:
        data.load_dataset(data_release="first")
    assert "\n" not in str(e.value) and "MXNET_GLUON_REPO must start with http://" in str(e.value)
    monkeypatch.setenv("MXNET_GLUON_REPO", "https://example.com/mirror/")
    assert download.mirrors("first") == ["https://example.com/mirror/gluon/dataset/fashion-mnist/"]


def test_each_release_comes_from_its_own_mirror():
    assert download.mirrors("first")[0].endswith("/gluon/dataset/fashion-mnist/")  # Gluon's: the first release
    assert "gluon" not in download.mirrors("final")[0]


def test_a_first_release_download_completes_mxnets_folder(http_server, releases, isolated_dirs):
    # MXNet's folder holds a partial first release, one file of it damaged: only what is missing or
    # damaged is fetched, into that folder, and the set is then used whole.
    url, folder = http_server
    _serve(folder, releases, "first")
    releases.put(data.mxnet_dir(), "first", ["train-labels-idx1-ubyte", NAME])
    _damaged(data.mxnet_dir())
    (folder / "train-labels-idx1-ubyte.gz").unlink()  # the copy already there must be kept, not fetched
    dataset = data.load_dataset(data_release="first", urls=[url])
    assert dataset.source == fm.Source("first", str(data.mxnet_dir()))
    np.testing.assert_array_equal(dataset.arrays[3], releases.arrays["first"][NAME])
    assert _leftovers(data.mxnet_dir()) == sorted(n + ".gz" for n in fm.NAMES)


def test_a_final_release_download_leaves_mxnets_folder_alone(http_server, releases, isolated_dirs):
    url, folder = http_server
    _serve(folder, releases, "final")
    releases.put(data.mxnet_dir(), "first", [NAME])
    before = (data.mxnet_dir() / (NAME + ".gz")).read_bytes()
    dataset = data.load_dataset(urls=[url])
    assert dataset.source == fm.Source("final", str(data.download_dir("final")))
    assert (data.mxnet_dir() / (NAME + ".gz")).read_bytes() == before


@pytest.fixture(scope="session")
def zalandos_files(tmp_path_factory):
    """The final release's four .gz files as Zalando published them, rebuilt from Debian's copies (tests/mirror.py)."""
    debian = next((d for d in data.system_dirs() if (d / (NAME + ".gz")).is_file()), None)
    if debian is None:
        required("Debian's dataset-fashion-mnist", f"none of {data.system_dirs()} holds it")
    return mirror.published(debian, tmp_path_factory.mktemp("zalando"))


def _through_proxy(monkeypatch, proxy):
    # requests takes the proxy from the environment, as a host's configuration would give it
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, proxy)


def test_with_no_copy_anywhere_the_final_release_is_downloaded_into_the_cache_once(releases, isolated_dirs,
                                                                                  monkeypatch, capsys):
    # As on Colab or a Mac: no Debian package, nothing in MXNet's folder. The published URLs are fetched
    # (from a proxy standing in for Zalando's mirror) into the host's cache folder, and found there next time.
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)  # no progress bar: a log's lines only
    with mirror.serving(releases.put(isolated_dirs / "zalando", "final")) as (proxy, requested):
        _through_proxy(monkeypatch, proxy)
        dataset = data.load_dataset()
        folder = isolated_dirs / "cache" / "dropout-gluon" / "fashion-mnist-final"
        assert dataset.source == fm.Source("final", str(folder))
        assert requested == [ZALANDO + name + ".gz" for name in fm.NAMES]
        assert capsys.readouterr().err.splitlines() == [
            f"downloading {name}.gz of the final release from {ZALANDO}{name}.gz into {folder}" for name in fm.NAMES]
        assert _leftovers(folder) == sorted(name + ".gz" for name in fm.NAMES)
        fm.clear_cache()
        assert data.load_dataset().source == dataset.source
        assert len(requested) == len(fm.NAMES) and capsys.readouterr().err == ""


def test_a_download_shows_a_bar_in_a_jupyter_kernel(http_server, releases, tmp_path, monkeypatch, capsys):
    # A kernel's stderr is no terminal, but a person watches the notebook: pooch's bar is shown there too.
    url, folder = http_server
    _serve(folder, releases, "final", [NAME])
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    download.fetch(NAME, tmp_path / "dest", urls=[url])
    err = capsys.readouterr().err
    assert err.startswith(f"downloading {NAME}.gz of the final release from {url}{NAME}.gz into {tmp_path / 'dest'}\n")
    assert "100%" in err  # tqdm's bar, filled
    monkeypatch.delitem(sys.modules, "ipykernel")
    (tmp_path / "dest" / (NAME + ".gz")).unlink()
    download.fetch(NAME, tmp_path / "dest", urls=[url])
    assert "%" not in capsys.readouterr().err  # a log: the line only


def test_the_published_final_release_downloads_and_verifies(zalandos_files, real_dataset, isolated_dirs, monkeypatch):
    # The real files, byte for byte as published (their MD5s are Zalando's), from the published URLs, checked
    # by pooch against those MD5s and by `verify` against their payload: what a host with no copy of the data does.
    for name in fm.NAMES:
        assert hashlib.md5((zalandos_files / (name + ".gz")).read_bytes()).hexdigest() == fm.FILES["final"][name].gz_md5
    with mirror.serving(zalandos_files) as (proxy, requested):
        _through_proxy(monkeypatch, proxy)
        dataset = data.load_dataset()
    assert requested == [ZALANDO + name + ".gz" for name in fm.NAMES]
    assert dataset.source == fm.Source("final", str(data.download_dir("final")))
    for got, expected in zip(dataset.arrays, real_dataset.arrays):
        np.testing.assert_array_equal(got, expected)


def test_two_processes_downloading_into_one_folder_both_succeed(zalandos_files, tmp_path):
    # Each process has a temporary name of its own, so neither's cleanup can delete the other's file. The proxy
    # answers each file only once both have asked for it: the downloads overlap.
    dest = tmp_path / "data"
    with mirror.serving(zalandos_files, together=2) as (proxy, requested):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                            os.environ.get("PYTHONPATH", "")]),
               "http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""}
        command = [sys.executable, "-m", "dropout_gluon", "data", "fetch", "--data-dir", str(dest)]
        fetches = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                   for _ in range(2)]
        ended = [(fetch.communicate(timeout=600), fetch.returncode) for fetch in fetches]
    for (out, err), status in ended:
        assert status == 0, err
        assert f"* {dest}: the final release, all four files verified" in out
    assert sorted(requested) == sorted(2 * [ZALANDO + name + ".gz" for name in fm.NAMES])  # each, by both
    assert _leftovers(dest) == sorted(name + ".gz" for name in fm.NAMES)  # and no temporary file
    fm.clear_cache()
    assert data.load_dataset(dest).source == fm.Source("final", str(dest))


def test_a_failed_download_leaves_what_another_process_wrote(tmp_path, monkeypatch):
    # The folders a failed download made are removed only if empty: another process may have downloaded there.
    dest = tmp_path / "new" / "dest"

    import pooch

    create = pooch.create

    def another_process_first(path, *args, **kwargs):  # as our download starts, another one writes into `dest`
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "t10k-images-idx3-ubyte.gz").write_bytes(b"theirs")
        return create(path, *args, **kwargs)

    monkeypatch.setattr(pooch, "create", another_process_first)
    with pytest.raises(fm.DataError, match="Connection refused"):
        download.fetch(NAME, dest, urls=["http://127.0.0.1:9/"], retries=1)
    assert _leftovers(dest) == ["t10k-images-idx3-ubyte.gz"]


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


def test_a_sweep_worker_holds_one_float32_copy_of_the_training_images(small_dataset, monkeypatch):
    # The unshuffled iterator for a run's final train accuracy shares the converted training images (0.19 GB).
    from dropout_gluon import RunConfig
    from dropout_gluon.exercises import pool

    folder, arrays = small_dataset
    monkeypatch.setattr(pool, "train_run", lambda config, iters: iters)  # what a run would train on
    train_iter, _, train_eval_iter = pool.work(RunConfig(batch_size=32).to_dict(), str(folder))
    assert train_eval_iter.images is train_iter.images
    assert train_iter.shuffle and not train_eval_iter.shuffle  # the copy is unshuffled, the original is not
    labels = np.concatenate([y.asnumpy() for _, y in train_eval_iter])
    np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte"])


def test_numpy_numbers_are_numbers(small_dataset):
    train_iter, _ = data.load_data_fashion_mnist(np.int64(16), resize=np.int32(32), root=small_dataset[0])
    assert train_iter.batch_size == 16 and type(train_iter.batch_size) is int


def test_resize(small_dataset):
    train_iter, _ = data.load_data_fashion_mnist(16, resize=32, root=small_dataset[0])
    X, _ = next(iter(train_iter))
    assert X.shape == (16, 1, 32, 32) and X.dtype == np.float32


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
    ({"batch_size": 2.5}, "batch_size must be a whole number"),
    ({"batch_size": 8, "resize": -1}, "resize must be a whole number >= 1, got -1"),
    ({"batch_size": 8, "loader": "fast"}, "loader must be one of 'memory', 'gluon', got 'fast'"),
])
def test_bad_loader_arguments(small_dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_data_fashion_mnist(root=small_dataset[0], **kwargs)


@pytest.mark.parametrize("loader", ["memory", "gluon"])
def test_every_history_names_its_data(releases, isolated_dirs, tmp_path, loader):
    final, first = releases.put(isolated_dirs / "final", "final"), releases.put(isolated_dirs / "first", "first")
    # The chapter's own calls: its iterators carry the release, and train_ch3 labels the history with it.
    _, history = run.train_gluon(num_epochs=1, batch_size=32, data_dir=final, loader=loader, log=None)
    assert history.source == fm.Source("final", str(final)) and repr(history).endswith(", final release)")
    _, history = run.train_scratch(num_epochs=1, batch_size=32, data_dir=first, data_release="first", loader=loader,
                                   log=None)
    assert history.source == fm.Source("first", str(first))
    save_history(history, tmp_path, numerics.record())
    assert json.loads((tmp_path / "history.json").read_text())[0]["data_release"] == "first"
    with pytest.raises(fm.DataError, match="holds the first release"):
        run.train_gluon(num_epochs=1, batch_size=32, data_dir=first, loader=loader, log=None)


# ------------------------------------------------------------------------------------- the data command

def test_data_verify_hashes_every_file_again(small_dataset, capsys):
    # `data verify` did what `data status` does, from the process's cache: a file changed in place (same size,
    # same modification time) passed. It now reads and hashes each file again, and shows what matched.
    import os

    from dropout_gluon import cli

    folder, _ = small_dataset
    assert cli.main(["data", "verify", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    for name, spec in fm.FILES["final"].items():
        assert f"  {name}.gz: the final release (payload SHA-256 {spec.payload_sha256})" in out
    path = folder / (NAME + ".gz")
    stat = path.stat()
    raw = bytearray(path.read_bytes())
    raw[-12] ^= 0xFF
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cli.main(["data", "status", "--data-dir", str(folder)]) == 0  # the cached answer: still fine
    assert cli.main(["data", "verify", "--data-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err


def test_data_fetch_downloads_into_the_folder_chosen_and_only_its_release(http_server, releases, isolated_dirs,
                                                                          monkeypatch, capsys):
    from dropout_gluon import cli

    url, served = http_server
    _serve(served, releases, "first")
    monkeypatch.setattr(download, "mirrors", lambda release: [url])
    chosen = isolated_dirs / "mine"
    # --data-dir (and DROPOUT_GLUON_DATA) is where `data fetch` downloads to.
    assert cli.main(["data", "fetch", "--data-release", "first", "--data-dir", str(chosen)]) == 0
    assert _leftovers(chosen) == sorted(n + ".gz" for n in fm.NAMES)
    monkeypatch.setenv(fm.ENV_VAR, str(isolated_dirs / "env"))
    assert cli.main(["data", "fetch", "--data-release", "first"]) == 0
    assert _leftovers(isolated_dirs / "env") == sorted(n + ".gz" for n in fm.NAMES)
    assert "* " + str(isolated_dirs / "env") in capsys.readouterr().out
    # A folder holding files of the other release is left alone: a download there would replace them.
    monkeypatch.delenv(fm.ENV_VAR)
    releases.put(data.mxnet_dir(), "final", [NAME])
    before = (data.mxnet_dir() / (NAME + ".gz")).read_bytes()
    with pytest.raises(fm.DataError, match="holds files of the final release"):
        download.fetch_release("first", data.mxnet_dir(), urls=[url])
    assert _leftovers(data.mxnet_dir()) == [NAME + ".gz"]
    assert (data.mxnet_dir() / (NAME + ".gz")).read_bytes() == before


def test_the_books_root_and_data_dir_name_the_same_folder(small_dataset):
    # load_data_fashion_mnist(data_dir=...) was a TypeError: the book's `root` was its only name for the folder.
    folder, _ = small_dataset
    by_root, _ = data.load_data_fashion_mnist(32, root=folder)
    by_data_dir, _ = data.load_data_fashion_mnist(32, data_dir=folder)
    assert by_root.source == by_data_dir.source == fm.Source("final", str(folder))
    with pytest.raises(ValueError, match="give the data folder as root= or as data_dir= .*, not both"):
        data.load_data_fashion_mnist(32, root=folder, data_dir=folder)


def test_what_cannot_be_read_is_a_read_error(small_dataset, monkeypatch):
    # A folder that may not be listed (mode 000 for anyone but root) raised PermissionError out of the search,
    # which the command line then reported as "cannot write". Simulated: the tests run as root.
    import errno
    import os
    import pathlib

    folder, _ = small_dataset
    stat, listdir, read_bytes = os.stat, os.listdir, pathlib.Path.read_bytes

    def denied(real, inside):
        def call(path, *args, **kwargs):
            if str(path).startswith(str(inside)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "listdir", denied(listdir, folder))
    monkeypatch.setattr(os, "stat", denied(stat, f"{folder}{os.sep}"))  # the folder itself can be stat'ed
    with pytest.raises(fm.DataError, match=f"the data folder .*: cannot read {folder}: Permission denied"):
        data.load_dataset(folder)
    with pytest.raises(fm.DataError, match=f"cannot read {folder}: Permission denied"):
        download.fetch_release("final", folder)
    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "stat", stat)
    # A file that may not be read, in a folder that may.
    monkeypatch.setattr(pathlib.Path, "read_bytes", denied(read_bytes, folder / (NAME + ".gz")))
    fm.clear_cache()
    with pytest.raises(fm.DataError, match=f"cannot read {folder / NAME}.gz: Permission denied; replace it"):
        data.load_dataset(folder)
    with pytest.raises(fm.DataError, match=f"^cannot read {folder / NAME}.gz: Permission denied$"):
        fm.verify(folder / (NAME + ".gz"), NAME)


def test_clear_cache_lets_go_of_the_verified_arrays(small_dataset):
    # For a sweep's release(): a long-lived worker must not keep the raw arrays after a sweep.
    import gc
    import weakref

    folder, _ = small_dataset
    fm.clear_cache()
    ref = weakref.ref(data.load_dataset(folder).arrays[0])
    gc.collect()
    assert ref() is not None  # remembered: the next load does not hash the files again
    fm.clear_cache()
    gc.collect()
    assert ref() is None
