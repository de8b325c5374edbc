"""The notebook where most learners open it: Google Colab's environment, rebuilt from Google's published list.

A Python 3.13 venv holds Colab's own versions (../shared/hosts/colab/pip-freeze.txt, read here, never copied) of the
packages the notebook and its installs meet; every other package the install pulls in is held to Colab's version too.
The committed notebook then runs there, unchanged, on a kernel that has never seen this project, in fast mode, with
no Debian dataset and no data in the home folder (a local proxy answers the data's published URLs), as:
- a learner who cloned the project: the notebook in its checkout, the first cell installs from the checkout;
- Colab: the notebook alone in an empty folder, the first cell installs from the repository (here a git+file:// URL
  of this checkout, through the same code);
- a Colab user who had imported PyTorch: an OpenMP runtime (a bare libgomp) loaded in the kernel before the first cell.
Each run: no cell fails, every figure is drawn, the full sweeps show, both models' training lines are the README's,
and `pip freeze` afterwards changes the version of no preinstalled package (what the first cell adds is listed).
The first cell's time is printed. About 5 minutes on 2 cores, the venv built once (a minute) and kept in .venv-colab.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import SHARED, required
from mirror import published, serving
from notebook_checks import LIVE, check_images, check_notebook, saved_images
from test_notebook import load_executor

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dropout.ipynb"
FREEZE = Path(os.environ.get("COLAB_FREEZE", SHARED / "hosts" / "colab" / "pip-freeze.txt"))
VENV = ROOT / ".venv-colab"
# What the notebook and its installs meet, at Colab's versions: the kernel and its client, the notebook's libraries,
# and what the package or MXNet would otherwise install or replace.
PACKAGES = ("numpy", "scipy", "matplotlib", "pandas", "pillow", "ipython", "ipykernel", "jupyter_client", "traitlets",
            "pyzmq", "tornado", "nbformat", "nbclient", "notebook", "ipywidgets", "requests", "tqdm", "threadpoolctl",
            "pooch", "graphviz", "psutil", "dask", "setuptools")
ADDED = {"archspec", "d2l", "dropout-gluon", "mxnet"}  # what the first cell installs into Colab, and nothing else


def pins(freeze: Path) -> dict:
    """`{name: "name==version"}` for every package the freeze pins to a version of the package index."""
    found = {}
    for line in freeze.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if match:
            found[canonical(match[1])] = line.strip()
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python313() -> str:
    """Python 3.13, Colab's, from PATH or pyenv."""
    for cand in ["python3.13", *sorted(map(str, Path.home().glob(".pyenv/versions/3.13*/bin/python")))]:
        path = shutil.which(cand)
        check = [path, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 13))"] if path else None
        if check and subprocess.run(check).returncode == 0:
            return path
    required("Python 3.13 (Colab's)", "no python3.13 on PATH or in ~/.pyenv/versions")


def freeze(python: Path) -> dict:
    """`{name: pip freeze's line}` of the environment of `python`."""
    out = subprocess.run([python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True).stdout
    return {canonical(re.split(r"==| @ ", line)[0]): line for line in out.splitlines() if line and line[0] != "#"}


@pytest.fixture(scope="module")
def colab_venv(tmp_path_factory) -> Path:
    """Colab's environment: a venv on Python 3.13 with Colab's versions, built once and kept (a stamp says of what)."""
    if not FREEZE.is_file():
        required("Colab's published package list", f"{FREEZE} is missing (set COLAB_FREEZE to its path)")
    pinned = pins(FREEZE)
    missing = [name for name in PACKAGES if canonical(name) not in pinned]
    assert not missing, f"{FREEZE} pins no version of {missing}"
    python = python313()
    wanted = [pinned[canonical(name)] for name in PACKAGES]
    stamp = hashlib.sha256(json.dumps([python, wanted, sorted(pinned.values())]).encode()).hexdigest()
    if (VENV / ".colab").is_file() and (VENV / ".colab").read_text() == stamp:
        return VENV
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([python, "-m", "venv", VENV], check=True)
    constraints = tmp_path_factory.mktemp("colab") / "constraints.txt"
    constraints.write_text("\n".join(pinned.values()) + "\n")  # what the packages pull in: Colab's versions too
    subprocess.run([VENV / "bin" / "python", "-m", "pip", "install", "--quiet", *wanted, "-c", constraints],
                   check=True)
    (VENV / ".colab").write_text(stamp)
    return VENV


def readme_lines(model: str) -> list[str]:
    """The training lines the README prints for `model` ('from scratch' or 'Gluon')."""
    block = (ROOT / "README.md").read_text().split(f"# {model}: epochs", 1)[1].split(f"# {model}: ", 1)[0]
    return re.findall(r"^epoch \d+, .*$", block, re.M)


def training_lines(nb, start: str) -> list[str]:
    """The lines `epoch N, ...` the cell whose code begins with `start` printed."""
    cell = next(cell for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith(start))
    text = "".join(out.text for out in cell.outputs if out.output_type == "stream")
    return re.findall(r"^epoch \d+, .*$", text, re.M)


def seconds(cell) -> float:
    """How long a cell ran, from the timing nbclient records."""
    from datetime import datetime

    timing = cell.metadata.execution
    start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def run_in_colab(venv: Path, tmp_path: Path, folder: Path, dataset_dir: str, **env) -> tuple:
    """Run the committed notebook from `folder` on a fresh copy of Colab's environment: `(notebook, freeze before,
    freeze after)`."""
    kernel_env = tmp_path / "venv"
    shutil.copytree(venv, kernel_env, symlinks=True)  # the python it runs decides sys.prefix: the copy is its own
    python = kernel_env / "bin" / "python"
    before = freeze(python)
    home = tmp_path / "home"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "DROPOUT_GLUON",
                                                                        "MXNET", "XDG_", "JPY_", "JUPYTER"))}
    pip_cache = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True).stdout
    with serving(published(Path(dataset_dir), tmp_path / "zalando")) as (proxy, requested):
        environ.update(HOME=str(home), XDG_DATA_DIRS=str(tmp_path / "no-datasets"), DROPOUT_GLUON_FAST="1",
                       http_proxy=proxy, PIP_CACHE_DIR=pip_cache.strip() or str(home / "pip-cache"), **env)
        nb = nbformat.read(NOTEBOOK, as_version=4)
        load_executor().execute(nb, folder, timeout=900, python=str(python), env=environ, timing=True)
    assert requested, "the notebook found the data without downloading it: the test does not test the download"
    return nb, before, freeze(python)


def check_run(nb, before: dict, after: dict) -> None:
    problems = check_notebook(nb) + check_images(nb, saved_images(nb))
    assert not problems, "\n".join(problems)
    shown = "".join(out.get("data", {}).get("text/markdown", "") for cell in nb.cells if cell.cell_type == "code"
                    for out in cell.outputs)
    assert shown.count("all 60000 training and 10000 test images") == 4, "the four full sweeps do not show"
    for model, start in zip(("from scratch", "Gluon"), LIVE):  # the two training cells
        lines = training_lines(nb, start)
        assert lines and lines == readme_lines(model)[:len(lines)], f"{model}: {lines} are not the README's"
    changed = {name: (before[name], after.get(name)) for name in before if after.get(name) != before[name]}
    assert not changed, f"preinstalled packages changed: {changed}"
    assert after.keys() - before.keys() == ADDED, sorted(after.keys() - before.keys())
    first = next(cell for cell in nb.cells if cell.cell_type == "code")
    print(f"first cell: {seconds(first):.0f} s ({''.join(o.get('text', '') for o in first.outputs).strip()!r}); "
          f"the whole notebook: {sum(seconds(c) for c in nb.cells if c.cell_type == 'code'):.0f} s")


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clone of this checkout's HEAD: what a learner clones, and what a git+file:// URL installs."""
    folder = tmp_path_factory.mktemp("clone") / "dropout-gluon"
    subprocess.run(["git", "clone", "--quiet", ROOT, folder], check=True)
    return folder


@pytest.mark.realdata
def test_in_a_clone_the_first_cell_installs_from_it(colab_venv, clone, real_dataset, tmp_path):
    check_run(*run_in_colab(colab_venv, tmp_path, clone / "notebooks", real_dataset.source.data_dir))


@pytest.mark.realdata
def test_alone_in_a_folder_it_installs_from_the_repository(colab_venv, clone, real_dataset, tmp_path):
    folder = tmp_path / "content"  # as Colab opens a notebook: no checkout around it
    folder.mkdir()
    check_run(*run_in_colab(colab_venv, tmp_path, folder, real_dataset.source.data_dir,
                            DROPOUT_GLUON_SOURCE=f"git+file://{clone}"))


@pytest.mark.realdata
def test_with_an_openmp_runtime_loaded_first(colab_venv, clone, real_dataset, tmp_path):
    # As PyTorch's would be, imported in an earlier cell: IPython runs its startup files before the first cell.
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    loaded = tmp_path / "openmp-loaded"  # written by the startup file, once the runtime is loaded
    (startup / "00-openmp.py").write_text(f'import ctypes, pathlib\n'
                                          f'ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)\n'
                                          f'pathlib.Path({str(loaded)!r}).touch()\n')
    folder = tmp_path / "content"
    folder.mkdir()
    nb, before, after = run_in_colab(colab_venv, tmp_path, folder, real_dataset.source.data_dir,
                                     DROPOUT_GLUON_SOURCE=f"git+file://{clone}", IPYTHONDIR=str(tmp_path / "ipython"))
    assert loaded.exists(), "the kernel did not run the startup file that loads the OpenMP runtime"
    check_run(nb, before, after)


@pytest.mark.document
def test_the_repository_address_is_the_same_everywhere():
    # pyproject.toml holds it; the README's Colab link and the notebook's first cell spell it out (document check).
    url = re.search(r'^Repository = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    owner_repo = url.removeprefix("https://github.com/")
    first = next(cell for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code")
    assert f'REPOSITORY = "{url}"' in first.source
    readme = (ROOT / "README.md").read_text()
    assert f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/dropout.ipynb" in readme
    for text in (readme, json.dumps(nbformat.read(NOTEBOOK, as_version=4))):
        for other in re.findall(r"github\.com/([\w.-]+/[\w.-]+)", text):
            assert other == owner_repo, f"{other} is not the repository's address ({url})"
