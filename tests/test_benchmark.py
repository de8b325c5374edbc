"""The benchmark measures the chapter's training: its book loop and its constants are the package's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import epoch
from dropout_gluon import run, scratch


def test_benchmark_constants_are_the_chapters():
    assert (epoch.LR, epoch.DROP_PROB1, epoch.DROP_PROB2) == (run.lr, run.drop_prob1, run.drop_prob2)
    assert (epoch.NUM_INPUTS, epoch.NUM_OUTPUTS) == (scratch.num_inputs, scratch.num_outputs)


def test_gemm_flops_of_the_chapters_model():
    # One training batch of 256 through 784-256-256-10: 3 forward products, 3 weight gradients and
    # 2 input gradients (the images need none), 2*m*k*n each.
    forward = 2 * 256 * (784 * 256 + 256 * 256 + 256 * 10)
    backward = 2 * 256 * (784 * 256 + 256 * 256 + 256 * 10) + 2 * 256 * (10 * 256 + 256 * 256)
    assert sum(2 * m * k * n for m, k, n in epoch.gemms(256, 256, True)) == forward + backward
    # Linear in the examples, so the short last batches change nothing: 60000 trained, 10000 tested.
    assert epoch.epoch_flops(256, 256) == 60000 * (forward + backward) // 256 + 10000 * forward // 256


@pytest.mark.parametrize("model", ["scratch", "gluon"])
def test_the_book_loop_trains_what_train_ch3_trains(model, real_data):
    # The book's loop (per-batch reads, four-operator sgd) over the book's DataLoader, one epoch, against
    # the package's train_ch3 over the same loader: the same seed must give the same test accuracy.
    book = epoch.cell_book(model, epochs=0)
    train = run.train_scratch if model == "scratch" else run.train_gluon
    _, history = train(1, loader="gluon", log=None)
    assert book["test_acc"] == history[-1].test_acc


def test_report_of_the_committed_run(capsys):
    # The README's tables come from this file (`--report`); the goal ratios are the medians' ratios.
    saved = Path(epoch.__file__).parent / "results" / "2026-11-27-epyc-2-cores.json"
    assert epoch.main(["--report", str(saved)]) == 0
    out = capsys.readouterr().out
    med = epoch.medians(json.loads(saved.read_text())["seconds"])
    ratios = [med["default", m] / med["torch", None] for m in ("scratch", "gluon")]
    assert f"default / PyTorch       <= 1.0             {ratios[0]:.2f} NO   {ratios[1]:.2f} NO" in out
    assert med["torch", None] == min(med["torch", 1], med["torch", 2])
    assert "Scaling: seconds per epoch" in out and "Other settings" in out
