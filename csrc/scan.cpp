// The scan driver: cuts the segments into spans of blocks and the queries into groups, runs
// the active kernel variant over them on the thread pool, feeds what it reports to the
// candidate pools and raises the thresholds between calls. The weights and margins come from
// scan_plan.cpp, the pools and the exact re-scoring from scan_candidates.cpp.
#include "scan.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>

#include "cpu.h"
#include "pool.h"
#include "scan_candidates.h"
#include "scan_plan.h"

namespace rq {

namespace {

constexpr int64_t kTaskBytes = 256 << 10;  // codes per task: stays in L2 across query groups
constexpr int64_t kChunkQueries = 4096;    // queries in flight (bounds the candidate pools)

struct Task {
  int32_t segment;
  int64_t first_block, end_block;
  int64_t group_first, group_end;  // query groups of the chunk
};

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

ScanStats scan(const std::vector<CodecStream>& codec, const std::vector<SegmentView>& segments,
               const float* rotated, const float* projected, int64_t m, int32_t dim, int32_t k,
               int64_t* out_rows, float* out_scores) {
  const Kernels& kern = active_kernels();
  const ScanPlan plan = make_plan(codec, kern);
  return scan(codec, plan, kern, segments, rotated, projected, m, dim, k, out_rows, out_scores);
}

ScanStats scan(const std::vector<CodecStream>& codec, const ScanPlan& plan, const Kernels& kern,
               const std::vector<SegmentView>& segments, const float* rotated,
               const float* projected, int64_t m, int32_t dim, int32_t k, int64_t* out_rows,
               float* out_scores) {
  ScanStats stats;
  for (int64_t i = 0; i < m * k; ++i) {
    out_rows[i] = -1;
    out_scores[i] = -kInf;
  }
  if (m == 0 || k == 0 || codec.empty()) return stats;
  bool all_tables = true;
  for (int c = 0; c < plan.n_classes; ++c) all_tables = all_tables && plan.tables[c];
  const int group = all_tables ? kern.table_queries : kern.queries;
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
  // a batch's query data is megabytes: kept per calling thread across calls (fresh memory
  // would cost a page fault per 4 KiB on every call), released past kKeepBytes. Lambdas below
  // use these references: in a pool thread the thread_local names would be that thread's.
  thread_local std::vector<int8_t> kept_weights, kept_interleaved;
  thread_local std::vector<QueryConsts> kept_consts;
  std::vector<int8_t>& weights = kept_weights;
  std::vector<int8_t>& interleaved = kept_interleaved;
  std::vector<QueryConsts>& consts = kept_consts;
  std::vector<std::vector<CandidatePool>> pools(slots);
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
    // the kernels' order (kernels.h): per query group, every channel group's data (weights
    // or tables) query after query
    interleaved.resize(weights.size());
    parallel_for(groups, [&](int64_t g, int) {
      const int64_t first_q = g * group, count = std::min<int64_t>(group, nq - first_q);
      const int8_t* from = weights.data() + first_q * plan.weight_bytes;
      int8_t* to = interleaved.data() + first_q * plan.weight_bytes;
      for (const ScanRun& run : plan.runs) {
        for (int64_t c = 0; c < run.count; ++c) {
          const int64_t at = run.weight_offset + c * run.chunk;
          for (int64_t i = 0; i < count; ++i) {
            std::memcpy(to + count * at + i * run.chunk, from + i * plan.weight_bytes + at,
                        run.chunk);
          }
        }
      }
    });
    for (auto& per_slot : pools) {
      per_slot.resize(nq);
      for (CandidatePool& p : per_slot) p.reset(k);
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
      std::vector<CandidatePool>& mine = pools[slot];
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
            CandidatePool& pool = mine[first_q + i];
            pool.raise(shared[first_q + i].load(std::memory_order_relaxed));
            thresholds[i] = pool.threshold;
          }
          kern.scan(a);
          for (int i = 0; i < a.n_queries; ++i) reported[slot] += counts[i];
          for (int i = 0; i < a.n_queries; ++i) {
            CandidatePool& pool = mine[first_q + i];
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
    const ExactScorer score{kern, codec, plan.n_classes};
    parallel_for(nq, [&](int64_t i, int) {
      const int64_t q = q0 + i;
      rescored[i] = exact_top_k(score, segments, pools, i, rotated + q * dim,
                                projected ? projected + q * dim : nullptr, k, out_rows + q * k,
                                out_scores + q * k);
    });
    for (int64_t r : rescored) stats.candidates += r;
  }
  for (int64_t r : reported) stats.reported += r;
  if (weights.capacity() > kKeepBytes) {
    std::vector<int8_t>().swap(weights);
    std::vector<int8_t>().swap(interleaved);
    std::vector<QueryConsts>().swap(consts);
  }
  return stats;
}

}  // namespace rq
