// The scan driver: int8 weights, margins, tiles over the thread pool, candidates, exact
// re-scoring.
//
// Quantization. Per class, the query's channels (times the stream's scale) become int8
// weights w = round(q / qs), qs = max|q| / 127, and every stream's codebook values int8 levels
// l = round(value / cs), cs = max|value| / L (one cs per class, so the streams of a class add
// into one integer sum; L the variant's level_max: 127 for VNNI and scalar, 63 for AVX2, whose
// byte products saturate at int16). A row's approximate score is qs * cs * sum w * l, which the
// kernels get as delta * (S - (L + 1) * sum w) with S = sum w * (l + L + 1) (unsigned levels
// for the byte dot products); bias folds in the constant.
//
// Margin. The error of channel i for code c, err_i(c) = q_i * value(c) - qs * cs * w_i * l(c),
// depends only on the code. A row's error is the sum over its channels; we centre it by its
// mean under the codec's code law (mu) and bound the rest two ways, taking the smaller:
//   worst case: sum of each channel's largest |err| (+ |mu|): always holds;
//   Bernstein: for independent centred terms bounded by c with total variance s2,
//     P(|sum| > t) <= 2 exp(-t^2 / (2 (s2 + c t / 3))); t solves it for 1e-9.
// The Bernstein bound treats the channels of a rotated vector as independent (what the codec's
// rotation is for); it is the one in force at large dimension, where the worst case is about
// sqrt(d) times too wide to prune. A row's lower bound is score - margin, its upper bound
// score + margin, both times the row's factor.
#include "scan.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#include "codes.h"
#include "cpu.h"
#include "half.h"
#include "pool.h"

namespace rq {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kLogTwoOverDelta = 21.416;  // ln(2 / 1e-9)
constexpr int64_t kTaskBytes = 256 << 10;    // codes per task: stays in L2 across query groups
constexpr int64_t kChunkQueries = 4096;      // queries in flight (bounds the candidate pools)

struct Plan {
  std::vector<ScanRun> runs;
  int32_t n_classes = 1;
  int64_t weight_bytes = 0;                  // per query
  int64_t block_bytes_total = 0;
  int32_t level_offset = 64;                 // level_max + 1 of the kernel variant
  std::vector<std::vector<uint8_t>> levels;  // per stream: 256 entries, level + offset
  // per stream, under its code law: E[v], E[l], E[v^2], E[v l], E[l^2] (v the code's value,
  // l its signed level), the largest |l| and the largest |v - cs * l|
  struct Moments {
    double v = 0, l = 0, vv = 0, vl = 0, ll = 0, max_level = 0, max_gap = 0;
  };
  std::vector<Moments> moments;
  double level_scale[kMaxClasses] = {1, 1};  // cs per class
  std::vector<int32_t> stream_weight_offset;
};

Plan make_plan(const std::vector<CodecStream>& codec, int level_max) {
  Plan plan;
  plan.level_offset = level_max + 1;
  for (const CodecStream& s : codec) plan.n_classes = std::max(plan.n_classes, s.cls + 1);
  double largest[kMaxClasses] = {0, 0};
  for (const CodecStream& s : codec) {
    for (float v : s.values) largest[s.cls] = std::max(largest[s.cls], double(std::fabs(v)));
  }
  for (int c = 0; c < kMaxClasses; ++c) {
    plan.level_scale[c] = largest[c] > 0 ? largest[c] / level_max : 1;
  }
  int32_t weight_offset = 0;
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    const BlockLayout& layout = cs.layout;
    plan.block_bytes_total += layout.block_bytes;
    plan.stream_weight_offset.push_back(weight_offset);
    std::vector<uint8_t> table(256, static_cast<uint8_t>(plan.level_offset));
    Plan::Moments mo;
    const double scale = plan.level_scale[cs.cls];
    for (size_t c = 0; c < cs.values.size(); ++c) {
      const double level =
          std::max(-double(level_max), std::min(double(level_max), std::nearbyint(cs.values[c] / scale)));
      table[c] = static_cast<uint8_t>(level + plan.level_offset);
      const double v = cs.values[c], p = cs.probs[c];
      mo.v += p * v;
      mo.l += p * level;
      mo.vv += p * v * v;
      mo.vl += p * v * level;
      mo.ll += p * level * level;
      mo.max_level = std::max(mo.max_level, std::fabs(level));
      mo.max_gap = std::max(mo.max_gap, std::fabs(v - scale * level));
    }
    plan.levels.push_back(table);
    plan.moments.push_back(mo);
    for (size_t i = 0; i < layout.groups.size();) {
      const Group& g = layout.groups[i];
      ScanRun run{};
      run.stream = static_cast<int32_t>(s);
      run.offset = g.offset;
      run.channels = g.channels;
      run.bits = cs.bits;
      run.weight_group = weight_offset / 4 + static_cast<int32_t>(i);
      run.cls = cs.cls;
      size_t j = i;
      while (j < layout.groups.size() && layout.groups[j].channels == g.channels) ++j;
      run.count = static_cast<int32_t>(j - i);
      plan.runs.push_back(run);
      i = j;
    }
    weight_offset += 4 * static_cast<int32_t>(layout.groups.size());
  }
  plan.weight_bytes = weight_offset;
  // the kernels keep one class's sums in registers at a time: runs of a class together
  std::stable_sort(plan.runs.begin(), plan.runs.end(),
                   [](const ScanRun& x, const ScanRun& y) { return x.cls < y.cls; });
  return plan;
}

struct ClassStats {
  double mean = 0, variance = 0, worst = 0, largest = 0, weight_sum = 0;
};

// int8 weights (plan.weight_bytes) and the constants of one query.
void prepare_query(const std::vector<CodecStream>& codec, const Plan& plan, const float* rotated,
                   const float* projected, int8_t* weights, QueryConsts& consts) {
  double largest[kMaxClasses] = {0, 0};
  for (const CodecStream& s : codec) {
    const float* q = (s.domain ? projected : rotated) + s.first;
    for (int i = 0; i < s.channels; ++i) {
      largest[s.cls] = std::max(largest[s.cls], std::fabs(double(q[i]) * s.scale));
    }
  }
  double qs[kMaxClasses];
  for (int c = 0; c < kMaxClasses; ++c) qs[c] = largest[c] > 0 ? largest[c] / 127 : 1;
  std::memset(weights, 0, plan.weight_bytes);
  ClassStats stats[kMaxClasses];
  // channel i of weight w: err(c) = x v(c) - delta w l(c) for the query value x; its mean and
  // variance under the code law follow from the stream's moments, and since
  // v = cs l + gap, |err| <= cs max|l| |x - qs w| + |x| max|gap|
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    const float* q = (cs.domain ? projected : rotated) + cs.first;
    const double delta = qs[cs.cls] * plan.level_scale[cs.cls];
    const Plan::Moments& mo = plan.moments[s];
    ClassStats& st = stats[cs.cls];
    int8_t* w = weights + plan.stream_weight_offset[s];
    const double to_weight = 1.0 / qs[cs.cls];
    for (int i = 0; i < cs.channels; ++i) {
      const double x = double(q[i]) * cs.scale;
      const double wi = std::max(-127.0, std::min(127.0, std::nearbyint(x * to_weight)));
      w[i] = static_cast<int8_t>(wi);
      st.weight_sum += wi;
      const double b = delta * wi;
      const double mean = x * mo.v - b * mo.l;
      const double square = x * x * mo.vv - 2 * x * b * mo.vl + b * b * mo.ll;
      const double worst = plan.level_scale[cs.cls] * mo.max_level * std::fabs(x - qs[cs.cls] * wi) +
                           std::fabs(x) * mo.max_gap;
      st.mean += mean;
      st.variance += std::max(0.0, square - mean * mean);
      st.worst += worst;
      st.largest = std::max(st.largest, worst + std::fabs(mean));
    }
  }
  for (int c = 0; c < kMaxClasses; ++c) {
    const ClassStats& st = stats[c];
    const double delta = qs[c] * plan.level_scale[c];
    const double a = st.largest * kLogTwoOverDelta / 3;
    const double bernstein = a + std::sqrt(a * a + 2 * st.variance * kLogTwoOverDelta);
    const double worst = st.worst + std::fabs(st.mean);
    const double bias = -plan.level_offset * delta * st.weight_sum + st.mean;
    // float32 evaluation of bias + delta * S, with room to spare
    const double slack = 1e-6 * (std::fabs(bias) + delta * 127.0 * 255.0 * plan.weight_bytes);
    consts.cls[c].bias = static_cast<float>(bias);
    consts.cls[c].delta = static_cast<float>(delta);
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

  // Candidates of one kernel call: rows (relative to first_row) with their bounds.
  void offer(int32_t segment, int64_t first_row, const int32_t* rows, const float* lower,
             const float* upper, int count) {
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
          cands.push_back({segment, static_cast<int32_t>(first_row + rows[i]), lower[i], upper[i]});
        }
      }
    } else {
      for (int i = 0; i < count; ++i) {
        one(segment, static_cast<int32_t>(first_row + rows[i]), lower[i], upper[i]);
      }
    }
    if (cands.size() >= compact_at) compact();
  }

  void one(int32_t segment, int32_t row, float lower, float upper) {
    if (upper < threshold) return;
    cands.push_back({segment, row, lower, upper});
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

  // Another thread's threshold for the same query: every threshold is the k-th largest lower
  // bound of some rows, so none exceeds the final k-th best exact score and the largest holds.
  void raise(float t) { threshold = std::max(threshold, t); }

  void compact() {
    const float t = threshold;
    cands.erase(std::remove_if(cands.begin(), cands.end(),
                               [t](const Candidate& c) { return c.upper < t; }),
                cands.end());
    compact_at = std::max<size_t>(4096, 2 * cands.size());
  }

  std::vector<float> scratch_lows;
};

struct Task {
  int32_t segment;
  int64_t first_block, end_block;
  int64_t group_first, group_end;  // query groups of the chunk
};

float exact_one(const Kernels& kern, const std::vector<CodecStream>& codec, int n_classes,
                const SegmentView& seg, int64_t row, const float* rotated, const float* projected) {
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
  if (seg.shift) total += seg.shift[row];
  return total;
}

// Live (and allowed) bits of `blocks` blocks from `first_row` (a multiple of 32).
void eligible_bits(const SegmentView& seg, int64_t first_row, int64_t blocks, uint64_t* out) {
  const int64_t words = (blocks * kBlockRows + 63) / 64;
  const int64_t allow_words = (seg.rows + 63) / 64;
  for (int64_t w = 0; w < words; ++w) {
    const int64_t row = first_row + 64 * w;
    const int64_t left = seg.rows - row;
    uint64_t live = left >= 64 ? ~uint64_t(0) : left > 0 ? (uint64_t(1) << left) - 1 : 0;
    if (seg.allow) {
      const int64_t word = row / 64;
      uint64_t bits = word < allow_words ? seg.allow[word] : 0;
      if (row % 64) {
        bits >>= 32;
        if (word + 1 < allow_words) bits |= seg.allow[word + 1] << 32;
      }
      live &= bits;
    }
    out[w] = live;
  }
  if (blocks % 2) out[words - 1] &= 0xFFFFFFFFu;
}

// Factors and shift of a segment's last, partial block, zero-padded to 32 rows.
struct TailRows {
  alignas(64) float factor32[kMaxClasses][kBlockRows];
  alignas(64) uint16_t factor16[kMaxClasses][kBlockRows];
  alignas(64) float shift[kBlockRows];

  void fill(const SegmentView& seg, int n_classes, int64_t first_row, const void** factors,
            const float** shift_out) {
    const int64_t left = seg.rows - first_row;
    for (int c = 0; c < n_classes; ++c) {
      const size_t size = seg.factor_half[c] ? 2 : 4;
      void* pad = seg.factor_half[c] ? static_cast<void*>(factor16[c]) : factor32[c];
      std::memset(pad, 0, kBlockRows * size);
      std::memcpy(pad, static_cast<const char*>(seg.factors[c]) + first_row * size, left * size);
      factors[c] = pad;
    }
    *shift_out = nullptr;
    if (seg.shift) {
      std::memset(shift, 0, sizeof shift);
      std::memcpy(shift, seg.shift + first_row, left * sizeof(float));
      *shift_out = shift;
    }
  }
};

// Per-thread scratch of a scan.
struct Scratch {
  TailRows tail;
  std::vector<uint64_t> eligible;
  alignas(64) int32_t out_rows[kMaxQueries][kCandidates];
  alignas(64) float out_lower[kMaxQueries][kCandidates];
  alignas(64) float out_upper[kMaxQueries][kCandidates];
};

}  // namespace

void exact_scores(const std::vector<CodecStream>& codec, const SegmentView& segment,
                  const float* rotated, const float* projected, int64_t m, int32_t dim,
                  const int64_t* rows, int64_t count, float* out) {
  int classes = 1;
  for (const CodecStream& s : codec) classes = std::max(classes, s.cls + 1);
  for (int64_t q = 0; q < m; ++q) {
    const float* qr = rotated + q * dim;
    const float* qp = projected ? projected + q * dim : nullptr;
    for (int64_t i = 0; i < count; ++i) {
      out[q * count + i] = exact_one(active_kernels(), codec, classes, segment, rows[i], qr, qp);
    }
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
  const Plan plan = make_plan(codec, kern.level_max);
  const int group = kern.queries;
  const int slots = pool_size();
  // block spans of ~kTaskBytes of codes
  std::vector<Task> spans;
  const int64_t span_blocks =
      std::max<int64_t>(1, kTaskBytes / std::max<int64_t>(1, plan.block_bytes_total));
  for (size_t s = 0; s < segments.size(); ++s) {
    const int64_t blocks = (segments[s].rows + kBlockRows - 1) / kBlockRows;
    for (int64_t b = 0; b < blocks; b += span_blocks) {
      spans.push_back({static_cast<int32_t>(s), b, std::min(blocks, b + span_blocks), 0, 0});
    }
  }
  std::vector<int8_t> weights, interleaved;
  std::vector<QueryConsts> consts;
  std::vector<std::vector<Pool>> pools(slots);
  std::vector<int64_t> reported(slots, 0);
  std::unique_ptr<std::atomic<float>[]> shared;  // per query: the best threshold of any thread

  for (int64_t q0 = 0; q0 < m; q0 += kChunkQueries) {
    const int64_t nq = std::min(kChunkQueries, m - q0);
    weights.assign(nq * plan.weight_bytes, 0);
    consts.assign(nq, QueryConsts{});
    parallel_for(nq, [&](int64_t i, int) {
      const int64_t q = q0 + i;
      prepare_query(codec, plan, rotated + q * dim, projected ? projected + q * dim : nullptr,
                    weights.data() + i * plan.weight_bytes, consts[i]);
    });
    const int64_t groups = (nq + group - 1) / group;
    // the kernels' order: per query group, every channel group's weights query after query
    interleaved.resize(weights.size());
    parallel_for(groups, [&](int64_t g, int) {
      const int64_t first_q = g * group, count = std::min<int64_t>(group, nq - first_q);
      const int8_t* from = weights.data() + first_q * plan.weight_bytes;
      int8_t* to = interleaved.data() + first_q * plan.weight_bytes;
      for (int64_t c = 0; c < plan.weight_bytes / 4; ++c) {
        for (int64_t i = 0; i < count; ++i) {
          std::memcpy(to + 4 * (c * count + i), from + i * plan.weight_bytes + 4 * c, 4);
        }
      }
    });
    for (auto& per_slot : pools) {
      per_slot.resize(nq);
      for (Pool& p : per_slot) p.reset(k);
    }
    shared.reset(new std::atomic<float>[nq]);
    for (int64_t i = 0; i < nq; ++i) shared[i].store(-kInf, std::memory_order_relaxed);
    // enough tasks for every thread; a task keeps its span of codes hot in cache while it
    // runs its query groups over it
    int64_t split = 1;
    while (split < groups && static_cast<int64_t>(spans.size()) * split < 4 * slots) split *= 2;
    split = std::min(split, groups);
    std::vector<Task> tasks;
    for (const Task& span : spans) {
      for (int64_t part = 0; part < split; ++part) {
        Task t = span;
        t.group_first = groups * part / split;
        t.group_end = groups * (part + 1) / split;
        if (t.group_end > t.group_first) tasks.push_back(t);
      }
    }
    parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t index, int slot) {
      const Task& task = tasks[index];
      const SegmentView& seg = segments[task.segment];
      std::vector<Pool>& mine = pools[slot];
      thread_local std::unique_ptr<Scratch> scratch;  // per thread, kept across calls
      if (!scratch) scratch.reset(new Scratch);
      Scratch& sc = *scratch;
      ScanArgs a{};
      float thresholds[kMaxQueries];
      int32_t counts[kMaxQueries];
      a.runs = plan.runs.data();
      a.n_runs = static_cast<int32_t>(plan.runs.size());
      a.n_classes = plan.n_classes;
      const int64_t blocks = (seg.rows + kBlockRows - 1) / kBlockRows;
      for (size_t s = 0; s < codec.size(); ++s) {
        a.levels[s] = plan.levels[s].data();
        a.block_bytes[s] = codec[s].layout.block_bytes;
        a.ends[s] = seg.streams[s] + blocks * codec[s].layout.block_bytes;
      }
      for (int c = 0; c < kMaxClasses; ++c) a.factor_half[c] = seg.factor_half[c];
      a.thresholds = thresholds;
      a.counts = counts;
      // report often while thresholds are weak (the first blocks), rarely once they are good
      a.report_limit = static_cast<int32_t>(std::min<int64_t>(kCandidates - 32, std::max(64, 4 * k)));
      for (int i = 0; i < kMaxQueries; ++i) {
        a.rows[i] = sc.out_rows[i];
        a.lower[i] = sc.out_lower[i];
        a.upper[i] = sc.out_upper[i];
      }
      // whole blocks with the segment's own arrays, then a partial last block padded
      const int64_t whole_end = std::min(task.end_block, seg.rows / kBlockRows);
      for (int64_t g = task.group_first; g < task.group_end; ++g) {
        const int64_t first_q = g * group;
        a.n_queries = static_cast<int32_t>(std::min<int64_t>(group, nq - first_q));
        a.weights = interleaved.data() + first_q * plan.weight_bytes;
        a.consts = consts.data() + first_q;
        for (int64_t b = task.first_block; b < task.end_block;) {
          const int64_t stop = b < whole_end ? whole_end : task.end_block;
          const int64_t first_row = b * kBlockRows;
          a.n_blocks = stop - b;
          sc.eligible.resize((a.n_blocks * kBlockRows + 63) / 64);
          eligible_bits(seg, first_row, a.n_blocks, sc.eligible.data());
          a.eligible = sc.eligible.data();
          for (size_t s = 0; s < codec.size(); ++s) {
            a.blocks[s] = seg.streams[s] + b * codec[s].layout.block_bytes;
          }
          if (b < whole_end) {
            for (int c = 0; c < plan.n_classes; ++c) {
              a.factors[c] = static_cast<const char*>(seg.factors[c]) +
                             first_row * (seg.factor_half[c] ? 2 : 4);
            }
            a.shift = seg.shift ? seg.shift + first_row : nullptr;
          } else {
            sc.tail.fill(seg, plan.n_classes, first_row, a.factors, &a.shift);
          }
          for (int i = 0; i < a.n_queries; ++i) {
            Pool& pool = mine[first_q + i];
            pool.raise(shared[first_q + i].load(std::memory_order_relaxed));
            thresholds[i] = pool.threshold;
          }
          kern.scan(a);
          for (int i = 0; i < a.n_queries; ++i) reported[slot] += counts[i];
          for (int i = 0; i < a.n_queries; ++i) {
            Pool& pool = mine[first_q + i];
            pool.offer(task.segment, first_row, sc.out_rows[i], sc.out_lower[i], sc.out_upper[i],
                       counts[i]);
            std::atomic<float>& best = shared[first_q + i];
            float seen = best.load(std::memory_order_relaxed);
            while (pool.threshold > seen &&
                   !best.compare_exchange_weak(seen, pool.threshold, std::memory_order_relaxed)) {
            }
          }
          b += a.blocks_done;
        }
      }
    });
    // merge the threads' candidates per query, re-score them exactly, keep the best k
    std::vector<int64_t> rescored(nq, 0);
    parallel_for(nq, [&](int64_t i, int) {
      thread_local std::vector<float> lows;
      thread_local std::vector<Candidate> cands;
      thread_local std::vector<std::pair<float, int64_t>> scored;
      lows.clear();
      cands.clear();
      scored.clear();
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
      for (const Candidate& c : cands) {
        if (c.upper < threshold) continue;
        const SegmentView& seg = segments[c.segment];
        scored.emplace_back(exact_one(kern, codec, plan.n_classes, seg, c.row, qr, qp),
                            seg.first_row + c.row);
      }
      rescored[i] = static_cast<int64_t>(scored.size());
      const auto better = [](const std::pair<float, int64_t>& x,
                             const std::pair<float, int64_t>& y) {
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
  for (int64_t r : reported) stats.reported += r;
  return stats;
}

}  // namespace rq
