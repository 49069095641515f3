#!/bin/sh
# make test-triton-newest: the Triton kernels' tests under TRITON_INTERPRET=1 (CPU tensors, no
# GPU) with the newest Triton that pyproject.toml's [gpu] range allows — what
# `pip install rotaquant[gpu]` pulls today — while the venv keeps constraints.txt's pin (the
# oldest allowed), which the main test run covers. The newest goes into build/triton-newest
# (pip --target, ahead of the venv's on PYTHONPATH); nothing runs when it is the pinned one.
# Left out here: bench.gpu's end-to-end smoke run (the same kernels; the main run has it). Needs PyPI.
set -eu
PY=${PY:-.venv/bin/python}
DIR=build/triton-newest
# the [gpu] extra's requirement as pyproject.toml states it (the one place for the range)
SPEC=$("$PY" -c 'import tomllib
extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gpu"]
print(next(r for r in extra if r.startswith("triton")))')
PINNED=$("$PY" -c 'import triton; print(triton.__version__)')
"$PY" -m pip install -q --no-deps --upgrade --target "$DIR" "$SPEC"
NEWEST=$(PYTHONPATH="$DIR" "$PY" -c 'import triton; print(triton.__version__)')
if [ "$NEWEST" = "$PINNED" ]; then
  echo "test-triton-newest: the newest allowed ($SPEC) is the pinned $PINNED, tested already"
  exit 0
fi
echo "== Triton $NEWEST (the newest $SPEC allows; the venv's: $PINNED)"
PYTHONPATH="$DIR" TRITON_INTERPRET=1 "$PY" -m pytest -q -n 2 tests/kv/test_triton_kernels.py \
  tests/kv/test_backend.py -k "triton and not gpu_benchmark"
