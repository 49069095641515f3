// NEON variants (AArch64 Advanced SIMD): `neon` for every aarch64 CPU (ARMv8.0-A), and, from the
// same source compiled with ROTAQUANT_DOTPROD (-march=armv8.2-a+dotprod), `neon_dotprod` for
// CPUs with the dot product extension (Apple M1 and later, Graviton 2 and later, Neoverse,
// Cortex-A76 and later). Up to 8 queries per pass, 4 with pair tables.
//
// 2-bit classes are scored by pair tables, as on AVX2 (kernels.h): TBL (vqtbl1q_u8) is a
// 16-entry byte lookup like PSHUFB, one lookup per 16 rows and channel pair, entries added in
// bytes and widened into 16-bit lanes (flushed every 256 groups).
//
// Other classes: per group and quad of rows (4 rows: one 128-bit register), the codes become 16
// bytes, row r in 32-bit lane r, channel j in byte j (full 4-bit groups: nibbles zipped; full
// 3-bit groups: TBL and two per-lane shifts; any other layout: TBL gathers each code's two bytes into a 16-bit lane, a per-lane shift
// (vshlq_u16 by a negative count) aligns it, a narrow returns bytes; TBL returns 0 for indices
// past the window, so no byte is read beyond the 16 loaded). TBL (TBX chains beyond 6 bits)
// maps codes to the int8 levels themselves (signed_levels: no offset), and per query either SDOT adds the four
// products of each lane into its row (dotprod), or SMULL widens the products to 16 bits and
// SADALP adds pairs into 32-bit lanes that a final ADDP turns into rows (baseline). Levels stay
// within +-127: products of int8 with int8 never saturate here.
#include <arm_neon.h>

#include <cstring>

#include "codes.h"
#include "half.h"
#include "kernels.h"
#include "matmul.h"
#include "mca.h"
#include "pair_tables.h"
#include "scan_loop.h"

#if defined(ROTAQUANT_DOTPROD)
#define RQ_NEON_NAME "neon_dotprod"
#define RQ_NEON_KERNELS neon_dotprod_kernels
#else
#define RQ_NEON_NAME "neon"
#define RQ_NEON_KERNELS neon_kernels
#endif

namespace rq {
namespace {

constexpr int kQueries = 8;
constexpr int kTableQueries = 4;

// 16 bytes from `at`, or as many as lie below `end` (the rest 0).
inline uint8x16_t load16(const uint8_t* at, const uint8_t* end) {
  if (__builtin_expect(at + 16 <= end, 1)) return vld1q_u8(at);
  uint8_t buf[16] = {};
  if (at < end) std::memcpy(buf, at, static_cast<size_t>(end - at));
  return vld1q_u8(buf);
}

// Any layout: rows 4t..4t+3 of a group from the group's bytes, through 16-bit lanes.
struct Decoder {
  static constexpr int kBits = 0;  // any (mca.h)
  int window[8];                // per quad: first byte of its 16-byte window (from the group)
  alignas(16) uint8_t pairs[8][2][16];   // per quad and half (codes 0..7, 8..15): TBL indices
  alignas(16) int16_t shifts[8][2][8];   // per quad, half and code: minus the bit offset
  uint16x8_t mask;

  void init(int c, int b) {
    mask = vdupq_n_u16(static_cast<uint16_t>((1u << b) - 1));
    for (int quad = 0; quad < 8; ++quad) {
      const int start = (4 * quad * c * b) >> 3;
      window[quad] = start;
      for (int p = 0; p < 16; ++p) {  // code p: row 4 quad + p / 4, slot p % 4
        const int row = 4 * quad + p / 4;
        const int slot = p % 4 < c ? p % 4 : 0;
        const int bit = (row * c + slot) * b;
        const int byte = (bit >> 3) - start;
        const int half = p / 8, lane = p % 8;
        pairs[quad][half][2 * lane] = static_cast<uint8_t>(byte);
        pairs[quad][half][2 * lane + 1] = static_cast<uint8_t>(byte + 1);  // 16: TBL gives 0
        shifts[quad][half][lane] = static_cast<int16_t>(-(bit & 7));
      }
    }
  }

  uint8x16_t operator()(const uint8_t* group, const uint8_t* end, int quad) const {
    const uint8x16_t src = load16(group + window[quad], end);
    const uint16x8_t lo = vandq_u16(
        vshlq_u16(vreinterpretq_u16_u8(vqtbl1q_u8(src, vld1q_u8(pairs[quad][0]))), vld1q_s16(shifts[quad][0])), mask);
    const uint16x8_t hi = vandq_u16(
        vshlq_u16(vreinterpretq_u16_u8(vqtbl1q_u8(src, vld1q_u8(pairs[quad][1]))), vld1q_s16(shifts[quad][1])), mask);
    return vcombine_u8(vmovn_u16(lo), vmovn_u16(hi));
  }
};

// Full 4-bit groups: row r holds bytes 2r (channels 0, 1) and 2r+1 (channels 2, 3), low nibble
// first; rows 4t..4t+3 are the group's bytes 8t..8t+7.
struct NibbleCodes {
  static constexpr int kBits = 4;
  uint8x16_t operator()(const uint8_t* group, const uint8_t*, int quad) const {
    const uint8x8_t x = vld1_u8(group + 8 * quad);
    const uint8x8_t lo = vand_u8(x, vdup_n_u8(0x0F));
    const uint8x8_t hi = vshr_n_u8(x, 4);
    return vcombine_u8(vzip1_u8(lo, hi), vzip2_u8(lo, hi));
  }
};

// Full 3-bit groups (48 bytes): rows 4t..4t+3 are the 6 bytes from 6t, row i of them 12 bits
// from bit 12 i (offset 0 or 4 in its first byte). An 8-byte load inside the group (from byte
// 40 for t = 7) and one TBL put each row's two bytes into both 16-bit halves of its lane; two
// per-lane shifts (USHL: a different count per half and row parity) and masks then move code
// j to byte j: 7 operations for 16 codes, where the generic decoder needs about 15.
struct TripleCodes {
  static constexpr int kBits = 3;
  uint8x16_t pick[2];  // [t == 7]
  int16x8_t first, second;
  uint16x8_t low_mask, high_mask;
  TripleCodes() {
    for (int extra = 0; extra < 2; ++extra) {
      alignas(16) uint8_t idx[16];
      for (int i = 0; i < 4; ++i) {
        const int byte = (12 * i) / 8 + 2 * extra;
        for (int h = 0; h < 2; ++h) {
          idx[4 * i + 2 * h] = static_cast<uint8_t>(byte);
          idx[4 * i + 2 * h + 1] = static_cast<uint8_t>(byte + 1);
        }
      }
      pick[extra] = vld1q_u8(idx);
    }
    alignas(16) int16_t s1[8], s2[8];
    for (int i = 0; i < 4; ++i) {
      const int o = (12 * i) % 8;  // 0 or 4
      s1[2 * i] = static_cast<int16_t>(-o);         // code 0 to bits 0..2
      s2[2 * i] = static_cast<int16_t>(5 - o);      // code 1 to bits 8..10
      s1[2 * i + 1] = static_cast<int16_t>(-6 - o);  // code 2 to bits 0..2 of the high half
      s2[2 * i + 1] = static_cast<int16_t>(-1 - o);  // code 3 to bits 8..10 of the high half
    }
    first = vld1q_s16(s1);
    second = vld1q_s16(s2);
    low_mask = vdupq_n_u16(0x0007);
    high_mask = vdupq_n_u16(0x0700);
  }
  uint8x16_t operator()(const uint8_t* group, const uint8_t*, int quad) const {
    const uint8x16_t src = vcombine_u8(vld1_u8(group + (quad < 7 ? 6 * quad : 40)), vdup_n_u8(0));
    const uint16x8_t x = vreinterpretq_u16_u8(vqtbl1q_u8(src, pick[quad == 7]));
    const uint16x8_t a = vandq_u16(vshlq_u16(x, first), low_mask);
    const uint16x8_t b = vandq_u16(vshlq_u16(x, second), high_mask);
    return vreinterpretq_u8_u16(vorrq_u16(a, b));
  }
};

// Levels of codes of <= 4 bits: one TBL.
struct SmallLevels {
  static constexpr int kWide = 0;
  uint8x16_t table;
  SmallLevels(const uint8_t* levels, int) : table(vld1q_u8(levels)) {}
  uint8x16_t operator()(uint8x16_t codes) const { return vqtbl1q_u8(table, codes); }
};

// 5..8 bits: a 4-register TBL (64 entries), then TBX for each further 64 (indices past a
// table's 64 leave the result as it is).
struct WideLevels {
  static constexpr int kWide = 1;
  uint8x16x4_t t[4];
  int tables;
  WideLevels(const uint8_t* levels, int bits) : tables(bits <= 6 ? 1 : bits == 7 ? 2 : 4) {
    for (int i = 0; i < 4; ++i) t[i] = vld1q_u8_x4(levels + 64 * i);
  }
  uint8x16_t operator()(uint8x16_t codes) const {
    uint8x16_t r = vqtbl4q_u8(t[0], codes);
    for (int i = 1; i < tables; ++i) {
      codes = vsubq_u8(codes, vdupq_n_u8(64));
      r = vqtbx4q_u8(r, t[i], codes);
    }
    return r;
  }
};

// The row sums of one query over one quad: 4 int32 lanes, one per row.
struct Accumulator {
#if defined(ROTAQUANT_DOTPROD)
  int32x4_t rows = vdupq_n_s32(0);
  void add(int8x16_t levels, int8x16_t weights) { rows = vdotq_s32(rows, levels, weights); }
  int32x4_t total() const { return rows; }
#else
  int32x4_t low = vdupq_n_s32(0), high = vdupq_n_s32(0);  // pairs of channels of rows 0-1, 2-3
  void add(int8x16_t levels, int8x16_t weights) {
    low = vpadalq_s16(low, vmull_s8(vget_low_s8(levels), vget_low_s8(weights)));
    high = vpadalq_s16(high, vmull_high_s8(levels, weights));
  }
  int32x4_t total() const { return vpaddq_s32(low, high); }
#endif
};

// sums[q][4t..4t+3] += levels . weights over the run's groups in block `block`, a quad of rows
// at a time.
template <int Q, class Codes, class Levels>
inline void run_groups(const ScanArgs& a, const ScanRun& run, const Codes& codes_of, int64_t block,
                       int32_t (&sums)[Q][32]) {
  const uint8_t* first = a.blocks[run.stream] + block * a.block_bytes[run.stream] + run.offset;
  const uint8_t* end = a.ends[run.stream];
  const Levels levels(a.levels[run.stream], run.bits);
  const int group_bytes = 4 * run.channels * run.bits;
  const int8_t* weights = a.weights + Q * run.weight_offset;
  for (int t = 0; t < 8; ++t) {
    Accumulator acc[Q];
    const uint8_t* group = first;
    const int8_t* w = weights;
    for (int g = 0; g < run.count; ++g, group += group_bytes, w += 4 * Q) {
      RQ_MCA_BEGIN(RQ_NEON_NAME, Codes::kBits + 10 * Levels::kWide, Q);
      const int8x16_t lv = vreinterpretq_s8_u8(levels(codes_of(group, end, t)));
      for (int q = 0; q < Q; ++q) acc[q].add(lv, vreinterpretq_s8_s32(vdupq_n_s32(weight_word(w + 4 * q))));
      RQ_MCA_END(RQ_NEON_NAME, Codes::kBits + 10 * Levels::kWide, Q);
    }
    for (int q = 0; q < Q; ++q) vst1q_s32(sums[q] + 4 * t, vaddq_s32(vld1q_s32(sums[q] + 4 * t), acc[q].total()));
  }
}

// Full 2-bit groups by pair tables (kernels.h): each 16-row half of the group's 32 bytes, split
// into nibbles, looks up both pairs' tables; the byte sums (<= 254) widen into 16-bit lanes,
// flushed into the int32 sums every kFlushGroups groups (254 * 256 < 65536).
constexpr int kFlushGroups = 256;

template <int Q, int N>
inline void table_queries(const ScanRun& run, const uint8_t* first, const uint8_t* tables, int q0,
                          int32_t (&sums)[Q][32]) {
  const uint8x16_t nibble = vdupq_n_u8(0x0F);
  for (int g0 = 0; g0 < run.count; g0 += kFlushGroups) {
    const int g1 = run.count - g0 < kFlushGroups ? run.count : g0 + kFlushGroups;
    uint16x8_t acc[N][4];  // rows 0-7, 8-15, 16-23, 24-31
    for (int q = 0; q < N; ++q) {
      for (int i = 0; i < 4; ++i) acc[q][i] = vdupq_n_u16(0);
    }
    for (int g = g0; g < g1; ++g) {
      RQ_MCA_BEGIN(RQ_NEON_NAME, 2, N);
      const uint8_t* codes = first + 32 * g;
      const uint8x16_t x0 = vld1q_u8(codes), x1 = vld1q_u8(codes + 16);
      const uint8x16_t lo0 = vandq_u8(x0, nibble), hi0 = vshrq_n_u8(x0, 4);
      const uint8x16_t lo1 = vandq_u8(x1, nibble), hi1 = vshrq_n_u8(x1, 4);
      const uint8_t* t = tables + 32 * (Q * g + q0);
      for (int q = 0; q < N; ++q) {
        const uint8x16_t t0 = vld1q_u8(t + 32 * q), t1 = vld1q_u8(t + 32 * q + 16);
        const uint8x16_t e0 = vaddq_u8(vqtbl1q_u8(t0, lo0), vqtbl1q_u8(t1, hi0));
        const uint8x16_t e1 = vaddq_u8(vqtbl1q_u8(t0, lo1), vqtbl1q_u8(t1, hi1));
        acc[q][0] = vaddw_u8(acc[q][0], vget_low_u8(e0));
        acc[q][1] = vaddw_high_u8(acc[q][1], e0);
        acc[q][2] = vaddw_u8(acc[q][2], vget_low_u8(e1));
        acc[q][3] = vaddw_high_u8(acc[q][3], e1);
      }
      RQ_MCA_END(RQ_NEON_NAME, 2, N);
    }
    for (int q = 0; q < N; ++q) {
      int32_t* s = sums[q0 + q];
      for (int i = 0; i < 4; ++i) {
        const uint32x4_t lo = vmovl_u16(vget_low_u16(acc[q][i])), hi = vmovl_high_u16(acc[q][i]);
        vst1q_s32(s + 8 * i, vaddq_s32(vld1q_s32(s + 8 * i), vreinterpretq_s32_u32(lo)));
        vst1q_s32(s + 8 * i + 4, vaddq_s32(vld1q_s32(s + 8 * i + 4), vreinterpretq_s32_u32(hi)));
      }
    }
  }
}

// A partial 2-bit group by its single-channel table: decoded codes (row r in 32-bit lane r,
// channel j in byte j) + 4 j index entry 4 j + code; pairwise widening adds sum each lane.
template <int Q>
inline void table_partial(const ScanArgs& a, const ScanRun& run, const Decoder& dec, int64_t block,
                          int32_t (&sums)[Q][32]) {
  const uint8_t* group = a.blocks[run.stream] + block * a.block_bytes[run.stream] + run.offset;
  const uint8_t* tables = reinterpret_cast<const uint8_t*>(a.weights) + Q * run.weight_offset;
  const uint8x16_t spread = vreinterpretq_u8_u32(vdupq_n_u32(0x0C080400u));
  for (int t = 0; t < 8; ++t) {
    const uint8x16_t index = vaddq_u8(dec(group, a.ends[run.stream], t), spread);
    for (int q = 0; q < Q; ++q) {
      const uint8x16_t entries = vqtbl1q_u8(vld1q_u8(tables + 16 * q), index);
      const uint32x4_t rows = vpaddlq_u16(vpaddlq_u8(entries));
      vst1q_s32(sums[q] + 4 * t, vaddq_s32(vld1q_s32(sums[q] + 4 * t), vreinterpretq_s32_u32(rows)));
    }
  }
}

// The report's row lanes (scan_loop.h): a quad of rows, 4 per register.
struct Lanes {
  static constexpr int kRows = 4;
  using Float = float32x4_t;
  static Float factors(const void* f, int half, int first) {
    if (half) {
      return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(static_cast<const uint16_t*>(f) + first)));
    }
    return vld1q_f32(static_cast<const float*>(f) + first);
  }
  static Float load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, Float x) { vst1q_f32(p, x); }
  static Float zero() { return vdupq_n_f32(0.0f); }
  static Float set1(float x) { return vdupq_n_f32(x); }
  static Float fmadd(Float a, Float b, Float c) { return vfmaq_f32(c, a, b); }
  static Float sub(Float a, Float b) { return vsubq_f32(a, b); }
  static Float sums(const int32_t* p) { return vcvtq_f32_s32(vld1q_s32(p)); }
  static uint32_t reaching(Float x, float threshold, uint32_t live) {
    static const uint32_t bit[4] = {1, 2, 4, 8};
    const uint32x4_t pass = vandq_u32(vcgeq_f32(x, vdupq_n_f32(threshold)), vld1q_u32(bit));
    return live & vaddvq_u32(pass);
  }
  static void append(ScanArgs& a, int q, int row0, uint32_t pass, Float lower, Float upper) {
    float up[4], lo[4];
    vst1q_f32(up, upper);
    vst1q_f32(lo, lower);
    append_stored(a, q, row0, pass, lo, up);
  }
};

#include "byte_variant.h"  // block_sums, scan, matmul, pair_tables_of

// ------------------------------------------------------------------------- KV rows
// 8 codes (one group of `bits` bytes) at a time: the group as one 64-bit word, the codes
// shifted out of it, their values looked up, then two 4-lane fused multiply-adds.
struct RowDecoder {
  int bits;
  uint64_t mask;
  const float* values;

  RowDecoder(int b, const float* v) : bits(b), mask((uint64_t(1) << b) - 1), values(v) {}

  // p: a group of 8 codes (`bits` bytes); `end`: end of the buffer
  void decode8(const uint8_t* p, const uint8_t* end, float32x4_t& lo, float32x4_t& hi) const {
    uint64_t word = 0;
    if (p + 8 <= end) {
      std::memcpy(&word, p, 8);
    } else {
      for (int i = 0; i < bits; ++i) word |= uint64_t(p[i]) << (8 * i);
    }
    float v[8];
    for (int j = 0; j < 8; ++j) v[j] = values[(word >> (j * bits)) & mask];
    lo = vld1q_f32(v);
    hi = vld1q_f32(v + 4);
  }
};

void kv_scores(const KvScoresArgs& a) {
  const KvRows& s = a.s;
  const RowDecoder dec(s.bits, s.values);
  const int row_bytes = s.channels * s.bits / 8;
  const int groups = s.channels / 8;
  for (int64_t t = 0; t < a.count; ++t) {
    const uint8_t* row = s.packed + (a.first + t) * row_bytes;
    const float scale = half_to_float(s.scales[a.first + t]);
    for (int q0 = 0; q0 < a.n_queries; q0 += 4) {
      const int nq = a.n_queries - q0 < 4 ? a.n_queries - q0 : 4;
      float32x4_t acc[4];
      for (int q = 0; q < 4; ++q) acc[q] = vdupq_n_f32(0.0f);
      for (int g = 0; g < groups; ++g) {
        float32x4_t lo, hi;
        dec.decode8(row + g * s.bits, s.end, lo, hi);
        for (int q = 0; q < nq; ++q) {
          const float* query = a.queries + (q0 + q) * s.channels + 8 * g;
          acc[q] = vfmaq_f32(vfmaq_f32(acc[q], lo, vld1q_f32(query)), hi, vld1q_f32(query + 4));
        }
      }
      for (int q = 0; q < nq; ++q) a.out[(q0 + q) * a.out_stride + t] += vaddvq_f32(acc[q]) * scale;
    }
  }
}

void kv_weighted_sum(const KvWeightedArgs& a) {
  const KvRows& s = a.s;
  const RowDecoder dec(s.bits, s.values);
  const int row_bytes = s.channels * s.bits / 8;
  for (int c0 = 0; c0 < s.channels; c0 += 32) {  // up to 8 registers of channels
    const int groups = (s.channels - c0 < 32 ? s.channels - c0 : 32) / 8;
    for (int q = 0; q < a.n_queries; ++q) {
      float32x4_t acc[8];
      for (int i = 0; i < 8; ++i) acc[i] = vdupq_n_f32(0.0f);
      const float* w = a.weights + q * a.weights_stride;
      const uint8_t* row = s.packed + a.first * row_bytes + (c0 / 8) * s.bits;
      for (int64_t t = 0; t < a.count; ++t, row += row_bytes) {
        const float32x4_t x = vdupq_n_f32(w[t] * half_to_float(s.scales[a.first + t]));
        for (int g = 0; g < groups; ++g) {
          float32x4_t lo, hi;
          dec.decode8(row + g * s.bits, s.end, lo, hi);
          acc[2 * g] = vfmaq_f32(acc[2 * g], x, lo);
          acc[2 * g + 1] = vfmaq_f32(acc[2 * g + 1], x, hi);
        }
      }
      float* out = a.out + q * s.channels + c0;
      for (int i = 0; i < 2 * groups; ++i) vst1q_f32(out + 4 * i, vaddq_f32(vld1q_f32(out + 4 * i), acc[i]));
    }
  }
}

void kv_decode(const KvDecodeArgs& a) {
  const KvRows& s = a.s;
  const RowDecoder dec(s.bits, s.values);
  const int row_bytes = s.channels * s.bits / 8;
  for (int64_t t = 0; t < a.count; ++t) {
    const uint8_t* row = s.packed + (a.first + t) * row_bytes;
    const float32x4_t scale = vdupq_n_f32(half_to_float(s.scales[a.first + t]));
    float* out = a.out + t * a.out_stride;
    for (int g = 0; g < s.channels / 8; ++g) {
      float32x4_t lo, hi;
      dec.decode8(row + g * s.bits, s.end, lo, hi);
      vst1q_f32(out + 8 * g, vmulq_f32(lo, scale));
      vst1q_f32(out + 8 * g + 4, vmulq_f32(hi, scale));
    }
  }
}

}  // namespace

const Kernels& RQ_NEON_KERNELS() {
  static const Kernels k{RQ_NEON_NAME, kQueries, kTableQueries, 127, 1, scan, nullptr, kv_scores,
                         kv_weighted_sum, kv_decode, matmul, pair_tables_of};
  return k;
}

}  // namespace rq
