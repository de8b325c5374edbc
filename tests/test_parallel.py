"""Sweeps on every core (a Dask cluster the sweep starts) and on a Dask scheduler, on the real data (the quick
sweep of one exercise):

- `--jobs 2` gives the records of `--jobs 1`, number for number, and the same table, and leaves the
  environment as it was;
- Ctrl-C on a parallel sweep: exit 130, finished runs kept, no worker process left behind; the same sweep
  then resumes without retraining them;
- workers killed mid-run: their runs are retried, and the result is unchanged;
- a Dask cluster on 127.0.0.1 (a scheduler, two worker processes) gives the local records, and its workers
  let go of their copies of the data after the sweep; a worker without the data fails its runs with the
  data error, in one line;
- the cache key is the numerics record of the process that trains: native numerics with 2 threads per
  operator here and 1 in the workers are not mixed; Dask workers with two threads are refused;
- a sweep trains on the dataset it is given (in its own process; workers and Dask refuse it);
- a run that always crashes its worker fails alone; the runs beside it are stored;
- faults: an answer that cannot be unpickled fails its runs without a hang, a worker that cannot be started
  fails the sweep in one line, workers exit when the sweep's process is SIGKILLed, and a terminal's Ctrl-C
  (to the whole process group) prints one line, no traceback.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import required

from dropout_gluon import exercises
from dropout_gluon.errors import UserError
from dropout_gluon.exercises.sweep import LOST

pytestmark = pytest.mark.realdata
QUICK = dict(quick=True, epochs=2, progress=False)  # the swap exercise: 6 runs of ~1 s


def comparable(records) -> list:
    """Records without wall-clock times, which differ between two identical runs, in key order."""
    records = records.values() if isinstance(records, dict) else records
    return sorted((dict(r, seconds=None, history=[dict(e, seconds=None) for e in r["history"]]) for r in records),
                  key=lambda r: r["key"])


def stored(cache: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted(cache.glob("*.json"))]


@pytest.fixture(scope="module")
def one_job(real_data, tmp_path_factory):
    """The quick swap sweep trained in this process: its records and table."""
    folder = tmp_path_factory.mktemp("one-job")
    result = exercises.run_exercise("swap", jobs=1, out_dir=folder / "out", cache_dir=folder / "cache", **QUICK)
    return stored(folder / "cache"), result.table


def test_two_jobs_give_the_records_of_one(one_job, tmp_path):
    environment = dict(os.environ)
    result = exercises.run_exercise("swap", jobs=2, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", **QUICK)
    records, table = one_job
    assert len(records) == 6 and comparable(stored(tmp_path / "cache")) == comparable(records)
    assert result.table == table
    assert dict(os.environ) == environment  # Dask's nannies put their workers' variables here while they ran


def test_killed_workers_runs_are_retried(one_job, tmp_path):
    killed = []

    def kill_the_workers(record):  # after the first stored run: each worker is training the next ones
        if not killed:
            killed.extend(p.pid for p in multiprocessing.active_children())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    exercises.run_exercise("swap", jobs=2, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                           after_run=kill_the_workers, **QUICK)
    assert len(killed) == 2
    assert comparable(stored(tmp_path / "cache")) == comparable(one_job[0])


def _processes_with(token: str) -> list:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_ctrl_c_stops_every_worker_and_the_sweep_resumes(one_job, tmp_path):
    token = f"DROPOUT_GLUON_TEST={uuid.uuid4()}"  # every process of this sweep inherits it
    cache = tmp_path / "cache"
    process = subprocess.Popen(_sweep_command(tmp_path, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=_with(token), preexec_fn=_as_in_a_terminal)
    deadline = time.monotonic() + 120
    while not list(cache.glob("*.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("dropout-gluon: interrupted; the finished runs are kept in")
    kept = stored(cache)
    assert 1 <= len(kept) < 6
    time.sleep(1)  # MXNet's own helper processes, if any, end with their parent
    assert _processes_with(token) == []

    computed = []
    exercises.run_exercise("swap", quick=True, epochs=6, jobs=2, out_dir=tmp_path / "out", cache_dir=cache,
                           progress=False, after_run=computed.append)
    assert len(computed) == 6 - len(kept) and not {r["key"] for r in computed} & {r["key"] for r in kept}


def local_cluster(n_workers: int, env: dict, threads: int = 1):
    """A Dask scheduler and `n_workers` worker processes, all on 127.0.0.1 (the dashboard too)."""
    try:
        import distributed
    except ImportError as e:
        required("Dask's distributed (the extra 'cluster')", e)
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True, host="127.0.0.1",
                                    dashboard_address="127.0.0.1:0", env=env)


@pytest.fixture(scope="module")
def dask_cluster():
    with local_cluster(2, {"OMP_NUM_THREADS": "1"}) as cluster:
        yield cluster.scheduler_address


def test_a_dask_cluster_gives_the_local_records_and_its_workers_let_go_of_the_data(one_job, dask_cluster, tmp_path):
    import distributed

    from dropout_gluon import fashion_mnist

    seen = []  # each worker's verified data files, as a run ends (one copy per worker, kept for its next runs)
    result = exercises.run_exercise("swap", scheduler=dask_cluster, out_dir=tmp_path / "out",
                                    cache_dir=tmp_path / "cache", **QUICK,
                                    after_run=lambda _: seen.append(held(dask_cluster)))
    assert comparable(stored(tmp_path / "cache")) == comparable(one_job[0])
    assert result.table == one_job[1]
    assert any(sum(counts.values()) for counts in seen)  # the workers did hold the data during the sweep
    with distributed.Client(dask_cluster) as client:  # and hold none after it
        assert set(client.run(lambda: fashion_mnist._verified.cache_info().currsize).values()) == {0}


def held(address: str) -> dict:
    """How many verified data files each Dask worker holds."""
    import distributed

    from dropout_gluon import fashion_mnist

    with distributed.Client(address) as client:
        return client.run(lambda: fashion_mnist._verified.cache_info().currsize)


def test_a_dask_worker_without_the_data_fails_its_runs_in_one_line(real_data, tmp_path):
    with local_cluster(1, {"DROPOUT_GLUON_DATA": str(tmp_path / "none")}) as c:
        with pytest.raises(exercises.SweepFailed) as e:
            exercises.run_exercise("swap", scheduler=c.scheduler_address, out_dir=tmp_path / "out",
                                   cache_dir=tmp_path / "cache", **QUICK)
    message = str(e.value)
    assert "\n" not in message and message.startswith("6 of 6 runs failed")
    assert f"the data folder (DROPOUT_GLUON_DATA): {tmp_path / 'none'} does not exist" in message
    assert stored(tmp_path / "cache") == []


def test_the_cache_key_is_the_record_of_the_process_that_trains(tmp_path):
    # Native numerics on a simulated 4-core x86 machine, where MXNet gives each operator 2 threads: the
    # sweep's own process trains with 2 (--jobs 1), its workers with 1 (--jobs 4). Different floats: the two
    # must not reuse each other's runs. With 1 thread in both, they are the same runs, reused.
    cache = tmp_path / "cache"

    def exercise(jobs: int, threads: str) -> list:
        env = {**os.environ, "DROPOUT_GLUON_NUMERICS": "native", "OMP_NUM_THREADS": threads}
        result = subprocess.run([sys.executable, "-m", "dropout_gluon", "exercise", "swap", "--quick", "--seeds", "1",
                                 "--epochs", "1", "--jobs", str(jobs), "--no-progress", "--out",
                                 str(tmp_path / f"out-{jobs}-{threads}"), "--cache", str(cache)],
                                capture_output=True, text=True, check=False, env=env)
        assert result.returncode == 0, result.stderr
        return stored(cache)

    one = exercise(1, threads="2")
    assert len(one) == 3 and {(r["numerics"]["mode"], r["numerics"]["threads_per_operator"]) for r in one} == \
        {("native", 2)}
    both = exercise(4, threads="2")
    four = [r for r in both if r["key"] not in {r["key"] for r in one}]
    assert len(both) == 6 and {r["numerics"]["threads_per_operator"] for r in four} == {1}
    mtimes = {p: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    assert exercise(1, threads="1") == both  # one thread here too: the workers' runs, reused (none trained)
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.json")} == mtimes
    assert (tmp_path / "out-1-1" / "swap.md").read_text() == (tmp_path / "out-4-2" / "swap.md").read_text()


def test_dask_workers_with_two_threads_are_refused_in_one_line(tmp_path):
    with local_cluster(1, {}, threads=2) as c:
        with pytest.raises(UserError) as e:
            exercises.run_exercise("swap", scheduler=c.scheduler_address, out_dir=tmp_path / "out",
                                   cache_dir=tmp_path / "cache", **QUICK)
    assert "\n" not in str(e.value) and str(e.value).endswith(f"'dask worker {c.scheduler_address} --nthreads 1'")
    assert not (tmp_path / "cache").exists()


def test_a_sweep_trains_on_the_dataset_it_is_given(tmp_path):
    import numpy as np

    from dropout_gluon import data, run
    from dropout_gluon.fashion_mnist import Dataset, Source

    rng = np.random.default_rng(0)  # no folder holds these: a run that read one would differ
    arrays = tuple(a for n in (512, 256) for a in (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                                                  rng.integers(0, 10, n, dtype=np.uint8)))
    dataset = Dataset(Source("final", str(tmp_path / "synthetic")), arrays)
    config = exercises.plan("swap", seeds=1, epochs=1).configs()[0]
    records = exercises.sweep([config], cache_dir=tmp_path / "cache", dataset=dataset, progress=False)
    _, history = run.train(config, data.data_iters(dataset, config.batch_size), log=None)
    assert [(e["loss"], e["test_acc"]) for e in records[config]["history"]] == [(e.loss, e.test_acc) for e in history]
    assert records[config]["data"] == {"data_release": "final", "data_dir": str(tmp_path / "synthetic")}
    for elsewhere in (dict(jobs=2), dict(scheduler="127.0.0.1:1")):  # refused before any worker starts
        with pytest.raises(UserError, match="^dataset= is trained on in this process only"):
            exercises.sweep([config], cache_dir=tmp_path / "other", dataset=dataset, **elsewhere)


# A sweep whose every run fails in a way the sweep's process cannot read back, in a process of its own: a hang
# fails the test (subprocess's timeout), not the suite.
UNREADABLE = """
import sys
import faults
from dropout_gluon import exercises
from dropout_gluon.exercises import pool
pool.work = faults.raise_unreadable  # looked up by the sweep as it submits
try:
    exercises.run_exercise("swap", jobs=2, out_dir=sys.argv[1] + "/out", cache_dir=sys.argv[1] + "/cache",
                           quick=True, seeds=1, epochs=2, progress=False)
except exercises.SweepFailed as e:
    print(e)
"""


def test_an_answer_that_cannot_be_read_back_fails_its_runs(tmp_path):
    result = subprocess.run([sys.executable, "-c", UNREADABLE, str(tmp_path)], capture_output=True, text=True,
                            check=False, timeout=300, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 of 3 runs failed"), result.stdout
    assert not list((tmp_path / "cache").glob("*.json"))


def test_a_run_that_always_crashes_fails_alone_and_the_runs_beside_it_are_stored(one_job, tmp_path, monkeypatch,
                                                                                capsys):
    import faults

    from dropout_gluon.exercises import pool

    monkeypatch.setattr(pool, "work", faults.crash_the_swapped_seed_1)
    with pytest.raises(exercises.SweepFailed) as e:
        exercises.run_exercise("swap", jobs=2, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", **QUICK)
    crashing = "gluon p=(0.5, 0.2) h=256 wd=0 epochs=2 seed=1"
    assert "\n" not in str(e.value) and str(e.value).startswith(f"1 of 6 runs failed, e.g. {crashing}: {LOST}")
    healthy = [r for r in one_job[0] if (r["config"]["drop_prob1"], r["config"]["seed"]) != (0.5, 1)]
    assert len(healthy) == 5 and comparable(stored(tmp_path / "cache")) == comparable(healthy)
    notes = [line for line in capsys.readouterr().err.splitlines() if "gluon p=(" in line]
    assert notes == [f"{crashing}: {LOST}"], notes


def test_a_worker_that_cannot_be_started_fails_the_sweep_in_one_line(tmp_path, monkeypatch):
    from distributed.process import AsyncProcess

    async def no_more_processes(self):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(AsyncProcess, "start", no_more_processes)
    with pytest.raises(UserError) as e:  # the first worker is started to ask how it computes
        exercises.run_exercise("swap", jobs=2, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", **QUICK)
    assert str(e.value) == "cannot start a worker process: [Errno 24] Too many open files"
    assert not list((tmp_path / "cache").glob("*.json"))


def _with(token: str) -> dict:
    """This environment plus `token` (NAME=VALUE), which every process of a sweep started with it inherits."""
    name, value = token.split("=")
    return {**os.environ, name: value}


def _sweep_command(tmp_path, cache) -> list:
    return [sys.executable, "-m", "dropout_gluon", "exercise", "swap", "--quick", "--epochs", "6", "--jobs", "2",
            "--out", str(tmp_path / "out"), "--cache", str(cache), "--no-progress"]


def _as_in_a_terminal() -> None:
    # Ctrl-C as a terminal delivers it, even where the tests run with SIGINT ignored (e.g. `nohup ... &`), which
    # a child process would inherit.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_workers(token: str, process, count: int = 3) -> None:
    # The sweep's process and its two workers (the resource tracker may make a fourth).
    deadline = time.monotonic() + 120
    while len(_processes_with(token)) < count and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert len(_processes_with(token)) >= count


def test_workers_exit_when_the_sweeps_process_is_killed(tmp_path):
    token = f"DROPOUT_GLUON_TEST={uuid.uuid4()}"
    process = subprocess.Popen(_sweep_command(tmp_path, tmp_path / "cache"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=_with(token))
    _wait_for_workers(token, process)
    process.kill()  # SIGKILL, as a timeout, the OOM killer or a closed terminal would
    process.wait()
    deadline = time.monotonic() + 10
    while _processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(token) == []


def test_ctrl_c_in_a_terminal_prints_one_line(tmp_path):
    # A terminal's Ctrl-C reaches the whole process group: the sweep's process and every worker, at once.
    token = f"DROPOUT_GLUON_TEST={uuid.uuid4()}"
    process = subprocess.Popen(_sweep_command(tmp_path, tmp_path / "cache"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=_with(token), preexec_fn=_as_in_a_terminal)
    _wait_for_workers(token, process, count=2)  # the workers may still be loading MXNet: the riskiest moment
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and "interrupted" in stderr, stderr


@pytest.mark.parametrize("options", [{"jobs": 2}, {"scheduler": "tcp://127.0.0.1:1"}])
def test_without_dask_more_jobs_or_a_scheduler_say_what_to_install(options, tmp_path, monkeypatch):
    # Dask's distributed is the extra 'cluster', not a dependency: without it, one line says what to install.
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    install = r"Dask's 'distributed' is not installed: pip install 'dropout-gluon\[cluster\]'"
    with pytest.raises(UserError, match=install):
        exercises.run_exercise("swap", out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", **QUICK, **options)
    assert not (tmp_path / "out").exists()
