// Pair tables of one 2-bit stream (layout in kernels.h, arithmetic in scan_plan.cpp) and the
// moments of their rounding errors, 8 terms at a time in the lanes of GCC/Clang vector types
// (one term's 16 code cases are the same arithmetic for every term), compiled to the
// including variant's instruction set. Internal linkage, like
// scan_loop.h.
//
// A single channel (a partial group's) is a pair whose second channel is 0: its 16 cases are
// its 4 codes, each under the 4 codes of a channel that contributes nothing, so its moments
// are the channel's own; only the entries of the first 4 cases are written.
//
// float32 arithmetic in units of delta (the query's values divided by delta in double first):
// each case's error is within ~1e-5 delta of its exact value (e <= 127 delta), which
// scan_plan.cpp's float32 slack (1e-6 * 127 delta per term) covers many times, at any query
// magnitude.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace rq {
namespace {

constexpr int kTermLanes = 8;

// 8 lanes of float / int32 (GCC and Clang vector extensions: one or two SIMD registers,
// whatever the including variant's instruction set)
typedef float TermFloats __attribute__((vector_size(32)));
typedef int32_t TermInts __attribute__((vector_size(32)));

inline TermFloats splat(float x) { return TermFloats{x, x, x, x, x, x, x, x}; }
inline TermFloats lane_min(TermFloats a, TermFloats b) { return a < b ? a : b; }
inline TermFloats lane_max(TermFloats a, TermFloats b) { return a > b ? a : b; }

inline void fill_pair_tables_with(const PairTableArgs& a) {
  // in units of delta (x / delta in double, then float): every contribution lies in
  // [0, 127] whatever the query's magnitude, so nothing overflows or underflows in float32
  const double to_units = 1 / a.delta;
  float prob[16];
  for (int c = 0; c < 16; ++c) prob[c] = a.probs[c % 4] * a.probs[c / 4];
  for (int t0 = 0; t0 < a.n_terms; t0 += kTermLanes) {
    const int live = std::min(kTermLanes, a.n_terms - t0);
    TermFloats x0, x1;
    for (int i = 0; i < kTermLanes; ++i) {
      const PairTerm& term = a.terms[t0 + (i < live ? i : 0)];
      x0[i] = static_cast<float>(double(a.query[term.first]) * a.scale * to_units);
      x1[i] = term.channels == 2 ? static_cast<float>(double(a.query[term.first + 1]) * a.scale * to_units) : 0.0f;
    }
    // each channel's contributions minus their minimum (>= 0)
    TermFloats m0 = x0 * a.values[0], m1 = x1 * a.values[0];
    for (int c = 1; c < 4; ++c) {
      m0 = lane_min(m0, x0 * a.values[c]);
      m1 = lane_min(m1, x1 * a.values[c]);
    }
    const TermFloats low = m0 + m1;
    TermFloats u[4], w[4];
    for (int c = 0; c < 4; ++c) {
      u[c] = x0 * a.values[c] - m0;
      w[c] = x1 * a.values[c] - m1;
    }
    TermFloats mean = splat(0), square = splat(0), lo = splat(1e30f), hi = splat(-1e30f);
    TermInts entry[16];
    for (int c = 0; c < 16; ++c) {
      const TermFloats e = u[c % 4] + w[c / 4];
      // e lies in [0, 127] (up to rounding): rounding half up is a truncation, clamped first
      entry[c] = __builtin_convertvector(lane_min(e + 0.5f, splat(127.0f)), TermInts);
      const TermFloats err = e - __builtin_convertvector(entry[c], TermFloats);
      mean += prob[c] * err;
      square += prob[c] * err * err;
      lo = lane_min(lo, err);
      hi = lane_max(hi, err);
    }
    const double delta = a.delta;
    for (int i = 0; i < live; ++i) {
      const PairTerm& term = a.terms[t0 + i];
      uint8_t* out = a.out + term.at;
      // the pair's 16 entries, or entries 4 * channel + code of a partial group's table
      for (int c = 0; c < (term.channels == 2 ? 16 : 4); ++c) out[c] = static_cast<uint8_t>(entry[c][i]);
      const double m = mean[i];  // in units of delta
      a.stats->base += low[i] * delta;
      a.stats->mean += m * delta;
      a.stats->variance += std::max(0.0, double(square[i]) - m * m) * delta * delta;
      const double largest = std::max(double(hi[i]) - m, m - double(lo[i])) * delta;
      a.stats->worst += largest;
      a.stats->largest = std::max(a.stats->largest, largest);
    }
  }
}

}  // namespace
}  // namespace rq
