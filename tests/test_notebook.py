"""The notebook:

- `make notebook`'s executor (scripts/execute_notebook.py) runs a notebook on this project's interpreter and writes
  it only if every cell succeeds; the whole notebook runs in tests/test_lab.py, in JupyterLab and Notebook 7;
- the committed copy holds a full run and shows the package's current code; it was run in portable numerics, and
  both models' training lines are make run's golden ones (the README's).
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import nbformat
import pytest

import dropout_gluon as gb
from dropout_gluon import scratch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dropout.ipynb"


def load_executor():
    """scripts/execute_notebook.py, the code `make notebook` runs."""
    spec = importlib.util.spec_from_file_location("execute_notebook", ROOT / "scripts" / "execute_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs(nb, kind: str) -> list:
    """Every output of the given MIME type (or stream text for 'stream'), in cell order."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stream" and out.output_type == "stream":
                found.append(out.text)
            elif kind in out.get("data", {}):
                found.append(out.data[kind])
    return found


def test_make_notebook_runs_on_this_interpreter_and_writes_only_a_full_run(tmp_path):
    # Only what tests/test_lab.py does not cover (it runs the whole notebook in a browser, on the kernel `make lab`
    # installs): the headless executor, on a notebook of two cells.
    executor = load_executor()
    source, out = tmp_path / "small.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys"), nbformat.v4.new_code_cell(
        "print('kernel python:', sys.executable)")]), source)
    assert executor.main([str(source), "-o", str(out)]) == 0
    assert "".join(outputs(nbformat.read(out, as_version=4), "stream")) == f"kernel python: {sys.executable}\n"

    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")]), source)
    before = out.read_bytes()
    assert executor.main([str(source), "-o", str(out)]) == 1  # a failing cell: nothing written
    assert out.read_bytes() == before


@pytest.mark.document
def test_committed_notebook_has_a_full_run_and_shows_the_current_code():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert NOTEBOOK.stat().st_size < 2_000_000, "the committed notebook should stay under 2 MB"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert len(outputs(nb, "image/png")) >= 10, "the committed notebook has lost its outputs: `make notebook`"
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert "epoch 5, loss" in "".join(outputs(nb, "stream")), "the committed outputs are not a full run"

    # Where the book shows a definition, the notebook shows the package's source: it must not have drifted.
    shown = {text.strip() for text in outputs(nb, "text/plain")}
    for obj in (gb.dropout, scratch.init_params, gb.ScratchNet, gb.get_net):
        assert inspect.getsource(obj).strip() in shown, f"{obj.__name__} changed: run `make notebook`"


@pytest.mark.document
def test_committed_notebook_prints_the_readmes_digits():
    # Its saved outputs are what `make notebook` prints on any x86-64 processor with AVX: each model's training
    # lines are make run's (the same configuration and seed), as tests/golden/make_run.json holds them.
    import json

    nb = nbformat.read(NOTEBOOK, as_version=4)
    text = "".join(outputs(nb, "stream"))
    assert "numerics portable: OpenBLAS Sandybridge, oneDNN off, 1 thread per operator" in text
    golden = json.loads((ROOT / "tests" / "golden" / "make_run.json").read_text())["epochs"]
    for model, start in (("scratch", 'curves = LiveCurves("from scratch"'), ("gluon", "trainer = gluon.Trainer(")):
        cell = next(cell for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith(start))
        printed = [line for out in cell.outputs if out.output_type == "stream" for line in out.text.splitlines()]
        assert printed == [f"epoch {epoch}, loss {loss:.4f}, train acc {train_acc:.3f}, test acc {test_acc:.3f}"
                           for epoch, loss, train_acc, test_acc in golden[model]], model
