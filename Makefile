# Two entry points, both work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/memtrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a bare torch requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev,tensorboard]"
	touch $(BIN)/memtrain

# The tests also run build-corpus on a local Ray cluster (the `ray` extra).
$(VENV)/.with-ray: $(BIN)/memtrain
	$(BIN)/python -m pip install --quiet -e ".[ray]"
	touch $@

.PHONY: install demo test lint bench
install: $(BIN)/memtrain

demo: install
	$(BIN)/memtrain build-corpus --preset tiny --out corpora
	$(BIN)/memtrain rollout corpora/enwiki --episodes 1 --group 2 --recall-samples 2 -o response_tokens=64 --out runs/demo-rollout.parquet

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint $(VENV)/.with-ray
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/corpus.py
