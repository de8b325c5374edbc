"""Sweeps on every core and on Dask, on the real data (the quick sweep of one exercise):

- `--jobs 2` gives the records of `--jobs 1`, number for number, and the same table;
- Ctrl-C on a parallel sweep: exit 130, finished runs kept, no worker process left behind; the same sweep
  then resumes without retraining them;
- a worker killed mid-run is reported with its run, which is retried, and the result is unchanged;
- a Dask cluster on 127.0.0.1 (a scheduler, two worker processes) gives the local records, and its workers
  let go of their copies of the data after the sweep; a worker without the data fails its runs with the
  data error, in one line;
- native numerics reach the workers, and two jobs still give the records of one;
- faults (issue 16, finding 2): an answer that cannot be unpickled fails its run in bounded time (the
  hand-written pool hung on it), a worker that cannot be started fails its run in one line, workers exit
  when the sweep's process is SIGKILLed, and a terminal's Ctrl-C (to the whole process group) prints one
  line, no traceback.
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
    result = exercises.run_exercise("swap", jobs=2, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", **QUICK)
    records, table = one_job
    assert len(records) == 6 and comparable(stored(tmp_path / "cache")) == comparable(records)
    assert result.table == table


def test_a_killed_worker_is_reported_and_its_run_retried(one_job, tmp_path, capsys):
    killed = []

    def kill_the_workers(record):  # after the first stored run: one worker holds the next run, one is idle
        if not killed:
            killed.extend(p.pid for p in multiprocessing.active_children())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    exercises.run_exercise("swap", jobs=2, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                           after_run=kill_the_workers, **QUICK)
    assert len(killed) == 2
    notes = [line for line in capsys.readouterr().err.splitlines() if "worker process died" in line]
    assert notes and all("gluon p=(" in line and "trying it once more" in line for line in notes), notes
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
                               text=True, env=_with(token))
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


def local_cluster(n_workers: int, env: dict):
    """A Dask scheduler and `n_workers` worker processes, all on 127.0.0.1 (the dashboard too)."""
    try:
        import distributed
    except ImportError as e:
        required("Dask's distributed (the extra 'cluster')", e)
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address="127.0.0.1:0", env=env)


@pytest.fixture(scope="module")
def dask_cluster():
    with local_cluster(2, {"OMP_NUM_THREADS": "1"}) as cluster:
        yield cluster.scheduler_address


def test_a_dask_cluster_gives_the_local_records_and_its_workers_let_go_of_the_data(one_job, dask_cluster, tmp_path):
    import distributed

    from dropout_gluon.exercises import pool

    seen = []  # each worker's data iterators, as a run ends (one copy per worker, kept for its next runs)
    result = exercises.run_exercise("swap", scheduler=dask_cluster, out_dir=tmp_path / "out",
                                    cache_dir=tmp_path / "cache", **QUICK,
                                    after_run=lambda _: seen.append(held(dask_cluster)))
    assert comparable(stored(tmp_path / "cache")) == comparable(one_job[0])
    assert result.table == one_job[1]
    assert any(sum(counts.values()) for counts in seen)  # the workers did hold the data during the sweep
    with distributed.Client(dask_cluster) as client:  # and hold none after it (issue 16, finding 5)
        assert set(client.run(lambda: pool.iterators.cache_info().currsize).values()) == {0}


def held(address: str) -> dict:
    """How many sets of data iterators each Dask worker holds."""
    import distributed

    from dropout_gluon.exercises import pool

    with distributed.Client(address) as client:
        return client.run(lambda: pool.iterators.cache_info().currsize)


def test_a_dask_worker_without_the_data_fails_its_runs_in_one_line(real_data, tmp_path):
    with local_cluster(1, {"DROPOUT_GLUON_DATA": str(tmp_path / "none")}) as c:
        with pytest.raises(exercises.SweepFailed) as e:
            exercises.run_exercise("swap", scheduler=c.scheduler_address, out_dir=tmp_path / "out",
                                   cache_dir=tmp_path / "cache", **QUICK)
    message = str(e.value)
    assert "\n" not in message and message.startswith("6 of 6 runs failed")
    assert f"the data folder (DROPOUT_GLUON_DATA): {tmp_path / 'none'} does not exist" in message
    assert stored(tmp_path / "cache") == []


def test_native_numerics_reach_the_workers_and_two_jobs_still_give_the_records_of_one(tmp_path):
    # The command starts itself again in native mode (its default is portable), and its workers inherit it.
    caches = {}
    for jobs in (1, 2):
        caches[jobs] = tmp_path / f"cache{jobs}"
        result = subprocess.run([sys.executable, "-m", "dropout_gluon", "exercise", "swap", "--quick", "--epochs", "2",
                                 "--numerics", "native", "--jobs", str(jobs), "--no-progress", "--out",
                                 str(tmp_path / f"out{jobs}"), "--cache", str(caches[jobs])],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    one, two = stored(caches[1]), stored(caches[2])
    assert len(one) == 6 and {r["computed_with"]["numerics"] for r in one + two} == {"native"}
    assert comparable(two) == comparable(one)
    assert (tmp_path / "out1" / "swap.md").read_text() == (tmp_path / "out2" / "swap.md").read_text()


def test_an_answer_that_cannot_be_read_back_fails_its_run_in_bounded_time(tmp_path, monkeypatch, capsys):
    import faults

    from dropout_gluon.exercises import pool

    monkeypatch.setattr(pool, "work", faults.raise_unreadable)  # looked up by the sweep as it submits
    start = time.monotonic()
    with pytest.raises(exercises.SweepFailed, match="6 of 6 runs failed.*could not be read back"):
        exercises.run_exercise("swap", jobs=2, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", **QUICK)
    assert time.monotonic() - start < 120  # no hang: each run tried twice, on a new pool each time
    notes = capsys.readouterr().err.splitlines()
    assert sum("trying it once more" in line for line in notes) == 6, notes
    assert not list((tmp_path / "cache").glob("*.json"))


def test_a_worker_that_cannot_be_started_fails_its_run_in_one_line(tmp_path, monkeypatch):
    import concurrent.futures as cf

    def no_more_processes(self, *args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(cf.ProcessPoolExecutor, "submit", no_more_processes)
    with pytest.raises(exercises.SweepFailed, match="6 of 6 runs failed.*cannot start a worker process: "
                                                    r"\[Errno 24\] Too many open files"):
        exercises.run_exercise("swap", jobs=2, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", **QUICK)


def _with(token: str) -> dict:
    """This environment plus `token` (NAME=VALUE), which every process of a sweep started with it inherits."""
    name, value = token.split("=")
    return {**os.environ, name: value}


def _sweep_command(tmp_path, cache) -> list:
    return [sys.executable, "-m", "dropout_gluon", "exercise", "swap", "--quick", "--epochs", "6", "--jobs", "2",
            "--out", str(tmp_path / "out"), "--cache", str(cache), "--no-progress"]


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
                               env=_with(token))
    _wait_for_workers(token, process, count=2)  # the workers may still be loading MXNet: the riskiest moment
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and "interrupted" in stderr, stderr
