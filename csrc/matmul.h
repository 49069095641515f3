// out = x @ w for small float32 matrices: the query transforms (codec/rotation.py's factors,
// the QJL projection) written once over a variant's float lanes (scan_loop.h's `Lanes`, plus
// `store`). Tiles of 4 rows x 2 registers of columns keep 8 accumulators in registers; each
// step broadcasts 4 values of x and loads 2 registers of one row of w. Columns past the last
// whole register, and every column of the scalar variant, go through plain loops.
//
// Internal linkage (included by the variant translation units), like scan_loop.h.
#pragma once

#include <cstdint>

#include "kernels.h"

namespace rq {
namespace {

template <class Lanes>
inline void matmul_with(const MatmulArgs& a) {
  using Float = typename Lanes::Float;
  constexpr int W = Lanes::kRows;
  const int n = a.n, p = a.p;
  const int whole = W > 1 ? p / W * W : 0;
  for (int64_t r0 = 0; r0 < a.rows; r0 += 4) {
    const int live = a.rows - r0 < 4 ? static_cast<int>(a.rows - r0) : 4;
    const float* x[4];
    for (int r = 0; r < 4; ++r) x[r] = a.x + (r0 + (r < live ? r : 0)) * int64_t(n);
    int c = 0;
    for (; c + 2 * W <= whole; c += 2 * W) {
      Float acc[4][2];
      for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = Lanes::zero();
      const float* w = a.w + c;
      for (int k = 0; k < n; ++k, w += p) {  // w advances by p: no k * p product
        const Float w0 = Lanes::load(w), w1 = Lanes::load(w + W);
        for (int r = 0; r < 4; ++r) {
          const Float xr = Lanes::set1(x[r][k]);
          acc[r][0] = Lanes::fmadd(xr, w0, acc[r][0]);
          acc[r][1] = Lanes::fmadd(xr, w1, acc[r][1]);
        }
      }
      for (int r = 0; r < live; ++r) {
        Lanes::store(a.out + (r0 + r) * int64_t(p) + c, acc[r][0]);
        Lanes::store(a.out + (r0 + r) * int64_t(p) + c + W, acc[r][1]);
      }
    }
    for (; c < whole; c += W) {
      Float acc[4];
      for (int r = 0; r < 4; ++r) acc[r] = Lanes::zero();
      const float* w = a.w + c;
      for (int k = 0; k < n; ++k, w += p) {
        const Float w0 = Lanes::load(w);
        for (int r = 0; r < 4; ++r) acc[r] = Lanes::fmadd(Lanes::set1(x[r][k]), w0, acc[r]);
      }
      for (int r = 0; r < live; ++r) Lanes::store(a.out + (r0 + r) * int64_t(p) + c, acc[r]);
    }
    for (; c < p; ++c) {
      for (int r = 0; r < live; ++r) {
        float acc = 0;
        for (int k = 0; k < n; ++k) acc += x[r][k] * a.w[int64_t(k) * p + c];
        a.out[(r0 + r) * int64_t(p) + c] = acc;
      }
    }
  }
}

}  // namespace
}  // namespace rq
