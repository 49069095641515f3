// The dispatch surface: what every kernel variant (scalar, AVX2, AVX-512, NEON) implements.
//
// Variants live in their own translation units (variant_*.cpp; variant_neon.cpp twice, with
// and without the dot product extension) compiled with their own
// instruction-set flags; everything in them, and in the headers they share (scan_loop.h: the
// block loop and report; codes.h, half.h), has internal linkage and they take plain structs,
// so nothing compiled for a wider ISA leaks into code the others run. A variant brings its
// block sums, its row lanes for the report and its KV row readers. Python never sees SIMD:
// module.cpp checks every input, then calls the active variant through this table.
#pragma once

#include <cstdint>

namespace rq {

constexpr int kMaxQueries = 16;     // queries scored per pass over a block
constexpr int kMaxClasses = 2;      // per-row factors: 0 the (corrected) norm, 1 the QJL residual
constexpr int kCandidates = 2048;   // per query and scan call: rows reported before returning
constexpr int kMaxRuns = 8;         // runs of a scan plan: at most 2 (full, partial) per stream

// ------------------------------------------------------------------------- index scan
// Consecutive groups of one stream with the same channel count (all full groups, then the
// stream's partial group if any), `4 * channels * bits` bytes apart in a block.
struct ScanRun {
  int32_t stream;
  int32_t offset;         // byte offset of the first group in a block
  int32_t count;          // groups
  int32_t channels;       // channels per group, 1..4
  int32_t bits;
  int32_t weight_offset;  // per query: bytes of the query's data before this run's first group
  int32_t chunk;          // per query and group: bytes of its data (4 weights, or a table)
  int32_t cls;            // factor class of the stream
  int32_t table;          // 1: the class is scored by pair tables (see below), 0: by weights
};

// Approximate score of a row for one query: sum over classes of
//   f_c[row] * (bias + delta * S_c[row])   (+ shift[row]),
// S_c an integer sum, in one of two forms (scan_plan.cpp derives the constants and the
// margin; the exact score lies within sum_c f_c[row] * margin of the approximation):
//   weights: S_c = sum over the class's channels of weight * (level[code] + offset) (levels
//     in [-level_max, level_max]; offset level_max + 1, so that the unsigned operand of the
//     byte dot products stays in 1..2 * level_max + 1, or 0 for `signed_levels` variants);
//     a group's data is its 4 int8 weights;
//   pair tables (2-bit classes, variants with `pair_tables_of`): S_c = sum over channel pairs of
//     T_pair[code pair], T in 0..127 the pair's quantized contribution; a full group's data is
//     32 bytes, the 16-entry tables of channels (0, 1) and (2, 3), indexed by code0 + 4 * code1
//     (a byte's low and high nibble in the block layout); a partial group's is 16 bytes, one
//     table, entry 4 * j + code for channel j. (Kept to 16 bytes a table, so that 4 queries'
//     tables of a 768-d block fit L1 beside the codes; AVX2 broadcasts each to both lanes.)
struct ClassConsts {
  float bias;
  float delta;
  float margin;
};

struct QueryConsts {
  ClassConsts cls[kMaxClasses];
};

// One call: consecutive blocks of every stream, up to kMaxQueries queries. The kernel scans
// blocks in order and returns after the block at which some query has reported `report_limit`
// rows or, having no threshold yet (-inf), any row (or at the end): the caller raises the
// thresholds from what was reported and calls again. `blocks_done` says how far it got.
struct ScanArgs {
  const ScanRun* runs;
  int32_t n_runs;
  int32_t n_classes;
  const uint8_t* levels[4];       // per stream: 256 entries, level + offset of each code
  const uint8_t* blocks[4];       // per stream: the first block of the call
  const uint8_t* ends[4];         // per stream: end of its buffer (loads must stay below)
  int64_t block_bytes[4];
  int64_t n_blocks;               // blocks to scan
  const uint64_t* eligible;       // bit i of word w: row 64w + i (from the first block) is
                                  // live and allowed
  const void* factors[kMaxClasses];  // per class, at the first row; 32 * n_blocks readable
  int32_t factor_half[kMaxClasses];  // 1: float16, 0: float32
  const float* shift;             // per-row additive term (32 * n_blocks readable) or null
  int32_t n_queries;              // 1..kMaxQueries
  const int8_t* weights;          // per run: n_queries * (its weight_offset + g * chunk) +
                                  // q * chunk holds group g's data for query q (weights or
                                  // tables, query after query: the kernels reach query q's at
                                  // a fixed offset)
  const QueryConsts* consts;      // [n_queries]
  const float* thresholds;        // [n_queries]: report rows whose upper bound reaches it
  // outputs, per query: the eligible rows reported (relative to the first block) and bounds
  int32_t* rows[kMaxQueries];     // each kCandidates long
  float* lower[kMaxQueries];
  float* upper[kMaxQueries];
  int32_t* counts;                // [n_queries]
  int32_t report_limit;           // <= kCandidates - 32
  int64_t blocks_done;
};

// Exact re-scoring of one row of one stream: sum over its channels of query * values[code], in
// float32 (scan_candidates.cpp does it in portable code for variants without their own).
struct RescoreStream {
  const uint8_t* block;   // the row's block in this stream
  const uint8_t* end;     // end of the stream's buffer
  int32_t full_groups;    // groups of 4 channels
  int32_t tail_channels;  // channels of the last, partial group (0..3)
  int32_t bits;
  const float* values;    // [2**bits]
  const float* query;     // the stream's channels of the query, in its domain
};

// ------------------------------------------------------------------------- KV row readers
// Rows of one head of one stream of the KV cache: rows of channels * bits / 8 bytes (channels a
// multiple of 8, at most kMaxKvChannels), 8 codes in every `bits` bytes, little-endian
// (codec/packing.py), each decoding to values[code] * scale.
constexpr int kMaxKvChannels = 1024;

struct KvRows {
  const uint8_t* packed;   // the head's row 0
  const uint8_t* end;      // end of the buffer (loads stay below it)
  int32_t bits;
  int32_t channels;
  const float* values;     // [2**bits]
  const uint16_t* scales;  // float16 bits, the head's row 0
};

// out[q * out_stride + t] += scale[first + t] * <queries[q], decoded row first + t>
struct KvScoresArgs {
  KvRows s;
  int64_t first, count;
  const float* queries;    // [n_queries][channels]
  int32_t n_queries;
  float* out;              // at column t = 0
  int64_t out_stride;
};

// out[q][c] += sum_t weights[q * weights_stride + t] * scale[first + t] * decoded[first + t][c]
struct KvWeightedArgs {
  KvRows s;
  int64_t first, count;
  const float* weights;    // at column t = 0
  int64_t weights_stride;
  int32_t n_queries;
  float* out;              // [n_queries][channels]
};

// out[t * out_stride + c] = scale[first + t] * decoded[first + t][c]
struct KvDecodeArgs {
  KvRows s;
  int64_t first, count;
  float* out;
  int64_t out_stride;
};

// ------------------------------------------------------------------------- pair tables
// The pair tables of one 2-bit stream for one query (pair_tables.h): per term (a channel pair
// of a full group, or one channel of a partial group) its entries at `at` bytes into `out`,
// and the moments of the entries' rounding errors added into `stats`.
struct PairTerm {
  int32_t first;     // first channel, within the stream
  int32_t channels;  // 2, or 1
  int32_t at;        // byte offset of its entries in the stream's table data
};

struct PairTableStats {
  double base = 0;      // sum of the terms' minima
  double mean = 0;      // sum of the terms' mean errors
  double variance = 0;  // sum of their variances
  double worst = 0;     // sum of their largest |error - mean|
  double largest = 0;   // the largest of those
};

struct PairTableArgs {
  const PairTerm* terms;
  int32_t n_terms;
  const float* query;   // the stream's channels
  float scale;          // the stream's scale
  const float* values;  // [4]
  const float* probs;   // [4]
  double delta;         // the class's table step
  uint8_t* out;
  PairTableStats* stats;
};

// ------------------------------------------------------------------------- query transforms
// out (rows x p) = x (rows x n) @ w (n x p), float32 row-major (matmul.h).
struct MatmulArgs {
  const float* x;
  int64_t rows;
  int32_t n;
  const float* w;
  int32_t p;
  float* out;
};

struct Kernels {
  const char* name;        // "scalar", "avx2", "avx512", "neon", "neon_dotprod"
  int32_t queries;         // queries per scan call it is fastest with (<= kMaxQueries)
  int32_t table_queries;   // the same when every class is scored by pair tables
  int32_t level_max;       // codebook levels in [-level_max, level_max] (63 or 127): what its
                           // byte products hold without saturating
  int32_t signed_levels;   // 1: level tables hold the int8 levels themselves (offset 0; signed
                           // x signed products), 0: level + level_max + 1 (unsigned operand)
  void (*scan)(ScanArgs&);
  float (*rescore)(const RescoreStream&, int row);  // row 0..31 of the block; may be null
  void (*kv_scores)(const KvScoresArgs&);
  void (*kv_weighted_sum)(const KvWeightedArgs&);
  void (*kv_decode)(const KvDecodeArgs&);
  void (*matmul)(const MatmulArgs&);
  void (*pair_tables_of)(const PairTableArgs&);  // set: 2-bit classes scored by pair tables
};

const Kernels& scalar_kernels();
#if defined(ROTAQUANT_X86)
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
#endif
#if defined(ROTAQUANT_NEON)
const Kernels& neon_kernels();          // AArch64 baseline (ARMv8.0-A Advanced SIMD)
const Kernels& neon_dotprod_kernels();  // + the dot product extension (ARMv8.2-A DotProd)
#endif

}  // namespace rq
