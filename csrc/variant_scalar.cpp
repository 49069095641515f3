// The portable reference variant: plain loops over the layouts, no intrinsics. Every other
// variant must give the same results (tests compare them on every layout).
#include <cstring>

#include "half.h"
#include "kernels.h"
#include "layout.h"

namespace rq {
namespace {

uint32_t index_of(const uint8_t* block, const ScanRun& run, int unit, int r) {
  Unit u;
  u.offset = run.offset + unit * 4 * run.width;
  u.width = run.width;
  return read_index(block, u, r);
}

float factor_at(const void* factors, int half, int r) {
  if (half) return half_to_float(static_cast<const uint16_t*>(factors)[r]);
  return static_cast<const float*>(factors)[r];
}

void scan_step(const StepArgs& a) {
  const int rows = a.n_blocks * kBlockRows;
  for (int q = 0; q < a.n_queries; ++q) {
    int32_t sums[kMaxClasses][kMaxStepRows] = {};
    for (int i = 0; i < a.n_runs; ++i) {
      const ScanRun& run = a.runs[i];
      const uint8_t* table = a.tables[q] + run.table_offset;
      for (int b = 0; b < a.n_blocks; ++b) {
        const uint8_t* block = a.blocks[run.stream] + b * a.block_bytes[run.stream];
        for (int r = 0; r < kBlockRows; ++r) {
          int32_t sum = 0;
          for (int k = 0; k < run.count; ++k) {
            sum += table[k * run.table_size + index_of(block, run, k, r)];
          }
          sums[run.cls][b * kBlockRows + r] += sum;
        }
      }
    }
    const QueryConsts& c = a.consts[q];
    uint64_t mask = 0;
    for (int r = 0; r < rows; ++r) {
      float value = a.shift ? a.shift[r] : 0.0f;
      float margin = 0.0f;
      for (int k = 0; k < a.n_classes; ++k) {
        const float f = factor_at(a.factors[k], a.factor_half[k], r);
        value += f * (c.cls[k].bias + c.cls[k].delta * float(sums[k][r]));
        margin += f * c.cls[k].margin;
      }
      a.lower[q * kMaxStepRows + r] = value - margin;
      a.upper[q * kMaxStepRows + r] = value + margin;
      if (value + margin >= a.thresholds[q]) mask |= uint64_t(1) << r;
    }
    a.masks[q] = mask & a.eligible;
  }
}

// ------------------------------------------------------------------------- KV rows
void decode_row(const KvStream& s, const uint8_t* row, float* out) {
  const uint64_t mask = (uint64_t(1) << s.bits) - 1;
  for (int g = 0; g < s.channels / 8; ++g) {
    uint64_t word = 0;
    for (int i = 0; i < s.bits; ++i) word |= uint64_t(row[g * s.bits + i]) << (8 * i);
    for (int j = 0; j < 8; ++j) out[8 * g + j] = s.values[(word >> (j * s.bits)) & mask];
  }
}

const uint8_t* row_at(const KvStream& s, int head, int64_t row) {
  return s.packed + head * s.head_stride + row * (s.channels * s.bits / 8);
}

void kv_scores(const KvScoresArgs& a) {
  float values[1024];
  for (int64_t t = 0; t < a.count; ++t) {
    decode_row(a.s, row_at(a.s, a.head, a.first + t), values);
    for (int q = 0; q < a.n_queries; ++q) {
      const float* query = a.queries + q * a.s.channels;
      float acc = 0.0f;
      for (int c = 0; c < a.s.channels; ++c) acc += query[c] * values[c];
      a.out[q * a.out_stride + t] += acc * a.scales[t];
    }
  }
}

void kv_weighted_sum(const KvWeightedArgs& a) {
  float values[1024];
  for (int64_t t = 0; t < a.count; ++t) {
    decode_row(a.s, row_at(a.s, a.head, a.first + t), values);
    for (int q = 0; q < a.n_queries; ++q) {
      const float w = a.weights[q * a.weights_stride + t] * a.scales[t];
      float* out = a.out + q * a.s.channels;
      for (int c = 0; c < a.s.channels; ++c) out[c] += w * values[c];
    }
  }
}

void kv_decode(const KvDecodeArgs& a) {
  float values[1024];
  for (int64_t t = 0; t < a.count; ++t) {
    decode_row(a.s, row_at(a.s, a.head, a.first + t), values);
    float* out = a.out + t * a.out_stride;
    for (int c = 0; c < a.s.channels; ++c) out[c] = values[c] * a.scales[t];
  }
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k{"scalar", 1, kMaxQueries, scan_step, kv_scores, kv_weighted_sum, kv_decode};
  return k;
}

}  // namespace rq
