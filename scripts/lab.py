"""Open the notebook in JupyterLab ready to run (make lab): this environment's kernel, no first-run prompt, and
a working copy under runs/, so that running it leaves the committed notebook as it is.

    .venv/bin/python scripts/lab.py                        # make lab: opens runs/lab/dropout.ipynb
    .venv/bin/python scripts/lab.py --copy DIR/NAME.ipynb --no-browser --port 8890   # the rest goes to jupyter lab
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import nbformat
from ipykernel import kernelspec
from jupyterlab.commands import get_app_dir

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dropout.ipynb"
COPY = ROOT / "runs" / "lab" / "dropout.ipynb"
KERNEL = "dropout-gluon"  # not "python3": a kernel of that name in the user's own folders would shadow this one
DISPLAY_NAME = f"dropout-gluon (Python {sys.version_info[0]}.{sys.version_info[1]})"
# Lab's settings for this environment (lowest priority: a user's own settings still win). The news question
# is a toast that stays until answered, on the first load of every fresh Lab.
OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}


def install_kernel() -> None:
    """The kernel `KERNEL`, running this interpreter, and the overrides, installed into this environment."""
    kernelspec.install(kernel_name=KERNEL, display_name=DISPLAY_NAME, prefix=sys.prefix)
    overrides = Path(get_app_dir()) / "settings" / "overrides.d" / f"{KERNEL}.json"
    overrides.parent.mkdir(parents=True, exist_ok=True)
    overrides.write_text(json.dumps(OVERRIDES, indent=2) + "\n")


def make_copy(copy: Path) -> nbformat.NotebookNode:
    """Copy the committed notebook, outputs included, to `copy`, its metadata naming `KERNEL`."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": DISPLAY_NAME, "language": "python"}
    copy.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, copy)
    return nb


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--copy", type=Path, default=COPY, help="the working copy to open (made if missing)")
    args, lab_args = parser.parse_known_args(argv)
    install_kernel()
    if not args.copy.exists():
        make_copy(args.copy)
        print(f"lab: made {args.copy}, a copy of {NOTEBOOK.relative_to(ROOT)} to run and edit", file=sys.stderr)
    elif NOTEBOOK.stat().st_mtime > args.copy.stat().st_mtime:
        print(f"lab: {NOTEBOOK.relative_to(ROOT)} is newer than your copy {args.copy}: delete the copy to get it",
              file=sys.stderr)
    root = ["--allow-root"] if os.geteuid() == 0 else []
    command = [sys.executable, "-m", "jupyterlab", *root, str(args.copy), *lab_args]
    os.execv(sys.executable, command)  # Lab in this process: Ctrl-C and the exit status are Lab's own


if __name__ == "__main__":
    main()
