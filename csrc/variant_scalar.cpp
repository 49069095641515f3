// The portable reference variant: plain loops over the layouts, no intrinsics. Every other
// variant must give the same results (tests compare them on every layout).
#include <cstring>

#include "codes.h"
#include "half.h"
#include "kernels.h"
#include "layout.h"
#include "matmul.h"
#include "scan_loop.h"

namespace rq {
namespace {

// sums[c][q][r] over one block: weight * (level + offset) over the class's channels
template <int Q>
void block_sums(const ScanArgs& a, int64_t block, int32_t (&sums)[kMaxClasses][Q][kBlockRows]) {
  std::memset(sums, 0, sizeof sums);
  for (int q = 0; q < Q; ++q) {
    for (int i = 0; i < a.n_runs; ++i) {
      const ScanRun& run = a.runs[i];
      const uint8_t* base = a.blocks[run.stream] + block * a.block_bytes[run.stream] + run.offset;
      const uint8_t* levels = a.levels[run.stream];
      const int group_bytes = 4 * run.channels * run.bits;
      for (int g = 0; g < run.count; ++g) {
        const uint8_t* group = base + g * group_bytes;
        const int8_t* w = a.weights + Q * run.weight_offset + 4 * (g * Q + q);
        for (int r = 0; r < kBlockRows; ++r) {
          int32_t sum = 0;
          for (int j = 0; j < run.channels; ++j) {
            sum += int32_t(w[j]) * levels[read_code(group, run.channels, run.bits, r, j)];
          }
          sums[run.cls][q][r] += sum;
        }
      }
    }
  }
}

// The report's row lanes (scan_loop.h): one row, plain floats.
struct Lanes {
  static constexpr int kRows = 1;
  using Float = float;
  static float factors(const void* f, int half, int first) { return factor_at(f, half, first); }
  static float load(const float* p) { return load_any<float>(p, 0); }
  static void store(float* p, float x) { *p = x; }
  static float zero() { return 0.0f; }
  static float set1(float x) { return x; }
  static float fmadd(float a, float b, float c) { return a * b + c; }
  static float sub(float a, float b) { return a - b; }
  static float sums(const int32_t* p) { return float(*p); }
  static uint32_t reaching(float x, float threshold, uint32_t live) { return live & (x >= threshold); }
  static void append(ScanArgs& a, int q, int row0, uint32_t, float lower, float upper) {
    const int n = a.counts[q]++;
    a.rows[q][n] = row0;
    a.lower[q][n] = lower;
    a.upper[q][n] = upper;
  }
};

void scan(ScanArgs& a) {
  scan_with<Lanes, kMaxQueries>(a, [&](int64_t b, auto& sums) { block_sums(a, b, sums); });
}

void matmul(const MatmulArgs& a) { matmul_with<Lanes>(a); }

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
  static const Kernels k{"scalar", kMaxQueries, kMaxQueries, 127, 0, scan, nullptr, kv_scores, kv_weighted_sum, kv_decode, matmul, nullptr};
  return k;
}

}  // namespace rq
