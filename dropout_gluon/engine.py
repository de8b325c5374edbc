"""MXNet engine settings that make training faster and change no number; applied as MXNet loads."""
from __future__ import annotations

import os
import platform

# Variables with which a user (or the benchmark) chooses MXNet's threading; if any is set, we add nothing.
USER_CHOICES = ("MXNET_CPU_WORKER_NTHREADS", "MXNET_ENGINE_TYPE", "OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS",
                "MXNET_OPTIMIZER_AGGREGATION_SIZE")


def usable_cpus() -> int:
    """Processors this process may run on (what OpenMP counts), or all of them where that is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def threads_per_operator(cpus: int, machine: str) -> int:
    """OpenMP threads MXNet 1.9 gives each operator when OMP_NUM_THREADS is unset: half the processors on x86."""
    x86 = machine.lower() in ("x86_64", "amd64", "i386", "i686")
    return max(1, cpus // 2 if x86 else cpus)


def settings(environ, cpus: int, machine: str) -> dict:
    """Environment variables to add for MXNet: a second CPU worker where that is safe, else nothing."""
    # MXNet runs operators on one worker thread. With two, independent operators overlap: the next batch's
    # dropout draws and gather next to this batch's backward pass, an update next to the gradients still
    # being computed; and Gluon's SGD then updates each parameter as soon as its gradient is ready
    # (aggregation size 1) instead of in groups of 4 after the whole backward pass: faster on 2 cores
    # (docs/performance.md). The floats are the same (tested): each operator still runs alone on its
    # OpenMP threads, and the engine keeps every read-after-write order. Safe only while each operator
    # gets one OpenMP thread, as MXNet 1.9 gives on x86 with at most 3 processors: with two threads per
    # operator, two workers calling the bundled OpenBLAS 0.3.13 (an OpenMP build) at once deadlock (a gdb
    # stack hung in exec_blas).
    if any(name in environ for name in USER_CHOICES) or threads_per_operator(cpus, machine) > 1:
        return {}
    return {"MXNET_CPU_WORKER_NTHREADS": "2", "MXNET_OPTIMIZER_AGGREGATION_SIZE": "1"}


def load_mxnet() -> dict:
    """Import MXNet with `settings` applied; return what was applied (nothing if MXNet was already loaded)."""
    import sys

    added = {} if "mxnet" in sys.modules else settings(os.environ, usable_cpus(), platform.machine())
    os.environ.update(added)
    try:
        import mxnet  # noqa: F401  (its engine starts here and reads MXNET_CPU_WORKER_NTHREADS, once)
    finally:
        # Child processes must not inherit the worker count: one that sets OMP_NUM_THREADS=2 would
        # deadlock with it. The aggregation size stays, as Gluon reads it whenever it makes an optimizer.
        if "MXNET_CPU_WORKER_NTHREADS" in added:
            del os.environ["MXNET_CPU_WORKER_NTHREADS"]
    return added
