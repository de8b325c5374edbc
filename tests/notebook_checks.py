"""What a run of the notebook must show, wherever it runs (tests/test_lab.py in a browser, tests/test_colab.py in
Colab's environment): every cell run and none failed, each figure drawn once, the live plots updated in place."""
from __future__ import annotations

import sys

KERNEL_CELL = "import sys\nprint('kernel python:', sys.executable)"  # appended by a test: which interpreter ran it

# Every figure the notebook draws: the cell (how its code begins) and the figure's name. One image each.
FIGURES = {
    "h = nd.arange(1, 9)": "the mean of h' is h, and a unit survives with probability 1 - p",
    "p = 0.5": "the book's MLP before and after dropout, from a real mask",
    'curves = LiveCurves("from scratch"': "live training curves, from scratch",
    "trainer = gluon.Trainer(": "live training curves, Gluon",
    'runs = {"from scratch"': "the two models side by side",
    "X, y = next(iter(test_iter))": "the Gluon model's predictions",
    'quick_exercise("swap")': "exercise 1, swapped drop probabilities: quick run",
    'full_sweep("swap")': "exercise 1, swapped drop probabilities: full sweep",
    'quick_exercise("epochs")': "exercise 2, more epochs: quick run",
    'full_sweep("epochs")': "exercise 2, more epochs: full sweep",
    'quick_exercise("width")': "exercise 3, wider model: quick run",
    'full_sweep("width")': "exercise 3, wider model: full sweep",
    'quick_exercise("weight-decay")': "exercise 4, weight decay: quick run",
    'full_sweep("weight-decay")': "exercise 4, weight decay: full sweep",
}
LIVE = ('curves = LiveCurves("from scratch"', "trainer = gluon.Trainer(")  # redraw one figure after each epoch


def describe(nb, index: int) -> str:
    """How a message names a cell: its place in the notebook and its first line."""
    return f"cell {index + 1} of {len(nb.cells)} (`{nb.cells[index].source.splitlines()[0][:60]}`)"


def figure_of(source: str) -> str | None:
    return next((start for start in FIGURES if source.startswith(start)), None)


def check_notebook(nb) -> list[str]:
    """The problems in a notebook after Run All: cells that failed or did not run, live plots that
    were not updated in place, a kernel on another interpreter."""
    problems, not_run = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            if out.output_type == "error":
                problems.append(f"{describe(nb, index)} failed: {out.ename}: {out.evalue}")
        if cell.execution_count is None:
            not_run.append(index)
        if figure_of(cell.source) in LIVE and cell.execution_count is not None:
            images = [out for out in cell.outputs if "image/png" in out.get("data", {})]
            epochs = "".join(out.text for out in cell.outputs if out.output_type == "stream").count("epoch ")
            if len(images) != 1 or epochs < 2:
                problems.append(f"{describe(nb, index)}: {len(images)} saved figures for {epochs} epochs, expected "
                                f"one figure updated after each epoch")
    if not_run:
        problems.append(f"{len(not_run)} code cells did not run, the first {describe(nb, not_run[0])}")
    last = nb.cells[-1]
    printed = "".join(out.get("text", "") for out in last.outputs) if last.source == KERNEL_CELL else None
    if last.get("execution_count") and printed is not None and printed != f"kernel python: {sys.executable}\n":
        problems.append(f"the kernel is not this environment's Python ({sys.executable}): it printed {printed!r}")
    return problems



def check_images(nb, counts: list[int]) -> list[str]:
    """`counts`, the images each code cell shows (in a browser) or holds (saved), against FIGURES: one in each cell
    that draws, none elsewhere."""
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    if len(counts) != len(code):
        return [f"{len(counts)} code cells shown, the notebook has {len(code)}"]
    problems, found = [], set()
    for index, images in zip(code, counts):
        start = figure_of(nb.cells[index].source)
        found.add(start)
        want = 1 if start else 0
        if images != want:
            what = f"{FIGURES[start]}: " if start else ""
            per_epoch = " (one per epoch, not one updated figure)" if start in LIVE and images > 1 else ""
            problems.append(f"{describe(nb, index)} shows {images} images, {what}expected {want}{per_epoch}")
    return problems + [f"no cell draws {FIGURES[start]} (`{start}`)" for start in FIGURES if start not in found]


def saved_images(nb) -> list[int]:
    """How many images each code cell of a saved notebook holds."""
    return [sum("image/png" in out.get("data", {}) for out in cell.outputs) for cell in nb.cells
            if cell.cell_type == "code"]
