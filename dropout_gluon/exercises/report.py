"""An exercise's summaries over seeds, its Markdown table and its PNG plot (a bare Figure: no pyplot, no display)."""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..fashion_mnist import RELEASES
from ..persist import atomic_write, write_text
from .plan import Plan

LOSS_SPIKE = 1.1  # an epoch whose training loss is 10% above the previous one's: the run was set back


def _mean_std(values: list) -> tuple:
    # Sample standard deviation: the seed-to-seed spread; undefined for one seed.
    return (float(np.mean(values)) if values else math.nan, float(np.std(values, ddof=1)) if len(values) > 1
            else math.nan)


def summarize(records: list) -> dict:
    """Mean and std over seeds of final and best test acc, final train acc and the gap; divergences, spikes."""
    finished = [r for r in records if r["diverged"] is None and r["history"]]
    started = [r for r in records if r["history"]]
    test = [[e["test_acc"] for e in r["history"]] for r in started]
    return {
        "runs": len(records),
        "finished": len(finished),
        "diverged": [dict(r["diverged"], seed=r["config"]["seed"]) for r in records if r["diverged"]],
        "final_test_acc": _mean_std([r["history"][-1]["test_acc"] for r in finished]),
        "best_test_acc": _mean_std([max(t) for t in test]),
        "best_epoch": _mean_std([int(np.argmax(t)) + 1 for t in test]),
        "final_train_acc": _mean_std([r["history"][-1]["train_acc"] for r in finished]),
        "final_train_acc_eval": _mean_std([r["final_train_acc_eval"] for r in finished]),
        "gap": _mean_std([r["final_train_acc_eval"] - r["history"][-1]["test_acc"] for r in finished]),
        "final_loss": _mean_std([r["history"][-1]["loss"] for r in finished]),
        "spiked": sum(any(b["loss"] > LOSS_SPIKE * a["loss"] for a, b in zip(r["history"], r["history"][1:]))
                      for r in records),
        "seconds": float(sum(r["seconds"] for r in records)),
    }


COLUMNS = ("configuration", "test acc, final", "test acc, best (epoch)", "train acc, while training (book)",
           "train acc, predict mode", "gap (train − test)", "loss spiked", "diverged")


def pct(mean_std: tuple) -> str:
    """`(0.8812, 0.0021)` as `88.12 ± 0.21` (percent); a dash when there is no value."""
    mean, std = mean_std
    return "—" if math.isnan(mean) else f"{100 * mean:.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")


def _divergences(s: dict) -> str:
    where = ", ".join(f"seed {d['seed']}: {d['kind']} in epoch {d['epoch']}" for d in s["diverged"])
    return f"{len(s['diverged'])}/{s['runs']}" + (f" ({where})" if where else "")


def describe(plan: Plan) -> str:
    """One line saying what was run."""
    base, seeds = plan.base, plan.seeds
    subset = (f"first {base.train_size} training and {base.test_size} test images" if base.train_size
              else "all 60000 training and 10000 test images")
    return (f"{base.model} model, {base.num_epochs} epochs, lr {base.lr}, batch size {base.batch_size}, "
            f"{subset}; mean ± sample std over {len(seeds)} seeds ({', '.join(map(str, seeds))})")


def table(summary: dict, plan: Plan, mode: str = "portable") -> str:
    """The Markdown table of an exercise, one row per configuration (its runs computed in numerics `mode`)."""
    release = f"Fashion-MNIST {plan.base.data_release} release ({RELEASES[plan.base.data_release]})"
    lines = [f"*{describe(plan)}; {release}; {mode} numerics; accuracies in %.*", "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 2) + ["---"]) + "|"]
    for label, s in summary.items():
        best_epoch = s["best_epoch"][0]
        best = pct(s["best_test_acc"]) + ("" if math.isnan(best_epoch) else f" ({best_epoch:.0f})")
        lines.append("| " + " | ".join([label, pct(s["final_test_acc"]), best, pct(s["final_train_acc"]),
                                        pct(s["final_train_acc_eval"]), pct(s["gap"]), f"{s['spiked']}/{s['runs']}",
                                        _divergences(s)]) + " |")
    return "\n".join(lines) + "\n"


def _value(epoch: dict, field: str) -> float:
    return epoch["train_acc"] - epoch["test_acc"] if field == "gap" else epoch[field]


def _curve(records: list, field: str) -> tuple:
    # Mean and std per epoch over the seeds still running at that epoch (a diverged run stops early).
    length = max(len(r["history"]) for r in records)
    per_epoch = [[_value(r["history"][i], field) for r in records if len(r["history"]) > i] for i in range(length)]
    mean = np.array([np.mean(v) for v in per_epoch])
    std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in per_epoch])
    return np.arange(1, length + 1), mean, std


def _band(ax, records: list, field: str, color, label: str, style: str = "-") -> None:
    records = [r for r in records if r["history"]]
    if not records:
        return
    x, mean, std = _curve(records, field)
    ax.plot(x, mean, style, color=color, label=label)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    for r in records:
        if r["diverged"]:  # where a seed's run stopped
            last = r["history"][-1]
            ax.plot(last["epoch"], _value(last, field), "x", color=color, markersize=9, mew=2)


def plot(plan: Plan, runs: dict, summary: dict, path: Path) -> None:
    """Curves over epochs with a band over seeds, and the final numbers with error bars (std over seeds)."""
    colors = [f"C{i}" for i in range(len(runs))]
    fig = Figure(figsize=(17 if plan.name == "epochs" else 13, 4.8), constrained_layout=True)
    if plan.name == "epochs":
        ax_loss, ax_acc, ax_gap = fig.subplots(1, 3)
        for color, (label, records) in zip(colors, runs.items()):
            _band(ax_loss, records, "loss", color, label)
            _band(ax_acc, records, "test_acc", color, f"{label}: test")
            _band(ax_acc, records, "train_acc", color, f"{label}: train, while training", "--")
            _band(ax_gap, records, "gap", color, label)
        ax_loss.set_yscale("log")
        ax_loss.set(xlabel="epoch", ylabel="training loss (log scale)")
        ax_acc.set(xlabel="epoch", ylabel="accuracy")
        ax_acc.set_ylim(max(0.0, ax_acc.get_ylim()[0]), 1.0)
        ax_gap.set(xlabel="epoch", ylabel="train acc (while training) − test acc")
        ax_gap.axhline(0, color="black", linewidth=0.8)
        ax_gap.set_ylim(-0.02, None)  # the first epochs' negative gap (the book's train acc averages a
        # model still learning) would squeeze the rest flat
        axes = (ax_loss, ax_acc, ax_gap)
    else:
        ax_curve, ax_final = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
        for color, (label, records) in zip(colors, runs.items()):
            _band(ax_curve, records, "test_acc", color, label)
        ax_curve.set(xlabel="epoch", ylabel="test accuracy (band: ± std over seeds)")
        ax_curve.legend(fontsize=8)
        axes = (ax_curve, ax_final)
        y = np.arange(len(summary))[::-1]
        for y_arm, color, s in zip(y, colors, summary.values()):
            for (mean, std), marker in ((s["final_test_acc"], "o"), (s["final_train_acc_eval"], "s")):
                ax_final.errorbar(mean, y_arm, xerr=0 if math.isnan(std) else std, fmt=marker, color=color,
                                  mfc=color if marker == "o" else "white", capsize=4)
        ax_final.set_yticks(y)
        ax_final.set_yticklabels(list(summary), fontsize=8)
        # The key goes in the axis label: a legend box would hide points near the top of the range.
        ax_final.set(xlabel="final accuracy: ● test, □ train (predict mode); bars: ± std")
    for ax in axes:
        ax.grid(alpha=0.3)
        if plan.name == "epochs":
            ax.legend(fontsize=8)
    fig.suptitle(f"{plan.name}: {describe(plan)}", fontsize=9)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))


@dataclasses.dataclass(frozen=True)
class ExerciseResult:
    """What an exercise produced: the plan, per-arm runs and summaries, the Markdown table and the files."""
    plan: Plan
    runs: dict              # label -> [record per seed]
    summary: dict           # label -> summarize(...)
    table: str
    table_path: Path
    plots: tuple


def report(plan: Plan, records: dict, out_dir: os.PathLike | str) -> ExerciseResult:
    """Summarise an exercise's runs (`{config: record}`), write `<name>.md` and `<name>.png` in `out_dir`."""
    runs = {label: [records[dataclasses.replace(c, seed=s)] for s in plan.seeds] for label, c in plan.arms}
    summary = {label: summarize(rs) for label, rs in runs.items()}
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = next(iter(runs.values()))[0]["numerics"]
    text = table(summary, plan, record.get("mode") or record["device"])
    table_path = write_text(folder / f"{plan.name}.md", f"## {plan.name}\n\n{text}")
    png = folder / f"{plan.name}.png"
    plot(plan, runs, summary, png)
    return ExerciseResult(plan, runs, summary, text, table_path, (png,))
