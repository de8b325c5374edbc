"""How MXNet computes, chosen before it loads: the numerics mode (portable or native) and the engine settings.

The same configuration and seed give the same floats on one machine in either mode. Across processors,
three things inside MXNet 1.9.1's wheel change the floats (docs/performance.md has the evidence):
- the bundled OpenBLAS 0.3.13 picks a GEMM kernel per processor (`OPENBLAS_CORETYPE` forces one);
- oneDNN 2.4 JIT-compiles `FullyConnected`, the ReLU activation and `log_softmax` for the widest instruction
  set it finds (`DNNL_MAX_CPU_ISA` caps it; `MXNET_MKLDNN_ENABLED=0` turns it off);
- the OpenMP threads an operator gets (half the processors on x86): MXNet's own reductions split by thread.
MXNet's own kernels are compiled for SSE2 and draw random numbers per fixed-size chunk: the same everywhere.

- `portable` pins all three: OpenBLAS's Sandybridge kernel (AVX, so the floor is a processor with AVX),
  oneDNN off (its operators fall back to MXNet's own kernels and OpenBLAS), one thread per operator. The
  same history to the last digit on every such x86-64 machine (tests/test_numerics.py simulates machines).
- `native` is the fastest measured setting for the processor at hand (`native_settings`); its digits
  depend on the processor.

`DROPOUT_GLUON_NUMERICS` picks the mode (default: portable, where the processor has AVX). Every run
records `describe()`.
"""
from __future__ import annotations

import functools
import os
import platform
import sys
import warnings

from .errors import UserError

MODES = ("portable", "native")
MODE_VAR = "DROPOUT_GLUON_NUMERICS"
PORTABLE = {"OPENBLAS_CORETYPE": "Sandybridge", "MXNET_MKLDNN_ENABLED": "0", "OMP_NUM_THREADS": "1",
            "MXNET_OMP_MAX_THREADS": "1"}
# With oneDNN off, MXNet warns once per operator that falls back to its own kernel: that is the point, not news.
QUIET_FALLBACK = {"MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0"}
PORTABLE_FLOOR = "avx"  # the Sandybridge kernel's instruction set
# Variables with which a user (or the benchmark) chooses MXNet's engine; if any is set, we add no second worker.
USER_CHOICES = ("MXNET_CPU_WORKER_NTHREADS", "MXNET_ENGINE_TYPE", "OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS",
                "MXNET_OPTIMIZER_AGGREGATION_SIZE")


def usable_cpus() -> int:
    """Processors this process may run on (what OpenMP counts), or all of them where that is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def is_x86(machine: str) -> bool:
    return machine.lower() in ("x86_64", "amd64", "i386", "i686")


def threads_per_operator(cpus: int, machine: str) -> int:
    """OpenMP threads MXNet 1.9 gives each operator when OMP_NUM_THREADS is unset: half the processors on x86."""
    return max(1, cpus // 2 if is_x86(machine) else cpus)


def cpuinfo() -> tuple:
    """`(model name, set of instruction-set flags)` of this processor, from /proc/cpuinfo (empty where unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line.partition(":") for line in f.read().split("\n\n")[0].splitlines()]
    except OSError:
        return platform.processor() or "unknown processor", set()
    info = {key.strip(): value.strip() for key, _, value in lines}
    return info.get("model name", "unknown processor"), set(info.get("flags", "").split())


class NumericsError(UserError):
    """A numerics mode that cannot be had here (unknown, or a processor below portable's floor)."""


def choose(environ, flags: set, machine: str) -> str:
    """The mode: `DROPOUT_GLUON_NUMERICS` if set (a NumericsError if it cannot be had), else portable where
    the processor allows it, else native."""
    asked = environ.get(MODE_VAR, "")
    if asked and asked not in MODES:
        raise NumericsError(f"{MODE_VAR} must be 'portable' or 'native', got {asked!r}")
    portable_ok = is_x86(machine) and PORTABLE_FLOOR in flags
    if asked == "portable" and not portable_ok:
        raise NumericsError("portable numerics need an x86-64 processor with AVX (OpenBLAS's Sandybridge kernel); "
                            "this one has none: use --numerics native (its digits differ from the README's)")
    return asked or ("portable" if portable_ok else "native")


def native_settings(environ, flags: set) -> dict:
    """The fastest setting measured for this kind of processor (docs/performance.md, 'The two modes').

    - OpenBLAS 0.3.13 falls back to its SSE3 kernel (Prescott) on processors newer than it knows (seen on an
      AVX-512 Xeon: 3.0 s a scratch epoch, 1.65 s with the Haswell kernel), so we name the kernel for the
      instruction set: Haswell with AVX2 and FMA (also on AVX-512, which this build has no kernel for),
      Sandybridge with AVX only.
    - oneDNN is on where the processor has AVX-512 (Gluon 1.21 s against 1.70 s off, scratch the same) and
      off with AVX2 alone (on a Zen EPYC: scratch 4.1 s against 8.2 s on, Gluon 4.3 s against 3.2 s: off
      is faster over both models).
    A user's own value of any of these variables stands.
    """
    chosen = {}
    if "avx2" in flags and "fma" in flags:
        chosen["OPENBLAS_CORETYPE"] = "Haswell"
        if "avx512f" not in flags:
            chosen["MXNET_MKLDNN_ENABLED"] = "0"
    elif "avx" in flags:
        chosen["OPENBLAS_CORETYPE"] = "Sandybridge"
    chosen = {k: v for k, v in chosen.items() if k not in environ}
    return {**chosen, **QUIET_FALLBACK} if chosen.get("MXNET_MKLDNN_ENABLED") == "0" else chosen


def settings(environ, cpus: int, machine: str, mode: str, flags: set) -> dict:
    """Environment variables to add before MXNet loads: the mode's, and a second engine worker where safe."""
    added = {**PORTABLE, **QUIET_FALLBACK} if mode == "portable" else native_settings(environ, flags)
    threads = 1 if mode == "portable" else threads_per_operator(cpus, machine)
    # MXNet runs operators on one worker thread. With two, independent operators overlap: the next batch's
    # dropout draws and gather next to this batch's backward pass, an update next to the gradients still
    # being computed; and Gluon's SGD then updates each parameter as soon as its gradient is ready
    # (aggregation size 1) instead of in groups of 4 after the whole backward pass: faster on 2 cores
    # (docs/performance.md). The floats are the same (tested): each operator still runs alone on its
    # OpenMP threads, and the engine keeps every read-after-write order. Safe only while each operator
    # gets one OpenMP thread: with two threads per operator, two workers calling the bundled OpenBLAS
    # 0.3.13 (an OpenMP build) at once deadlock (a gdb stack hung in exec_blas).
    # The portable pins count as ours, not the user's, when a child process inherits them.
    users = {k for k in USER_CHOICES if k in environ and not (mode == "portable" and environ[k] == PORTABLE.get(k))}
    if not users and threads == 1:
        added.update({"MXNET_CPU_WORKER_NTHREADS": "2", "MXNET_OPTIMIZER_AGGREGATION_SIZE": "1"})
    return added


def restore_numpy_names(numpy) -> list:
    """Put back on `numpy` the names that MXNet 1.9.1 (built for numpy < 1.24) reads as it loads and this numpy
    removed, as numpy 1.23 had them; return the names set. A numpy that has a name keeps its own (numpy 1.23:
    none set), and no installed file is edited. Python 3.12 needs numpy 1.26, 3.13 numpy 2.1 or newer."""
    def alias(name):  # a function of its own: MXNet's __array_function__ table is keyed by the function object
        return lambda *args, **kwargs: getattr(numpy, name)(*args, **kwargs)

    def removed(name):  # what numpy 1.20-1.26 itself returned for the financial functions (NEP 32)
        def refuse(*args, **kwargs):
            raise RuntimeError(f"numpy.{name} was removed in NumPy 1.20 (NEP 32): see numpy_financial")
        return refuse

    names = {
        "bool": bool,  # numpy 1.24 removed the alias (2.0 brought it back, as bool_): mxnet/numpy/utils.py
        # numpy 2.0 removed these constants: mxnet/numpy/utils.py reads them
        "PZERO": 0.0, "NZERO": -0.0, "PINF": float("inf"), "NINF": float("-inf"), "NAN": float("nan"),
        "NaN": float("nan"),
        "Inf": float("inf"),  # numpy 2.0: a default argument in mxnet/gluon/contrib/estimator/event_handler.py
        # numpy 2.0 removed alltrue and msort, 2.4 in1d and trapz: mxnet/numpy/fallback.py re-exports them
        "alltrue": alias("all"), "msort": lambda a: numpy.sort(a, axis=0),
        "in1d": lambda ar1, ar2, *args, **kwargs: numpy.isin(numpy.asarray(ar1).ravel(), ar2, *args, **kwargs),
        "trapz": alias("trapezoid"),
        # numpy 2.0 removed these too: mxnet/numpy_dispatch_protocol.py registers them for mx.np arrays
        "sometrue": alias("any"), "round_": alias("round"), "product": alias("prod"),
        # numpy 2.0 dropped the refusing stubs 1.20-1.26 kept: mxnet/numpy/fallback.py re-exports them
        **{name: removed(name) for name in ("mirr", "npv", "pmt", "ppmt", "pv", "rate")},
    }
    with warnings.catch_warnings():  # numpy 1.x warns as it hands out a deprecated name
        warnings.simplefilter("ignore")
        missing = [name for name in names if not hasattr(numpy, name)]
    for name in missing:
        setattr(numpy, name, names[name])
    return missing


def _prepare_import() -> None:
    """Make a Python 3.12+ and its numpy fit for MXNet 1.9.1 before it loads: the numpy names put back, or an
    ImportError saying what to install."""
    import importlib.util

    # mxnet/numpy_op_fallback.py and numpy_dispatch_protocol.py import distutils.version, which left the
    # standard library in Python 3.12; setuptools brings a copy (a dependency there, pyproject.toml)
    if importlib.util.find_spec("distutils") is None:
        raise ImportError("MXNet 1.9.1 imports distutils, which Python 3.12 removed from the standard library: "
                          "pip install setuptools")
    import numpy

    restore_numpy_names(numpy)


MODE = None          # the mode MXNet was loaded in (load_mxnet)
FALLBACK = None      # why the default is native here (a processor below portable's floor), or None
PROBLEM = None       # why the mode asked for cannot be had (raised when a run is made), or None
_BEFORE = {}         # the variables load_mxnet set, and their values before (None: unset), for environ_for


def load_mxnet() -> dict:
    """Import MXNet in the mode `DROPOUT_GLUON_NUMERICS` asks for; return the variables added (nothing if
    MXNet was already loaded: its numerics are then MXNet's defaults, recorded as native)."""
    global MODE, PROBLEM, FALLBACK
    _, flags = cpuinfo()
    try:
        MODE = choose(os.environ, flags, platform.machine())
    except NumericsError as e:  # raised when a run is made, so that importing the package still works
        MODE, PROBLEM = "native", str(e)
    if MODE == "native" and not os.environ.get(MODE_VAR):  # the default, on a processor below portable's floor
        FALLBACK = ("this processor has no AVX, which portable numerics need, so the package computes in native "
                    "numerics: the digits differ from the README's")
    added = {} if "mxnet" in sys.modules else settings(os.environ, usable_cpus(), platform.machine(), MODE, flags)
    if "mxnet" in sys.modules and MODE == "portable":  # too late to pin anything: MXNet's own choices stand
        MODE, FALLBACK = "native", ("mxnet was imported before dropout_gluon, so MXNet computes with its own "
                                    "choices (native numerics): import dropout_gluon first for the README's digits")
        warnings.warn(FALLBACK, stacklevel=3)
    _BEFORE.update({k: os.environ.get(k) for k in added})
    os.environ.update(added)
    os.environ[MODE_VAR] = MODE  # child processes (sweep workers) compute the same way
    try:
        if "mxnet" not in sys.modules:  # after the settings: numpy's own OpenBLAS reads some of them as it loads
            _prepare_import()
        import mxnet  # noqa: F401  (its engine starts here and reads MXNET_CPU_WORKER_NTHREADS, once)
    finally:
        # Child processes must not inherit the worker count: one that sets OMP_NUM_THREADS=2 would
        # deadlock with it. The aggregation size stays, as Gluon reads it whenever it makes an optimizer.
        if "MXNET_CPU_WORKER_NTHREADS" in added:
            del os.environ["MXNET_CPU_WORKER_NTHREADS"]
    return added


def environ_for(mode: str) -> dict:
    """This process's environment as it was before the package loaded MXNet, asking for `mode`."""
    env = dict(os.environ)
    for k, v in _BEFORE.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    env[MODE_VAR] = mode
    return env


def check_mode(mode) -> str:
    """`mode` if runs can be computed in it in this process, else a NumericsError saying what to do."""
    if mode not in MODES:
        raise NumericsError(f"numerics must be 'portable' or 'native', got {mode!r}")
    if PROBLEM and mode == "portable":
        raise NumericsError(PROBLEM)
    if mode != MODE:
        raise NumericsError(f"numerics {mode!r} must be chosen before MXNet loads, and this process loaded it "
                            f"{MODE}: set {MODE_VAR}={mode} before importing dropout_gluon (or use --numerics "
                            f"{mode})")
    return mode


def blas_kernel() -> str:
    """The GEMM kernel the bundled OpenBLAS runs, as it names it (e.g. 'Sandybridge'), or 'unknown'."""
    import ctypes

    import mxnet

    for name in ("libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"):
        path = os.path.join(os.path.dirname(mxnet.__file__), name)
        if os.path.exists(path):
            try:
                lib = ctypes.CDLL(path)
                lib.openblas_get_corename.restype = ctypes.c_char_p
                return lib.openblas_get_corename().decode()
            except (OSError, AttributeError):
                break
    return "unknown"


def describe() -> dict:
    """How this process computes: mode, BLAS kernel, oneDNN, threads per operator, the processor."""
    return dict(_describe())


@functools.lru_cache(maxsize=None)  # fixed once MXNet has loaded
def _describe() -> dict:
    model, flags = cpuinfo()
    onednn = "off" if os.environ.get("MXNET_MKLDNN_ENABLED") == "0" else "on"
    if onednn == "on" and os.environ.get("DNNL_MAX_CPU_ISA"):
        onednn += f" (up to {os.environ['DNNL_MAX_CPU_ISA']})"
    threads = os.environ.get("OMP_NUM_THREADS") or os.environ.get("MXNET_OMP_MAX_THREADS")
    features = " ".join(f for f in ("avx", "avx2", "fma", "avx512f") if f in flags)
    return {"numerics": MODE, "blas_kernel": blas_kernel(), "onednn": onednn,
            "threads_per_operator": int(threads) if threads else threads_per_operator(usable_cpus(),
                                                                                      platform.machine()),
            "processor": f"{model} ({platform.machine()}{'; ' + features if features else ''})"}


def summary(numerics: dict) -> str:
    """`describe()` in a line: 'portable: OpenBLAS Sandybridge, oneDNN off, 1 thread per operator; <processor>'."""
    n = numerics["threads_per_operator"]
    return (f"{numerics['numerics']}: OpenBLAS {numerics['blas_kernel']}, oneDNN {numerics['onednn']}, "
            f"{n} thread{'s' if n != 1 else ''} per operator; {numerics['processor']}")
