"""What an install pulls in (read from the installed packages' metadata) and what it holds, offline:

- `pip install .` (and `make run`) brings no Jupyter, pandas or d2l: only what training needs;
- the `notebook` extra brings them, so the walk below finds what it looks for;
- scripts/setup.sh removes a folder only if it is a virtual environment;
- a wheel of the checkout holds the exercises' committed tables and plots (`exercises.COMMITTED`), so an install
  from it reads the same tables as the checkout, and docs/exercises.md shows the plots from there.
"""
from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from dropout_gluon import exercises

ROOT = Path(__file__).resolve().parents[1]

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
    setup = ROOT / "scripts" / "setup.sh"
    result = subprocess.run(["bash", str(setup)], env={**os.environ, "VENV": str(folder)}, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2 and "is not a virtual environment" in result.stderr, result.stderr
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_wheel_carries_the_exercises_committed_results(tmp_path):
    # As `pip install git+...` sees the project: its tracked files (the working copy's text), built offline.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, tracked.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"),
                          str(source)], check=True)
    (wheel,) = (tmp_path / "dist").glob("dropout_gluon-*.whl")
    folder = exercises.COMMITTED.relative_to(ROOT).as_posix()
    expected = {f"{folder}/{name}{ext}" for name in exercises.EXERCISES for ext in (".md", ".png")}
    assert expected <= set(zipfile.ZipFile(wheel).namelist())

    # Installed from the wheel, the package finds them in its own folder: the notebook's tables, from any install.
    subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True)
    script = "from dropout_gluon import exercises; print(exercises.COMMITTED)"
    installed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, check=True).stdout.strip()
    assert (tmp_path / "site").resolve() in Path(installed).parents  # not the checkout's folder
    for name in exercises.EXERCISES:
        assert (Path(installed) / f"{name}.md").read_text() == (exercises.COMMITTED / f"{name}.md").read_text()
        assert (Path(installed) / f"{name}.png").read_bytes() == (exercises.COMMITTED / f"{name}.png").read_bytes()


@pytest.mark.document
def test_the_exercises_page_shows_the_committed_plots():
    page = ROOT / "docs" / "exercises.md"
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", page.read_text())
    shown = {(page.parent / image).resolve() for image in images}
    assert shown == {exercises.COMMITTED / f"{name}.png" for name in exercises.EXERCISES}
