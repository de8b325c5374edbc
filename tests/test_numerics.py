"""The two numerics modes and the numerics record (dropout_gluon/numerics.py):

- portable pins OpenBLAS's kernel, turns oneDNN off, gives each operator one thread (measured: one thread
  computes a product) and clears MXNet's float variables, whatever the user had set; a processor without AVX
  and an unknown mode fail the import, and so every command, sweeps with workers included, in one line;
- native names the OpenBLAS kernel for the instruction set, and keeps a user's own choices;
- the record names what decides the floats (glibc, numpy, MXNet's variables); a GPU run makes no CPU claim;
  a configuration is a plain value, with no mode in it;
- `make run`'s history equals tests/golden/make_run.json, and the quick swap exercise's table
  tests/golden/quick_swap.md, to the last digit under simulated machines: other
  OpenBLAS kernels and oneDNN instruction sets asked for, glibc's AVX2/FMA/AVX-512 code paths hidden,
  one or two usable cores (what the pinning does not fix itself); and the simulation is real: the same
  machines give other digits where the kernel is not pinned.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dropout_gluon import RunConfig, numerics

GOLDEN = json.loads((Path(__file__).parent / "golden" / "make_run.json").read_text())["epochs"]
AVX512 = "-AVX512F,-AVX512DQ,-AVX512CD,-AVX512BW,-AVX512VL"
# Machines simulated on this one: what each would find or choose differently (the pinning overrides the rest).
MACHINES = {
    "AVX only, 1 core": {"GLIBC_TUNABLES": f"glibc.cpu.hwcaps=-AVX2,-FMA,{AVX512}", "DNNL_MAX_CPU_ISA": "AVX",
                         "OPENBLAS_CORETYPE": "Sandybridge", "cores": 1},
    "AVX2 and FMA (Zen), 2 cores": {"GLIBC_TUNABLES": f"glibc.cpu.hwcaps={AVX512}", "DNNL_MAX_CPU_ISA": "AVX2",
                                    "OPENBLAS_CORETYPE": "Zen", "cores": 2},
    "SSE kernel, threads asked for, 1 core": {"OPENBLAS_CORETYPE": "Prescott", "DNNL_MAX_CPU_ISA": "SSE41",
                                              "OMP_NUM_THREADS": "2", "cores": 1},
}
X86_AVX = os.uname().machine.lower() in numerics.X86 and "avx" in numerics.processor()[1]


def run_on(machine: dict, args: list, mode: str = "portable") -> subprocess.CompletedProcess:
    """`args` run in a fresh process on the simulated `machine`, in `mode` (on fewer cores where this machine has
    fewer than it: a warning says so)."""
    cores = sorted(os.sched_getaffinity(0))[:machine["cores"]]
    if len(cores) < machine["cores"]:
        warnings.warn(f"a {machine['cores']}-core machine simulated on {len(cores)} core(s)", stacklevel=2)
    env = {**os.environ, numerics.MODE_VAR: mode}
    env.update({k: v for k, v in machine.items() if k != "cores"})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=False,
                          preexec_fn=lambda: os.sched_setaffinity(0, cores))


# The threads each thread of the process spent computing five products of MXNet's OpenBLAS, and the record.
PRODUCTS = """
import json, os
import dropout_gluon as gb, mxnet as mx
a = mx.nd.ones((1500, 1500))
mx.nd.waitall()
def ticks():
    return {t: sum(map(int, open(f"/proc/self/task/{t}/stat").read().rsplit(")", 1)[1].split()[11:13]))
            for t in os.listdir("/proc/self/task")}
before = ticks()
for _ in range(5):
    mx.nd.dot(a, a).wait_to_read()
busy = [n - before.get(t, 0) for t, n in ticks().items() if n - before.get(t, 0) > 0]
print(json.dumps([sum(n > max(busy) / 4 for n in busy), gb.numerics.summary(gb.numerics.record())]))
"""


@pytest.mark.skipif(not X86_AVX or len(os.sched_getaffinity(0)) < 2 or not os.path.exists("/proc/self/task"),
                    reason="needs an x86-64 processor with AVX, two usable cores and Linux's /proc")
@pytest.mark.parametrize("first", ["nothing", "libgomp"])
def test_portable_pins_every_source_whatever_the_user_set(first):
    user = {"OPENBLAS_CORETYPE": "Haswell", "MXNET_MKLDNN_ENABLED": "1", "OMP_NUM_THREADS": "2",
            "MXNET_OMP_MAX_THREADS": "2", "MXNET_ENGINE_TYPE": "NaiveEngine"}
    code = ("import ctypes; ctypes.CDLL('libgomp.so.1')\n" if first == "libgomp" else "") + PRODUCTS
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, **user, numerics.MODE_VAR: "portable"})
    threads, summary = json.loads(result.stdout.splitlines()[-1])
    assert threads == 1  # the products on one thread, whatever the OpenMP runtime loaded first read
    assert summary.startswith("portable: OpenBLAS Sandybridge, oneDNN off, 1 thread per operator; ")


@pytest.mark.parametrize("flags, expected", [
    ({"avx", "avx2", "fma", "avx512f"}, {"OPENBLAS_CORETYPE": "Haswell"}),   # oneDNN on
    ({"avx", "avx2", "fma"}, {"OPENBLAS_CORETYPE": "Haswell", "MXNET_MKLDNN_ENABLED": "0"}),
    ({"avx"}, {"OPENBLAS_CORETYPE": "Sandybridge"}),
    ({"sse4_2"}, {}),  # OpenBLAS's own choice
])
def test_native_names_the_kernel_for_the_instruction_set(flags, expected):
    added = numerics.native_settings({}, flags)
    threads = numerics.threads_per_operator(numerics.usable_cpus(), os.uname().machine)  # MXNet's default, named
    assert {k: v for k, v in added.items() if k not in numerics.QUIET_FALLBACK} == \
        {**expected, "MXNET_OMP_MAX_THREADS": str(threads)}
    mine = {"OPENBLAS_CORETYPE": "Zen", "MXNET_MKLDNN_ENABLED": "1", "OMP_NUM_THREADS": "3"}
    assert numerics.native_settings(mine, flags) == {}


def test_the_mode_asked_for_or_one_line_saying_why_not():
    assert numerics.choose({}, {"avx"}, "x86_64") == "portable"
    assert numerics.choose({}, {"avx"}, "aarch64") == "native"
    assert numerics.choose({numerics.MODE_VAR: "native"}, {"avx"}, "x86_64") == "native"
    with pytest.raises(numerics.NumericsError, match=f"with AVX.*{numerics.MODE_VAR}=native"):
        numerics.choose({numerics.MODE_VAR: "portable"}, {"sse4_2"}, "x86_64")
    with pytest.raises(numerics.NumericsError, match="must be 'portable' or 'native', got 'fast'"):
        numerics.choose({numerics.MODE_VAR: "fast"}, {"avx"}, "x86_64")


def test_a_configuration_is_a_plain_value():
    assert "numerics" not in RunConfig().to_dict()  # the mode is the process's, in the record, not the run's


def test_portable_refuses_an_openblas_other_than_its_own(monkeypatch):
    monkeypatch.setattr(numerics, "MODE", "portable")
    monkeypatch.setattr(numerics, "blas_kernel", lambda: "Haswell")  # another libopenblas.so.0 loaded first
    with pytest.raises(numerics.NumericsError, match="Haswell kernel, not Sandybridge"):
        numerics.check("cpu")
    numerics.check("gpu(0)")  # a GPU run does not compute with it


def test_the_record_names_what_decides_the_floats_and_a_gpu_run_makes_no_cpu_claim():
    record = numerics.record()
    assert record["glibc"] and record["numpy"] and record["processor"]
    assert numerics.deciding(record) == ({k: v for k, v in record.items() if k != "processor"}
                                         if record["mode"] == "portable" else record)
    gpu = numerics.record("gpu(0)")
    assert gpu["device"] == "gpu(0)" and not gpu.keys() & {"mode", "blas_kernel", "onednn", "threads_per_operator"}
    assert numerics.summary(gpu).startswith("gpu(0): CUDA; ")


FLOAT_VARIABLE = ("import dropout_gluon as gb, os; "
                  "print(gb.numerics.record()['mxnet_variables'] or '-', os.environ.get('{0}'))")


@pytest.mark.parametrize("mode, expected", [("portable", "- None"), ("native", "{0}=1 1")])
def test_mxnets_float_variables_are_cleared_in_portable_and_recorded_in_native(mode, expected):
    name = numerics.FLOAT_VARIABLES[0]
    result = subprocess.run([sys.executable, "-c", FLOAT_VARIABLE.format(name)], capture_output=True, text=True,
                            env={**os.environ, numerics.MODE_VAR: mode, name: "1"}, check=True)
    assert result.stdout.strip().splitlines()[-1] == expected.format(name)
    assert (f"{name} unset" in result.stderr) == (mode == "portable")


# The package imported where archspec reports a processor without AVX (SSE4.2 at most).
ON_AN_OLD_PROCESSOR = ("import sys, archspec.cpu as c; c.host = lambda: c.Microarchitecture("
                       "'old', [], 'GenuineIntel', {'sse4_2'}, {}); ")


def test_by_default_a_processor_below_the_floor_computes_natively_and_says_so():
    env = {k: v for k, v in os.environ.items() if k != numerics.MODE_VAR}
    code = ON_AN_OLD_PROCESSOR + "from dropout_gluon import numerics as n; print(n.MODE); print(n.FALLBACK)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    mode, fallback = result.stdout.splitlines()[-2:]
    assert mode == "native" and "no AVX" in fallback and "differ from the README's" in fallback


def test_a_processor_below_the_floor_is_refused_in_one_line(tmp_path):
    code = ON_AN_OLD_PROCESSOR + "from dropout_gluon.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, numerics.MODE_VAR: "portable"}
    result = subprocess.run([sys.executable, "-c", code, "train", "--out", str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1].startswith("dropout_gluon.numerics.NumericsError: portable numerics need "
                                                     "an x86-64 processor with AVX")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["exercise", "swap", "--quick", "--jobs", "2"]])
def test_a_mistyped_mode_fails_every_command_before_it_starts(command, tmp_path):
    result = subprocess.run([sys.executable, "-m", "dropout_gluon", *command, "--out", str(tmp_path / "out")],
                            env={**os.environ, numerics.MODE_VAR: "fast"}, capture_output=True, text=True, check=False)
    assert result.returncode == 2  # the sweep's workers, which would take the mode from it, never start
    assert result.stderr.splitlines() == ["dropout-gluon: error: DROPOUT_GLUON_NUMERICS must be 'portable' or "
                                          "'native', got 'fast'"]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not X86_AVX, reason="portable numerics need an x86-64 processor with AVX")
@pytest.mark.parametrize("name", list(MACHINES))
def test_make_run_gives_the_golden_history_on_simulated_machines(name, tmp_path, real_data):
    result = run_on(MACHINES[name], ["-m", "dropout_gluon", "train", "--out", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "# numerics: portable: OpenBLAS Sandybridge, oneDNN off, 1 thread per operator" in result.stdout
    for model, epochs in GOLDEN.items():
        history = json.loads((tmp_path / model / "history.json").read_text())
        assert [[e["epoch"], e["loss"], e["train_acc"], e["test_acc"]] for e in history] == epochs, (name, model)


ONE_EPOCH = """
import json, sys
import dropout_gluon as gb
from dropout_gluon import data
train_x, train_y, test_x, test_y = data.load_dataset(download=False).arrays
iters = (data.DataIter(train_x[:15360], train_y[:15360], 256, shuffle=True),
         data.DataIter(test_x[:2560], test_y[:2560], 256, shuffle=False))
history = gb.train_scratch(1, data_iters=iters, log=None)[1]
print(json.dumps([gb.numerics.record()["blas_kernel"], list(history[0][:4])]))
"""


@pytest.mark.skipif(not X86_AVX, reason="portable numerics need an x86-64 processor with AVX")
def test_the_simulated_machines_compute_differently_where_nothing_is_pinned(real_data):
    # Native mode keeps the kernel each simulated machine asks for: their digits differ, so the golden
    # history above holding on all of them is the pinning's doing, not a simulation that changes nothing.
    runs = {name: run_on(machine, ["-c", ONE_EPOCH], mode="native") for name, machine in MACHINES.items()
            if machine["OPENBLAS_CORETYPE"] in ("Sandybridge", "Prescott")}
    for result in runs.values():
        assert result.returncode == 0, result.stderr
    (kernel1, epoch1), (kernel2, epoch2) = (json.loads(r.stdout.splitlines()[-1]) for r in runs.values())
    assert (kernel1, kernel2) == ("Sandybridge", "Prescott")
    assert epoch1[1] != epoch2[1]


@pytest.mark.skipif(not X86_AVX, reason="portable numerics need an x86-64 processor with AVX")
@pytest.mark.parametrize("name", ["AVX only, 1 core", "AVX2 and FMA (Zen), 2 cores"])
def test_the_quick_exercise_gives_the_golden_table_on_simulated_machines(name, tmp_path, real_data):
    # As `make exercises` reproduces its committed results: tests/golden/quick_swap.md was written in portable mode.
    result = run_on(MACHINES[name], ["-m", "dropout_gluon", "exercise", "swap", "--quick", "--no-progress",
                                     "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    assert result.returncode == 0, result.stderr
    golden = (Path(__file__).parent / "golden" / "quick_swap.md").read_text()
    assert (tmp_path / "out" / "swap.md").read_text() == golden, name


def test_a_gpu_runs_configuration_names_no_mode_to_rerun_it_in(tmp_path):
    from dropout_gluon import persist

    (tmp_path / "config.json").write_text(json.dumps({"model": "gluon", "numerics": numerics.record("gpu(0)")}))
    assert persist.load_config(tmp_path / "config.json") == (RunConfig(model="gluon"), None)  # not 'gpu(0)'
