"""The two numerics modes (dropout_gluon/engine.py):

- portable pins OpenBLAS's kernel, turns oneDNN off and gives each operator one thread, whatever the user
  had set; it refuses a processor without AVX and an unknown mode, in one line;
- native names the OpenBLAS kernel for the instruction set, and keeps a user's own choices;
- a run asks only for the mode its process loaded MXNet in, and the CLI starts itself again for another;
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
from pathlib import Path

import pytest

from dropout_gluon import RunConfig, engine

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
X86_AVX = engine.is_x86(os.uname().machine) and "avx" in engine.cpuinfo()[1]


def run_on(machine: dict, args: list, numerics: str = "portable") -> subprocess.CompletedProcess:
    """`args` run in a fresh process on the simulated `machine`, in `numerics` mode."""
    cores = sorted(os.sched_getaffinity(0))[:machine["cores"]]
    env = engine.environ_for(numerics)
    env.update({k: v for k, v in machine.items() if k != "cores"})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=False,
                          preexec_fn=lambda: os.sched_setaffinity(0, cores))


def test_portable_pins_every_source_whatever_the_user_set():
    added = engine.settings({"OPENBLAS_CORETYPE": "Haswell", "MXNET_MKLDNN_ENABLED": "1", "OMP_NUM_THREADS": "8"},
                            64, "x86_64", "portable", {"avx", "avx2", "fma"})
    assert {k: added[k] for k in engine.PORTABLE} == engine.PORTABLE
    assert "MXNET_CPU_WORKER_NTHREADS" not in added  # the user's OMP_NUM_THREADS=8 counts as a threading choice
    # On a big machine too, each operator gets one thread, so the second worker is safe (and is added).
    assert engine.settings({}, 64, "x86_64", "portable", {"avx"})["MXNET_CPU_WORKER_NTHREADS"] == "2"
    # The pins a child process inherits are not taken for the user's choice.
    assert engine.settings(dict(engine.PORTABLE), 2, "x86_64", "portable", {"avx"})["MXNET_CPU_WORKER_NTHREADS"] == "2"


@pytest.mark.parametrize("flags, expected", [
    ({"avx", "avx2", "fma", "avx512f"}, {"OPENBLAS_CORETYPE": "Haswell"}),   # oneDNN on
    ({"avx", "avx2", "fma"}, {"OPENBLAS_CORETYPE": "Haswell", "MXNET_MKLDNN_ENABLED": "0"}),
    ({"avx"}, {"OPENBLAS_CORETYPE": "Sandybridge"}),
    ({"sse4_2"}, {}),  # OpenBLAS's own choice
])
def test_native_names_the_kernel_for_the_instruction_set(flags, expected):
    added = engine.native_settings({}, flags)
    assert {k: v for k, v in added.items() if k not in engine.QUIET_FALLBACK} == expected
    assert engine.native_settings({"OPENBLAS_CORETYPE": "Zen", "MXNET_MKLDNN_ENABLED": "1"}, flags) == {}


def test_the_mode_asked_for_or_one_line_saying_why_not():
    assert engine.choose({}, {"avx"}, "x86_64") == "portable"
    assert engine.choose({}, {"avx"}, "aarch64") == "native"
    assert engine.choose({engine.MODE_VAR: "native"}, {"avx"}, "x86_64") == "native"
    with pytest.raises(engine.NumericsError, match="with AVX.*--numerics native"):
        engine.choose({engine.MODE_VAR: "portable"}, {"sse4_2"}, "x86_64")
    with pytest.raises(engine.NumericsError, match="must be 'portable' or 'native', got 'fast'"):
        engine.choose({engine.MODE_VAR: "fast"}, {"avx"}, "x86_64")


def test_a_run_asks_only_for_the_mode_this_process_loaded():
    assert RunConfig().numerics == engine.MODE
    other = "native" if engine.MODE == "portable" else "portable"
    with pytest.raises(ValueError, match=f"{engine.MODE_VAR}={other} before importing"):
        RunConfig(numerics=other)
    with pytest.raises(ValueError, match="got 'fast'"):
        RunConfig(numerics="fast")


# /proc/cpuinfo cannot be edited: the engine module is loaded first, with an older processor's flags, then `code`.
# The package imported where /proc/cpuinfo describes a processor without AVX (SSE4.2 at most).
ON_AN_OLD_PROCESSOR = ("import builtins, io, sys; real_open = builtins.open; builtins.open = lambda f, *a, **k: "
                       "io.StringIO('model name\\t: old\\nflags\\t: fpu sse4_2\\n') if f == '/proc/cpuinfo' "
                       "else real_open(f, *a, **k); ")


def test_by_default_a_processor_below_the_floor_computes_natively_and_says_so():
    env = {k: v for k, v in engine.environ_for("portable").items() if k != engine.MODE_VAR}
    code = ON_AN_OLD_PROCESSOR + "from dropout_gluon import engine as e; print(e.MODE); print(e.FALLBACK)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    mode, fallback = result.stdout.splitlines()[-2:]
    assert mode == "native" and "no AVX" in fallback and "differ from the README's" in fallback


def test_a_processor_below_the_floor_is_refused_in_one_line(tmp_path):
    code = ON_AN_OLD_PROCESSOR + "from dropout_gluon.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**engine.environ_for("portable")}
    result = subprocess.run([sys.executable, "-c", code, "train", "--out", str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "portable numerics need an x86-64 processor with AVX" in result.stderr
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
print(json.dumps([gb.engine.describe()["blas_kernel"], list(history[0][:4])]))
"""


@pytest.mark.skipif(not X86_AVX, reason="portable numerics need an x86-64 processor with AVX")
def test_the_simulated_machines_compute_differently_where_nothing_is_pinned(real_data):
    # Native mode keeps the kernel each simulated machine asks for: their digits differ, so the golden
    # history above holding on all of them is the pinning's doing, not a simulation that changes nothing.
    runs = {name: run_on(machine, ["-c", ONE_EPOCH], numerics="native") for name, machine in MACHINES.items()
            if machine["OPENBLAS_CORETYPE"] in ("Sandybridge", "Prescott")}
    for result in runs.values():
        assert result.returncode == 0, result.stderr
    (kernel1, epoch1), (kernel2, epoch2) = (json.loads(r.stdout.splitlines()[-1]) for r in runs.values())
    assert (kernel1, kernel2) == ("Sandybridge", "Prescott")
    assert epoch1[1] != epoch2[1]


def test_the_cli_starts_itself_again_for_another_mode(tmp_path, real_data):
    other = "native" if engine.MODE == "portable" else "portable"
    result = subprocess.run([sys.executable, "-m", "dropout_gluon", "train", "--numerics", other, "--model", "gluon",
                             "--epochs", "1", "--out", str(tmp_path)], capture_output=True, text=True, check=False,
                            env=engine.environ_for(engine.MODE))
    assert result.returncode == 0, result.stderr
    assert f"# numerics: {other}: " in result.stdout
    config = json.loads((tmp_path / "gluon" / "config.json").read_text())
    assert config["numerics"] == config["computed_with"]["numerics"] == other
    # `train --config` reruns the run as it was computed, in its mode, to the same digits
    again = subprocess.run([sys.executable, "-m", "dropout_gluon", "train", "--config", str(tmp_path / "gluon" /
                            "config.json"), "--out", str(tmp_path / "again")], capture_output=True, text=True,
                           check=False, env=engine.environ_for(engine.MODE))
    assert again.returncode == 0, again.stderr
    loss = [json.loads((folder / "gluon" / "history.json").read_text())[0]["loss"] for folder in (tmp_path,
                                                                                                  tmp_path / "again")]
    assert loss[0] == loss[1]


@pytest.mark.skipif(not X86_AVX, reason="portable numerics need an x86-64 processor with AVX")
@pytest.mark.parametrize("name", ["AVX only, 1 core", "AVX2 and FMA (Zen), 2 cores"])
def test_the_quick_exercise_gives_the_golden_table_on_simulated_machines(name, tmp_path, real_data):
    # As `make exercises` reproduces docs/exercises/: tests/golden/quick_swap.md was written in portable mode.
    result = run_on(MACHINES[name], ["-m", "dropout_gluon", "exercise", "swap", "--quick", "--no-progress",
                                     "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    assert result.returncode == 0, result.stderr
    golden = (Path(__file__).parent / "golden" / "quick_swap.md").read_text()
    assert (tmp_path / "out" / "swap.md").read_text() == golden, name
