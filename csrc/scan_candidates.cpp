// The scan's candidates (scan_candidates.h): the per-query pools, the exact re-scoring and
// the top k.
#include "scan_candidates.h"

#include <functional>
#include <utility>

#include "codes.h"
#include "cpu.h"
#include "half.h"

namespace rq {

void CandidatePool::offer(int32_t segment, int64_t first_row, const int32_t* rows,
                          const float* lower, const float* upper, int count, float bias) {
  if (count == 0) return;
  if (count > 4 * k + 64) {
    // many at once (the first calls): raise the threshold by selection, not heap pushes
    scratch_lows.assign(lows.begin(), lows.end());
    scratch_lows.insert(scratch_lows.end(), lower, lower + count);
    if (static_cast<int>(scratch_lows.size()) >= k) {
      std::nth_element(scratch_lows.begin(), scratch_lows.begin() + (k - 1), scratch_lows.end(),
                       std::greater<float>());
      threshold = std::max(threshold, scratch_lows[k - 1]);
      scratch_lows.resize(k);
      lows.assign(scratch_lows.begin(), scratch_lows.end());
      std::make_heap(lows.begin(), lows.end(), std::greater<float>());
    } else {
      lows.assign(scratch_lows.begin(), scratch_lows.end());
      std::make_heap(lows.begin(), lows.end(), std::greater<float>());
    }
    for (int i = 0; i < count; ++i) {
      if (upper[i] >= threshold) {
        cands.push_back(
            {segment, static_cast<int32_t>(first_row + rows[i]), lower[i], upper[i], bias});
      }
    }
  } else {
    for (int i = 0; i < count; ++i) {
      one(segment, static_cast<int32_t>(first_row + rows[i]), lower[i], upper[i], bias);
    }
  }
  if (cands.size() >= compact_at) compact();
}

void CandidatePool::one(int32_t segment, int32_t row, float lower, float upper, float bias) {
  if (upper < threshold) return;
  cands.push_back({segment, row, lower, upper, bias});
  if (static_cast<int>(lows.size()) < k) {
    lows.push_back(lower);
    std::push_heap(lows.begin(), lows.end(), std::greater<float>());
    if (static_cast<int>(lows.size()) == k) threshold = std::max(threshold, lows.front());
  } else if (lower > lows.front()) {
    std::pop_heap(lows.begin(), lows.end(), std::greater<float>());
    lows.back() = lower;
    std::push_heap(lows.begin(), lows.end(), std::greater<float>());
    threshold = std::max(threshold, lows.front());
  }
}

void CandidatePool::compact() {
  const float t = threshold;
  cands.erase(std::remove_if(cands.begin(), cands.end(),
                             [t](const Candidate& c) { return c.upper < t; }),
              cands.end());
  compact_at = std::max<size_t>(4096, 2 * cands.size());
}

float ExactScorer::operator()(const SegmentView& seg, int64_t row, const float* rotated,
                              const float* projected) const {
  float per_class[kMaxClasses] = {0, 0};
  const int r = static_cast<int>(row % kBlockRows);
  const int64_t blocks = (seg.rows + kBlockRows - 1) / kBlockRows;
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    const uint8_t* block = seg.streams[s] + (row / kBlockRows) * cs.layout.block_bytes;
    const float* q = (cs.domain ? projected : rotated) + cs.first;
    float acc = 0;
    if (kern.rescore) {
      const RescoreStream rs{block, seg.streams[s] + blocks * cs.layout.block_bytes,
                             cs.channels / kGroupChannels, cs.channels % kGroupChannels, cs.bits,
                             cs.values.data(), q};
      acc = kern.rescore(rs, r);
    } else {
      const float* values = cs.values.data();
      const uint64_t mask = (uint64_t(1) << cs.bits) - 1;
      for (const Group& g : cs.layout.groups) {
        const uint64_t word = row_word(block + g.offset, g.bytes, g.channels, cs.bits, r);
        for (int j = 0; j < g.channels; ++j) {
          acc += q[g.first + j] * values[(word >> (j * cs.bits)) & mask];
        }
      }
    }
    per_class[cs.cls] += acc * cs.scale;
  }
  float total = 0;
  for (int c = 0; c < n_classes; ++c) total += factor_at(seg.factors[c], seg.factor_half[c], row) * per_class[c];
  if (seg.shift) total += load_any<float>(seg.shift, row);
  return total;
}

int64_t exact_top_k(const ExactScorer& score, const std::vector<SegmentView>& segments,
                    const std::vector<std::vector<CandidatePool>>& pools, int64_t query,
                    const float* rotated, const float* projected, int k, int64_t* out_rows,
                    float* out_scores) {
  thread_local std::vector<float> lows;
  thread_local std::vector<Candidate> cands;
  thread_local std::vector<std::pair<float, int64_t>> scored;
  lows.clear();
  cands.clear();
  scored.clear();
  for (auto& per_slot : pools) {
    const CandidatePool& p = per_slot[query];
    lows.insert(lows.end(), p.lows.begin(), p.lows.end());
    cands.insert(cands.end(), p.cands.begin(), p.cands.end());
  }
  float threshold = -kInf;
  if (static_cast<int64_t>(lows.size()) >= k) {
    std::nth_element(lows.begin(), lows.begin() + (k - 1), lows.end(), std::greater<float>());
    threshold = lows[k - 1];
  }
  for (const Candidate& c : cands) {
    if (c.upper < threshold) continue;
    const SegmentView& seg = segments[c.segment];
    scored.emplace_back(score(seg, c.row, rotated, projected) + c.bias, seg.first_row + c.row);
  }
  const auto better = [](const std::pair<float, int64_t>& x, const std::pair<float, int64_t>& y) {
    return x.first > y.first || (x.first == y.first && x.second < y.second);
  };
  const size_t keep = std::min<size_t>(k, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + keep, scored.end(), better);
  for (size_t j = 0; j < keep; ++j) {
    out_scores[j] = scored[j].first;
    out_rows[j] = scored[j].second;
  }
  return static_cast<int64_t>(scored.size());
}

void exact_scores(const std::vector<CodecStream>& codec, const SegmentView& segment,
                  const float* rotated, const float* projected, int64_t m, int32_t dim,
                  const int64_t* rows, int64_t count, float* out) {
  int classes = 1;
  for (const CodecStream& s : codec) classes = std::max(classes, s.cls + 1);
  const ExactScorer score{active_kernels(), codec, classes};
  for (int64_t q = 0; q < m; ++q) {
    const float* qr = rotated + q * dim;
    const float* qp = projected ? projected + q * dim : nullptr;
    for (int64_t i = 0; i < count; ++i) {
      out[q * count + i] = score(segment, rows[i], qr, qp);
    }
  }
}

}  // namespace rq
