# `make train` and `make test` set everything up from nothing (venv, CPU torch, the project) first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup train test data clean

$(BIN)/seq2seq-train: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: $(BIN)/seq2seq-train data

# Multi30k: use ../shared/data/multi30k when it is there, else download it (needs internet).
data:
	@if [ ! -e data/multi30k ]; then \
	  if [ -d ../shared/data/multi30k ]; then ln -s ../../shared/data/multi30k data/multi30k; \
	  else $(BIN)/python scripts/download_multi30k.py; fi; fi

train: setup
	$(BIN)/seq2seq-train $(ARGS)

# The checks CI runs, fastest first: lint, the import layers, the docs site, then the tests.
test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .cache runs outputs multirun site
