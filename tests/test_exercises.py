"""The exercises package, on the real data (subsets):

- each exercise's quick mode end to end: the table's rows and numbers, the plot, every run's record
  naming its configuration and data release;
- a sweep interrupted mid-way resumes without retraining, and gives what an uninterrupted one gives;
- divergence is recorded as an outcome and the sweep goes on; the release is part of a run's key;
- weight decay shrinks the weights of both models, and the scratch model's L2 term takes the very steps
  of Gluon's `wd`; a sweep's run is exactly `train_gluon`'s;
- plans, keys and bad input; the progress line; summaries over seeds; the command line;
- a quick sweep in a clean clone leaves git status clean (it writes under runs/), and is refused in
  the committed results, the folder `make exercises` writes; a sweep from Python trains in its own process
  unless asked for workers; repeated or negative seeds are refused.
"""
from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mxnet import autograd

from dropout_gluon import cli, data, exercises, numerics, run
from dropout_gluon.config import RunConfig
from dropout_gluon.exercises.report import pct, table
from dropout_gluon.exercises.sweep import Progress, key
from dropout_gluon.trainer import train_ch3

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One run cache for the quick exercises, so an arm two exercises share is trained once."""
    return tmp_path_factory.mktemp("cache")


def subset_iters(arrays, n: int = 2000, m: int = 500, batch_size: int = 256, shuffle: bool = True) -> tuple:
    train_images, train_labels, test_images, test_labels = arrays
    return (data.DataIter(train_images[:n], train_labels[:n], batch_size, shuffle=shuffle),
            data.DataIter(test_images[:m], test_labels[:m], batch_size, shuffle=False),
            data.DataIter(train_images[:n], train_labels[:n], batch_size, shuffle=False))


def strip_seconds(records: list) -> list:
    """Records without the wall-clock times, which differ between two identical runs."""
    return [dict(r, seconds=None, history=[dict(e, seconds=None) for e in r["history"]]) for r in records]


@pytest.mark.parametrize("name", exercises.EXERCISES)
def test_quick_exercise_writes_table_and_plot(name, real_dataset, shared_cache, tmp_path):
    result = exercises.run_exercise(name, quick=True, epochs=2, out_dir=tmp_path, cache_dir=shared_cache,
                                    progress=False, dataset=real_dataset)
    plan = exercises.plan(name, quick=True, epochs=2)
    labels = [label for label, _ in plan.arms]
    assert list(result.summary) == labels == list(result.runs)
    assert result.plan == plan and plan.seeds == exercises.QUICK["seeds"]
    for label in labels:
        s = result.summary[label]
        assert s["runs"] == len(plan.seeds) and s["finished"] + len(s["diverged"]) == s["runs"]
        for field in ("final_test_acc", "best_test_acc", "final_train_acc", "final_train_acc_eval", "gap"):
            mean, std = s[field]
            low = -1 if field == "gap" else 0  # the gap, train minus test, can be negative; accuracies cannot
            assert low <= mean <= 1 and std >= 0, (label, field, s[field])
        assert all(len(r["history"]) == 2 for r in result.runs[label])
        assert [r["config"]["seed"] for r in result.runs[label]] == list(plan.seeds)
        assert all(r["config"]["train_size"] == exercises.QUICK["train_size"] for r in result.runs[label])
        assert all(r["data"] == {"data_release": "final", "data_dir": real_dataset.source.data_dir}
                   for r in result.runs[label])
        assert f"| {label} | {pct(s['final_test_acc'])} |" in result.table
    assert "; Fashion-MNIST final release (2017-08-31); portable numerics; accuracies in %" in result.table
    assert result.table_path == tmp_path / f"{name}.md"
    assert result.table in result.table_path.read_text()
    assert result.plots == (tmp_path / f"{name}.png",)
    assert result.plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_interrupted_sweep_resumes_without_recomputing(real_dataset, tmp_path):
    kwargs = dict(quick=True, seeds=1, epochs=1, out_dir=tmp_path / "out", progress=False, dataset=real_dataset)

    class Interrupt(Exception):
        pass

    def stop(record):
        raise Interrupt

    with pytest.raises(Interrupt):
        exercises.run_exercise("swap", cache_dir=tmp_path / "cache", after_run=stop, **kwargs)
    stored = list((tmp_path / "cache").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".json"  # the finished run, and no temp file
    first = json.loads(stored[0].read_text())

    computed = []
    resumed = exercises.run_exercise("swap", cache_dir=tmp_path / "cache", after_run=computed.append, **kwargs)
    assert len(computed) == 2 and first["key"] not in [r["key"] for r in computed]
    # Reused as stored, not retrained (on two workers any of the arms may have finished first).
    assert [r for rs in resumed.runs.values() for r in rs if r["key"] == first["key"]] == [first]

    again = []
    rerun = exercises.run_exercise("swap", cache_dir=tmp_path / "cache", after_run=again.append, **kwargs)
    assert again == [] and rerun.summary == resumed.summary and rerun.table == resumed.table

    # The same sweep uninterrupted, in a fresh cache, gives the same numbers: resuming changed nothing.
    fresh = exercises.run_exercise("swap", cache_dir=tmp_path / "fresh", **kwargs)
    for label in fresh.runs:
        assert strip_seconds(fresh.runs[label]) == strip_seconds(resumed.runs[label])


def test_divergence_is_an_outcome_and_the_sweep_goes_on(real_dataset, tmp_path):
    base = RunConfig("gluon", drop_prob1=0.0, drop_prob2=0.0, num_epochs=2, train_size=2000, test_size=500)
    huge = dataclasses.replace(base, lr=1e4)
    scratch = dataclasses.replace(base, model="scratch", lr=100.0)
    records = exercises.sweep([huge, scratch, base], cache_dir=tmp_path, dataset=real_dataset, progress=False)
    for config in (huge, scratch):
        record = records[config]
        assert record["diverged"]["kind"] in ("non-finite", "exploding", "collapsed")
        assert record["diverged"]["epoch"] == 1 and record["final_train_acc_eval"] is None
        assert isinstance(record["history"], list)  # the epochs before it are kept (none here)
    assert records[base]["diverged"] is None and len(records[base]["history"]) == 2

    summary = exercises.summarize([records[huge]])
    assert summary["finished"] == 0 and len(summary["diverged"]) == 1
    assert np.isnan(summary["final_test_acc"][0])
    plan = exercises.plan("swap", quick=True)
    assert "| diverging | — |" in table({"diverging": summary}, plan)
    assert f"1/1 (seed 0: {records[huge]['diverged']['kind']} in epoch 1)" in table({"diverging": summary}, plan)
    # Stored like any other run: a rerun does not train it again.
    again = []
    exercises.sweep([huge], cache_dir=tmp_path, dataset=real_dataset, progress=False, after_run=again.append)
    assert again == []


def test_the_release_is_part_of_a_run(real_dataset, tmp_path):
    final = RunConfig(num_epochs=1, train_size=512, test_size=256)
    first = dataclasses.replace(final, data_release="first")
    here = numerics.record()
    assert key(first, here) != key(final, here)  # the two releases are different data: never one cache entry
    with pytest.raises(ValueError, match="the dataset passed in is the final release, but the configurations "
                                         "ask for another; pass data_release='final'"):
        exercises.sweep([first], cache_dir=tmp_path, dataset=real_dataset, progress=False)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="data_release must be one of"):
        RunConfig(data_release="2017")


def train_weights(config: RunConfig, arrays) -> list:
    """The trained weight matrices W1, W2, W3 (as numpy, shaped (in, out)) of one run."""
    net, _ = run.train(config, subset_iters(arrays)[:2], log=None)
    if config.model == "scratch":
        return [w.asnumpy() for w in net.params[0::2]]
    return [p.data().asnumpy().T for p in net.collect_params(".*weight").values()]


@pytest.mark.parametrize("model", ["gluon", "scratch"])
def test_weight_decay_shrinks_the_trained_weights(model, real_data):
    config = RunConfig(model=model, num_epochs=2, seed=3)
    plain = train_weights(config, real_data)
    decayed = train_weights(dataclasses.replace(config, wd=0.05), real_data)
    norm = [sum(float((w ** 2).sum()) for w in ws) for ws in (plain, decayed)]
    assert norm[1] < 0.8 * norm[0], norm  # equal norms would mean wd was ignored


def test_scratch_l2_term_equals_gluon_weight_decay(real_data):
    # Same initial weights, no dropout, no shuffling: Gluon's wd and the book's L2 term take the same steps.
    models = {m: run.build(RunConfig(m, drop_prob1=0.0, drop_prob2=0.0, wd=0.01)) for m in ("gluon", "scratch")}
    gluon_net, scratch_params = models["gluon"].net, models["scratch"].net.params
    train_iter, test_iter, _ = subset_iters(real_data, n=1024, shuffle=False)
    with autograd.predict_mode():
        gluon_net(next(iter(train_iter))[0])  # finish Gluon's deferred initialisation
    for i, param in enumerate(gluon_net.collect_params().values()):
        value = param.data()
        scratch_params[i][:] = value.T if value.ndim == 2 else value
    for model in models.values():
        train_ch3(model.net, train_iter, test_iter, model.loss, 2, 256, trainer=model.trainer, log=None)
    trained = [p.data().asnumpy() for p in gluon_net.collect_params().values()]
    for mine, theirs in zip(scratch_params, trained):
        np.testing.assert_allclose(mine.asnumpy(), theirs.T if theirs.ndim == 2 else theirs, atol=2e-6)


def test_a_run_matches_train_gluon(real_data):
    # The chapter's configuration through the sweep trains exactly what run.train_gluon trains.
    iters = subset_iters(real_data)
    record = exercises.train_run(RunConfig("gluon", num_epochs=2, seed=5), iters)
    _, history = run.train_gluon(2, seed=5, data_iters=iters[:2], log=None)
    assert [(e["loss"], e["train_acc"], e["test_acc"]) for e in record["history"]] == \
        [(e.loss, e.train_acc, e.test_acc) for e in history]


def test_config_key_and_bad_input():
    a, b, here = RunConfig(wd=0), RunConfig(wd=0.0), numerics.record()
    assert key(a, here) == key(b, here) and key(a, here) != key(RunConfig(seed=1), here)
    assert key(a, here) == key(dataclasses.replace(a, data_dir="/elsewhere"), here)  # the same verified data
    # What decides the floats: the whole record in native mode, all but the processor in portable mode.
    for mode in ("portable", "native"):
        record = dict(here, mode=mode)
        assert key(a, record) != key(a, dict(record, threads_per_operator=2))
        assert (key(a, record) == key(a, dict(record, processor="another"))) == (mode == "portable")
    for bad in (dict(model="torch"), dict(wd=-1.0), dict(wd=float("nan")), dict(model="gluon", drop_prob1=1.0),
                dict(num_hiddens1=0), dict(train_size=0), dict(lr=0), dict(seed=-1), dict(ctx="tpu")):
        with pytest.raises(ValueError):
            RunConfig(**bad)
    with pytest.raises(ValueError, match="unknown exercise"):
        exercises.plan("dropconnect")
    for seeds in (0, [], [0.5], "ab", [0, 0], [-1]):  # a repeated seed reported "± 0.00 over 2 seeds"
        with pytest.raises(ValueError, match="seeds"):
            exercises.plan("swap", seeds=seeds)
    assert exercises.plan("swap", seeds=4).seeds == (0, 1, 2, 3)
    assert exercises.plan("epochs").base.num_epochs == exercises.DEFAULT_EPOCHS["epochs"]


def test_progress_shows_runs_done_and_eta(monkeypatch):
    out = io.StringIO()  # not a terminal: a plain line per finished run
    bar = Progress(total=4, done=1, work=3.0, stream=out)
    bar.update("run a", 1.0)
    bar.note("run b: failed")
    bar.close()
    assert out.getvalue() == "2/4 runs: run a\nrun b: failed\n"

    class Terminal(io.StringIO):  # 80 columns (tqdm reads COLUMNS where it cannot ask the terminal)
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    out = Terminal()
    bar = Progress(total=4, done=1, work=3.0, stream=out)
    bar.update("run a", 1.0)
    bar.note("run b: failed")
    bar.close()
    lines = [part for line in out.getvalue().split("\n") for part in line.split("\r") if part.strip()]
    assert lines[0].startswith("1/4 runs ") and lines[-1].startswith("2/4 runs ") and "ETA" in lines[-1]
    assert "run b: failed" in lines and max(len(line) for line in lines) < 80, lines  # no wrapping at 80 columns


def test_command_line(real_data, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert cli.main(["exercise", "swap", "--quick", "--seeds", "1", "--epochs", "1", "--out", str(out),
                     "--cache", str(cache), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| 0.5, 0.2 (swapped) |" in printed and f"wrote {out / 'swap.md'}" in printed
    assert (out / "swap.png").is_file() and len(list(cache.glob("*.json"))) == 3
    assert cli.main(["exercise", "swap", "--seeds", "0"]) == 2
    assert capsys.readouterr().err == "dropout-gluon: error: seeds must be a whole number >= 1, got 0\n"


def test_summarize_over_seeds():
    def record(seed, losses, tests, diverged=None):
        history = [dict(epoch=i + 1, loss=l, train_acc=t + 0.05, test_acc=t, seconds=1.0)
                   for i, (l, t) in enumerate(zip(losses, tests))]
        return dict(config=dict(seed=seed), history=history, diverged=diverged,
                    final_train_acc_eval=None if diverged else tests[-1] + 0.02, seconds=2.0)

    s = exercises.summarize([record(0, [1.0, 0.5], [0.80, 0.84]), record(1, [1.0, 0.6], [0.82, 0.86]),
                               record(2, [1.0, 1.2], [0.85, 0.70], dict(kind="collapsed", epoch=2, loss=1.2))])
    assert s["runs"] == 3 and s["finished"] == 2 and s["spiked"] == 1
    assert s["final_test_acc"] == pytest.approx((0.85, np.std([0.84, 0.86], ddof=1)))
    assert s["best_test_acc"][0] == pytest.approx((0.84 + 0.86 + 0.85) / 3)
    assert s["best_epoch"][0] == pytest.approx(5 / 3) and s["gap"][0] == pytest.approx(0.02)
    assert s["diverged"] == [dict(kind="collapsed", epoch=2, loss=1.2, seed=2)]
    assert np.isnan(exercises.summarize([record(0, [1.0], [0.8])])["final_test_acc"][1])  # one seed: no spread


def test_a_quick_sweep_leaves_the_committed_results_alone(tmp_path, real_data):
    # In a clean clone, as a newcomer would: `exercise swap --quick` writes under runs/ (ignored by git), and
    # pointed where `make exercises` writes, the committed results, it is refused before any training.
    root = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    command = [sys.executable, "-m", "dropout_gluon", "exercise", "swap", "--quick", "--no-progress"]
    result = subprocess.run(command, cwd=clone, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (clone / "runs" / "exercises" / "swap.md").is_file()
    assert subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True,
                          check=True).stdout == ""
    (out,) = re.findall(r"exercise all --out (\S+)", (root / "Makefile").read_text())
    assert root / out == exercises.COMMITTED  # the folder make exercises writes is the one the package reads
    committed = (clone / out / "swap.md").read_text()
    refused = subprocess.run(command + ["--out", out, "--cache", str(tmp_path / "c")], cwd=clone,
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "committed results" in refused.stderr and refused.stderr.count("\n") == 1
    assert (clone / out / "swap.md").read_text() == committed and not (tmp_path / "c").exists()


def test_a_sweep_from_python_trains_in_this_process_by_default(tmp_path, real_dataset):
    # A script without `if __name__ == "__main__":` must work: no worker processes unless asked.
    import multiprocessing

    children = []
    exercises.run_exercise("swap", quick=True, seeds=1, epochs=1, out_dir=tmp_path / "out", cache_dir=tmp_path / "c",
                           progress=False, dataset=real_dataset,
                           after_run=lambda record: children.extend(multiprocessing.active_children()))
    assert children == [] and len(list((tmp_path / "c").glob("*.json"))) == 3
