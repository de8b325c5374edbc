"""What an install pulls in, read from the installed packages' metadata (no network, no pip run):

- `pip install .` (and `make run`) brings no Jupyter, pandas or d2l: only what training needs;
- the `notebook` extra brings them, so the walk below finds what it looks for;
- scripts/setup.sh removes a folder only if it is a virtual environment.
"""
from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

NOTEBOOK_ONLY = {"jupyterlab", "pandas", "ipykernel", "d2l", "notebook", "jupyter"}
# Installed by scripts/setup.sh without their dependencies, whose pins would hold numpy below what this Python's
# numpy may be (pyproject.toml).
NO_DEPS = {"d2l", "mxnet"} if sys.version_info >= (3, 12) else set()


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(name: str, extras: tuple = ()) -> set:
    """Every distribution that installing `name[extras]` pulls in, on this Python, by the installed metadata."""
    seen, todo = set(), [(name, tuple(extras))]
    while todo:
        dist, wanted = todo.pop()
        key = canonical(dist)
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        for text in metadata.requires(dist) or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                todo.append((req.name, tuple(req.extras)))
    return {key for key, _ in seen} - {canonical(name)}


def test_installing_the_package_brings_no_notebook_stack():
    base = closure("dropout-gluon")
    assert {"mxnet", "numpy", "matplotlib", "tqdm"} - NO_DEPS <= base and metadata.version("mxnet") == "1.9.1"
    assert not base & NOTEBOOK_ONLY, sorted(base & NOTEBOOK_ONLY)


def test_the_notebook_extra_brings_it():
    assert NOTEBOOK_ONLY - NO_DEPS <= closure("dropout-gluon", ("notebook",))
    assert "d2l" not in NO_DEPS or metadata.version("d2l") == "1.0.3"  # there all the same


def test_setup_removes_only_a_virtual_environment(tmp_path):
    # VENV= may name any folder: one that is not a virtual environment is refused and left as it was.
    folder = tmp_path / "not-a-venv"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    setup = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"
    result = subprocess.run(["bash", str(setup)], env={**os.environ, "VENV": str(folder)}, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2 and "is not a virtual environment" in result.stderr, result.stderr
    assert (folder / "notes.txt").read_text() == "mine"
