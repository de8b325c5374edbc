# The two commands: `make run` (the chapter's main job) and `make test`. Both set everything up first.
.PHONY: setup run test lint

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/python -m dropout_gluon train

test: setup
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check dropout_gluon tests
