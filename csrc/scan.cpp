// The scan driver: cuts the segments into spans of blocks and the queries into groups, runs
// the active kernel variant over them on the thread pool, feeds what it reports to the
// candidate pools and raises the thresholds between calls. The weights and margins come from
// scan_plan.cpp, the pools and the exact re-scoring from scan_candidates.cpp.
#include "scan.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <utility>

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
  int64_t group_first, group_end;  // query groups of the chunk (of the segment's entries, probed)
};

// The queries of one chunk that scan each segment: all of them (one shared range), or the
// probed ones: entries [starts[s], starts[s+1]) of `query` (chunk-local) and `bias`.
struct ChunkEntries {
  bool probed = false;
  std::vector<int64_t> starts;
  std::vector<int32_t> query;
  std::vector<float> bias;

  void fill(const Probes* probes, size_t n_segments, int64_t q0, int64_t nq) {
    probed = probes != nullptr;
    query.clear();
    bias.clear();
    starts.assign(probed ? n_segments + 1 : 0, 0);
    if (!probed) {
      for (int64_t i = 0; i < nq; ++i) query.push_back(static_cast<int32_t>(i));
      bias.assign(query.size(), 0.0f);
      return;
    }
    for (size_t s = 0; s < n_segments; ++s) {
      for (int64_t e = probes->starts[s]; e < probes->starts[s + 1]; ++e) {
        const int64_t q = probes->queries[e];
        if (q < q0 || q >= q0 + nq) continue;
        query.push_back(static_cast<int32_t>(q - q0));
        bias.push_back(probes->bias[e]);
      }
      starts[s + 1] = static_cast<int64_t>(query.size());
    }
  }

  // [first, end) of the entries of segment s
  std::pair<int64_t, int64_t> of(int32_t s) const {
    if (!probed) return {0, static_cast<int64_t>(query.size())};
    return {starts[s], starts[s + 1]};
  }
};

// The kernels' order of `count` queries' data (kernels.h): every channel group's data (weights
// or tables) query after query. from[i]: query i's data, plan.weight_bytes long.
void interleave(const ScanPlan& plan, const int8_t* const* from, int64_t count, int8_t* to) {
  for (const ScanRun& run : plan.runs) {
    for (int64_t c = 0; c < run.count; ++c) {
      const int64_t at = run.weight_offset + c * run.chunk;
      for (int64_t i = 0; i < count; ++i) {
        std::memcpy(to + count * at + i * run.chunk, from[i] + at, run.chunk);
      }
    }
  }
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
  std::vector<int8_t> gathered;  // a probed group's interleaved query data
  QueryConsts consts[kMaxQueries];
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
               float* out_scores, const Probes* probes) {
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
  ChunkEntries entries;
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
    // unprobed, every group of queries scans every segment: its data is interleaved once
    // here; probed groups are gathered per task
    const int64_t groups = (nq + group - 1) / group;
    interleaved.resize(probes ? 0 : weights.size());
    if (!probes) {
      parallel_for(groups, [&](int64_t g, int) {
        const int64_t first_q = g * group, count = std::min<int64_t>(group, nq - first_q);
        const int8_t* from[kMaxQueries];
        for (int64_t i = 0; i < count; ++i) {
          from[i] = weights.data() + (first_q + i) * plan.weight_bytes;
        }
        interleave(plan, from, count, interleaved.data() + first_q * plan.weight_bytes);
      });
    }
    entries.fill(probes, segments.size(), q0, nq);
    for (auto& per_slot : pools) {
      per_slot.resize(nq);
      for (CandidatePool& p : per_slot) p.reset(k);
    }
    shared.reset(new std::atomic<float>[nq]);
    for (int64_t i = 0; i < nq; ++i) shared[i].store(-kInf, std::memory_order_relaxed);
    // enough tasks for every thread; a task keeps its span of codes hot in cache while it
    // runs its query groups over it
    const auto groups_of = [&](int32_t segment) {
      const auto [first, end] = entries.of(segment);
      return (end - first + group - 1) / group;
    };
    int64_t most_groups = 0;
    for (size_t s = 0; s < segments.size(); ++s) {
      most_groups = std::max(most_groups, groups_of(static_cast<int32_t>(s)));
    }
    int64_t split = 1;
    while (split < most_groups && static_cast<int64_t>(spans.size()) * split < 4 * slots) split *= 2;
    std::vector<Task> tasks;
    for (const Task& span : spans) {
      const int64_t span_groups = groups_of(span.segment);
      const int64_t parts = std::min(split, span_groups);
      for (int64_t part = 0; part < parts; ++part) {
        Task t = span;
        t.group_first = span_groups * part / parts;
        t.group_end = span_groups * (part + 1) / parts;
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
      const auto [seg_first, seg_end] = entries.of(task.segment);
      for (int64_t g = task.group_first; g < task.group_end; ++g) {
        const int64_t first = seg_first + g * group;
        a.n_queries = static_cast<int32_t>(std::min<int64_t>(group, seg_end - first));
        const int32_t* query = entries.query.data() + first;  // chunk-local query of each slot
        const float* bias = entries.bias.data() + first;
        if (probes && a.n_queries == 1) {  // one query's data is already in kernel order
          a.weights = weights.data() + query[0] * plan.weight_bytes;
          a.consts = consts.data() + query[0];
        } else if (probes) {
          const int8_t* from[kMaxQueries];
          for (int i = 0; i < a.n_queries; ++i) {
            from[i] = weights.data() + query[i] * plan.weight_bytes;
            sc.consts[i] = consts[query[i]];
          }
          sc.gathered.resize(a.n_queries * plan.weight_bytes);
          interleave(plan, from, a.n_queries, sc.gathered.data());
          a.weights = sc.gathered.data();
          a.consts = sc.consts;
        } else {
          a.weights = interleaved.data() + query[0] * plan.weight_bytes;
          a.consts = consts.data() + query[0];
        }
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
            CandidatePool& pool = mine[query[i]];
            pool.raise(shared[query[i]].load(std::memory_order_relaxed));
            thresholds[i] = pool.threshold - bias[i];  // the kernel's scores lack the bias
          }
          kern.scan(a);
          for (int i = 0; i < a.n_queries; ++i) reported[slot] += counts[i];
          for (int i = 0; i < a.n_queries; ++i) {
            CandidatePool& pool = mine[query[i]];
            if (bias[i] != 0.0f) {
              for (int j = 0; j < counts[i]; ++j) {
                sc.out_lower[i][j] += bias[i];
                sc.out_upper[i][j] += bias[i];
              }
            }
            pool.offer(task.segment, first_row, sc.out_rows[i], sc.out_lower[i], sc.out_upper[i],
                       counts[i], bias[i]);
            std::atomic<float>& best = shared[query[i]];
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
