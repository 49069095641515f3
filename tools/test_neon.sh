#!/bin/sh
# make test-neon: the kernel checks of tests/native/kernel_check.cpp (every variant against a
# plain reference on tests/native's random cases) built for aarch64 with Debian's cross compiler
# and run under qemu-user twice: on a CPU with the dot product extension, where all three
# variants run and neon_dotprod must be chosen first, and on a Cortex-A53 (ARMv8.0-A), where
# plain neon must be. Then the same checks natively on this machine (x86-64: avx512 / avx2 /
# scalar, whichever it runs). Installs the cross compiler and qemu with apt-get when missing.
set -eu
CXX_ARM=${CXX_ARM:-aarch64-linux-gnu-g++}
QEMU=${QEMU:-qemu-aarch64}
CXX=${CXX:-g++}
if ! command -v "$CXX_ARM" >/dev/null 2>&1 || ! command -v "$QEMU" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-neon: installing g++-aarch64-linux-gnu and qemu-user (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++-aarch64-linux-gnu qemu-user >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++-aarch64-linux-gnu qemu-user >/dev/null; }
  else
    echo "test-neon: needs $CXX_ARM and $QEMU (apt-get install g++-aarch64-linux-gnu qemu-user)" >&2
    exit 1
  fi
fi
CORE="csrc/cpu.cpp csrc/pool.cpp csrc/layout.cpp csrc/scan.cpp csrc/scan_plan.cpp csrc/scan_candidates.cpp
      csrc/query_map.cpp csrc/searcher.cpp csrc/variant_scalar.cpp tests/native/kernel_check.cpp"
FLAGS="-std=c++17 -O3 -fno-math-errno -Icsrc"
WARN="-Wall -Wextra -Werror"  # not on the x86 variants: GCC 12's AVX-512 headers warn themselves
OUT=build/neon
mkdir -p "$OUT"
$CXX_ARM $FLAGS $WARN -march=armv8-a -c csrc/variant_neon.cpp -o "$OUT/neon.o"
$CXX_ARM $FLAGS $WARN -march=armv8.2-a+dotprod -DROTAQUANT_DOTPROD=1 -c csrc/variant_neon.cpp -o "$OUT/neon_dotprod.o"
# shellcheck disable=SC2086
$CXX_ARM $FLAGS $WARN -DROTAQUANT_NEON=1 $CORE "$OUT/neon.o" "$OUT/neon_dotprod.o" -static -pthread -o "$OUT/kernel_check"
echo "== aarch64 with DotProd (qemu -cpu max)"
$QEMU -cpu max "$OUT/kernel_check" --expect-best neon_dotprod
echo "== aarch64 ARMv8.0-A (qemu -cpu cortex-a53)"
$QEMU -cpu cortex-a53 "$OUT/kernel_check" --expect-best neon
if [ "$(uname -m)" = x86_64 ]; then
  NATIVE=build/kernel_check_native
  mkdir -p "$NATIVE"
  $CXX $FLAGS -mavx2 -mfma -mbmi2 -mf16c -c csrc/variant_avx2.cpp -o "$NATIVE/avx2.o"
  $CXX $FLAGS -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vbmi -mavx512vnni -mavx2 -mfma -mbmi2 -mf16c \
    -c csrc/variant_avx512.cpp -o "$NATIVE/avx512.o"
  # shellcheck disable=SC2086
  $CXX $FLAGS -DROTAQUANT_X86=1 $CORE "$NATIVE/avx2.o" "$NATIVE/avx512.o" -pthread -o "$NATIVE/kernel_check"
  echo "== x86-64 (this machine)"
  "$NATIVE/kernel_check"
fi
