"""The notebook:

- it runs top to bottom, headless, in fast mode, on the real data and this project's interpreter;
- the committed copy holds a full run and shows the package's current code; it was run in portable numerics
  (its Gluon lines are make run's golden ones).
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


@pytest.mark.realdata
def test_notebook_runs_end_to_end(real_data, monkeypatch):
    monkeypatch.setenv("DROPOUT_GLUON_FAST", "1")  # inherited by the kernel
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel python:', sys.executable)"))
    load_executor().execute(nb, NOTEBOOK.parent, timeout=600)  # raises CellExecutionError on any failing cell

    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not errors
    text = "".join(outputs(nb, "stream"))
    assert f"kernel python: {sys.executable}\n" in text  # the kernel ran on this interpreter (.venv), not another
    assert text.count("epoch 2, loss") == 2  # both models trained (fast mode: 2 epochs)
    assert len(outputs(nb, "image/png")) >= 10  # E[h'], figure, 2 live curves, side by side, predictions, 4 exercises


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


def test_committed_notebook_was_run_in_portable_numerics():
    # Its saved outputs are what `make notebook` prints on any x86-64 processor with AVX: the Gluon model's
    # lines are make run's (the same configuration and seed), as tests/golden/make_run.json holds them.
    import json

    text = "".join(outputs(nbformat.read(NOTEBOOK, as_version=4), "stream"))
    assert "numerics portable: OpenBLAS Sandybridge, oneDNN off, 1 thread per operator" in text
    golden = json.loads((ROOT / "tests" / "golden" / "make_run.json").read_text())["epochs"]["gluon"]
    for epoch, loss, train_acc, test_acc in golden:
        assert f"epoch {epoch}, loss {loss:.4f}, train acc {train_acc:.3f}, test acc {test_acc:.3f}" in text
