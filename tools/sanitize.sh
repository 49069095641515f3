#!/bin/sh
# Builds rotaquant._core with -fsanitize=address,undefined in build/sanitize (its own directory:
# the installed extension is never touched) and runs the kernel tests (tests/native) and the
# crafted index files (tests/index/test_crafted_files.py) against it: tests/conftest.py loads
# the extension $ROTAQUANT_TEST_CORE names as rotaquant._core. Any out-of-bounds access or
# undefined behaviour in the native core aborts the run with a report.
set -eu
PY=${PY:-python3}
case "$PY" in /*) ;; */*) PY="$(pwd)/$PY" ;; esac
mkdir -p build
cmake -S . -B build/sanitize -DROTAQUANT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython_EXECUTABLE="$PY" > build/sanitize.log 2>&1 || { cat build/sanitize.log; exit 1; }
cmake --build build/sanitize -j 2 >> build/sanitize.log 2>&1 || { cat build/sanitize.log; exit 1; }
CORE=$(ls build/sanitize/_core*.so)
RUNTIME="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
ROTAQUANT_TEST_CORE="$(pwd)/$CORE" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LD_PRELOAD="$RUNTIME" "$PY" -m pytest -q -p no:cacheprovider tests/native tests/index/test_crafted_files.py
