"""A markdown page's report block (docs/performance.md): the goals in words and the tables of a saved run."""
from __future__ import annotations

import os
from pathlib import Path

from .report import GOALS, MODELS, floor_of, goal_ratios, medians, met, tables

# What lies between these lines is replaced; BEGIN's line names the command that wrote it.
BEGIN, END = "<!-- report:", "<!-- /report -->"


def summary(results: dict) -> str:
    """The goals in words, met and not met (the goal table's ratios, the memory and accuracy), as markdown."""
    ratios = goal_ratios(medians(results["seconds"]), floor_of(results["gemm"]))
    done, missed = [], []
    for goal, words in (("torch", "the default path takes {} PyTorch's time (goal <= {:.1f}x)"),
                        ("book", "the book's pipeline takes {} the default path's time (goal >= {:.0f}x)"),
                        ("floor", "the default path takes {} the GEMM floor's (goal <= {:.0f}x)")):
        row = [ratios[goal, m] for m in MODELS]
        if None not in row:
            text = words.format(f"{row[0]:.2f}x (scratch) and {row[1]:.2f}x (Gluon)", GOALS[f"vs_{goal}"])
            (done if all(met(goal, r) for r in row) else missed).append(text)
    rss = results["rss"]
    if "error" not in rss:
        (done if rss["rss_mb"] <= GOALS["rss_mb"] else missed).append(
            f"peak memory of `make run`, {rss['rss_mb']:.0f} MB (goal <= {GOALS['rss_mb']})")
        (done if all(a >= GOALS["test_acc"] for a in rss["test_acc"]) else missed).append(
            f"its final test accuracy, {', '.join(f'{a:.3f}' for a in rss['test_acc'])} (the book's band, "
            f">= {GOALS['test_acc']})")
    return "\n".join(f"**{label}:** {'; '.join(texts)}." for label, texts in (("Met", done), ("Not met", missed))
                     if texts)


def block(results: dict, source: str, page: str) -> str:
    """The page's report block, marker lines included: the goals in words, then the tables of `results`."""
    source, page = os.path.normpath(source), os.path.normpath(page)
    link = os.path.relpath(source, os.path.dirname(page) or ".")
    unnamed = "" if "data" in results["info"] else (" (saved before runs recorded their data, it names no "
                                                    "release of Fashion-MNIST)")
    return (f"{BEGIN} python -m benchmarks.epoch --report {source} --markdown {page} -->\n"
            f"{summary(results)}\n\n"
            f"The tables, as `python -m benchmarks.epoch --report` prints them from [`{source}`]({link}){unnamed}:\n\n"
            f"```text\n{tables(results)}```\n"
            f"{END}\n")


def write(page: str, results: dict, source: str) -> None:
    """Replace the report block of `page` (BEGIN's line to END's) with `block`, atomically."""
    from dropout_gluon.persist import write_text  # (loads MXNet: safe here, after every cell has run)

    lines = Path(page).read_text().splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ValueError(f"{page} needs one report block to rewrite: a line '{BEGIN} -->', later a line '{END}'")
    write_text(page, "".join(lines[:begins[0]]) + block(results, source, page) + "".join(lines[ends[0] + 1:]))
