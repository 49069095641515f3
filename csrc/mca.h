// Region markers for llvm-mca (tools/mca.py): in a build with ROTAQUANT_MCA defined, the
// inner loops of the scan kernels are wrapped in "LLVM-MCA-BEGIN/END <name>" comments, so that
// llvm-mca can estimate their cycles per iteration on CPUs this machine cannot time (Apple M1,
// Neoverse V1) next to the ones it can. A region is named <variant>-b<bits>-q<queries>: bits 2,
// 3, 4 the decoders of full groups of that width (2: pair tables), 0 the generic decoder with
// one level lookup (<= 4 bits), 10 with the wide lookups (5..8 bits); AVX-512: 0..3 its level
// lookup kind (0: <= 4 bits). Expands to nothing in every other build.
#pragma once

#if defined(ROTAQUANT_MCA)
#if defined(__aarch64__)
#define RQ_MCA_COMMENT "//"  // the assembler's comment token
#else
#define RQ_MCA_COMMENT "#"
#endif
#define RQ_MCA_BEGIN(name, bits, q) \
  __asm__ volatile(RQ_MCA_COMMENT " LLVM-MCA-BEGIN " name "-b%c0-q%c1" ::"i"(bits), "i"(q))
#define RQ_MCA_END(name, bits, q) \
  __asm__ volatile(RQ_MCA_COMMENT " LLVM-MCA-END " name "-b%c0-q%c1" ::"i"(bits), "i"(q))
#else
#define RQ_MCA_BEGIN(name, bits, q)
#define RQ_MCA_END(name, bits, q)
#endif
