// Which kernel variant runs: the CPU's features, ROTAQUANT_SIMD, and the variants compiled in.
#pragma once

#include <string>
#include <vector>

#include "kernels.h"

namespace rq {

struct CpuFeatures {
  bool avx2 = false;      // + FMA, BMI2, F16C
  bool avx512 = false;    // F, BW, VL, DQ, VBMI, VNNI (and the OS saves zmm state)
  bool neon = false;      // AArch64 Advanced SIMD (every aarch64 CPU)
  bool dotprod = false;   // + SDOT/UDOT (ARMv8.2-A DotProd)
};

const CpuFeatures& cpu_features();

// Variants this build holds and this CPU can run, best first (always ends with "scalar").
std::vector<const Kernels*> available_kernels();
// The active variant: $ROTAQUANT_SIMD if set (an unknown or unsupported name is an error when
// first used), else the best available.
const Kernels& active_kernels();
// Switches the active variant (name as in Kernels::name); throws std::invalid_argument.
void select_kernels(const std::string& name);

}  // namespace rq
