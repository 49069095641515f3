// The index scan: exact top-k of rotated queries over block-layout segments.
//
// Per query and factor class, the query becomes int8 weights and every codebook int8 levels;
// the active kernel variant sums weight * level over each row's channels in int32, scales by
// the row's factor and keeps the rows whose *upper bound* reaches the running threshold (the
// k-th largest *lower bound* seen). The survivors are re-scored exactly in float32 from their
// codes, so the result is the exact top-k of the float scores, given that the quantization
// errors of a true top-k row stay within the margin (scan_plan.cpp derives it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "layout.h"

namespace rq {

// Query data (weights, tables, transformed queries) kept per calling thread between calls up
// to this size: fresh megabytes would cost a page fault per 4 KiB on every call.
constexpr size_t kKeepBytes = 16 << 20;

// One stream of the codec, as the scan sees it.
struct CodecStream {
  int32_t first = 0;      // first channel in the query domain
  int32_t channels = 0;
  int32_t bits = 0;
  int32_t domain = 0;     // 0: rotated queries, 1: projected (QJL) queries
  int32_t cls = 0;        // factor class
  float scale = 1.0f;     // multiplies the stream's inner product (QJL: sqrt(pi/2)/dim)
  std::vector<float> values;  // [2**bits] decoded value of each code
  std::vector<float> probs;   // [2**bits] probability of each code (rounding-error statistics)
  BlockLayout layout;
};

struct SegmentView {
  int64_t rows = 0;              // live rows
  int64_t first_row = 0;         // index row of the segment's row 0
  std::vector<const uint8_t*> streams;     // per codec stream: ceil(rows/32) blocks
  const void* factors[2] = {nullptr, nullptr};  // per class: rows values
  int32_t factor_half[2] = {1, 1};
  const float* shift = nullptr;  // rows values or null
  const uint64_t* allow = nullptr;  // ceil(rows/64) words over the segment's rows, or null
};

struct ScanStats {
  int64_t candidates = 0;  // rows re-scored exactly, over all queries
  int64_t reported = 0;    // rows the kernels reported (upper bound over the threshold)
};

// Which queries scan which segment (an IVF index's probed lists), in CSR form: segment s is
// scanned by queries[starts[s] .. starts[s+1]) (each at most once), and `bias[e]` is added to
// the scores of entry e's rows (residual codes: the query's product with the list centroid).
// Without Probes every query scans every segment with bias 0.
struct Probes {
  const int64_t* starts = nullptr;  // [segments + 1], starts[0] = 0, non-decreasing
  const int32_t* queries = nullptr;  // [starts[segments]] in [0, m)
  const float* bias = nullptr;       // [starts[segments]] finite
};

struct ScanPlan;
struct Kernels;

// queries: rotated (m, dim) and, with a QJL stream, projected (m, dim), float32 row-major.
// Writes out_rows (m, k) (index rows, -1 padded) and out_scores (m, k) (-inf padded), best
// first, ties by lower row. `plan`: make_plan(codec) for `kern` (a Searcher keeps it); the
// overload without one makes it. `probes`: which queries scan which segment, or null for all.
ScanStats scan(const std::vector<CodecStream>& codec, const ScanPlan& plan, const Kernels& kern,
               const std::vector<SegmentView>& segments, const float* rotated,
               const float* projected, int64_t m, int32_t dim, int32_t k, int64_t* out_rows,
               float* out_scores, const Probes* probes = nullptr);
ScanStats scan(const std::vector<CodecStream>& codec, const std::vector<SegmentView>& segments,
               const float* rotated, const float* projected, int64_t m, int32_t dim, int32_t k,
               int64_t* out_rows, float* out_scores);

// Exact float32 scores of rows of one segment: out (m, count).
void exact_scores(const std::vector<CodecStream>& codec, const SegmentView& segment,
                  const float* rotated, const float* projected, int64_t m, int32_t dim,
                  const int64_t* rows, int64_t count, float* out);

}  // namespace rq
