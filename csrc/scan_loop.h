// What every variant of the scan shares, written once over a variant's row lanes: the block
// loop (skip blocks with no eligible row, score a block, report its rows, return to the driver
// once a query has reported `report_limit` rows or, having no threshold yet, any row) and the
// report (bounds and the threshold test). A variant brings its block sums (how it decodes
// codes and takes the dot products: that is where the ISAs differ) and a `Lanes` type, the
// float lanes of one register, one row per lane:
//
//   struct Lanes {
//     static constexpr int kRows;              // rows per register: 1, 8, 16
//     using Float;                             // kRows floats
//     static Float factors(const void* f, int half, int first);  // rows first.. of a factor
//                                              // array of float16 (half = 1) or float32
//     static Float load(const float*);  static Float zero();  static Float set1(float);
//     static void store(float*, Float);        // (matmul.h)
//     static Float fmadd(Float a, Float b, Float c);  // a * b + c
//     static Float sub(Float a, Float b);
//     static Float sums(const int32_t*);       // kRows int32 block sums (aligned), as floats
//     static uint32_t reaching(Float x, float threshold, uint32_t live);  // live lanes with
//                                              // x >= threshold, as bits
//     static void append(ScanArgs&, int q, int row0, uint32_t pass, Float lower, Float upper);
//   };                                         // reports rows row0 + (bits of pass) to q
//
// Included by the variant translation units: everything here has internal linkage, so each
// variant's copy is compiled with its own instruction-set flags and none leaks into another.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels.h"

namespace rq {
namespace {

// The 4 int8 weights of one channel group and query, as the 32-bit word the dot products
// broadcast.
inline int32_t weight_word(const int8_t* w) {
  int32_t word;
  std::memcpy(&word, w, 4);
  return word;
}

// score(block, eligible): the variant's block sums and report for one block.
template <int Q, class ScoreBlock>
inline void scan_blocks(ScanArgs& a, ScoreBlock&& score) {
  for (int q = 0; q < Q; ++q) a.counts[q] = 0;
  int64_t b = 0;
  for (; b < a.n_blocks; ++b) {
    const uint32_t eligible = static_cast<uint32_t>(a.eligible[b / 2] >> (32 * (b % 2)));
    if (eligible == 0) continue;
    score(b, eligible);
    bool full = false;
    for (int q = 0; q < Q; ++q) {
      full |= a.counts[q] >= a.report_limit || (a.counts[q] > 0 && a.thresholds[q] == -__builtin_inff());
    }
    if (full) {
      ++b;
      break;
    }
  }
  a.blocks_done = b;
}

// run(std::integral_constant<int, Q>, std::integral_constant<int, Classes>) with Q =
// n_queries (1..Max) and Classes = n_classes (1 or 2) as compile-time constants.
template <int Max, int Q = 1, class Run>
inline void dispatch_queries(int n_queries, int n_classes, Run&& run) {
  if constexpr (Q < Max) {
    if (n_queries > Q) return dispatch_queries<Max, Q + 1>(n_queries, n_classes, std::forward<Run>(run));
  }
  if (n_classes == 1) {
    run(std::integral_constant<int, Q>{}, std::integral_constant<int, 1>{});
  } else {
    run(std::integral_constant<int, Q>{}, std::integral_constant<int, 2>{});
  }
}

// Lanes::append for ISAs without a compressing store: the lanes, stored to `lower` and
// `upper`, reported one row per bit of `pass`.
inline void append_stored(ScanArgs& a, int q, int row0, uint32_t pass, const float* lower, const float* upper) {
  for (; pass; pass &= pass - 1) {
    const int r = __builtin_ctz(pass);
    const int n = a.counts[q]++;
    a.rows[q][n] = row0 + r;
    a.lower[q][n] = lower[r];
    a.upper[q][n] = upper[r];
  }
}

// Bounds and the threshold test of one block's eligible rows, Lanes::kRows rows at a time:
// per query, upper = sum_k f_k * (bias_k + margin_k + delta_k * S_k) + shift and lower =
// upper - sum_k f_k * 2 * margin_k, reported where upper reaches the query's threshold.
template <class Lanes, int Q, int Classes>
inline void report(ScanArgs& a, int64_t block, uint32_t eligible, const int32_t (&sums)[kMaxClasses][Q][32]) {
  using Float = typename Lanes::Float;
  constexpr int W = Lanes::kRows;
  static_assert(32 % W == 0 && W < 32, "a block is whole registers of rows");
  const int first_row = static_cast<int>(block * 32);
  for (int t = 0; t < 32 / W; ++t) {
    const uint32_t live = (eligible >> (W * t)) & ((1u << W) - 1);
    if (!live) continue;
    const int row0 = first_row + W * t;
    Float f[Classes];
    for (int k = 0; k < Classes; ++k) f[k] = Lanes::factors(a.factors[k], a.factor_half[k], row0);
    const Float shift = a.shift ? Lanes::load(a.shift + row0) : Lanes::zero();
    for (int q = 0; q < Q; ++q) {
      const QueryConsts& c = a.consts[q];
      Float upper = shift;
      for (int k = 0; k < Classes; ++k) {
        const Float top = Lanes::fmadd(Lanes::sums(sums[k][q] + W * t), Lanes::set1(c.cls[k].delta),
                                       Lanes::set1(c.cls[k].bias + c.cls[k].margin));
        upper = Lanes::fmadd(f[k], top, upper);
      }
      const uint32_t pass = Lanes::reaching(upper, a.thresholds[q], live);
      if (!pass) continue;
      Float width = Lanes::zero();
      for (int k = 0; k < Classes; ++k) width = Lanes::fmadd(f[k], Lanes::set1(2 * c.cls[k].margin), width);
      Lanes::append(a, q, row0, pass, Lanes::sub(upper, width), upper);
    }
  }
}

// A variant's scan entry: block_sums(block, sums) fills sums[class][query][row] (int32, the
// variant's S_c) for one block, Q (the query count, 1..MaxQueries) taken from the array's
// type.
template <class Lanes, int MaxQueries, class BlockSums>
inline void scan_with(ScanArgs& a, BlockSums&& block_sums) {
  dispatch_queries<MaxQueries>(a.n_queries, a.n_classes, [&](auto queries, auto classes) {
    constexpr int Q = decltype(queries)::value, Classes = decltype(classes)::value;
    alignas(64) int32_t sums[kMaxClasses][Q][32];
    scan_blocks<Q>(a, [&](int64_t b, uint32_t eligible) {
      block_sums(b, sums);
      report<Lanes, Q, Classes>(a, b, eligible, sums);
    });
  });
}

}  // namespace
}  // namespace rq
