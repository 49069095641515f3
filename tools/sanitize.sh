#!/bin/sh
# Builds rotaquant._core with -fsanitize=address,undefined (build/sanitize), runs the kernel
# tests (tests/native) and the crafted index files (tests/index/test_crafted_files.py) against
# it, then puts the normal build back. Any out-of-bounds access or undefined behaviour in the
# native core aborts the run with a report.
set -eu
PY=${PY:-python3}
case "$PY" in /*) ;; */*) PY="$(pwd)/$PY" ;; esac
cmake -S . -B build/sanitize -DROTAQUANT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython_EXECUTABLE="$PY" > build/sanitize.log 2>&1 || { cat build/sanitize.log; exit 1; }
cmake --build build/sanitize -j 2 >> build/sanitize.log 2>&1 || { cat build/sanitize.log; exit 1; }
INSTALLED=$("$PY" -c "import rotaquant._core as c; print(c.__file__)")
cp "$INSTALLED" build/sanitize/normal_core.so
trap 'cp build/sanitize/normal_core.so "$INSTALLED"' EXIT
cp build/sanitize/_core*.so "$INSTALLED"
RUNTIME="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LD_PRELOAD="$RUNTIME" "$PY" -m pytest -q -p no:cacheprovider tests/native tests/index/test_crafted_files.py
