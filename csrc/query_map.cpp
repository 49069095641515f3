#include "query_map.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "cpu.h"
#include "pool.h"
#include "scan.h"

namespace rq {

namespace {

constexpr int64_t kRowsPerTask = 64;  // queries transformed per pool task

void matmul(const Kernels& kern, const float* x, int64_t rows, int n, const float* w, int p, float* out) {
  kern.matmul(MatmulArgs{x, rows, n, w, p, out});
}

}  // namespace

void QueryMap::validate() const {
  const int64_t d = dim;
  if (d < 1) throw std::invalid_argument("query map: dim must be >= 1");
  const bool is_dense = !dense.empty();
  if (is_dense) {
    if (static_cast<int64_t>(dense.size()) != d * d) throw std::invalid_argument("query map: dense rotation must be dim x dim");
    if (!signs.empty() || !fa_t.empty() || !fb_t.empty()) throw std::invalid_argument("query map: dense or factored, not both");
  } else {
    if (a < 1 || b < 1 || int64_t(a) * b != d) throw std::invalid_argument("query map: factors a * b must equal dim");
    if (static_cast<int64_t>(fa_t.size()) != int64_t(a) * a || static_cast<int64_t>(fb_t.size()) != int64_t(b) * b) {
      throw std::invalid_argument("query map: factors must be a x a and b x b");
    }
    if (signs.empty() || signs.size() % d) throw std::invalid_argument("query map: signs must be rounds x dim");
  }
  if (!projection.empty() && static_cast<int64_t>(projection.size()) != d * d) {
    throw std::invalid_argument("query map: projection must be dim x dim");
  }
}

void QueryMap::apply(const float* queries, int64_t m, float* rotated, float* projected) const {
  const Kernels& kern = active_kernels();
  const int d = dim;
  const int64_t tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  parallel_for(tasks, [&](int64_t task, int) {
    const int64_t first = task * kRowsPerTask;
    const int64_t rows = std::min(kRowsPerTask, m - first);
    const float* x = queries + first * d;
    float* out = rotated + first * d;
    if (!dense.empty()) {
      matmul(kern, x, rows, d, dense.data(), d, out);
    } else {
      // per round: y = x * signs as (rows * a, b) @ F_b^T, each row's (a, b) block transposed
      // to (b, a), then (rows * b, a) @ F_a^T
      thread_local std::vector<float> y, z;  // per pool thread, reused across calls
      y.resize(rows * d);
      z.resize(rows * d);
      const int rounds = static_cast<int>(signs.size() / d);
      for (int round = 0; round < rounds; ++round) {
        const float* s = signs.data() + int64_t(round) * d;
        const float* in = round == 0 ? x : out;
        for (int64_t r = 0; r < rows; ++r) {
          for (int i = 0; i < d; ++i) y[r * d + i] = in[r * d + i] * s[i];
        }
        matmul(kern, y.data(), rows * a, b, fb_t.data(), b, z.data());
        for (int64_t r = 0; r < rows; ++r) {
          const float* from = z.data() + r * d;
          float* to = y.data() + r * d;
          for (int i = 0; i < a; ++i) {
            for (int j = 0; j < b; ++j) to[j * a + i] = from[i * b + j];
          }
        }
        matmul(kern, y.data(), rows * b, a, fa_t.data(), a, out);
      }
      if (y.capacity() * sizeof(float) > kKeepBytes) {
        std::vector<float>().swap(y);
        std::vector<float>().swap(z);
      }
    }
    if (!projection.empty()) matmul(kern, out, rows, d, projection.data(), d, projected + first * d);
    if (scale != 1.0f) {
      for (int64_t i = 0; i < rows * d; ++i) out[i] *= scale;
      if (!projection.empty()) {
        float* p = projected + first * d;
        for (int64_t i = 0; i < rows * d; ++i) p[i] *= scale;
      }
    }
  });
}

}  // namespace rq
