// The block loop every SIMD variant of the scan shares: skip blocks with no eligible row,
// score a block, report its rows, and return to the driver once a query has reported
// `report_limit` rows or, having no threshold yet, any row. Included by the variant
// translation units: everything here has internal linkage, so each variant's copy is compiled
// with its own instruction-set flags and none leaks into another.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernels.h"

namespace rq {
namespace {

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

}  // namespace
}  // namespace rq
