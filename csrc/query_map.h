// The map from a raw query to what the scan scores it with: the codec's rotation
// (codec/rotation.py's `forward`), the QJL projection of the rotated query (prod mode) and the
// metric's factor (2 for l2). Held by a Searcher and applied with the active variant's matmul,
// so that one query costs microseconds rather than a chain of numpy calls.
#pragma once

#include <cstdint>
#include <vector>

namespace rq {

struct QueryMap {
  int32_t dim = 0;
  // rotation, one of: a dense matrix (`dense`: dim x dim, R^T: forward(x) = x @ R^T), or
  // rounds of "multiply by signs, then by F_a (x) F_b" (a * b = dim; factors stored
  // transposed, a x a and b x b), the output of a round in (b, a) order
  std::vector<float> dense;
  int32_t a = 0, b = 0;
  std::vector<float> signs;  // rounds x dim
  std::vector<float> fa_t, fb_t;
  std::vector<float> projection;  // S^T (dim x dim): projected = rotated @ S^T; empty: none
  float scale = 1.0f;             // multiplies rotated and projected

  // queries (m, dim) -> rotated (m, dim) and, with a projection, projected (m, dim); rows
  // in parallel on the pool when there are many.
  void apply(const float* queries, int64_t m, float* rotated, float* projected) const;

  // Throws std::invalid_argument when the parts do not fit `dim`.
  void validate() const;
};

}  // namespace rq
