// AVX2 variant (+ FMA, F16C), up to 8 queries per pass.
//
// 2-bit classes are scored by pair tables (kernels.h; table_groups in byte_variant.h): one byte shuffle
// looks up two channels' contribution for 32 rows, where the multiply-add path below needs a
// decode of every code to a byte first (measured 4x slower at 2 bits).
//
// Every other class goes through multiply-adds. For each group and quarter block (8 rows) the
// codes become one 256-bit register of bytes, row r in 32-bit lane r, channel j in byte j (a
// decoder per layout: full 4-bit groups split nibbles, full 3-bit groups one shuffle and four
// shift-and-masks, any other layout 16-bit lanes: a byte shuffle puts the two bytes holding
// the code in the lane, a multiply by 2**(8 - shift) lifts the code into the high byte (a
// per-lane shift AVX2 lacks), and a pack returns bytes). One shuffle (a blend tree of shuffles
// for 5..8 bits) maps codes to levels + 64, maddubs multiplies them by the int8 weights and
// adds pairs in int16 (levels stay within +-63, level_max, so that 127 * 127 * 2 cannot
// saturate), and madd adds the pairs into the row's int32 sum. The decode and the level
// shuffle are shared by the queries of a pass: 8 queries (8 accumulators + the decoder's
// registers fit the 16) make them cost an eighth per query. Loads stay inside the stream's
// buffer (inside the group for the 3- and 4-bit decoders; plain loads away from the buffer's
// end, dword-masked near it, for the others).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "codes.h"
#include "half.h"
#include "kernels.h"
#include "kv_rows_256.h"
#include "matmul.h"
#include "mca.h"
#include "pair_tables.h"
#include "scan_loop.h"

namespace rq {
namespace {

constexpr int kQueries = 8;
// pair tables: 2 accumulators per query; 3 queries measured 1.14x (20k rows) and 1.19x (200k)
// the batched speed of 4 on MPNet-768 (4 leave too few of the 16 registers: spills)
constexpr int kTableQueries = 3;

struct Bytes32 {
  alignas(32) uint8_t v[32];
};

// Any layout: rows 8t..8t+7 of a group from the group's bytes, through 16-bit lanes.
struct Decoder {
  static constexpr int kBits = 0;  // any (mca.h)
  int bits;
  // per 4 rows (one 128-bit half): aligned window start (bytes, relative to the group) and
  // dword mask, byte-pair shuffles for the two halves of 8 codes, multipliers
  int window[8];
  int mask_dwords[8];
  Bytes32 pairs[8];        // [quad of rows]: shuffle for codes 0..7 (lo) and 8..15 (hi)
  uint16_t multiplier[8][16];

  void init(int c, int b) {
    bits = b;
    const int group_bytes = 4 * c * b;
    for (int quad = 0; quad < 8; ++quad) {  // rows 4*quad .. 4*quad + 3
      const int first_bit = 4 * quad * c * b;
      const int start = (first_bit >> 3) & ~3;
      window[quad] = start;
      const int end = ((4 * (quad + 1) * c * b + 7) >> 3);
      int dwords = (end - start + 3) / 4;
      if (start + 4 * dwords > group_bytes) dwords = (group_bytes - start) / 4;
      mask_dwords[quad] = dwords > 4 ? 4 : dwords;
      for (int p = 0; p < 16; ++p) {  // code p: row 4*quad + p/4, slot p%4
        const int row = 4 * quad + p / 4;
        const int slot = p % 4 < c ? p % 4 : 0;
        const int bit = (row * c + slot) * b;
        const int byte = (bit >> 3) - start;
        const int half = p / 8, lane = p % 8;
        pairs[quad].v[16 * half + 2 * lane] = static_cast<uint8_t>(byte);
        pairs[quad].v[16 * half + 2 * lane + 1] = static_cast<uint8_t>(byte + 1 < 16 ? byte + 1 : 15);
        multiplier[quad][p] = static_cast<uint16_t>(1u << (8 - (bit & 7)));
      }
    }
  }

  // 16 codes (rows 4*quad..4*quad+3, 4 slots each) as bytes
  // `end`: end of the stream's buffer; a plain load is used whenever it stays below it
  // (masked loads are much slower on some CPUs)
  __m128i quad_codes(const uint8_t* group, const uint8_t* end, int quad) const {
    const uint8_t* at = group + window[quad];
    __m128i src;
    if (__builtin_expect(at + 16 <= end, 1)) {
      src = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
    } else {
      const __m128i mask = _mm_cmpgt_epi32(_mm_set1_epi32(mask_dwords[quad]), _mm_setr_epi32(0, 1, 2, 3));
      src = _mm_maskload_epi32(reinterpret_cast<const int*>(at), mask);
    }
    const __m128i lo = _mm_shuffle_epi8(src, _mm_load_si128(reinterpret_cast<const __m128i*>(pairs[quad].v)));
    const __m128i hi = _mm_shuffle_epi8(src, _mm_load_si128(reinterpret_cast<const __m128i*>(pairs[quad].v + 16)));
    const __m128i m_lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(multiplier[quad]));
    const __m128i m_hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(multiplier[quad] + 8));
    const __m128i a = _mm_srli_epi16(_mm_mullo_epi16(lo, m_lo), 8);
    const __m128i b = _mm_srli_epi16(_mm_mullo_epi16(hi, m_hi), 8);
    return _mm_and_si128(_mm_packus_epi16(a, b), _mm_set1_epi8(static_cast<char>((1 << bits) - 1)));
  }

  __m256i operator()(const uint8_t* group, const uint8_t* end, int t) const {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(quad_codes(group, end, 2 * t)),
                                   quad_codes(group, end, 2 * t + 1), 1);
  }
};

// Full 4-bit groups: row r holds bytes 2r (channels 0, 1) and 2r+1 (channels 2, 3), low
// nibble first; rows 8t..8t+7 are the group's bytes 16t..16t+15.
struct NibbleCodes {
  static constexpr int kBits = 4;
  __m128i low = _mm_set1_epi8(0x0F);
  __m256i operator()(const uint8_t* group, const uint8_t*, int t) const {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(group + 16 * t));
    const __m128i lo = _mm_and_si128(x, low);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), low);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(lo, hi)),
                                   _mm_unpackhi_epi8(lo, hi), 1);
  }
};

// Full 3-bit groups (48 bytes): row r's 12 bits start at bit 12r, so at byte 1.5r (even r) or
// 4 bits into byte 1.5r - 0.5 (odd r). Rows 8t..8t+7 are 12 bytes from 12t: a 16-byte load
// inside the group (from byte 32 for t = 3, the shuffle indices 4 further), one byte shuffle
// puts the row's two bytes twice into its 32-bit lane, a variable shift drops the odd rows' 4
// bits (each 16-bit half then holds the row's bits 0..11 = codes 0..3), and three 16-bit shifts
// and byte masks move code j to byte j (only its 3 bits kept).
struct TripleCodes {
  static constexpr int kBits = 3;
  __m256i pick[2], odd, m0, m1, m2, m3;
  TripleCodes() {
    for (int extra = 0; extra < 2; ++extra) {
      const char e = static_cast<char>(4 * extra);
      pick[extra] = _mm256_add_epi8(
          _mm256_setr_epi8(0, 1, 0, 1, 1, 2, 1, 2, 3, 4, 3, 4, 4, 5, 4, 5,  //
                           6, 7, 6, 7, 7, 8, 7, 8, 9, 10, 9, 10, 10, 11, 10, 11),
          _mm256_set1_epi8(e));
    }
    odd = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
    m0 = _mm256_set1_epi32(0x00000007);
    m1 = _mm256_set1_epi32(0x00000700);
    m2 = _mm256_set1_epi32(0x00070000);
    m3 = _mm256_set1_epi32(0x07000000);
  }
  __m256i operator()(const uint8_t* group, const uint8_t*, int t) const {
    const int at = t < 3 ? 12 * t : 32;
    const __m128i src = _mm_loadu_si128(reinterpret_cast<const __m128i*>(group + at));
    const __m256i x = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(src), pick[t == 3]);
    const __m256i w = _mm256_srlv_epi32(x, odd);
    const __m256i c0 = _mm256_and_si256(w, m0);
    const __m256i c1 = _mm256_and_si256(_mm256_slli_epi16(w, 5), m1);
    const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(w, 6), m2);
    const __m256i c3 = _mm256_and_si256(_mm256_srli_epi16(w, 1), m3);
    return _mm256_or_si256(_mm256_or_si256(c0, c1), _mm256_or_si256(c2, c3));
  }
};

inline __m256i table16(const uint8_t* t) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}

// Levels (+ offset) of codes of <= 4 bits: one shuffle.
struct SmallLevels {
  static constexpr int kWide = 0;
  __m256i table;
  SmallLevels(const uint8_t* levels, int) : table(table16(levels)) {}
  __m256i operator()(__m256i codes) const { return _mm256_shuffle_epi8(table, codes); }
};

// 5..8 bits: a shuffle per 16 codes and a blend tree on the code's high bits.
struct WideLevels {
  static constexpr int kWide = 1;
  const uint8_t* levels;
  int bits;
  WideLevels(const uint8_t* l, int b) : levels(l), bits(b) {}
  __m256i operator()(__m256i codes) const {
    __m256i r[16];
    const int subs = 1 << (bits - 4);
    const __m256i low = _mm256_and_si256(codes, _mm256_set1_epi8(0x0F));
    for (int s = 0; s < subs; ++s) r[s] = _mm256_shuffle_epi8(table16(levels + 16 * s), low);
    for (int level = 0, n = subs; n > 1; ++level, n /= 2) {
      // bit 4 + level of the code moved to each byte's sign bit (codes < 256: no carry across)
      const __m256i select = level < 3 ? _mm256_sll_epi16(codes, _mm_cvtsi32_si128(3 - level)) : codes;
      for (int s = 0; s < n / 2; ++s) r[s] = _mm256_blendv_epi8(r[2 * s], r[2 * s + 1], select);
    }
    return r[0];
  }
};

// sums[q][8t..8t+7] += levels . weights over the run's groups in block `block`, one quarter
// block (8 rows: one register per query) at a time, so that the accumulators of 8 queries fit
// the 16 registers beside the decoder's.
template <int Q, class Codes, class Levels>
inline void run_groups(const ScanArgs& a, const ScanRun& run, const Codes& codes_of, int64_t block,
                       int32_t (&sums)[Q][32]) {
  const uint8_t* first = a.blocks[run.stream] + block * a.block_bytes[run.stream] + run.offset;
  const uint8_t* end = a.ends[run.stream];
  const Levels levels(a.levels[run.stream], run.bits);
  const __m256i ones = _mm256_set1_epi16(1);
  const int group_bytes = 4 * run.channels * run.bits;
  const int8_t* weights = a.weights + Q * run.weight_offset;
#pragma GCC unroll 4
  for (int t = 0; t < 4; ++t) {
    __m256i acc[Q];
    for (int q = 0; q < Q; ++q) acc[q] = _mm256_load_si256(reinterpret_cast<const __m256i*>(sums[q] + 8 * t));
    const uint8_t* group = first;
    const int8_t* w = weights;
    for (int g = 0; g < run.count; ++g, group += group_bytes, w += 4 * Q) {
      RQ_MCA_BEGIN("avx2", Codes::kBits + 10 * Levels::kWide, Q);
      const __m256i lv = levels(codes_of(group, end, t));
#pragma GCC unroll 8
      for (int q = 0; q < Q; ++q) {
        const __m256i pairs = _mm256_maddubs_epi16(lv, _mm256_set1_epi32(weight_word(w + 4 * q)));
        acc[q] = _mm256_add_epi32(acc[q], _mm256_madd_epi16(pairs, ones));  // 127 * 127 * 2 fits int16
      }
      RQ_MCA_END("avx2", Codes::kBits + 10 * Levels::kWide, Q);
    }
    for (int q = 0; q < Q; ++q) _mm256_store_si256(reinterpret_cast<__m256i*>(sums[q] + 8 * t), acc[q]);
  }
}

// Full 2-bit groups by pair tables (kernels.h): a group's 32 bytes are its 32 rows, each row's
// channel pairs in the low and the high nibble. Per query, a byte shuffle of each pair's table
// and one byte add give both pairs' entries (<= 254), which go into 16-bit lanes as (even row +
// 256 odd row) and, shifted, odd row alone: even = mixed - 256 odd, exact modulo 2**16 while
// the true sums stay below it (254 * kFlushGroups < 65536), so the lanes are flushed into the
// int32 sums every kFlushGroups groups. Queries go kTableQueries at a time (two accumulators
// each).
constexpr int kFlushGroups = 256;

inline void flush_rows(__m256i mixed, __m256i odd, int32_t* sums) {
  const __m256i even = _mm256_sub_epi16(mixed, _mm256_slli_epi16(odd, 8));
  const __m256i lo = _mm256_unpacklo_epi16(even, odd);  // rows 0..7 | 16..23, in order
  const __m256i hi = _mm256_unpackhi_epi16(even, odd);  // rows 8..15 | 24..31
  const __m128i parts[4] = {_mm256_castsi256_si128(lo), _mm256_castsi256_si128(hi),
                            _mm256_extracti128_si256(lo, 1), _mm256_extracti128_si256(hi, 1)};
  for (int p = 0; p < 4; ++p) {
    __m256i* at = reinterpret_cast<__m256i*>(sums + 8 * p);
    _mm256_store_si256(at, _mm256_add_epi32(_mm256_load_si256(at), _mm256_cvtepu16_epi32(parts[p])));
  }
}

// Queries q0..q0+N-1 of a pass of Q.
template <int Q, int N>
inline void table_queries(const ScanRun& run, const uint8_t* first, const uint8_t* tables, int q0,
                          int32_t (&sums)[Q][32]) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  for (int g0 = 0; g0 < run.count; g0 += kFlushGroups) {
    const int g1 = run.count - g0 < kFlushGroups ? run.count : g0 + kFlushGroups;
    __m256i mixed[N], odd[N];
    for (int q = 0; q < N; ++q) mixed[q] = odd[q] = _mm256_setzero_si256();
    for (int g = g0; g < g1; ++g) {
      RQ_MCA_BEGIN("avx2", 2, N);
      const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(first + 32 * g));
      const __m256i lo = _mm256_and_si256(codes, nibble);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(codes, 4), nibble);
      const uint8_t* t = tables + 32 * (Q * g + q0);
#pragma GCC unroll 4
      for (int q = 0; q < N; ++q) {
        const __m256i t0 = table16(t + 32 * q), t1 = table16(t + 32 * q + 16);
        const __m256i both = _mm256_add_epi8(_mm256_shuffle_epi8(t0, lo), _mm256_shuffle_epi8(t1, hi));
        mixed[q] = _mm256_add_epi16(mixed[q], both);
        odd[q] = _mm256_add_epi16(odd[q], _mm256_srli_epi16(both, 8));
      }
      RQ_MCA_END("avx2", 2, N);
    }
    for (int q = 0; q < N; ++q) flush_rows(mixed[q], odd[q], sums[q0 + q]);
  }
}

// A partial 2-bit group by its single-channel table: the generic decoder's codes (row r in
// 32-bit lane r, channel j in byte j) plus 4 j index entry 4 j + code; the lane's bytes add up
// by two dot products with ones (channels past the group's have zero entries).
template <int Q>
inline void table_partial(const ScanArgs& a, const ScanRun& run, const Decoder& dec, int64_t block,
                          int32_t (&sums)[Q][32]) {
  const uint8_t* group = a.blocks[run.stream] + block * a.block_bytes[run.stream] + run.offset;
  const uint8_t* tables = reinterpret_cast<const uint8_t*>(a.weights) + Q * run.weight_offset;
  const __m256i spread = _mm256_set1_epi32(0x0C080400);
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int t = 0; t < 4; ++t) {
    const __m256i index = _mm256_add_epi8(dec(group, a.ends[run.stream], t), spread);
    for (int q = 0; q < Q; ++q) {
      const __m256i table = table16(tables + 16 * q);
      const __m256i entries = _mm256_shuffle_epi8(table, index);
      const __m256i row = _mm256_madd_epi16(_mm256_maddubs_epi16(entries, ones8), ones16);
      __m256i* at = reinterpret_cast<__m256i*>(sums[q] + 8 * t);
      _mm256_store_si256(at, _mm256_add_epi32(_mm256_load_si256(at), row));
    }
  }
}

// The report's row lanes (scan_loop.h): a quarter block, 8 rows, per register.
struct Lanes {
  static constexpr int kRows = 8;
  using Float = __m256;
  static Float factors(const void* f, int half, int first) {
    if (half) {
      return _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(f) + first)));
    }
    return _mm256_loadu_ps(static_cast<const float*>(f) + first);
  }
  static Float load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Float x) { _mm256_storeu_ps(p, x); }
  static Float zero() { return _mm256_setzero_ps(); }
  static Float set1(float x) { return _mm256_set1_ps(x); }
  static Float fmadd(Float a, Float b, Float c) { return _mm256_fmadd_ps(a, b, c); }
  static Float sub(Float a, Float b) { return _mm256_sub_ps(a, b); }
  static Float sums(const int32_t* p) {
    return _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static uint32_t reaching(Float x, float threshold, uint32_t live) {
    return live & static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_set1_ps(threshold), _CMP_GE_OQ)));
  }
  // AVX2 has no compressing store: the lanes go through memory, one row per passing bit
  static void append(ScanArgs& a, int q, int row0, uint32_t pass, Float lower, Float upper) {
    alignas(32) float up[8], lo[8];
    _mm256_store_ps(up, upper);
    _mm256_store_ps(lo, lower);
    append_stored(a, q, row0, pass, lo, up);
  }
};

#include "byte_variant.h"  // block_sums, scan, matmul, pair_tables_of

// ------------------------------------------------------------------------- KV rows
// kv_rows_256.h (shared with the AVX-512 variant)
using namespace kv256;

// ------------------------------------------------------------------------- re-scoring
// Row r of two full groups at once: each group's 4 codes of the row are 4 * bits bits from bit
// r * 4 * bits of the group (one 8-byte read, shifted), broadcast to four 32-bit lanes and
// shifted per lane to code j, masked; the values come from a float permute (<= 3 bits), two
// permutes and a blend (4 bits) or a gather, and one fused multiply-add with 8 query channels.
float rescore(const RescoreStream& s, int r) {
  const int b = s.bits;
  const int group_bytes = 16 * b;
  const int bit0 = r * 4 * b;
  const int byte0 = bit0 >> 3, shift = bit0 & 7;
  const uint32_t mask = (1u << b) - 1;
  const auto word = [&](const uint8_t* group) -> uint32_t {
    const uint8_t* p = group + byte0;
    uint64_t w = 0;
    if (p + 8 <= s.end) {
      std::memcpy(&w, p, 8);
    } else {
      for (int i = 0; p + i < s.end && i < 8; ++i) w |= uint64_t(p[i]) << (8 * i);
    }
    return static_cast<uint32_t>(w >> shift);
  };
  const RowDecoder values(b, s.values);
  const __m256i shifts = _mm256_setr_epi32(0, b, 2 * b, 3 * b, 0, b, 2 * b, 3 * b);
  const __m256i masks = _mm256_set1_epi32(static_cast<int>(mask));
  __m256 acc = _mm256_setzero_ps();
  int g = 0;
  for (; g + 2 <= s.full_groups; g += 2) {
    const uint8_t* group = s.block + g * group_bytes;
    const __m256i w = _mm256_setr_m128i(_mm_set1_epi32(static_cast<int>(word(group))),
                                        _mm_set1_epi32(static_cast<int>(word(group + group_bytes))));
    const __m256i codes = _mm256_and_si256(_mm256_srlv_epi32(w, shifts), masks);
    acc = _mm256_fmadd_ps(b <= 3 ? values.lookup<kSmall>(codes) : b == 4 ? values.lookup<kNibble>(codes) : values.lookup<kWide>(codes),
                          _mm256_loadu_ps(s.query + 4 * g), acc);
  }
  float total = sum8(acc);
  for (; g < s.full_groups; ++g) {
    const uint32_t w = word(s.block + g * group_bytes);
    for (int j = 0; j < 4; ++j) total += s.query[4 * g + j] * s.values[(w >> (j * b)) & mask];
  }
  const uint8_t* tail = s.block + g * group_bytes;
  for (int j = 0; j < s.tail_channels; ++j) {
    total += s.query[4 * g + j] * s.values[read_code(tail, s.tail_channels, b, r, j)];
  }
  return total;
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{"avx2", kQueries, kTableQueries, 63, 0, scan, rescore, kv_scores, kv_weighted_sum, kv_decode, matmul,
                         pair_tables_of};
  return k;
}

}  // namespace rq
