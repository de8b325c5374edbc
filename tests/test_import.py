"""What importing the package does to the process (dropout_gluon/numerics.py, compat.py):

- the environment, and the threads and kernel of every thread pool but MXNet's own (numpy's, SciPy's imported
  before or after, the system's OpenMP runtime), are as without the package, in both modes;
- with an OpenMP runtime loaded before MXNet (PyTorch's, or another library's libgomp), training neither
  hangs nor changes its floats: make run's golden history, first epoch, both models;
- a mode that cannot be had fails the import in one line;
- nothing is applied when MXNet was imported first, and a warning says so;
- numpy's removed names come back only where missing (Python 3.12+), and only while MXNet loads but for the
  two MXNet reads as it runs.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import required

from dropout_gluon import compat, numerics
from dropout_gluon.errors import UserError

GOLDEN = json.loads((Path(__file__).parent / "golden" / "make_run.json").read_text())["epochs"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != numerics.MODE_VAR}


def run_python(code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=CLEAN_ENV,
                            check=False, timeout=timeout)  # a hang fails the test instead of the suite
    assert result.returncode == 0, result.stderr
    return result


# The environment, and every thread pool threadpoolctl finds but MXNet's own (numpy's and SciPy's OpenBLAS, the
# system's OpenMP runtime), with and without the package, SciPy imported before it or after it.
POOLS = """
import ctypes, json, os, sys
how, scipy_when = sys.argv[1:]
import numpy
if scipy_when == "before":
    import scipy.linalg
before = dict(os.environ)
if how == "package":
    import dropout_gluon
if scipy_when == "after":
    import scipy.linalg
ctypes.CDLL("libgomp.so.1")  # a library that uses the system's OpenMP runtime (loaded already with the package)
from threadpoolctl import threadpool_info
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
pools = sorted([lib["filepath"], lib["num_threads"], lib.get("architecture")] for lib in threadpool_info()
               if os.sep + "mxnet" + os.sep not in lib["filepath"])
print(json.dumps([changed, pools]))
"""


@pytest.mark.parametrize("mode", numerics.MODES)
@pytest.mark.parametrize("scipy_when", ["before", "after"])
def test_importing_the_package_leaves_the_environment_and_every_other_thread_pool_alone(scipy_when, mode):
    if importlib.util.find_spec("scipy") is None:
        required("SciPy (the extra 'test' installs it)", "scipy is not installed")
    if mode == "portable" and "avx" not in numerics.processor()[1]:
        pytest.skip("portable numerics need a processor with AVX")
    # OMP_NUM_THREADS unset: MXNet would set its own on the loading thread, the one threadpoolctl asks
    env = {k: v for k, v in CLEAN_ENV.items() if k not in (*numerics.PORTABLE, *numerics.HIDDEN,
                                                             "OPENBLAS_NUM_THREADS")}
    outputs = [json.loads(subprocess.run([sys.executable, "-c", POOLS, how, scipy_when], capture_output=True,
                                         text=True, env={**env, numerics.MODE_VAR: mode},
                                         check=True).stdout.splitlines()[-1])
               for how in ("package", "numpy only")]
    (changed, pools), (_, pools_alone) = outputs
    threadpoolctls_own = ["KMP_DUPLICATE_LIB_OK"]  # threadpoolctl sets it as it loads (here: after the package)
    assert changed in ([], threadpoolctls_own)  # no pin, no mode: a child process inherits nothing of ours
    assert len(pools) >= 3 and pools == pools_alone  # numpy's, SciPy's, libgomp


# The chapter's make run, first epoch of each model, after another OpenMP runtime was loaded.
AFTER = """
import sys
if sys.argv[1] == "torch":
    import torch
else:
    import ctypes
    ctypes.CDLL("libgomp.so.1")  # what MXNet's OpenBLAS binds to, initialised before MXNet sets anything
import json
import dropout_gluon as gb
runs = [train(1, log=None)[1] for train in (gb.train_scratch, gb.train_gluon)]
gb.set_seed(0)  # and the book's own train_ch3, called as the chapter's cells call it
model, (train_iter, test_iter) = gb.build(gb.RunConfig()), gb.load_data_fashion_mnist(256)
runs.append(gb.train_ch3(model.net, train_iter, test_iter, model.loss, 1, 256, trainer=model.trainer, log=None))
print(json.dumps([gb.numerics.LOADED.get("MXNET_ENGINE_TYPE"), *[[list(e[:4]) for e in run] for run in runs]]))
"""


@pytest.mark.realdata
@pytest.mark.parametrize("first", ["torch", "libgomp"])
def test_training_after_another_openmp_runtime_finishes_with_the_golden_digits(first, real_data):
    if first == "torch" and importlib.util.find_spec("torch") is None:
        if sys.version_info[:2] != (3, 11):  # the CPU build CI installs is for 3.11 (.ci/run)
            pytest.skip("PyTorch's CPU build is installed for Python 3.11 only")
        required("PyTorch (pip install -e '.[bench]', as .ci/run does)", "torch is not installed")
    if numerics.MODE != "portable":
        pytest.skip("the golden history is portable numerics'")
    # MXNet's engine threads call OpenBLAS, which asks that runtime for their OpenMP threads on every call
    result = run_python(AFTER, first, timeout=300)
    engine, scratch, gluon, book = json.loads(result.stdout.splitlines()[-1])
    assert engine is None  # MXNet's own threaded engine, which sets its threads' OpenMP threads itself
    assert scratch == GOLDEN["scratch"][:1] and gluon == GOLDEN["gluon"][:1]
    assert book == GOLDEN["scratch"][:1]  # the book's own train_ch3 too


def test_nothing_is_applied_when_mxnet_was_loaded_first():
    # On a numpy newer than 1.23 (Python 3.12+) MXNet loads only after numpy's removed names are back.
    code = ("import numpy; from dropout_gluon import compat; compat.restore_numpy_names(numpy); import mxnet, "
            "dropout_gluon; print(dropout_gluon.numerics.record()['mode'])")
    # (the package's compat module loads the package, and with it MXNet: import it by path instead)
    code = code.replace("from dropout_gluon import compat", "import importlib.util as u; s = u.spec_from_file_location("
                        f"'compat', {compat.__file__!r}); compat = u.module_from_spec(s); s.loader.exec_module(compat)")
    result = run_python(code)
    assert result.stdout.split()[-1] == "native"
    assert "mxnet was imported before dropout_gluon" in result.stderr  # a warning: not the README's digits


def test_numpys_removed_names_come_back_only_where_missing_and_only_while_mxnet_loads():
    import numpy

    fake = types.SimpleNamespace(all=numpy.all, sort=numpy.sort, isin=numpy.isin, asarray=numpy.asarray,
                                 PZERO="its own")
    with compat.numpy_names(fake):
        assert fake.PZERO == "its own" and fake.bool is bool and fake.NaN != fake.NaN and hasattr(fake, "mirr")
        assert fake.alltrue([1, 0]) == numpy.all([1, 0]) and fake.alltrue is not numpy.all  # MXNet keys on both
        assert fake.msort([[2, 1], [1, 2]]).tolist() == [[1, 1], [2, 2]]
        assert fake.in1d([[1, 5]], [5]).tolist() == [False, True]
        with pytest.raises(RuntimeError, match="NEP 32"):
            fake.mirr([1], 0.1, 0.1)
    assert fake.PZERO == "its own" and {n for n in vars(fake) if n not in ("all", "sort", "isin", "asarray")} == \
        {"PZERO", *compat.CALL_TIME}  # what MXNet's functions read as they run stays


# numpy's names that are not modules (a submodule such as numpy.typing appears as the libraries import it)
NUMPY_NAMES = ("import json, numpy, types; names = lambda: {n for n in dir(numpy) if not isinstance(getattr(numpy, n), "
               "types.ModuleType)}; before = names(); import dropout_gluon; "
               "print(json.dumps(sorted(names() - before)))")


def test_importing_the_package_leaves_numpy_as_installed_but_for_what_mxnet_reads_as_it_runs():
    added = json.loads(run_python(NUMPY_NAMES).stdout.splitlines()[-1])
    assert set(added) <= set(compat.CALL_TIME)  # (numpy 1.23, Python 3.11: none)


def test_a_mode_that_cannot_be_had_fails_the_import_in_one_line():
    result = subprocess.run([sys.executable, "-c", "import dropout_gluon"], capture_output=True, text=True,
                            env={**CLEAN_ENV, numerics.MODE_VAR: "fast"}, check=False)
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1] == ("dropout_gluon.numerics.NumericsError: DROPOUT_GLUON_NUMERICS must be "
                                              "'portable' or 'native', got 'fast'")
    assert issubclass(numerics.NumericsError, UserError)  # the command line prints it as one line


def test_without_mxnet_the_import_says_how_to_install_it():
    # What `pip install .` leaves on Python 3.13, where pip cannot install MXNet with its dependencies.
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['mxnet'] = None; import dropout_gluon"],
                            capture_output=True, text=True, env=CLEAN_ENV, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("ImportError: MXNet 1.9.1 is not installed: pip install")
