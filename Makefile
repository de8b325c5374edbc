# The two commands: `make run` (the chapter's main job) and `make test`. Both set everything up first.
.PHONY: setup setup-test setup-notebook setup-cluster run test lint notebook lab bench exercises

setup:  # what training needs: no Jupyter, no pandas
	@bash scripts/setup.sh

setup-test:  # also pytest, ruff and the notebook's packages (the tests run the notebook)
	@bash scripts/setup.sh test

setup-notebook:
	@bash scripts/setup.sh notebook

setup-cluster:  # also Dask's distributed: a sweep's worker processes
	@bash scripts/setup.sh cluster

run: setup
	.venv/bin/python -m dropout_gluon train

test: setup-test
	.venv/bin/python -m pytest

lint: setup-test
	.venv/bin/ruff check dropout_gluon tests benchmarks notebooks scripts

# Rerun notebooks/dropout.ipynb in full and save it with its outputs (written only if every cell succeeds).
notebook: setup-notebook
	.venv/bin/python scripts/execute_notebook.py notebooks/dropout.ipynb

# Open the notebook in JupyterLab, ready to run: on .venv's kernel "dropout-gluon", with no first-run prompt, as a
# working copy, runs/lab/dropout.ipynb (made once; delete it for a fresh one), so notebooks/ stays as committed.
lab: setup-notebook
	.venv/bin/python scripts/lab.py

# Seconds per epoch side by side (book's DataLoader, default path, PyTorch, GEMM floor), peak memory and a
# scaling table: about 5-7 minutes on 2 cores (ARGS="--quick": 2-4). Installs the CPU build of torch first.
bench: setup
	@.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet -e ".[bench]"
	.venv/bin/python -m benchmarks.epoch $(ARGS)

# The chapter's four exercises over 3 seeds, in portable numerics: the one way to regenerate the committed
# dropout_gluon/exercises/results/*.md and *.png, shipped inside the package so every install has the answers
# (16-36 min on 2 cores; resumable: finished runs are kept in runs/exercises).
# A quick look writes under runs/ instead: .venv/bin/python -m dropout_gluon exercise all --quick
exercises: setup-cluster
	@echo "make exercises: the default sweep, rewriting the committed results in dropout_gluon/exercises/results/"
	.venv/bin/python -m dropout_gluon exercise all --out dropout_gluon/exercises/results $(ARGS)
