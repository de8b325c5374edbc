"""Run a notebook top to bottom on this interpreter's kernel and write it with its outputs, atomically
(`execute` also runs it on another interpreter's: tests/test_colab.py).

    .venv/bin/python scripts/execute_notebook.py notebooks/dropout.ipynb            # in place (make notebook)
    DROPOUT_GLUON_FAST=1 .venv/bin/python scripts/execute_notebook.py notebooks/dropout.ipynb -o /tmp/out.ipynb
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dropout_gluon.persist import atomic_write

MAX_BYTES = 2_000_000  # the committed notebook should stay readable on GitHub


def kernel_manager(python: str = sys.executable) -> KernelManager:
    """A kernel running `python` (ipykernel installed there), whatever kernels are registered elsewhere."""
    # With no kernel folders, the only spec is ipykernel's built-in "python3", whose command is sys.executable;
    # its argv is swapped for another interpreter's.
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    km.kernel_spec.argv[0] = python
    return km


def execute(nb: nbformat.NotebookNode, folder: Path, timeout: int = 1800, python: str = sys.executable,
            env: dict | None = None, timing: bool = False) -> nbformat.NotebookNode:
    """Run every cell of `nb` in place, with `folder` as working directory (Jupyter uses the notebook's own), on a
    kernel of `python` with environment `env` (default: this process's); with `timing`, each cell's metadata
    records when it started and ended (not in the committed notebook: every run would change it).

    Raises CellExecutionError, naming the cell, when a cell fails.
    """
    km = kernel_manager(python)
    client = NotebookClient(nb, km=km, timeout=timeout, record_timing=timing,
                            resources={"metadata": {"path": str(folder)}})
    try:
        client.execute(**({} if env is None else {"env": env}))
    finally:
        if km.has_kernel:  # a kernel manager we pass in is ours to stop: nbclient leaves it running
            km.shutdown_kernel(now=True)
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Execute a notebook and save it with its outputs.")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="where to write (default: the notebook itself)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    out = args.output or args.notebook
    start = time.perf_counter()
    try:
        nb = execute(nbformat.read(args.notebook, as_version=4), args.notebook.parent, args.timeout)
    except CellExecutionError as e:
        print(f"execute_notebook: a cell failed, {out} left unchanged:\n{e}", file=sys.stderr)
        return 1
    size = atomic_write(out, lambda tmp: nbformat.write(nb, tmp)).stat().st_size
    print(f"execute_notebook: wrote {out} ({size / 1e6:.2f} MB) in {time.perf_counter() - start:.0f} s")
    if size > MAX_BYTES:
        print(f"execute_notebook: warning: {out} is over {MAX_BYTES / 1e6:.0f} MB; shrink its figures",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
