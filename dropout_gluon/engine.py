"""MXNet engine settings that make training faster and change no number; they must be set before MXNet loads."""
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
    """Environment variables to add for MXNet: a second CPU worker thread where that is safe, else nothing.

    MXNet runs operators on one worker thread; with two, independent operators overlap (the scratch
    model's bias gradients next to its weight gradients, the next batch's dropout draws next to this
    batch's update): 12% off a scratch epoch on 2 cores, the same floats, as each operator still runs
    alone on its OpenMP threads and the engine keeps every read-after-write order. With it, the Gluon
    `Trainer`'s SGD updates each parameter on its own (aggregation size 1) instead of in groups of 4, so
    an update starts as soon as its gradient is ready, alongside the rest of the backward pass: 6% off a
    Gluon epoch, the same floats (both measured on 2 cores, both tested). Safe only while each
    operator gets one OpenMP thread, which MXNet 1.9 gives on x86 when it sees at most 3 processors (it
    halves them, taking them for hyperthreads): with two threads per operator, two workers call the
    bundled OpenBLAS 0.3.13 (an OpenMP build) at once and it deadlocks (measured: hangs in exec_blas).
    """
    if any(name in environ for name in USER_CHOICES):
        return {}
    if threads_per_operator(cpus, machine) > 1:
        return {}
    return {"MXNET_CPU_WORKER_NTHREADS": "2", "MXNET_OPTIMIZER_AGGREGATION_SIZE": "1"}


def configure() -> None:
    """Apply `settings` to this process; without effect if MXNet's engine has already started."""
    os.environ.update(settings(os.environ, usable_cpus(), platform.machine()))
