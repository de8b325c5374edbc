# The two commands: `make run` (the chapter's main job) and `make test`. Both set everything up first.
.PHONY: setup run test lint notebook lab

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/python -m dropout_gluon train

test: setup
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check dropout_gluon tests

# Rerun notebooks/dropout.ipynb in full and save it with its outputs (written only if every cell succeeds).
notebook: setup
	.venv/bin/python scripts/execute_notebook.py notebooks/dropout.ipynb

# Open the notebook in JupyterLab; its kernel is .venv's Python.
lab: setup
	.venv/bin/jupyter lab notebooks/dropout.ipynb
