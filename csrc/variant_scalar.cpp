// The portable reference variant: plain loops over the layouts, no intrinsics. Every other
// variant must give the same results (tests compare them on every layout).
#include <cstring>

#include "codes.h"
#include "half.h"
#include "kernels.h"
#include "layout.h"

namespace rq {
namespace {

// sums[c][r] of one query over one block: weight * (level + offset) over the class's channels
void block_sums(const ScanArgs& a, int64_t block, int q, int32_t sums[kMaxClasses][kBlockRows]) {
  for (int i = 0; i < a.n_runs; ++i) {
    const ScanRun& run = a.runs[i];
    const uint8_t* base = a.blocks[run.stream] + block * a.block_bytes[run.stream] + run.offset;
    const uint8_t* levels = a.levels[run.stream];
    const int group_bytes = 4 * run.channels * run.bits;
    for (int g = 0; g < run.count; ++g) {
      const uint8_t* group = base + g * group_bytes;
      const int8_t* w = a.weights + 4 * ((run.weight_group + g) * a.n_queries + q);
      for (int r = 0; r < kBlockRows; ++r) {
        int32_t sum = 0;
        for (int j = 0; j < run.channels; ++j) {
          sum += int32_t(w[j]) * levels[read_code(group, run.channels, run.bits, r, j)];
        }
        sums[run.cls][r] += sum;
      }
    }
  }
}

void scan(ScanArgs& a) {
  for (int q = 0; q < a.n_queries; ++q) a.counts[q] = 0;
  int64_t b = 0;
  for (; b < a.n_blocks; ++b) {
    const uint32_t eligible = static_cast<uint32_t>(a.eligible[b / 2] >> (32 * (b % 2)));
    if (eligible == 0) continue;
    bool full = false;
    for (int q = 0; q < a.n_queries; ++q) {
      int32_t sums[kMaxClasses][kBlockRows] = {};
      block_sums(a, b, q, sums);
      const QueryConsts& c = a.consts[q];
      for (int r = 0; r < kBlockRows; ++r) {
        if (!(eligible >> r & 1)) continue;
        const int row = static_cast<int>(b * kBlockRows + r);
        float upper = a.shift ? a.shift[row] : 0.0f;
        float width = 0.0f;
        for (int k = 0; k < a.n_classes; ++k) {
          const float f = factor_at(a.factors[k], a.factor_half[k], row);
          upper += f * (c.cls[k].bias + c.cls[k].margin + c.cls[k].delta * float(sums[k][r]));
          width += f * (2 * c.cls[k].margin);
        }
        if (upper >= a.thresholds[q]) {
          const int n = a.counts[q]++;
          a.rows[q][n] = row;
          a.lower[q][n] = upper - width;
          a.upper[q][n] = upper;
        }
      }
      // back to the caller once a query reported report_limit rows, or a query without
      // a threshold yet has any
      full |= a.counts[q] >= a.report_limit ||
              (a.counts[q] > 0 && a.thresholds[q] == -__builtin_inff());
    }
    if (full) {
      ++b;
      break;
    }
  }
  a.blocks_done = b;
}

// ------------------------------------------------------------------------- KV rows
void decode_row(const KvRows& s, int64_t row, float* out) {
  const uint8_t* bytes = s.packed + row * (s.channels * s.bits / 8);
  const float scale = half_to_float(s.scales[row]);
  const uint64_t mask = (uint64_t(1) << s.bits) - 1;
  for (int g = 0; g < s.channels / 8; ++g) {
    uint64_t word = 0;
    for (int i = 0; i < s.bits; ++i) word |= uint64_t(bytes[g * s.bits + i]) << (8 * i);
    for (int j = 0; j < 8; ++j) out[8 * g + j] = s.values[(word >> (j * s.bits)) & mask] * scale;
  }
}

void kv_scores(const KvScoresArgs& a) {
  float values[kMaxKvChannels];
  for (int64_t t = 0; t < a.count; ++t) {
    decode_row(a.s, a.first + t, values);
    for (int q = 0; q < a.n_queries; ++q) {
      const float* query = a.queries + q * a.s.channels;
      float acc = 0.0f;
      for (int c = 0; c < a.s.channels; ++c) acc += query[c] * values[c];
      a.out[q * a.out_stride + t] += acc;
    }
  }
}

void kv_weighted_sum(const KvWeightedArgs& a) {
  float values[kMaxKvChannels];
  for (int64_t t = 0; t < a.count; ++t) {
    decode_row(a.s, a.first + t, values);
    for (int q = 0; q < a.n_queries; ++q) {
      const float w = a.weights[q * a.weights_stride + t];
      float* out = a.out + q * a.s.channels;
      for (int c = 0; c < a.s.channels; ++c) out[c] += w * values[c];
    }
  }
}

void kv_decode(const KvDecodeArgs& a) {
  for (int64_t t = 0; t < a.count; ++t) decode_row(a.s, a.first + t, a.out + t * a.out_stride);
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k{"scalar", kMaxQueries, 127, scan, nullptr, kv_scores, kv_weighted_sum, kv_decode};
  return k;
}

}  // namespace rq
