# The two commands of the README:
#   make demo  - set up .venv and run the main job (the emoji demo, offline, a few minutes on CPU)
#   make test  - set up .venv and run every test (lint, unit tests, examples, docs build)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint docs clean

setup: $(STAMP)

# torch and torchvision are pinned for development installs (they install from local disk here),
# together, so that pip does not pick a torchvision built for another torch.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/wjsentiment demo --out runs/demo

lint: setup
	$(BIN)/ruff check wjsentiment tests examples benchmarks docs

# One pytest worker per core; a test file stays in one worker (its module fixtures start once).
test: lint
	$(BIN)/python -m pytest -n auto --dist loadfile

docs: setup
	$(BIN)/python -m mkdocs build --strict

clean:
	rm -rf $(VENV) site runs .pytest_cache
