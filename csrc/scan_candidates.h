// The scan's candidates: per query and thread, the rows the kernels reported with their bounds
// and the running threshold they raise; at the end, the exact re-scoring of the survivors and
// the top k.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels.h"
#include "scan.h"

namespace rq {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Candidate {
  int32_t segment;
  int32_t row;  // within the segment
  float lower, upper;  // bias included
  float bias;          // added to the row's score (a probed list's offset, see Probes)
};

// The running state of one query on one thread.
struct CandidatePool {
  int k = 0;
  float threshold = -kInf;
  std::vector<float> lows;  // min-heap: the k largest lower bounds seen
  std::vector<Candidate> cands;
  size_t compact_at = 4096;

  void reset(int k_) {
    k = k_;
    threshold = -kInf;
    lows.clear();
    cands.clear();
    compact_at = 4096;
  }

  // Candidates of one kernel call: rows (relative to first_row) with their bounds, `bias`
  // already added to them.
  void offer(int32_t segment, int64_t first_row, const int32_t* rows, const float* lower,
             const float* upper, int count, float bias);
  void one(int32_t segment, int32_t row, float lower, float upper, float bias);

  // Another thread's threshold for the same query: every threshold is the k-th largest lower
  // bound of some rows, so none exceeds the final k-th best exact score and the largest holds.
  void raise(float t) { threshold = std::max(threshold, t); }

  void compact();

  std::vector<float> scratch_lows;
};

// Exact float32 scores of rows from their codes: the active variant's re-scoring where it has
// one, portable code otherwise.
struct ExactScorer {
  const Kernels& kern;
  const std::vector<CodecStream>& codec;
  int n_classes;

  // rotated, projected: one query (projected null without a QJL stream)
  float operator()(const SegmentView& seg, int64_t row, const float* rotated,
                   const float* projected) const;
};

// One query's result from its pools on every thread (pools[slot][query]): the candidates whose
// upper bound reaches the k-th largest lower bound, re-scored exactly, and the best k of them
// into out_rows / out_scores (index rows; best first, ties by lower row). Returns how many
// were re-scored.
int64_t exact_top_k(const ExactScorer& score, const std::vector<SegmentView>& segments,
                    const std::vector<std::vector<CandidatePool>>& pools, int64_t query,
                    const float* rotated, const float* projected, int k, int64_t* out_rows,
                    float* out_scores);

}  // namespace rq
