"""MXNet's engine settings the package applies as it loads MXNet (the numerics modes: test_numerics.py):

- a second worker only where each operator runs on one OpenMP thread, never over a user's own choice;
- MXNet really gets the second worker, and child processes do not inherit it;
- nothing is applied when MXNet was imported first;
- training with them gives MXNet's defaults' floats, both models, real data.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import types
from pathlib import Path

import pytest

from dropout_gluon import engine

# The environment as it was before this process imported the package, less any threading choice.
CLEAN_ENV = {k: v for k, v in engine.environ_for(engine.MODE).items() if k not in engine.USER_CHOICES}


@pytest.mark.parametrize("cpus, machine, expected", [
    (1, "x86_64", "2"), (2, "x86_64", "2"), (3, "AMD64", "2"),
    (4, "x86_64", None),  # two OpenMP threads per operator: two workers could deadlock OpenBLAS
    (2, "aarch64", None),  # MXNet halves the processors only on x86: two threads per operator
])
def test_native_adds_a_second_worker_only_where_each_operator_runs_on_one_thread(cpus, machine, expected):
    added = engine.settings({}, cpus, machine, "native", {"avx"})
    assert added.get("MXNET_CPU_WORKER_NTHREADS") == expected
    assert added.get("MXNET_OPTIMIZER_AGGREGATION_SIZE") == ("1" if expected else None)


@pytest.mark.parametrize("mode", engine.MODES)
@pytest.mark.parametrize("name", engine.USER_CHOICES)
def test_a_users_threading_choice_is_left_alone(name, mode):
    assert "MXNET_CPU_WORKER_NTHREADS" not in engine.settings({name: "3"}, 2, "x86_64", mode, {"avx"})


def run_python(code: str, **env) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**CLEAN_ENV, **env}, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


# Threads of the process once MXNet has run an operator on the CPU (its engine starts workers lazily).
COUNT_THREADS = """
import os, dropout_gluon
from mxnet import nd
(nd.ones(1) + 1).wait_to_read()
print(len(os.listdir("/proc/self/task")), os.environ.get("MXNET_CPU_WORKER_NTHREADS", "-"),
      dropout_gluon.ENGINE_SETTINGS)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_importing_the_package_gives_mxnet_its_second_worker_and_children_nothing():
    expected = engine.settings({}, engine.usable_cpus(), platform.machine(), engine.MODE, engine.cpuinfo()[1])
    threads, leftover, applied = run_python(COUNT_THREADS).split(" ", 2)
    one_worker = run_python(COUNT_THREADS, MXNET_CPU_WORKER_NTHREADS="1").split(" ", 2)
    assert applied == repr(expected)
    second = "MXNET_CPU_WORKER_NTHREADS" in expected
    assert int(threads) == int(one_worker[0]) + (1 if second else 0)  # the engine really has it
    assert leftover == "-"  # read by MXNet as it loaded, then unset: a child process cannot inherit it
    assert "MXNET_CPU_WORKER_NTHREADS" not in one_worker[2]  # a user's own setting turns the package's off


def test_nothing_is_applied_when_mxnet_was_loaded_first():
    # On a numpy newer than 1.23 (Python 3.12+) MXNet loads only after numpy's removed names are back: the engine
    # module, imported under a bare stand-in for the package (whose own import would load MXNet), puts them back.
    code = ("import sys, types, numpy; package = types.ModuleType('dropout_gluon'); "
            f"package.__path__ = [{str(Path(engine.__file__).parent)!r}]; sys.modules['dropout_gluon'] = package; "
            "from dropout_gluon import engine; engine.restore_numpy_names(numpy); "
            "[sys.modules.pop(name) for name in list(sys.modules) if name.startswith('dropout_gluon')]; "
            "import mxnet, dropout_gluon; print(dropout_gluon.ENGINE_SETTINGS, dropout_gluon.RunConfig().numerics)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=CLEAN_ENV, check=True)
    assert result.stdout.split()[-2:] == ["{}", "native"]
    assert "mxnet was imported before dropout_gluon" in result.stderr  # a warning: not the README's digits


def test_numpys_removed_names_come_back_only_where_missing():
    import numpy

    fake = types.SimpleNamespace(all=numpy.all, sort=numpy.sort, isin=numpy.isin, asarray=numpy.asarray,
                                 PZERO="its own")
    restored = engine.restore_numpy_names(fake)
    assert "PZERO" not in restored and fake.PZERO == "its own" and fake.bool is bool and "mirr" in restored
    assert fake.alltrue([1, 0]) == numpy.all([1, 0]) and fake.alltrue is not numpy.all  # MXNet keys on both
    assert fake.msort([[2, 1], [1, 2]]).tolist() == [[1, 1], [2, 2]]
    assert fake.in1d([[1, 5]], [5]).tolist() == [False, True]
    with pytest.raises(RuntimeError, match="NEP 32"):
        fake.mirr([1], 0.1, 0.1)
    assert engine.restore_numpy_names(numpy) == []  # done once, as the package loaded MXNet


TRAIN_BOTH = """
import json
from dropout_gluon import data, run
train_x, train_y, test_x, test_y = data.load_dataset(download=False).arrays
iters = (data.DataIter(train_x[:15360], train_y[:15360], 256, shuffle=True),
         data.DataIter(test_x[:2560], test_y[:2560], 256, shuffle=False))
print(json.dumps({name: [list(e[:4]) for e in train(2, data_iters=iters, log=None)[1]]
                  for name, train in (("scratch", run.train_scratch), ("gluon", run.train_gluon))}))
"""


def test_the_settings_train_to_the_same_floats_as_mxnets_defaults(real_data):
    # Operators overlap in another order on every run; the engine must still give each the same inputs.
    # (Where `settings` adds nothing, e.g. on 4 or more cores, both runs use MXNet's defaults.)
    mxnet_defaults = json.loads(run_python(TRAIN_BOTH, MXNET_CPU_WORKER_NTHREADS="1",
                                           MXNET_OPTIMIZER_AGGREGATION_SIZE="4"))
    ours = json.loads(run_python(TRAIN_BOTH))
    assert ours == mxnet_defaults
    assert ours["scratch"] != ours["gluon"]  # the comparison is between real, distinct runs
