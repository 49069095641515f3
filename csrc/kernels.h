// The dispatch surface: what every kernel variant (scalar, AVX2, AVX-512) implements.
//
// Variants live in their own translation units (variant_*.cpp) compiled with their own
// instruction-set flags; everything in them has internal linkage and they take plain structs,
// so nothing compiled for a wider ISA leaks into code the others run. Python never sees SIMD:
// module.cpp checks every input, then calls the active variant through this table.
#pragma once

#include <cstdint>

namespace rq {

constexpr int kMaxQueries = 8;  // queries scored per pass over a block
constexpr int kMaxClasses = 2;  // per-row factors: 0 the (corrected) norm, 1 the QJL residual norm
constexpr int kMaxStepRows = 64;

// ------------------------------------------------------------------------- index scan
// A run of units of one stream with the same width and factor class, laid out at a fixed
// stride in the block (4*width bytes) and in the query's tables (table_size bytes).
struct ScanRun {
  int32_t stream;        // which stream's block the units are in
  int32_t offset;        // byte offset of the first unit in the block
  int32_t count;         // units in the run (<= 256)
  int32_t width;         // index bits of each unit
  int32_t table_offset;  // byte offset of the first unit's table in a query's tables
  int32_t table_size;    // 16, 64, 128 or 256
  int32_t cls;           // factor class of its sum
  int32_t flush;         // 1: fold the 16-bit sums into 32 bits after this run
};

// Per query and class: approximate score of row r = f_c[r] * (bias + delta * S_c[r]) summed
// over classes (+ shift[r]), S_c the sum of the u8 table entries the row's units select; the
// exact score lies within sum_c f_c[r] * margin of it (see scan.cpp).
struct ClassConsts {
  float bias;
  float delta;
  float margin;
};

struct QueryConsts {
  ClassConsts cls[kMaxClasses];
};

// One step: `n_blocks` consecutive blocks (32 rows each) of every stream.
struct StepArgs {
  const ScanRun* runs;
  int32_t n_runs;
  int32_t n_classes;
  const uint8_t* blocks[4];      // per stream: its first block of this step
  int64_t block_bytes[4];        // per stream
  int32_t n_blocks;              // 1..step_blocks of the variant
  const void* factors[kMaxClasses];  // per class: the step's first row's factor (64 readable)
  int32_t factor_half[kMaxClasses];  // 1: float16, 0: float32
  const float* shift;            // per row additive score term (64 readable) or null
  uint64_t eligible;             // bit r: row r of the step is live and allowed
  int32_t n_queries;             // 1..kMaxQueries
  const uint8_t* tables[kMaxQueries];
  const QueryConsts* consts;     // [n_queries]
  const float* thresholds;       // [n_queries]: report rows whose upper bound reaches it
  // outputs
  uint64_t* masks;               // [n_queries]: eligible rows with upper bound >= threshold
  float* lower;                  // [n_queries * 64]
  float* upper;                  // [n_queries * 64]
};

// ------------------------------------------------------------------------- KV row readers
// Rows of one stream of the KV cache: `rows` rows of `row_bytes` bytes (channels * bits / 8,
// channels a multiple of 8), 8 codes in every `bits` bytes, little-endian (codec/packing.py).
struct KvStream {
  const uint8_t* packed;   // [heads][capacity rows][row_bytes]
  int64_t head_stride;     // bytes between heads
  int32_t bits;
  int32_t channels;
  const float* values;     // [2**bits] centroid values
};

// scores[h][q][t] += scale[h][t] * <query[h][q], decoded row first+t of head h>
struct KvScoresArgs {
  KvStream s;
  int32_t head;            // the head of this task
  int64_t first, count;    // rows [first, first + count) of the stream
  const float* queries;    // [n_queries][channels] (this head's)
  int32_t n_queries;
  const float* scales;     // [count] (this head's, from the task's first row)
  float* out;              // [n_queries][out_stride] at this task's first column
  int64_t out_stride;
};

// out[q][c] += sum_t weights[q][t] * scale[t] * decoded row first+t [c]
struct KvWeightedArgs {
  KvStream s;
  int32_t head;
  int64_t first, count;
  const float* weights;    // [n_queries][weights_stride] at this task's first column
  int64_t weights_stride;
  int32_t n_queries;
  const float* scales;     // [count]
  float* out;              // [n_queries][channels]
};

// out[t][c] = scale[t] * decoded row first+t [c]
struct KvDecodeArgs {
  KvStream s;
  int32_t head;
  int64_t first, count;
  const float* scales;     // [count]
  float* out;              // [count][out_stride]
  int64_t out_stride;
};

struct Kernels {
  const char* name;        // "scalar", "avx2", "avx512"
  int32_t step_blocks;     // blocks per scan step
  int32_t step_queries;    // queries per scan step it is fastest with (<= kMaxQueries)
  void (*scan_step)(const StepArgs&);
  void (*kv_scores)(const KvScoresArgs&);
  void (*kv_weighted_sum)(const KvWeightedArgs&);
  void (*kv_decode)(const KvDecodeArgs&);
};

const Kernels& scalar_kernels();
#if defined(ROTAQUANT_X86)
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
#endif

}  // namespace rq
