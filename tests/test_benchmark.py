"""The benchmark (benchmarks/) measures the chapter's training, and docs/performance.md shows what it measured:

- the references (PyTorch, the GEMM floor) take the package's constants (`cells.chapter()`), and their
  widths are those of the model `run.build` makes;
- the orchestrator and the references load no MXNet: the orchestrator only starts cells, each in a fresh
  process, and MXNet's OpenMP runtime would share the cores with PyTorch's;
- the FLOP count of the chapter's model: 8 matrix products per training batch, 3 per test batch;
- the book loop (`cell_book`: the book's DataLoader, per-batch reads, the book's `sgd`) trains exactly
  what `train_ch3` trains: the same test accuracy from the same seed;
- the report of the committed runs prints the goal ratios from the medians, and both numerics modes' rows
  with how each computed;
- docs/performance.md's report block is exactly what `--report RUN --markdown` writes from the run it
  names, so the page cannot drift from the code or the run; a page without a block is refused;
- the exercise sweep's benchmark (`benchmarks/sweep.py`): its projection schedules longest first, and
  docs/performance.md and docs/exercises.md show its saved measurement as it prints it.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import cells, epoch, reference, report
from dropout_gluon import RunConfig, run

ROOT = Path(__file__).resolve().parents[1]
SAVED = ROOT / "benchmarks" / "results" / "2026-11-27-epyc-2-cores.json"  # before the numerics modes
SAVED_MODES = ROOT / "benchmarks" / "results" / "2026-12-01-xeon-avx512-2-cores.json"  # the page's run
PAGE = ROOT / "docs" / "performance.md"


def test_the_references_take_the_packages_constants():
    chapter, default = cells.chapter(), RunConfig()
    names = ("num_epochs", "lr", "batch_size", "drop_prob1", "drop_prob2", "num_hiddens1", "num_hiddens2")
    assert {name: chapter[name] for name in names} == {name: getattr(default, name) for name in names}
    run.set_seed(0)
    weights = run.build(default).net.params[0::2]  # W1, W2, W3
    assert reference.layers(chapter) == [weights[0].shape[0]] + [w.shape[1] for w in weights]


def test_the_orchestrator_and_the_references_load_no_mxnet():
    code = "import sys, benchmarks.epoch, benchmarks.reference; print('mxnet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_gemm_flops_of_the_chapters_model():
    # One training batch of 256 through 784-256-256-10: 3 forward products, 3 weight gradients and
    # 2 input gradients (the images need none), 2*m*k*n each.
    widths = reference.layers(cells.chapter())
    forward = 2 * 256 * (784 * 256 + 256 * 256 + 256 * 10)
    backward = 2 * 256 * (784 * 256 + 256 * 256 + 256 * 10) + 2 * 256 * (10 * 256 + 256 * 256)
    assert sum(2 * m * k * n for m, k, n in reference.gemms(256, widths, True)) == forward + backward
    # Linear in the examples, so the short last batches change nothing: 60000 trained, 10000 tested.
    assert reference.epoch_flops(widths, 256) == 60000 * (forward + backward) // 256 + 10000 * forward // 256


@pytest.mark.parametrize("model", ["scratch", "gluon"])
def test_the_book_loop_trains_what_train_ch3_trains(model, real_data):
    # The book's loop (per-batch reads, the book's four-operator sgd) over the book's DataLoader, one
    # epoch, against the package's train_ch3 over the same loader: the same seed, the same test accuracy.
    book = cells.cell_book(model, epochs=0)
    train = run.train_scratch if model == "scratch" else run.train_gluon
    _, history = train(1, loader="gluon", log=None)
    assert book["test_acc"] == history[-1].test_acc


@pytest.mark.document
def test_report_of_the_committed_run(capsys):
    # The page's tables come from this file (`--report`); the goal ratios are the medians' ratios.
    assert epoch.main(["--report", str(SAVED)]) == 0
    out = capsys.readouterr().out
    med = report.medians(json.loads(SAVED.read_text())["seconds"])
    ratios = [med["default", m] / med["torch", None] for m in ("scratch", "gluon")]
    assert f"default / PyTorch       <= 1.0             {ratios[0]:.2f} NO   {ratios[1]:.2f} NO" in out
    assert med["torch", None] == min(med["torch", 1], med["torch", 2])
    assert "Scaling: seconds per epoch" in out and "Other settings" in out


def test_report_of_a_run_with_both_numerics_modes(capsys):
    # Both modes' rows and their ratios to PyTorch, and how each computed, from the saved run.
    assert epoch.main(["--report", str(SAVED_MODES)]) == 0
    out = capsys.readouterr().out
    saved = json.loads(SAVED_MODES.read_text())
    med = report.medians(saved["seconds"])
    for mode, row in (("portable", "default"), ("native", "native")):
        ratios = [med[row, m] / med["torch", None] for m in ("scratch", "gluon")]
        assert re.search(rf"{mode} / PyTorch +<= 1.5, 1.2 +{ratios[0]:.2f} (ok|NO) +{ratios[1]:.2f} (ok|NO)", out)
    assert f"numerics, default: {saved['info']['numerics']}" in out and saved["info"]["numerics"].startswith(
        "portable: OpenBLAS Sandybridge, oneDNN off")
    assert f"numerics, native:  {saved['native']}" in out and saved["native"].startswith("native: ")
    assert "processor features: avx" in out


@pytest.mark.document
def test_the_performance_page_is_what_the_command_writes(tmp_path, monkeypatch, capsys):
    # The command the page's marker names, run on copies of the page and the run in the same layout.
    command = re.search(r"<!-- report: python -m benchmarks\.epoch (.*) -->", PAGE.read_text())
    args = command[1].split()
    assert args[0::2] == ["--report", "--markdown"] and args[3] == "docs/performance.md"
    for name in args[1::2]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert epoch.main(args) == 0
    assert (tmp_path / args[3]).read_text() == PAGE.read_text(), f"stale: run python -m benchmarks.epoch {command[1]}"
    assert "**Not met:**" in PAGE.read_text() and "```text\nmachine: " in PAGE.read_text()


def test_a_page_without_a_report_block_is_refused(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("# Performance\n")
    assert epoch.main(["--report", str(SAVED), "--markdown", str(page)]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and page.read_text() == "# Performance\n"
    with pytest.raises(SystemExit) as e:  # nothing to name as the tables' source
        epoch.main(["--quick", "--markdown", str(page)])
    assert e.value.code == 2


def test_the_sweep_projection_schedules_longest_first():
    from benchmarks.sweep import makespan

    runs = [5.0, 4.0, 3.0, 3.0, 3.0]
    assert makespan(runs, 1) == sum(runs) and makespan(runs, 64) == max(runs)
    # Longest first on 2 workers: 5 | 4, then 3 -> 7, 3 -> 8, 3 -> 10 (the best split, 9, is not its aim)
    assert makespan(runs, 2) == 10.0


@pytest.mark.document
def test_the_docs_show_the_saved_sweep_measurement():
    # The sweep's measured wall times and projection, as `python -m benchmarks.sweep --report` prints them.
    from benchmarks.sweep import report as sweep_report

    saved = json.loads((ROOT / "benchmarks" / "results" / "2026-11-28-sweep-epyc-2-cores.json").read_text())
    assert saved["same_numbers"]  # --jobs 1 and --jobs 2 trained the same runs to the same numbers
    text = sweep_report(saved)
    for page in (PAGE, ROOT / "docs" / "exercises.md"):
        assert text in page.read_text(), page
