"""What an install pulls in, read from the installed packages' metadata (no network, no pip run):

- `pip install .` (and `make run`) brings no Jupyter, pandas or d2l: only what training needs;
- the `notebook` extra brings them, so the walk below finds what it looks for.
"""
from __future__ import annotations

import importlib.metadata as metadata
import re

from packaging.requirements import Requirement

NOTEBOOK_ONLY = {"jupyterlab", "pandas", "ipykernel", "d2l", "notebook", "jupyter"}


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
    assert {"mxnet", "numpy", "matplotlib", "tqdm"} <= base
    assert not base & NOTEBOOK_ONLY, sorted(base & NOTEBOOK_ONLY)


def test_the_notebook_extra_brings_it():
    assert NOTEBOOK_ONLY <= closure("dropout-gluon", ("notebook",))
