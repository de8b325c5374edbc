"""The command line, run as a subprocess, as a user would:

- every bad training input: one line, exit status 2, nothing written; only user errors are one line (a bug
  keeps its traceback); --out checked before the data is read, and a rerun into it replaces the earlier run
  whole; a second training into an --out where one is training is refused, touching nothing; a run writes in
  place in --out as it goes: `.`, a symlink's target, an earlier run's folder, and a run killed by SIGTERM
  keeps its epochs there; a run that fails before training leaves no folder; a full disk; a relative
  --data-dir, its config.json trained from another folder; a config of another numerics mode; read errors; a
  terminal that cannot show the tables' characters; missing data; a bad chosen data folder (missing,
  incomplete, corrupt, mixed releases) for every command; the first release asked for where only the final
  is there;
- the first release's test labels left beside Debian's copy: the final release is used whole (the defect
  of files verified one by one);
- `make run` itself: its history equals tests/golden/make_run.json to the last digit, and so do the README's
  lines; every file written,
  naming the data release and folder; `--config` trains a saved run again;
- saved models predict their own test accuracy, and say so when tested on another release; foreign or
  broken parameter files; divergence (status 3) and Ctrl-C (status 130) keep the finished epochs, and
  Ctrl-C at any moment of a command is one line and status 130; the batch progress bar; output into a closed
  pipe.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mxnet import nd

from dropout_gluon.data import BatchProgress, DataIter
from dropout_gluon.fashion_mnist import ENV_VAR

# Runs the CLI with no mirror to download from (with `cli(isolated=...)`, which points the data folders
# elsewhere, "no data" can be tested on a machine that has it).
ISOLATED = ("import sys; import dropout_gluon.download as dl; dl.mirrors = lambda release: []; "
            "from dropout_gluon.cli import main; sys.exit(main(sys.argv[1:]))")


# This checkout's package, whatever the command's working folder
PACKAGE_ENV = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}


def cli(*args, isolated=None, cwd=None, **env) -> subprocess.CompletedProcess:
    """Run `dropout-gluon args` in `cwd` with `env` added to the environment; `isolated`: a folder that stands in
    for MXNet's home, $XDG_DATA_DIRS (Debian's folder) and the cache, with no download."""
    command = [sys.executable, "-m", "dropout_gluon"]
    if isolated:
        command = [sys.executable, "-c", ISOLATED]
        env = {"MXNET_HOME": str(isolated), "XDG_DATA_DIRS": str(isolated), "XDG_CACHE_HOME": str(isolated),
               ENV_VAR: "", **env}
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, check=False, cwd=cwd,
                          env={**os.environ, **PACKAGE_ENV, **env})


def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize("args, words", [
    (["--drop-prob1", "1.5"], ["drop_prob1", "[0, 1]", "1.5"]),
    (["--drop-prob2", "nan"], ["drop_prob2", "nan"]),
    (["--drop-prob1", "-0.1"], ["drop_prob1", "-0.1"]),
    (["--model", "gluon", "--drop-prob2", "1"], ["below 1", "NaN"]),
    (["--model", "scratch", "--drop-prob2", "1", "--epochs", "0"], ["num_epochs", ">= 1"]),
    (["--batch-size", "0"], ["batch_size"]),
    (["--lr", "0"], ["lr must be"]),
    (["--lr", "nan"], ["lr must be"]),
    (["--lr", "inf"], ["lr must be"]),
    (["--model", "mlp"], ["invalid choice: 'mlp'"]),
    (["--epochs", "two"], ["invalid int value"]),
    (["--ctx", "gpu"], ["no GPU", "--ctx cpu"]),
    (["--seed", "-1"], ["seed must be", "-1"]),
])
def test_bad_training_input(tmp_path, args, words):
    result = cli("train", "--out", tmp_path / "out", *args)
    assert_one_line_error(result, *words)
    assert not (tmp_path / "out").exists()  # nothing written


def test_out_is_checked_before_the_data_is_read(tmp_path):
    # On a machine without the data, the --out that cannot be written is what is reported (it is checked
    # first), for train as for exercise (before the whole sweep, not after it).
    (tmp_path / "a-file").write_text("")
    for command in (["train", "--epochs", "1"], ["exercise", "swap", "--quick", "--cache", tmp_path / "cache"]):
        result = cli(*command, "--out", tmp_path / "a-file" / "out", isolated=tmp_path / "empty")
        assert_one_line_error(result, "cannot write to --out")
        assert result.stdout == ""
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []
    (tmp_path / "mine" / "gluon").mkdir(parents=True)
    (tmp_path / "mine" / "gluon" / "history.json").write_text("[]")
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    result = cli("train", "--out", tmp_path / "mine", isolated=tmp_path / "empty")
    assert_one_line_error(result, "notes.txt", "not a file of a run")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine" and (tmp_path / "mine" / "gluon").is_dir()
    assert_one_line_error(cli("train", "--out", tmp_path / "a-file"), "a-file is not a folder")
    assert (tmp_path / "a-file").read_text() == ""
    (tmp_path / "mine" / "gluon" / "config.json").write_text("{}")  # a model's folder, e.g. `--out .` inside it
    assert_one_line_error(cli("train", "--out", tmp_path / "mine" / "gluon", isolated=tmp_path / "empty"),
                          "is one model's folder of a run", f"--out {tmp_path / 'mine'}")


def test_a_rerun_into_the_same_out_replaces_the_whole_run(tmp_path, real_data):
    # The second run's files only, never two runs' side by side; a
    # rerun that stops before writing anything (here: no data) leaves the previous run as it was; nothing is
    # left beside --out.
    out = tmp_path / "x"
    assert cli("train", "--epochs", "1", "--out", out).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "gluon", "scratch"]
    result = cli("train", "--model", "gluon", "--epochs", "2", "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gluon"]
    assert len(json.loads((out / "gluon" / "history.json").read_text())) == 2
    assert_one_line_error(cli("train", "--out", out, "--data-dir", tmp_path / "none"), "does not exist")
    assert sorted(p.name for p in out.iterdir()) == ["gluon"]
    assert json.loads((out / "gluon" / "config.json").read_text())["num_epochs"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def files(folder: Path) -> dict:
    """Every file under `folder`, by path, with its bytes."""
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_second_training_into_a_busy_out_is_refused_and_the_first_completes(tmp_path, real_data):
    # Two terminals, or a cell run twice: the second run must not delete the first one's files as it trains.
    # The first is stopped (SIGSTOP) while the second runs, so the second meets it training, whatever the speeds.
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "dropout_gluon", "train", "--model", "gluon", "--epochs", "2",
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **PACKAGE_ENV})
    for line in first.stdout:
        if line.startswith("# Gluon: epochs"):  # its folder is made and locked, and it trains
            break
    first.send_signal(signal.SIGSTOP)
    try:
        before = files(out)
        second = cli("train", "--model", "scratch", "--epochs", "1", "--seed", "1", "--out", out)
        assert_one_line_error(second, f"--out {out} is in use", "another training")
        assert second.stdout == ""  # refused as --out is checked, before the data is read
        assert files(out) == before
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["gluon"]
    assert sorted(p.name for p in (out / "gluon").iterdir()) == [
        "config.json", "curves.png", "history.csv", "history.json", "model.params"]
    assert [e["epoch"] for e in json.loads((out / "gluon" / "history.json").read_text())] == [1, 2]
    assert json.loads((out / "gluon" / "config.json").read_text())["seed"] == 0


def test_out_may_be_the_working_folder_and_a_rerun_from_inside_a_run_replaces_it(tmp_path, real_data):
    # The run writes into the folder itself (`.` cannot be renamed or swapped), and a rerun from inside it
    # replaces the run in place.
    run = tmp_path / "run"
    run.mkdir()
    for model in ("gluon", "scratch"):
        result = cli("train", "--model", model, "--epochs", "1", "--out", ".", cwd=run)
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in run.iterdir()) == [model]  # the second run replaced the first
        assert len(json.loads((run / model / "history.json").read_text())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_symlinked_out_writes_into_its_target(tmp_path, real_data):
    # The folder it points to (a big disk, say) is written, and the link stays a link.
    target, link = tmp_path / "disk" / "runs", tmp_path / "link"
    target.mkdir(parents=True)
    link.symlink_to(target)
    result = cli("train", "--model", "gluon", "--epochs", "1", "--out", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert len(json.loads((target / "gluon" / "history.json").read_text())) == 1


def test_sigterm_keeps_the_finished_epochs_in_out(tmp_path, real_data):
    # What `timeout`, Slurm and a closed terminal send: the finished epochs are in --out itself, and the run's
    # lock went with the process (the kernel's), so the folder can be trained into again.
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "dropout_gluon", "train", "--model", "scratch", "--epochs", "50",
                                "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **PACKAGE_ENV})
    history, deadline = [], time.monotonic() + 300
    while not history and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        history = json.loads((out / "scratch" / "history.json").read_text()) if (out / "scratch" / "history.json"
                                                                                 ).exists() else []
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM, stderr
    history = json.loads((out / "scratch" / "history.json").read_text())
    assert len(history) >= 1 and [e["epoch"] for e in history] == list(range(1, len(history) + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    fd = os.open(out, os.O_RDONLY)  # the lock, a flock on the folder itself, is free
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


FULL_DISK_ERROR = ('Traceback (most recent call last):\n  File "../3rdparty/dmlc-core/src/io/local_filesys.cc", '
                   'line 38\nMXNetError: Check failed: std: :fwrite(ptr, 1, size, fp_) == size: FileStream.Write '
                   'incomplete')  # what MXNet 1.9.1 raises when a file system is full


def assert_full_disk_error(stderr: str, folder: Path):
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"dropout-gluon: error: cannot write {folder / 'model.params'}: MXNet could not write it "
                             f"(FileStream.Write incomplete); {folder} keeps the history saved until then; make room")
    assert len(json.loads((folder / "history.json").read_text())) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.csv", "history.json"]  # no temp file


def test_a_full_disk_while_saving_the_model_is_one_line(tmp_path, real_data):
    # A file system just big enough for the configuration and the history, not for the model's parameters.
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (root's): {mounted.stderr.strip()}")
    try:
        result = cli("train", "--model", "gluon", "--epochs", "1", "--out", disk / "run")
        assert result.returncode == 2, result.stderr
        assert_full_disk_error(result.stderr, disk / "run" / "gluon")
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_failed_write_of_the_model_is_one_line(monkeypatch, capsys, tmp_path, real_data):
    # What MXNet raises on a full disk, at the save itself: the message, wherever a small disk cannot be mounted.
    import mxnet as mx

    from dropout_gluon import cli as command_line
    from dropout_gluon import persist

    def full_disk(*args):
        raise mx.base.MXNetError(FULL_DISK_ERROR)

    monkeypatch.setattr(persist.nd, "save", full_disk)  # where the scratch model is saved
    assert command_line.main(["train", "--model", "scratch", "--epochs", "1", "--out", str(tmp_path)]) == 2
    assert_full_disk_error(capsys.readouterr().err, tmp_path / "scratch")


def test_a_relative_data_dir_is_saved_absolute_and_its_config_trains_from_anywhere(tmp_path, real_dataset):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "data").symlink_to(real_dataset.source.data_dir)
    result = cli("train", "--model", "gluon", "--epochs", "1", "--data-dir", "data", "--out", "run", cwd=work)
    assert result.returncode == 0, result.stderr
    assert json.loads((work / "run" / "gluon" / "config.json").read_text())["data_dir"] == str(work.resolve() / "data")
    result = cli("train", "--config", Path("..") / "work" / "run" / "gluon" / "config.json", "--out", "again",
                 cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    again, first = (json.loads((folder / "gluon" / "history.json").read_text()) for folder in (elsewhere / "again",
                                                                                              work / "run"))
    assert [e["loss"] for e in again] == [e["loss"] for e in first]


def test_a_configuration_of_another_numerics_mode_is_trained_in_this_ones_with_a_note(tmp_path):
    # MXNet's numerics are chosen as it loads, so this process trains in its own mode; the note says how to get
    # the configuration's digits.
    from dropout_gluon import numerics

    other = "native" if numerics.MODE == "portable" else "portable"
    (tmp_path / "config.json").write_text(json.dumps({"model": "gluon", "numerics": {"mode": other,
                                                                                     "blas_kernel": "Haswell"}}))
    result = cli("train", "--config", tmp_path / "config.json", "--epochs", "0", **{numerics.MODE_VAR: numerics.MODE})
    note, error = result.stderr.splitlines()
    assert f"computed in {other} numerics and this process computes in {numerics.MODE}" in note
    assert f"digits will differ; for {other}'s, run the command with {numerics.MODE_VAR}={other}" in note
    assert result.returncode == 2 and "num_epochs" in error


def test_a_read_error_says_what_happened(monkeypatch, capsys, tmp_path):
    # An OSError says what happened (here a read), to which file: not always "cannot write".
    from dropout_gluon import cli as command_line
    from dropout_gluon import run

    monkeypatch.setattr(run, "predict", lambda *args, **kwargs: open(tmp_path))  # a folder read as a file
    assert command_line.main(["predict", "--params", "model.params"]) == 2
    assert capsys.readouterr().err == f"dropout-gluon: error: Is a directory: {tmp_path}\n"


def test_a_terminal_that_cannot_show_the_tables_characters(tmp_path, real_data):
    # Under a non-UTF-8 locale the terminal shows '?' for the tables' '±', '−', '—' (not a UnicodeEncodeError),
    # and the files are UTF-8 whatever the locale.
    result = cli("exercise", "swap", "--quick", "--seeds", "1", "--epochs", "1", "--jobs", "1", "--no-progress",
                 "--out", tmp_path / "out", "--cache", tmp_path / "cache", LC_ALL="C", PYTHONUTF8="0",
                 PYTHONCOERCECLOCALE="0", PYTHONIOENCODING="ascii")
    assert result.returncode == 0, result.stderr
    assert "gap (train ? test)" in result.stdout
    assert "gap (train \u2212 test)" in (tmp_path / "out" / "swap.md").read_text(encoding="utf-8")


def test_only_user_errors_are_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    # The CLI reports one class of error in one line; a ValueError from a bug is not it.
    from dropout_gluon import cli as command_line
    from dropout_gluon import exercises, numerics
    from dropout_gluon.errors import UserError
    from dropout_gluon.fashion_mnist import DataError

    for reported in (DataError, exercises.SweepFailed, numerics.NumericsError):
        assert issubclass(reported, UserError)
    monkeypatch.setattr(command_line, "cmd_data", lambda args: (_ for _ in ()).throw(DataError("no data here")))
    assert command_line.main(["data"]) == 2 and capsys.readouterr().err == "dropout-gluon: error: no data here\n"
    monkeypatch.setattr(command_line, "cmd_data", lambda args: int("a bug"))
    with pytest.raises(ValueError, match="invalid literal"):
        command_line.main(["data"])


def test_missing_data(tmp_path):
    # A run that fails before training leaves no folder behind, not even the parents of --out.
    result = cli("train", "--out", tmp_path / "a" / "b" / "c", isolated=tmp_path / "empty")
    assert_one_line_error(result, "no folder holds Fashion-MNIST's final release whole",
                          "apt-get install dataset-fashion-mnist")
    assert not (tmp_path / "a").exists()
    result = cli("train", isolated=tmp_path / "empty", cwd=tmp_path)  # the default: a new folder under runs/
    assert result.returncode == 2 and not (tmp_path / "runs").exists()


def test_data_status_shows_every_folder_searched(tmp_path):
    # MXNet's folder, each of $XDG_DATA_DIRS (Debian's), then the cache the final release is downloaded into.
    result = cli("data", "status", isolated=tmp_path / "mx", XDG_DATA_DIRS=f"{tmp_path / 'a'}:{tmp_path / 'b'}",
                 XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert_one_line_error(result, "no folder holds Fashion-MNIST's final release whole")
    folders = [tmp_path / "mx", tmp_path / "a", tmp_path / "b"]
    assert result.stdout.splitlines()[1:] == [f"    {folder / 'datasets' / 'fashion-mnist'} does not exist"
                                              for folder in folders] + [
        f"    {tmp_path / 'cache' / 'dropout-gluon' / 'fashion-mnist-final'} does not exist"]


def _folder(tmp_path, case, first_release_labels, real_folder=None):
    folder = tmp_path / case
    if case == "missing":
        return folder
    folder.mkdir()
    if case == "incomplete":  # the first release's two label files, nothing else
        for path in first_release_labels.glob("*.gz"):
            (folder / path.name).symlink_to(path)
    if case == "corrupt":
        (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    if case == "mixed":  # the real final release, but for the first release's test labels
        for path in Path(real_folder).iterdir():
            (folder / path.name).symlink_to(path)
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
        (folder / "t10k-labels-idx1-ubyte.gz").symlink_to(first_release_labels / "t10k-labels-idx1-ubyte.gz")
    return folder


@pytest.mark.parametrize("case, how, words", [  # (every case both ways: test_data.py)
    ("missing", "--data-dir", ["does not exist"]),
    ("incomplete", ENV_VAR, ["is incomplete: no train-images-idx3-ubyte",
                                  "first release's train-labels-idx1-ubyte"]),
    ("corrupt", "--data-dir", ["train-images-idx3-ubyte.gz is a truncated or damaged gzip file"]),
])
def test_a_bad_chosen_folder_stops_every_command(tmp_path, first_release_labels, case, how, words):
    folder = _folder(tmp_path, case, first_release_labels)
    where = ["--data-dir", folder] if how == "--data-dir" else []
    env = {} if where else {ENV_VAR: str(folder)}
    for command in (["train", "--out", tmp_path / "out"], ["data", "status"],
                    ["exercise", "swap", "--quick", "--out", tmp_path / "out", "--cache", tmp_path / "cache"]):
        result = cli(*command, *where, **env)
        assert_one_line_error(result, str(folder), how if where else ENV_VAR, *words)
        assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_mixed_chosen_folder_is_refused(tmp_path, first_release_labels, real_dataset):
    folder = _folder(tmp_path, "mixed", first_release_labels, real_dataset.source.data_dir)
    result = cli("train", "--data-dir", folder, "--out", tmp_path / "out")
    assert_one_line_error(result, "mixes files of two releases", "first release: t10k-labels-idx1-ubyte")
    assert not (tmp_path / "out").exists()


def test_the_first_release_where_only_the_final_is_there(tmp_path, real_data):
    result = cli("train", "--data-release", "first", "--out", tmp_path / "out", MXNET_HOME=str(tmp_path / "mx"),
                 MXNET_GLUON_REPO="http://127.0.0.1:9/")  # nothing listens there: the download fails at once
    announced, result.stderr = result.stderr.split("\n", 1)  # the download says what it tries, then the error
    assert announced == (f"downloading train-images-idx3-ubyte.gz of the first release from http://127.0.0.1:9/gluon/"
                         f"dataset/fashion-mnist/train-images-idx3-ubyte.gz into {tmp_path / 'mx' / 'datasets'}"
                         f"/fashion-mnist")
    assert_one_line_error(result, "no folder holds Fashion-MNIST's first release whole",
                          "holds the final release (2017-08-31)", "--data-release first")
    assert not (tmp_path / "out").exists()


def test_first_release_test_labels_beside_debians_copy(tmp_path, first_release_labels, real_dataset):
    # The failure that made this rule: Gluon's first-release test labels in MXNet's folder (an interrupted
    # MXNet session), Debian's final release installed; files were verified one by one and combined, and
    # training ran to the end at chance (0.10) with exit 0.
    mx_dir = tmp_path / "mx" / "datasets" / "fashion-mnist"
    mx_dir.mkdir(parents=True)
    (mx_dir / "t10k-labels-idx1-ubyte.gz").write_bytes((first_release_labels / "t10k-labels-idx1-ubyte.gz")
                                                       .read_bytes())
    env = {"MXNET_HOME": str(tmp_path / "mx"), ENV_VAR: ""}
    status = cli("data", "status", **env)
    assert status.returncode == 0, status.stderr
    assert f"{mx_dir} is incomplete" in status.stdout and "first release's t10k-labels-idx1-ubyte" in status.stdout
    assert f"* {real_dataset.source.data_dir}: the final release, all four files verified" in status.stdout
    result = cli("train", "--model", "gluon", "--epochs", "1", "--out", tmp_path / "out", **env)
    assert result.returncode == 0, result.stderr
    data_line = f"# data: Fashion-MNIST final release (2017-08-31), {real_dataset.source.data_dir}\n"
    assert result.stdout.startswith(data_line)
    assert json.loads((tmp_path / "out" / "gluon" / "history.json").read_text())[0]["test_acc"] > 0.7


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_data):
    """`make run`: both models, the chapter's defaults, through the CLI, on the real data."""
    out = tmp_path_factory.mktemp("run")
    result = cli("train", "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_a_saved_configuration_trains_the_same_run_again(trained, tmp_path):
    out, _ = trained
    result = cli("train", "--config", out / "gluon" / "config.json", "--epochs", "2", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "scratch").exists()  # the configuration's model only
    again = json.loads((tmp_path / "gluon" / "history.json").read_text())
    first = json.loads((out / "gluon" / "history.json").read_text())
    assert [e["loss"] for e in again] == [e["loss"] for e in first[:2]]  # the same seed, the same steps
    assert json.loads((tmp_path / "gluon" / "config.json").read_text())["num_epochs"] == 2
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert_one_line_error(cli("train", "--config", tmp_path / "bad.json"), "holds no configuration")
    (tmp_path / "typo.json").write_text('{"model": "gluon", "epochs": 1}')
    assert_one_line_error(cli("train", "--config", tmp_path / "typo.json", "--out", tmp_path / "typo"),
                          "unknown configuration key 'epochs'", "num_epochs")
    assert not (tmp_path / "typo").exists()


def test_make_run_gives_the_same_history_to_the_last_digit(trained):
    # The reference (tests/golden/make_run.json) was written in portable numerics, which give the same digits
    # on every x86-64 processor with AVX (tests/test_numerics.py runs it on simulated machines too).
    out, _ = trained
    golden = json.loads((Path(__file__).parent / "golden" / "make_run.json").read_text())["epochs"]
    for model, epochs in golden.items():
        history = json.loads((out / model / "history.json").read_text())
        assert [[e["epoch"], e["loss"], e["train_acc"], e["test_acc"]] for e in history] == epochs, model


@pytest.mark.document
def test_the_readme_shows_the_golden_history():
    # What a newcomer compares `make run` with: the README's lines are the golden history, printed.
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    golden = json.loads((Path(__file__).parent / "golden" / "make_run.json").read_text())["epochs"]
    lines = [f"epoch {e}, loss {loss:.4f}, train acc {train:.3f}, test acc {test:.3f}"
             for model in ("scratch", "gluon") for e, loss, train, test in golden[model]]
    shown = [line for line in readme.splitlines() if line.startswith("epoch ")]
    assert shown == lines
    assert "# numerics: portable: OpenBLAS Sandybridge, oneDNN off, 1 thread per operator" in readme


def test_train_writes_everything(trained, real_dataset):
    out, stdout = trained
    data_folder = real_dataset.source.data_dir
    assert stdout.splitlines()[0] == f"# data: Fashion-MNIST final release (2017-08-31), {data_folder}"
    assert stdout.splitlines()[1].startswith("# numerics: portable: OpenBLAS Sandybridge, oneDNN off, 1 thread per")
    numerics = ["portable", "Sandybridge", "off", 1]  # mode, BLAS kernel, oneDNN, threads per operator
    assert stdout.count("epoch 5, loss") == 2 and str(out) in stdout
    for model in ("scratch", "gluon"):
        folder = out / model
        assert sorted(p.name for p in folder.iterdir()) == [
            "config.json", "curves.png", "history.csv", "history.json", "model.params"]
        history = json.loads((folder / "history.json").read_text())
        assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5] and 0.5 < history[0]["test_acc"] < 1
        csv_lines = (folder / "history.csv").read_text().splitlines()
        assert csv_lines[0] == ("epoch,loss,train_acc,test_acc,seconds,data_release,data_dir,mode,blas_kernel,"
                                "onednn,threads_per_operator,processor,glibc,numpy,mxnet_variables")
        assert f",final,{data_folder},portable,Sandybridge,off,1," in csv_lines[1]
        assert (history[0]["data_release"], history[0]["data_dir"]) == ("final", data_folder)
        assert [history[-1][k] for k in ("mode", "blas_kernel", "onednn", "threads_per_operator")] == numerics
        config = json.loads((folder / "config.json").read_text())
        assert list(config["numerics"].values())[:4] == numerics
        assert config["drop_prob2"] == 0.5 and config["model"] == model and config["data_dir"] is None
        assert config["data"] == {"data_release": "final", "data_dir": data_folder}
        assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "curves.png").is_file()


@pytest.mark.parametrize("model", ["scratch", "gluon"])
def test_saved_model_predicts_the_same_accuracy(trained, model):
    out, _ = trained
    test_acc = json.loads((out / model / "history.json").read_text())[-1]["test_acc"]
    result = cli("predict", "--params", out / model / "model.params", "--n", "6")
    assert result.returncode == 0, result.stderr
    assert f"{model} model" in result.stdout and f"({round(test_acc * 10000)}/10000), final release" in result.stdout
    assert (out / model / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stderr == ""  # trained and tested on the same release: nothing to say


def test_predict_in_python_returns_what_the_command_prints(trained, tmp_path):
    # The command only prints what the Python API's predict returns.
    import dropout_gluon as gb

    out, _ = trained
    test_acc = json.loads((out / "gluon" / "history.json").read_text())[-1]["test_acc"]
    found = gb.predict(out / "gluon" / "model.params", 3, png=tmp_path / "p.png")
    assert (found.model, found.correct, found.total, found.data_release) == ("gluon", round(test_acc * 10000),
                                                                             10000, "final")
    assert found.notes == [] and found.png == tmp_path / "p.png" and found.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A model trained under other numerics (another BLAS kernel) is tested with a note
    config = json.loads((out / "gluon" / "config.json").read_text())
    (tmp_path / "model.params").write_bytes((out / "gluon" / "model.params").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({**config, "numerics": {**config["numerics"],
                                                                             "blas_kernel": "Haswell"}}))
    [note] = gb.predict(tmp_path / "model.params", 1).notes
    assert "trained under other numerics (" in note and ": OpenBLAS Haswell, " in note


def test_predict_says_when_the_release_differs_or_is_unknown(trained, tmp_path):
    out, _ = trained
    (tmp_path / "model.params").write_bytes((out / "gluon" / "model.params").read_bytes())
    result = cli("predict", "--params", tmp_path / "model.params", "--n", "2")
    assert result.returncode == 0, result.stderr
    assert "no config.json beside" in result.stderr and "testing it on the final release" in result.stderr
    config = json.loads((out / "gluon" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "data_release": "first"}))
    result = cli("predict", "--params", tmp_path / "model.params", "--n", "2", "--data-release", "final")
    assert result.returncode == 0, result.stderr
    assert "trained on the first release and is tested on the final release" in result.stderr
    assert "not a test accuracy" in result.stderr and "final release" in result.stdout


def test_bad_parameter_files(tmp_path, trained):
    out, _ = trained
    text = tmp_path / "notes.params"
    text.write_text("not parameters")
    truncated = tmp_path / "truncated.params"
    truncated.write_bytes((out / "gluon" / "model.params").read_bytes()[:5000])
    other = tmp_path / "other.params"
    nd.save(str(other), {"weight": nd.ones(3)})
    shapes = tmp_path / "shapes.params"
    nd.save(str(shapes), {"W1": nd.ones((784, 8)), "b1": nd.ones(8), "W2": nd.ones((9, 8)), "b2": nd.ones(8),
                          "W3": nd.ones((8, 10)), "b3": nd.ones(10)})
    for path, words in [(tmp_path / "missing.params", ["no parameters file"]),
                        (text, ["not a readable MXNet parameters file"]),
                        (truncated, ["not a readable MXNet parameters file"]),
                        (other, ["neither the scratch model's", "weight"]),
                        (shapes, ["do not fit the chapter's MLP"])]:
        assert_one_line_error(cli("predict", "--params", path, "--png", tmp_path / "p.png"), *words)
    assert not (tmp_path / "p.png").exists()
    assert_one_line_error(cli("predict", "--params", out / "gluon" / "model.params", "--png", tmp_path),
                          "it is a folder")
    assert_one_line_error(cli("predict", "--params", out / "gluon" / "model.params", "--n", "0"), "--n must be")


def test_divergence_stops_with_advice_and_keeps_history(tmp_path, real_data):
    result = cli("train", "--model", "scratch", "--epochs", "3", "--lr", "1e30", "--out", tmp_path)
    assert result.returncode == 3
    assert "diverged in epoch 1" in result.stderr and "smaller learning rate" in result.stderr
    assert json.loads((tmp_path / "scratch" / "history.json").read_text()) == []
    assert not (tmp_path / "scratch" / "model.params").exists()


def test_ctrl_c_keeps_finished_epochs_and_no_partial_files(tmp_path, real_data):
    process = subprocess.Popen([sys.executable, "-m", "dropout_gluon", "train", "--model", "gluon",
                                "--epochs", "50", "--out", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # as in a terminal, even where the tests run with SIGINT ignored (e.g. nohup &)
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if line.startswith("epoch 2,") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and str(tmp_path / "gluon") in stderr
    history = json.loads((tmp_path / "gluon" / "history.json").read_text())
    assert len(history) >= 2 and [e["epoch"] for e in history] == list(range(1, len(history) + 1))
    leftovers = [p.name for p in (tmp_path / "gluon").iterdir() if p.name.startswith(".")]
    assert leftovers == [] and not (tmp_path / "gluon" / "model.params").exists()


def interrupt(command: list, moment: str, delay: float = 0.0) -> subprocess.CompletedProcess:
    """Run the command line, send it SIGINT `delay` seconds after `moment` (a module as Python's -X importtime
    reports it imported, 'package.' for its first submodule; or 'epoch ...', the start of a line of stdout),
    and return what it did, without the import times."""
    imports = not moment.startswith("epoch")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **PACKAGE_ENV, **({"PYTHONPROFILEIMPORTTIME": "1"} if imports
                                                                    else {})},
                               # as in a terminal, even where the tests run with SIGINT ignored (e.g. nohup &)
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr if imports else process.stdout:
        name = line.rsplit("|", 1)[-1].strip() if imports else line
        if name == moment or (moment.endswith((".", ",")) and name.startswith(moment)):
            break
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    stderr = "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith("import time:"))
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("entry, moment, delay", [
    ("python -m dropout_gluon", "dropout_gluon.", 0.0),  # the package's first module: MXNet is about to load
    ("python -m dropout_gluon", "dropout_gluon.", 0.3),
    ("python -m dropout_gluon", "dropout_gluon.", 1.0),  # MXNet loads (on a fast machine, the command has started)
    ("python -m dropout_gluon", "mxnet", 0.0),  # MXNet has loaded: the package's other modules, then the command's
    ("python -m dropout_gluon", "dropout_gluon.cli", 0.0),  # the command starts: its arguments, the data
    ("python -m dropout_gluon", "epoch 1,", 0.0),  # training
    ("dropout-gluon", "dropout_gluon.", 0.3),  # the console script imports the package from another entry
    ("dropout-gluon", "dropout_gluon.cli", 0.0),
])
def test_ctrl_c_at_any_moment_is_one_line_and_status_130(tmp_path, real_data, entry, moment, delay):
    if entry == "dropout-gluon":
        script = Path(sys.executable).with_name("dropout-gluon")
        if not script.is_file():
            pytest.skip(f"no console script {script} (the package is not installed in this environment)")
        command = [str(script)]
    else:
        command = [sys.executable, "-m", "dropout_gluon"]
    result = interrupt(command + ["train", "--model", "gluon", "--epochs", "3", "--out", str(tmp_path / "out")],
                       moment, delay)
    assert result.returncode == 130, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("dropout-gluon: interrupted"), result.stderr


def test_ctrl_c_as_python_starts(tmp_path):
    # Before Python runs any code of the package, a Ctrl-C is Python's: sent at once, it lands before Python has
    # its handler, and the process ends by the signal (status 130 in a shell), printing nothing.
    process = subprocess.Popen([sys.executable, "-m", "dropout_gluon", "data", "status"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, **PACKAGE_ENV},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert (process.returncode, stderr) in ((-signal.SIGINT, ""), (130, "dropout-gluon: interrupted\n")), stderr


def test_progress_passes_every_batch_through():
    images, labels = np.zeros((50, 28, 28), np.uint8), np.arange(50) % 10
    data_iter = DataIter(images, labels, 8, shuffle=False)
    progress = BatchProgress(data_iter, "test")
    assert len(progress) == 7
    assert [y.asnumpy().tolist() for _, y in progress] == [y.asnumpy().tolist() for _, y in data_iter]


def test_output_into_a_closed_pipe_stops_quietly(real_data):
    # `dropout-gluon data status | head -1`: the reader goes away before the output is written.
    proc = subprocess.Popen([sys.executable, "-m", "dropout_gluon", "data", "status"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # long before the command has imported MXNet and checked the files
    stderr = proc.stderr.read()
    assert proc.wait() == 1
    assert stderr == ""
