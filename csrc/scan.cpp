// The scan driver: tables, tiles over the thread pool, candidates, exact re-scoring.
//
// Margin. A unit's float table T[e] is stored as min + delta * u8[e]; its rounding error
// err[e] = T[e] - min - delta * u8[e] lies in [-delta/2, delta/2]. A row's approximate score
// (per class, before its factor) is off by the sum of its units' errors. We centre that sum by
// its mean under the codec's code law (mu) and bound the rest two ways, taking the smaller:
//   worst case: sum of each unit's largest |err| (+ |mu|): always holds;
//   Bernstein: for independent centred terms bounded by c with total variance s2,
//     P(|sum| > t) <= 2 exp(-t^2 / (2 (s2 + c t / 3))); t solves it for 1e-9.
// The Bernstein bound treats the units of a rotated vector as independent (what the codec's
// rotation is for); it is the one in force at large dimension, where the worst case is
// sqrt(U) times too wide to prune. The lower bound of a row is score - margin, the upper
// bound score + margin, both times the row's factor.
#include "scan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "cpu.h"
#include "half.h"
#include "pool.h"

namespace rq {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kLogTwoOverDelta = 21.416;  // ln(2 / 1e-9)
constexpr int64_t kRangeBytes = 256 << 10;   // codes per task range: stays in L2 across queries
constexpr int64_t kChunkTableBytes = 8 << 20;

struct Plan {
  std::vector<ScanRun> runs;
  int64_t table_bytes = 0;
  int32_t n_classes = 1;
  int64_t block_bytes_total = 0;
};

Plan make_plan(const std::vector<CodecStream>& codec) {
  Plan plan;
  int32_t table_offset = 0;
  for (size_t s = 0; s < codec.size(); ++s) {
    const StreamLayout& layout = codec[s].layout;
    plan.n_classes = std::max(plan.n_classes, codec[s].cls + 1);
    plan.block_bytes_total += layout.block_bytes;
    for (size_t i = 0; i < layout.units.size();) {
      const Unit& u = layout.units[i];
      ScanRun run{};
      run.stream = static_cast<int32_t>(s);
      run.offset = u.offset;
      run.width = u.width;
      run.table_offset = table_offset;
      run.table_size = u.table_size;
      run.cls = codec[s].cls;
      size_t j = i;
      while (j < layout.units.size() && layout.units[j].width == u.width && j - i < 256) {
        table_offset += u.table_size;
        ++j;
      }
      run.count = static_cast<int32_t>(j - i);
      plan.runs.push_back(run);
      i = j;
    }
  }
  plan.table_bytes = table_offset;
  // 16-bit sums hold 256 units of 255: fold before a run would pass that, at class changes
  // and at the end.
  int32_t pending = 0;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    pending += plan.runs[i].count;
    const bool last = i + 1 == plan.runs.size();
    if (last || plan.runs[i + 1].cls != plan.runs[i].cls || pending + plan.runs[i + 1].count > 256) {
      plan.runs[i].flush = 1;
      pending = 0;
    }
  }
  return plan;
}

struct ClassStats {
  double max_span = 0, bias = 0, mean = 0, variance = 0, worst = 0, largest = 0;
};

// Tables (plan.table_bytes) and constants of one query.
void build_tables(const std::vector<CodecStream>& codec, const float* rotated,
                  const float* projected, uint8_t* tables, QueryConsts& consts) {
  ClassStats stats[kMaxClasses];
  // pass 1: the largest table span per class sets its step
  for (const CodecStream& s : codec) {
    const float* q = (s.domain ? projected : rotated) + s.first;
    const auto [lo, hi] = std::minmax_element(s.values.begin(), s.values.end());
    for (const Unit& u : s.layout.units) {
      double span = 0;
      for (int j = 0; j < u.channels; ++j) {
        span += std::fabs(double(q[u.first + j]) * s.scale) * (double(*hi) - double(*lo));
      }
      stats[s.cls].max_span = std::max(stats[s.cls].max_span, span);
    }
  }
  double delta[kMaxClasses];
  for (int c = 0; c < kMaxClasses; ++c) {
    delta[c] = stats[c].max_span > 0 ? stats[c].max_span / 255.0 : 1.0;
  }
  // pass 2: each unit's float table, quantized, with its rounding-error statistics
  uint8_t* out = tables;
  double table[256], prob[256];
  for (const CodecStream& s : codec) {
    const float* q = (s.domain ? projected : rotated) + s.first;
    const int bits = s.bits;
    const uint32_t mask = (1u << bits) - 1;
    const double d = delta[s.cls];
    ClassStats& st = stats[s.cls];
    for (const Unit& u : s.layout.units) {
      const int entries = 1 << u.width;
      double minimum = std::numeric_limits<double>::infinity();
      for (int e = 0; e < entries; ++e) {
        double t = 0, p = 1;
        for (int j = 0; j < u.channels; ++j) {
          const uint32_t code = (uint32_t(e) >> (j * bits)) & mask;
          t += double(q[u.first + j]) * s.scale * s.values[code];
          p *= s.probs[code];
        }
        table[e] = t;
        prob[e] = p;
        minimum = std::min(minimum, t);
      }
      double mean = 0, square = 0, largest = 0;
      for (int e = 0; e < entries; ++e) {
        const double level = std::nearbyint((table[e] - minimum) / d);
        const double clamped = std::min(255.0, std::max(0.0, level));
        out[e] = static_cast<uint8_t>(clamped);
        const double err = table[e] - minimum - d * clamped;
        mean += prob[e] * err;
        square += prob[e] * err * err;
        largest = std::max(largest, std::fabs(err));
      }
      std::memset(out + entries, 0, u.table_size - entries);
      out += u.table_size;
      st.bias += minimum;
      st.mean += mean;
      st.variance += std::max(0.0, square - mean * mean);
      st.worst += largest;
      st.largest = std::max(st.largest, largest + std::fabs(mean));
    }
  }
  for (int c = 0; c < kMaxClasses; ++c) {
    const ClassStats& st = stats[c];
    const double a = st.largest * kLogTwoOverDelta / 3;
    const double bernstein = a + std::sqrt(a * a + 2 * st.variance * kLogTwoOverDelta);
    const double worst = st.worst + std::fabs(st.mean);
    // float32 evaluation of bias + delta * S, with room to spare
    const double slack = 1e-6 * (std::fabs(st.bias) + st.max_span * 256.0 * 4);
    consts.cls[c].bias = static_cast<float>(st.bias + st.mean);
    consts.cls[c].delta = static_cast<float>(delta[c]);
    consts.cls[c].margin = static_cast<float>(std::min(worst, bernstein) + slack);
  }
}

struct Candidate {
  int32_t segment;
  int32_t row;  // within the segment
  float lower, upper;
};

// The running state of one query on one thread.
struct Pool {
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

  void offer(int32_t segment, int32_t row, float lower, float upper) {
    if (upper < threshold) return;
    cands.push_back({segment, row, lower, upper});
    if (static_cast<int>(lows.size()) < k) {
      lows.push_back(lower);
      std::push_heap(lows.begin(), lows.end(), std::greater<float>());
      if (static_cast<int>(lows.size()) == k) threshold = lows.front();
    } else if (lower > lows.front()) {
      std::pop_heap(lows.begin(), lows.end(), std::greater<float>());
      lows.back() = lower;
      std::push_heap(lows.begin(), lows.end(), std::greater<float>());
      threshold = lows.front();
    }
    if (cands.size() >= compact_at) {
      const float t = threshold;
      cands.erase(std::remove_if(cands.begin(), cands.end(),
                                 [t](const Candidate& c) { return c.upper < t; }),
                  cands.end());
      compact_at = std::max<size_t>(4096, 2 * cands.size());
    }
  }
};

struct Range {
  int32_t segment;
  int64_t first_block, end_block;
};

float factor_of(const SegmentView& seg, int cls, int64_t row) {
  if (seg.factor_half[cls]) return half_to_float(static_cast<const uint16_t*>(seg.factors[cls])[row]);
  return static_cast<const float*>(seg.factors[cls])[row];
}

float exact_one(const std::vector<CodecStream>& codec, const SegmentView& seg, int64_t row,
                const float* rotated, const float* projected) {
  float per_class[kMaxClasses] = {0, 0};
  const int r = static_cast<int>(row % kBlockRows);
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    const uint8_t* block = seg.streams[s] + (row / kBlockRows) * cs.layout.block_bytes;
    const float* q = (cs.domain ? projected : rotated) + cs.first;
    const uint32_t mask = (1u << cs.bits) - 1;
    float acc = 0;
    for (const Unit& u : cs.layout.units) {
      const uint32_t index = read_index(block, u, r);
      for (int j = 0; j < u.channels; ++j) {
        acc += q[u.first + j] * cs.values[(index >> (j * cs.bits)) & mask];
      }
    }
    per_class[cs.cls] += acc * cs.scale;
  }
  float total = 0;
  int classes = 1;
  for (const CodecStream& cs : codec) classes = std::max(classes, cs.cls + 1);
  for (int c = 0; c < classes; ++c) total += factor_of(seg, c, row) * per_class[c];
  if (seg.shift) total += seg.shift[row];
  return total;
}

uint64_t allowed_bits(const SegmentView& seg, int64_t first_row) {
  uint64_t live = 0;
  const int64_t left = seg.rows - first_row;
  if (left >= 64) {
    live = ~uint64_t(0);
  } else if (left > 0) {
    live = (uint64_t(1) << left) - 1;
  }
  if (seg.allow == nullptr) return live;
  // first_row is a multiple of 32: the 64 bits start at a word or half a word
  const int64_t word = first_row / 64;
  const int64_t words = (seg.rows + 63) / 64;
  uint64_t bits = seg.allow[word];
  if (first_row % 64) {
    bits >>= 32;
    if (word + 1 < words) bits |= seg.allow[word + 1] << 32;
  }
  return bits & live;
}

// Factor/shift pointers at first_row that can be read 64 values wide (padded copies at the
// end of a segment).
struct RowData {
  const void* factors[kMaxClasses];
  const float* shift;
  alignas(64) float pad_factor32[kMaxClasses][kMaxStepRows];
  alignas(64) uint16_t pad_factor16[kMaxClasses][kMaxStepRows];
  alignas(64) float pad_shift[kMaxStepRows];

  void at(const SegmentView& seg, int n_classes, int64_t first_row) {
    const int64_t left = seg.rows - first_row;
    for (int c = 0; c < n_classes; ++c) {
      const size_t size = seg.factor_half[c] ? 2 : 4;
      const char* base = static_cast<const char*>(seg.factors[c]) + first_row * size;
      if (left >= kMaxStepRows) {
        factors[c] = base;
      } else {
        void* pad = seg.factor_half[c] ? static_cast<void*>(pad_factor16[c]) : pad_factor32[c];
        std::memset(pad, 0, kMaxStepRows * size);
        std::memcpy(pad, base, left * size);
        factors[c] = pad;
      }
    }
    shift = nullptr;
    if (seg.shift) {
      if (left >= kMaxStepRows) {
        shift = seg.shift + first_row;
      } else {
        std::memset(pad_shift, 0, sizeof pad_shift);
        std::memcpy(pad_shift, seg.shift + first_row, left * sizeof(float));
        shift = pad_shift;
      }
    }
  }
};

}  // namespace

void exact_scores(const std::vector<CodecStream>& codec, const SegmentView& segment,
                  const float* rotated, const float* projected, int64_t m, int32_t dim,
                  const int64_t* rows, int64_t count, float* out) {
  for (int64_t q = 0; q < m; ++q) {
    const float* qr = rotated + q * dim;
    const float* qp = projected ? projected + q * dim : nullptr;
    for (int64_t i = 0; i < count; ++i) out[q * count + i] = exact_one(codec, segment, rows[i], qr, qp);
  }
}

ScanStats scan(const std::vector<CodecStream>& codec, const std::vector<SegmentView>& segments,
               const float* rotated, const float* projected, int64_t m, int32_t dim, int32_t k,
               int64_t* out_rows, float* out_scores) {
  ScanStats stats;
  for (int64_t i = 0; i < m * k; ++i) {
    out_rows[i] = -1;
    out_scores[i] = -kInf;
  }
  if (m == 0 || k == 0 || codec.empty()) return stats;
  const Kernels& kern = active_kernels();
  const Plan plan = make_plan(codec);
  const int step_blocks = kern.step_blocks;
  const int group = kern.step_queries;

  // ranges of blocks: ~kRangeBytes of codes each, whole steps
  std::vector<Range> ranges;
  const int64_t per_range =
      std::max<int64_t>(step_blocks, (kRangeBytes / std::max<int64_t>(1, plan.block_bytes_total)) /
                                         step_blocks * step_blocks);
  for (size_t s = 0; s < segments.size(); ++s) {
    const int64_t blocks = (segments[s].rows + kBlockRows - 1) / kBlockRows;
    for (int64_t b = 0; b < blocks; b += per_range) {
      ranges.push_back({static_cast<int32_t>(s), b, std::min(blocks, b + per_range)});
    }
  }
  const int slots = pool_size();
  int64_t chunk = std::max<int64_t>(group, kChunkTableBytes / std::max<int64_t>(1, plan.table_bytes));
  chunk = std::min<int64_t>(std::max<int64_t>(group, chunk / group * group), 256);
  std::vector<uint8_t> tables;
  std::vector<QueryConsts> consts;
  std::vector<std::vector<Pool>> pools(slots);

  for (int64_t q0 = 0; q0 < m; q0 += chunk) {
    const int64_t nq = std::min(chunk, m - q0);
    tables.assign(nq * plan.table_bytes, 0);
    consts.assign(nq, QueryConsts{});
    parallel_for(nq, [&](int64_t i, int) {
      const int64_t q = q0 + i;
      build_tables(codec, rotated + q * dim, projected ? projected + q * dim : nullptr,
                   tables.data() + i * plan.table_bytes, consts[i]);
    });
    for (auto& per_slot : pools) {
      per_slot.resize(nq);
      for (Pool& p : per_slot) p.reset(k);
    }
    const int64_t groups = (nq + group - 1) / group;
    // enough tasks to keep every thread busy; a task keeps its range of codes hot in cache
    // while it runs every group of queries over it
    const bool split_groups = static_cast<int64_t>(ranges.size()) < 2 * slots && groups > 1;
    const int64_t tasks = split_groups ? ranges.size() * groups : ranges.size();
    parallel_for(tasks, [&](int64_t task, int slot) {
      const Range& range = ranges[split_groups ? task / groups : task];
      const int64_t g_first = split_groups ? task % groups : 0;
      const int64_t g_end = split_groups ? g_first + 1 : groups;
      const SegmentView& seg = segments[range.segment];
      std::vector<Pool>& mine = pools[slot];
      StepArgs a{};
      RowData rows;
      uint64_t masks[kMaxQueries];
      alignas(64) float lower[kMaxQueries * kMaxStepRows];
      alignas(64) float upper[kMaxQueries * kMaxStepRows];
      float thresholds[kMaxQueries];
      const int64_t blocks = (seg.rows + kBlockRows - 1) / kBlockRows;
      a.runs = plan.runs.data();
      a.n_runs = static_cast<int32_t>(plan.runs.size());
      a.n_classes = plan.n_classes;
      for (size_t s = 0; s < codec.size(); ++s) a.block_bytes[s] = codec[s].layout.block_bytes;
      for (int c = 0; c < kMaxClasses; ++c) a.factor_half[c] = seg.factor_half[c];
      a.masks = masks;
      a.lower = lower;
      a.upper = upper;
      a.thresholds = thresholds;
      for (int64_t g = g_first; g < g_end; ++g) {
        const int64_t first_q = g * group;
        a.n_queries = static_cast<int32_t>(std::min<int64_t>(group, nq - first_q));
        for (int i = 0; i < a.n_queries; ++i) a.tables[i] = tables.data() + (first_q + i) * plan.table_bytes;
        a.consts = consts.data() + first_q;
        for (int64_t b = range.first_block; b < range.end_block; b += step_blocks) {
          const int64_t first_row = b * kBlockRows;
          a.eligible = allowed_bits(seg, first_row);
          a.n_blocks = static_cast<int32_t>(std::min<int64_t>(step_blocks, blocks - b));
          if (a.n_blocks < 2) a.eligible &= 0xFFFFFFFFu;
          if (a.eligible == 0) continue;  // nothing live or allowed: skip the blocks
          for (size_t s = 0; s < codec.size(); ++s) {
            a.blocks[s] = seg.streams[s] + b * codec[s].layout.block_bytes;
          }
          rows.at(seg, plan.n_classes, first_row);
          for (int c = 0; c < plan.n_classes; ++c) a.factors[c] = rows.factors[c];
          a.shift = rows.shift;
          for (int i = 0; i < a.n_queries; ++i) thresholds[i] = mine[first_q + i].threshold;
          kern.scan_step(a);
          for (int i = 0; i < a.n_queries; ++i) {
            Pool& pool = mine[first_q + i];
            for (uint64_t bits = masks[i]; bits; bits &= bits - 1) {
              const int r = __builtin_ctzll(bits);
              pool.offer(range.segment, static_cast<int32_t>(first_row + r),
                         lower[i * kMaxStepRows + r], upper[i * kMaxStepRows + r]);
            }
          }
        }
      }
    });
    // merge the threads' candidates per query, re-score them exactly, keep the best k
    std::vector<int64_t> rescored(nq, 0);
    parallel_for(nq, [&](int64_t i, int) {
      std::vector<float> lows;
      std::vector<Candidate> cands;
      for (auto& per_slot : pools) {
        const Pool& p = per_slot[i];
        lows.insert(lows.end(), p.lows.begin(), p.lows.end());
        cands.insert(cands.end(), p.cands.begin(), p.cands.end());
      }
      float threshold = -kInf;
      if (static_cast<int64_t>(lows.size()) >= k) {
        std::nth_element(lows.begin(), lows.begin() + (k - 1), lows.end(), std::greater<float>());
        threshold = lows[k - 1];
      }
      const int64_t q = q0 + i;
      const float* qr = rotated + q * dim;
      const float* qp = projected ? projected + q * dim : nullptr;
      std::vector<std::pair<float, int64_t>> scored;
      for (const Candidate& c : cands) {
        if (c.upper < threshold) continue;
        const SegmentView& seg = segments[c.segment];
        scored.emplace_back(exact_one(codec, seg, c.row, qr, qp), seg.first_row + c.row);
      }
      rescored[i] = static_cast<int64_t>(scored.size());
      const auto better = [](const std::pair<float, int64_t>& x, const std::pair<float, int64_t>& y) {
        return x.first > y.first || (x.first == y.first && x.second < y.second);
      };
      const size_t keep = std::min<size_t>(k, scored.size());
      std::partial_sort(scored.begin(), scored.begin() + keep, scored.end(), better);
      for (size_t j = 0; j < keep; ++j) {
        out_scores[q * k + j] = scored[j].first;
        out_rows[q * k + j] = scored[j].second;
      }
    });
    for (int64_t r : rescored) stats.candidates += r;
  }
  return stats;
}

}  // namespace rq
