"""How MXNet computes: the numerics modes (portable, native), chosen as MXNet loads, and the numerics record.

Three things in MXNet 1.9.1's wheel change the floats across processors (docs/performance.md): the GEMM kernel
OpenBLAS picks, oneDNN's JIT code, the OpenMP threads an operator gets. `portable` pins all three (Sandybridge, so
a processor with AVX; oneDNN off; one thread) and clears MXNet's float-changing variables: the same history on every
such x86-64 machine. `native` is the fastest setting measured for the processor (`native_settings`), its own digits.
`DROPOUT_GLUON_NUMERICS` picks the mode before the import (default: portable where there is AVX); one that cannot be
had fails the import in one line. The variables are set only while MXNet loads, after what other libraries share
with it has loaded in the user's environment (`load_mxnet`), so their threads and kernels stay the user's."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import platform
import sys
import warnings
from unittest import mock

from . import compat
from .errors import UserError

MODES = ("portable", "native")
X86 = ("x86_64", "amd64", "i386", "i686")  # platform.machine()'s names, lower-cased
MODE_VAR = "DROPOUT_GLUON_NUMERICS"
# One thread per operator: MXNET_OMP_MAX_THREADS, with OMP_NUM_THREADS hidden as MXNet loads (the shared OpenMP
# runtime would read it too), makes MXNet give each engine thread one OpenMP thread, which its OpenBLAS follows.
PORTABLE = {"OPENBLAS_CORETYPE": "Sandybridge", "MXNET_MKLDNN_ENABLED": "0", "MXNET_OMP_MAX_THREADS": "1"}
HIDDEN = ("OMP_NUM_THREADS", "MXNET_ENGINE_TYPE")  # in portable mode, while MXNet loads
# What MXNet loads that other code shares, loaded first in the user's environment: numpy, the SciPy modules MXNet
# imports (ndarray/sparse.py, contrib/quantization.py), each with its own OpenBLAS, and MXNet's OpenMP runtime.
SHARED_MODULES = ("numpy", "scipy.sparse", "scipy.stats")
OPENMP_RUNTIME = "libgomp.so.1"  # what libmxnet.so links to (the wheel ships none)
# With oneDNN off, MXNet warns once per operator that falls back to its own kernel: that is the point, not news.
QUIET_FALLBACK = {"MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0"}
# MXNet's own variables that change CPU floats (read as operators run): cleared in portable mode, recorded.
FLOAT_VARIABLES = ("MXNET_SAFE_ACCUMULATION", "MXNET_USE_OPERATOR_TUNING", "MXNET_ENFORCE_DETERMINISM")
LOADED_VARIABLES = (*PORTABLE, *HIDDEN, "DNNL_MAX_CPU_ISA")  # what `record` reads of `LOADED`

MODE = None      # the mode MXNet was loaded in (load_mxnet)
FALLBACK = None  # why the default is native here, or None: a note for the user
LOADED = {}      # the variables that decide MXNet's numerics, as MXNet saw them load


class NumericsError(UserError):
    """A numerics mode that cannot be had here (unknown, or a processor below portable's floor)."""


def usable_cpus() -> int:
    """Processors this process may run on (what OpenMP counts), or all of them where that is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def threads_per_operator(cpus: int, machine: str) -> int:
    """OpenMP threads MXNet 1.9 gives each operator when OMP_NUM_THREADS is unset: half the processors on x86."""
    return max(1, cpus // 2 if machine.lower() in X86 else cpus)


def processor() -> tuple:
    """`(name, set of instruction-set flags)` of this processor: those of the microarchitecture archspec recognises
    it as (all the processor's own), enough for AVX, AVX2, FMA and AVX512F, which is all the modes ask."""
    import archspec.cpu

    host = archspec.cpu.host()
    return archspec.cpu.brand_string() or host.name, set(host.features)


def choose(environ, flags: set, machine: str) -> str:
    """The mode: `DROPOUT_GLUON_NUMERICS` if set (a NumericsError if it cannot be had), else portable where
    the processor allows it, else native."""
    asked = environ.get(MODE_VAR, "")
    if asked and asked not in MODES:
        raise NumericsError(f"{MODE_VAR} must be 'portable' or 'native', got {asked!r}")
    portable_ok = machine.lower() in X86 and "avx" in flags  # the Sandybridge kernel's instruction set
    if asked == "portable" and not portable_ok:
        raise NumericsError(f"portable numerics need an x86-64 processor with AVX (OpenBLAS's Sandybridge kernel); "
                            f"this one has none: set {MODE_VAR}=native (its digits differ from the README's)")
    return asked or ("portable" if portable_ok else "native")


def native_settings(environ, flags: set) -> dict:
    """The fastest setting measured for this kind of processor (docs/performance.md); a user's own value stands.
    OpenBLAS 0.3.13 takes its SSE3 kernel on processors newer than it knows, so the kernel is named for the
    instruction set: Haswell with AVX2 and FMA (AVX-512 too), else Sandybridge with AVX. oneDNN is faster with
    AVX-512, slower with AVX2 alone: off there. The threads are MXNet's default, named so that MXNet does not set
    them on the loading thread (the user's)."""
    chosen = {}
    if not {"OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"} & environ.keys():
        chosen["MXNET_OMP_MAX_THREADS"] = str(threads_per_operator(usable_cpus(), platform.machine()))
    if "avx2" in flags and "fma" in flags:
        chosen["OPENBLAS_CORETYPE"] = "Haswell"
        if "avx512f" not in flags:
            chosen["MXNET_MKLDNN_ENABLED"] = "0"
    elif "avx" in flags:
        chosen["OPENBLAS_CORETYPE"] = "Sandybridge"
    chosen = {k: v for k, v in chosen.items() if k not in environ}
    return {**chosen, **QUIET_FALLBACK} if chosen.get("MXNET_MKLDNN_ENABLED") == "0" else chosen


def load_mxnet() -> None:
    """Import MXNet in the mode `DROPOUT_GLUON_NUMERICS` asks for (a NumericsError if it cannot be had here), and
    keep in LOADED the variables it loaded with (if MXNet was loaded already, its own: native numerics)."""
    global MODE, FALLBACK
    _, flags = processor()
    MODE = choose(os.environ, flags, platform.machine())
    if sys.modules.get("mxnet") is not None:  # too late to pin anything: MXNet's own choices stand
        MODE, FALLBACK = "native", ("mxnet was imported before dropout_gluon, so MXNet computes with its own "
                                    "choices (native numerics): import dropout_gluon first for the README's digits")
        warnings.warn(FALLBACK, stacklevel=3)
        LOADED.update({k: v for k, v in os.environ.items() if k in LOADED_VARIABLES})
        return
    if MODE == "native" and not os.environ.get(MODE_VAR):  # the default, on a processor below portable's floor
        FALLBACK = ("this processor has no AVX, which portable numerics need, so the package computes in native "
                    "numerics: the digits differ from the README's")
    for name in SHARED_MODULES:  # in the user's environment, before MXNet's
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(OSError):  # not Linux: MXNet brings its own
        ctypes.CDLL(OPENMP_RUNTIME)
    import numpy

    cleared = [k for k in FLOAT_VARIABLES if k in os.environ] if MODE == "portable" else []
    with mock.patch.dict(os.environ):  # the user's environment comes back as the block ends
        os.environ.update({**PORTABLE, **QUIET_FALLBACK} if MODE == "portable" else native_settings(os.environ, flags))
        for name in [*cleared, *HIDDEN] if MODE == "portable" else []:
            os.environ.pop(name, None)
        try:
            with compat.numpy_names(numpy):
                import mxnet
        except ModuleNotFoundError as e:
            if e.name != "mxnet":
                raise
            raise ImportError("MXNet 1.9.1 is not installed: pip install mxnet==1.9.1 (from Python 3.12 on, where "
                              "its metadata's numpy < 2 would replace the numpy here: pip install --no-deps "
                              "mxnet==1.9.1, as scripts/setup.sh does)", name="mxnet") from None

        # Some settings are read the first time an operator runs (oneDNN's switch): run one now.
        x = mxnet.nd.ones((1, 2))
        mxnet.nd.log_softmax(mxnet.nd.FullyConnected(x, x, num_hidden=1, no_bias=True).relu()).wait_to_read()
        LOADED.update({k: v for k, v in os.environ.items() if k in LOADED_VARIABLES})
    for name in cleared:  # read by MXNet each time an operator runs, so they stay cleared
        warnings.warn(f"portable numerics: {name} unset, as it changes the floats (set {MODE_VAR}=native to keep it)",
                      stacklevel=3)
        del os.environ[name]


def check(ctx: str = "cpu") -> None:
    """A NumericsError if a run on `ctx` cannot compute as this process's mode says."""
    if MODE == "portable" and ctx.startswith("cpu") and blas_kernel() != PORTABLE["OPENBLAS_CORETYPE"]:
        raise NumericsError(f"MXNet computes with OpenBLAS's {blas_kernel()} kernel, not Sandybridge (another "
                            f"OpenBLAS was loaded before MXNet?): import dropout_gluon first, or set {MODE_VAR}=native")


@functools.lru_cache(maxsize=None)  # fixed once MXNet has loaded
def blas_kernel() -> str:
    """The GEMM kernel of the OpenBLAS that MXNet ships, as it names itself (e.g. 'Sandybridge'), or 'unknown'."""
    import mxnet
    from threadpoolctl import threadpool_info

    here = os.path.dirname(os.path.realpath(mxnet.__file__))
    return next((lib.get("architecture") or "unknown" for lib in threadpool_info() if lib["internal_api"] == "openblas"
                 and os.path.dirname(os.path.realpath(lib["filepath"])) == here), "unknown")


def record(ctx: str = "cpu") -> dict:
    """The numerics record: how this process computes a run on `ctx` ('cpu', 'gpu(0)'), and what else decides
    the floats (glibc's expf and logf changed at 2.27 and 2.28; numpy; MXNet's float variables)."""
    import numpy

    name, flags = processor()
    features = " ".join(f for f in ("avx", "avx2", "fma", "avx512f") if f in flags)
    about = {"processor": f"{name} ({platform.machine()}{'; ' + features if features else ''})",
             "glibc": platform.libc_ver()[1] or "none", "numpy": numpy.__version__,
             "mxnet_variables": " ".join(f"{k}={os.environ[k]}" for k in FLOAT_VARIABLES if k in os.environ)}
    if not ctx.startswith("cpu"):  # a GPU computes with CUDA's libraries: no claim about the CPU's numerics
        return {"device": ctx, **about}
    onednn = "off" if LOADED.get("MXNET_MKLDNN_ENABLED") == "0" else "on"
    if onednn == "on" and LOADED.get("DNNL_MAX_CPU_ISA"):
        onednn += f" (up to {LOADED['DNNL_MAX_CPU_ISA']})"
    threads = LOADED.get("MXNET_OMP_MAX_THREADS") or LOADED.get("OMP_NUM_THREADS")
    threads = int(threads) if threads else threads_per_operator(usable_cpus(), platform.machine())
    return {"mode": MODE, "blas_kernel": blas_kernel(), "onednn": onednn, "threads_per_operator": threads, **about}


def deciding(record: dict) -> dict:
    """What of a numerics record decides the floats: in portable mode, all but the processor."""
    return {k: v for k, v in record.items() if not (record.get("mode") == "portable" and k == "processor")}


def summary(record: dict) -> str:
    """A record in a line: 'portable: OpenBLAS Sandybridge, oneDNN off, 1 thread per operator; <processor>'."""
    if "device" in record:
        return f"{record['device']}: CUDA; {record['processor']}"
    n = record["threads_per_operator"]
    return (f"{record['mode']}: OpenBLAS {record['blas_kernel']}, oneDNN {record['onednn']}, "
            f"{n} thread{'s' if n != 1 else ''} per operator; {record['processor']}")
