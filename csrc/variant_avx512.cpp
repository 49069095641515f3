// AVX-512 variant (F, BW, VL, DQ, VBMI, VNNI), up to 16 queries per pass.
//
// For each group and half block (16 rows), one masked load brings the rows' codes (at most 64
// bytes), a byte permute puts each 32-bit lane's source bytes (row r, channels 0..3) into its
// 64-bit lane and a multishift cuts out the codes at their bit offsets: one code per byte,
// row r in lane r. One shuffle (or permute, for 5..8 bits) maps codes to levels + 128, and one
// vpdpbusd per query adds level * weight over the lane's four channels into the row's int32
// sum. Channels past a partial group carry weight 0.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "codes.h"
#include "half.h"
#include "kernels.h"
#include "kv_rows_256.h"
#include "matmul.h"
#include "mca.h"
#include "scan_loop.h"

namespace rq {
namespace {

constexpr int kQueries = 16;

struct Bytes64 {
  alignas(64) uint8_t v[64];
};

// Byte-permute indices and multishift offsets that decode 16 rows of a group of `channels`
// channels at `bits` bits (relative to the half block's first byte).
struct Decoder {
  Bytes64 index, offset;
  uint64_t load_mask;
  int half_bytes;

  void init(int channels, int bits) {
    half_bytes = 2 * channels * bits;  // 16 rows
    load_mask = half_bytes >= 64 ? ~uint64_t(0) : (uint64_t(1) << half_bytes) - 1;
    for (int i = 0; i < 8; ++i) {  // 64-bit lane i: rows 2i and 2i + 1
      const int base = (2 * i * channels * bits) >> 3;
      for (int t = 0; t < 8; ++t) index.v[8 * i + t] = static_cast<uint8_t>(base + t < 64 ? base + t : 63);
      for (int p = 0; p < 8; ++p) {
        const int row = 2 * i + p / 4;
        const int slot = p % 4 < channels ? p % 4 : 0;
        offset.v[8 * i + p] = static_cast<uint8_t>((row * channels + slot) * bits - 8 * base);
      }
    }
  }

  // Checked: the 64 bytes from `half` may pass `end`, the end of the stream's buffer (a masked
  // load then; masked loads are much slower on some CPUs); otherwise they are known to stay
  // below it
  template <bool Checked>
  __m512i codes(const uint8_t* half, const uint8_t* end, int bits) const {
    const __m512i src = !Checked || half + 64 <= end ? _mm512_loadu_si512(half)
                                                     : _mm512_maskz_loadu_epi8(load_mask, half);
    const __m512i gathered = _mm512_permutexvar_epi8(_mm512_load_si512(index.v), src);
    const __m512i cut = _mm512_multishift_epi64_epi8(_mm512_load_si512(offset.v), gathered);
    return _mm512_and_si512(cut, _mm512_set1_epi8(static_cast<char>((1 << bits) - 1)));
  }
};

// Level (+ offset) of each code byte: LevelKind 0 (<= 4 bits: 16-entry shuffle), 1 (<= 6 bits:
// 64-entry permute), 2 (7 bits: 128 entries), 3 (8 bits: 256).
template <int LevelKind>
struct Levels {
  __m512i t0, t1, t2, t3;
  explicit Levels(const uint8_t* table) {
    if (LevelKind == 0) {
      t0 = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table)));
    } else {
      t0 = _mm512_loadu_si512(table);
      if (LevelKind >= 2) t1 = _mm512_loadu_si512(table + 64);
      if (LevelKind == 3) {
        t2 = _mm512_loadu_si512(table + 128);
        t3 = _mm512_loadu_si512(table + 192);
      }
    }
  }
  __m512i operator()(__m512i codes) const {
    if (LevelKind == 0) return _mm512_shuffle_epi8(t0, codes);
    if (LevelKind == 1) return _mm512_permutexvar_epi8(codes, t0);
    const __m512i lo = _mm512_permutex2var_epi8(t0, codes, t1);
    if (LevelKind == 2) return lo;
    const __m512i hi = _mm512_permutex2var_epi8(t2, codes, t3);
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(codes), lo, hi);
  }
};

// acc[q] += levels . weights over the run's groups, for half `h` (rows 16h..16h+15) of block
// `block`: one half at a time, so that 16 queries' accumulators fit the registers beside the
// decoder's (arrays of vectors indexed through a reference would stay in memory: the loop
// works on a local copy). Few queries would leave the loop waiting on the latency of one
// dot-product chain per query: Chains independent chains take consecutive groups in turn.
template <int Q, int LevelKind, bool Checked>
inline void run_groups(const ScanArgs& a, const ScanRun& run, const Decoder& dec, int64_t block,
                       int h, __m512i (&acc)[Q]) {
  constexpr int Chains = Q >= 4 ? 1 : Q == 1 ? 4 : 2;
  const uint8_t* group =
      a.blocks[run.stream] + block * a.block_bytes[run.stream] + run.offset + h * dec.half_bytes;
  const uint8_t* end = a.ends[run.stream];
  const Levels<LevelKind> levels(a.levels[run.stream]);
  const int group_bytes = 4 * run.channels * run.bits;
  const int8_t* weights = a.weights + Q * run.weight_offset;
  __m512i local[Chains][Q];
  for (int q = 0; q < Q; ++q) {
    local[0][q] = acc[q];
    for (int c = 1; c < Chains; ++c) local[c][q] = _mm512_setzero_si512();
  }
  int g = 0;
  for (; g + Chains <= run.count; g += Chains, group += Chains * group_bytes, weights += 4 * Q * Chains) {
    RQ_MCA_BEGIN("avx512", LevelKind, Q);
#pragma GCC unroll 4
    for (int c = 0; c < Chains; ++c) {
      const __m512i lv = levels(dec.codes<Checked>(group + c * group_bytes, end, run.bits));
#pragma GCC unroll 16
      for (int q = 0; q < Q; ++q) {
        local[c][q] = _mm512_dpbusd_epi32(local[c][q], lv,
                                          _mm512_set1_epi32(weight_word(weights + 4 * (Q * c + q))));
      }
    }
    RQ_MCA_END("avx512", LevelKind, Q);
  }
  for (; g < run.count; ++g, group += group_bytes, weights += 4 * Q) {
    const __m512i lv = levels(dec.codes<Checked>(group, end, run.bits));
    for (int q = 0; q < Q; ++q) {
      local[0][q] = _mm512_dpbusd_epi32(local[0][q], lv, _mm512_set1_epi32(weight_word(weights + 4 * q)));
    }
  }
  for (int q = 0; q < Q; ++q) {
    for (int c = 1; c < Chains; ++c) local[0][q] = _mm512_add_epi32(local[0][q], local[c][q]);
    acc[q] = local[0][q];
  }
}

template <bool Checked, int Q>
inline void block_sums(const ScanArgs& a, const Decoder* decoders, int64_t block,
                       int32_t (&sums)[kMaxClasses][Q][32]) {
  for (int h = 0; h < 2; ++h) {
    __m512i acc[Q];
    for (int q = 0; q < Q; ++q) acc[q] = _mm512_setzero_si512();
    int cls = a.runs[0].cls;
    for (int i = 0; i < a.n_runs; ++i) {
      const ScanRun& run = a.runs[i];
      if (run.cls != cls) {  // runs come sorted by class: park the finished class's sums
        for (int q = 0; q < Q; ++q) {
          _mm512_store_si512(sums[cls][q] + 16 * h, acc[q]);
          acc[q] = _mm512_setzero_si512();
        }
        cls = run.cls;
      }
      if (run.bits <= 4) {
        run_groups<Q, 0, Checked>(a, run, decoders[i], block, h, acc);
      } else if (run.bits <= 6) {
        run_groups<Q, 1, Checked>(a, run, decoders[i], block, h, acc);
      } else if (run.bits == 7) {
        run_groups<Q, 2, Checked>(a, run, decoders[i], block, h, acc);
      } else {
        run_groups<Q, 3, Checked>(a, run, decoders[i], block, h, acc);
      }
    }
    for (int q = 0; q < Q; ++q) _mm512_store_si512(sums[cls][q] + 16 * h, acc[q]);
  }
}

// The report's row lanes (scan_loop.h): a half block, 16 rows, per register.
struct Lanes {
  static constexpr int kRows = 16;
  using Float = __m512;
  static Float factors(const void* f, int half, int first) {
    if (half) {
      return _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(f) + first)));
    }
    return _mm512_loadu_ps(static_cast<const float*>(f) + first);
  }
  static Float load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Float x) { _mm512_storeu_ps(p, x); }
  static Float zero() { return _mm512_setzero_ps(); }
  static Float set1(float x) { return _mm512_set1_ps(x); }
  static Float fmadd(Float a, Float b, Float c) { return _mm512_fmadd_ps(a, b, c); }
  static Float sub(Float a, Float b) { return _mm512_sub_ps(a, b); }
  static Float sums(const int32_t* p) { return _mm512_cvtepi32_ps(_mm512_load_si512(p)); }
  static uint32_t reaching(Float x, float threshold, uint32_t live) {
    return _mm512_mask_cmp_ps_mask(static_cast<__mmask16>(live), x, _mm512_set1_ps(threshold), _CMP_GE_OQ);
  }
  // inlined as the rest of the report is (GCC would keep one out-of-line copy for the 32
  // instantiations: a call for every register with a passing row)
  [[gnu::always_inline]] static void append(ScanArgs& a, int q, int row0, uint32_t pass, Float lower,
                                            Float upper) {
    const __mmask16 m = static_cast<__mmask16>(pass);
    const int n = a.counts[q];
    const __m512i rows = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(row0));
    _mm512_mask_compressstoreu_epi32(a.rows[q] + n, m, rows);
    _mm512_mask_compressstoreu_ps(a.lower[q] + n, m, lower);
    _mm512_mask_compressstoreu_ps(a.upper[q] + n, m, upper);
    a.counts[q] = n + __builtin_popcount(pass);
  }
};

void scan(ScanArgs& a) {
  Decoder decoders[kMaxRuns];
  for (int i = 0; i < a.n_runs; ++i) decoders[i].init(a.runs[i].channels, a.runs[i].bits);
  // blocks before `unchecked_end` are followed by at least 64 bytes of every stream's
  // buffer, so their loads need no bounds test
  int64_t unchecked_end = a.n_blocks;
  for (int s = 0; s < 4; ++s) {
    if (!a.blocks[s]) continue;
    const int64_t room = a.ends[s] - a.blocks[s] - 64;
    unchecked_end = std::min(unchecked_end, room < 0 ? 0 : room / a.block_bytes[s]);
  }
  scan_with<Lanes, kQueries>(a, [&](int64_t b, auto& sums) {
    if (b < unchecked_end) {
      block_sums<false>(a, decoders, b, sums);
    } else {
      block_sums<true>(a, decoders, b, sums);
    }
  });
}

void matmul(const MatmulArgs& a) { matmul_with<Lanes>(a); }

// ------------------------------------------------------------------------- KV rows
// Scores: kv_rows_256.h (256-bit lanes measured faster there). Weighted sums and decoding: 64
// codes of a row (8 per `bits` bytes) at a time: a byte permute puts each 8-code group's
// bytes in its 64-bit lane, multishift cuts the codes, and a float permute (<= 5 bits) or a
// gather maps them to values. Full chunks of 64 go through straight-line code (four named
// registers: arrays of vectors indexed by a run-time bound end up on the stack); a row's last
// partial chunk through the masked path.
struct Quad {
  __m512 v0, v1, v2, v3;
};

struct RowDecoder {
  Bytes64 index, offset;
  int bits;
  __m512 table0, table1;
  const float* values;

  RowDecoder(int b, const float* v) : bits(b), values(v) {
    for (int i = 0; i < 8; ++i) {
      for (int t = 0; t < 8; ++t) index.v[8 * i + t] = static_cast<uint8_t>(i * b + t < 64 ? i * b + t : 63);
      for (int j = 0; j < 8; ++j) offset.v[8 * i + j] = static_cast<uint8_t>(j * b);
    }
    float padded[32] = {};
    for (int c = 0; c < (1 << b) && c < 32; ++c) padded[c] = v[c];
    table0 = _mm512_loadu_ps(padded);
    table1 = _mm512_loadu_ps(padded + 16);
  }

  // lanes of register k holding one of n codes (n a multiple of 8)
  static __mmask16 lanes(int n, int k) { return 16 * k + 16 <= n ? 0xFFFF : 0x00FF; }

  __m512i codes(const uint8_t* p, int n, const uint8_t* end) const {
    const int bytes = n * bits / 8;
    const __m512i src = p + 64 <= end ? _mm512_loadu_si512(p)
                                      : _mm512_maskz_loadu_epi8(bytes >= 64 ? ~uint64_t(0) : (uint64_t(1) << bytes) - 1, p);
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(_mm512_load_si512(offset.v),
                                                         _mm512_permutexvar_epi8(_mm512_load_si512(index.v), src)),
                            _mm512_set1_epi8(static_cast<char>((1 << bits) - 1)));
  }

  __m512 value(__m512i codes, int k, __mmask16 m) const {
    const __m512i idx = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(codes, k));
    if (bits <= 4) return _mm512_maskz_permutexvar_ps(m, idx, table0);
    if (bits == 5) return _mm512_maskz_permutex2var_ps(m, table0, idx, table1);
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, values, 4);
  }

  Quad full(const uint8_t* p, const uint8_t* end) const {
    const __m512i c = codes(p, 64, end);
    return {value(c, 0, 0xFFFF), value(c, 1, 0xFFFF), value(c, 2, 0xFFFF), value(c, 3, 0xFFFF)};
  }

  // codes [0, n) of a partial chunk (n < 64): lanes past n zero
  Quad part(const uint8_t* p, int n, const uint8_t* end) const {
    const __m512i c = codes(p, n, end);
    const __m512 z = _mm512_setzero_ps();
    return {value(c, 0, lanes(n, 0)), n > 16 ? value(c, 1, lanes(n, 1)) : z,
            n > 32 ? value(c, 2, lanes(n, 2)) : z, n > 48 ? value(c, 3, lanes(n, 3)) : z};
  }
};

// acc += w * x over one chunk
inline void axpy(__m512 w, const Quad& x, Quad& acc) {
  acc.v0 = _mm512_fmadd_ps(w, x.v0, acc.v0);
  acc.v1 = _mm512_fmadd_ps(w, x.v1, acc.v1);
  acc.v2 = _mm512_fmadd_ps(w, x.v2, acc.v2);
  acc.v3 = _mm512_fmadd_ps(w, x.v3, acc.v3);
}

inline void add_into(float* out, const Quad& acc, int n) {
  const __m512 parts[4] = {acc.v0, acc.v1, acc.v2, acc.v3};
  for (int k = 0; 16 * k < n; ++k) {
    const __mmask16 m = RowDecoder::lanes(n, k);
    _mm512_mask_storeu_ps(out + 16 * k, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, out + 16 * k), parts[k]));
  }
}

void kv_weighted_sum(const KvWeightedArgs& a) {
  const KvRows& s = a.s;
  const RowDecoder dec(s.bits, s.values);
  const int row_bytes = s.channels * s.bits / 8;
  for (int c0 = 0; c0 < s.channels; c0 += 64) {
    const int n = s.channels - c0 < 64 ? s.channels - c0 : 64;
    const uint8_t* first = s.packed + a.first * row_bytes + c0 * s.bits / 8;
    for (int q0 = 0; q0 < a.n_queries; q0 += 4) {
      const int nq = a.n_queries - q0 < 4 ? a.n_queries - q0 : 4;
      const __m512 z = _mm512_setzero_ps();
      Quad acc0{z, z, z, z}, acc1 = acc0, acc2 = acc0, acc3 = acc0;
      const float* w0 = a.weights + q0 * a.weights_stride;
      const uint8_t* row = first;
      for (int64_t t = 0; t < a.count; ++t, row += row_bytes) {
        const Quad x = n == 64 ? dec.full(row, s.end) : dec.part(row, n, s.end);
        const float scale = half_to_float(s.scales[a.first + t]);
        axpy(_mm512_set1_ps(w0[t] * scale), x, acc0);
        if (nq > 1) axpy(_mm512_set1_ps(w0[a.weights_stride + t] * scale), x, acc1);
        if (nq > 2) axpy(_mm512_set1_ps(w0[2 * a.weights_stride + t] * scale), x, acc2);
        if (nq > 3) axpy(_mm512_set1_ps(w0[3 * a.weights_stride + t] * scale), x, acc3);
      }
      const Quad* accs[4] = {&acc0, &acc1, &acc2, &acc3};
      for (int q = 0; q < nq; ++q) add_into(a.out + (q0 + q) * s.channels + c0, *accs[q], n);
    }
  }
}

void kv_decode(const KvDecodeArgs& a) {
  const KvRows& s = a.s;
  const RowDecoder dec(s.bits, s.values);
  const int row_bytes = s.channels * s.bits / 8;
  for (int64_t t = 0; t < a.count; ++t) {
    const uint8_t* row = s.packed + (a.first + t) * row_bytes;
    const __m512 scale = _mm512_set1_ps(half_to_float(s.scales[a.first + t]));
    float* out = a.out + t * a.out_stride;
    for (int c0 = 0; c0 < s.channels; c0 += 64, row += 8 * s.bits) {
      const int n = s.channels - c0 < 64 ? s.channels - c0 : 64;
      const Quad x = n == 64 ? dec.full(row, s.end) : dec.part(row, n, s.end);
      const __m512 parts[4] = {x.v0, x.v1, x.v2, x.v3};
      for (int k = 0; 16 * k < n; ++k) {
        _mm512_mask_storeu_ps(out + c0 + 16 * k, RowDecoder::lanes(n, k), _mm512_mul_ps(parts[k], scale));
      }
    }
  }
}

// ------------------------------------------------------------------------- re-scoring
// Row r of 8 full groups at once: a 64-bit gather brings the row's 4 codes of each group
// (4*bits bits from bit r*4*bits of the group), a shift aligns them, multishift cuts them into
// bytes, a byte permute packs 32 codes, and float permutes (or a gather) give the values.
float rescore(const RescoreStream& s, int r) {
  const int b = s.bits;
  const int group_bytes = 16 * b;
  const int bit0 = r * 4 * b;
  const int byte0 = bit0 >> 3, shift = bit0 & 7;
  alignas(64) uint8_t offsets[64], pick[64];
  for (int i = 0; i < 64; ++i) offsets[i] = static_cast<uint8_t>((i % 8 < 4 ? i % 8 : 0) * b);
  for (int i = 0; i < 64; ++i) pick[i] = static_cast<uint8_t>(8 * ((i / 4) % 8) + i % 4);
  float padded[32] = {};
  for (int c = 0; c < (1 << b) && c < 32; ++c) padded[c] = s.values[c];
  const __m512 table0 = _mm512_loadu_ps(padded), table1 = _mm512_loadu_ps(padded + 16);
  const __m512i lanes = _mm512_add_epi64(
      _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(group_bytes)),
      _mm512_set1_epi64(byte0));
  const __m512i mask = _mm512_set1_epi8(static_cast<char>((1 << b) - 1));
  __m512 acc = _mm512_setzero_ps();
  int g = 0;
  for (; g + 8 <= s.full_groups; g += 8) {
    const uint8_t* base = s.block + g * group_bytes;
    if (base + 7 * group_bytes + byte0 + 8 > s.end) break;  // the rest below, byte by byte
    const __m512i words = _mm512_srli_epi64(_mm512_i64gather_epi64(lanes, base, 1), shift);
    const __m512i codes = _mm512_and_si512(_mm512_multishift_epi64_epi8(_mm512_load_si512(offsets), words), mask);
    const __m512i packed = _mm512_permutexvar_epi8(_mm512_load_si512(pick), codes);
    const __m512i i0 = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(packed));
    const __m512i i1 = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(packed, 1));
    __m512 v0, v1;
    if (b <= 4) {
      v0 = _mm512_permutexvar_ps(i0, table0);
      v1 = _mm512_permutexvar_ps(i1, table0);
    } else if (b == 5) {
      v0 = _mm512_permutex2var_ps(table0, i0, table1);
      v1 = _mm512_permutex2var_ps(table0, i1, table1);
    } else {
      v0 = _mm512_i32gather_ps(i0, s.values, 4);
      v1 = _mm512_i32gather_ps(i1, s.values, 4);
    }
    acc = _mm512_fmadd_ps(v0, _mm512_loadu_ps(s.query + 4 * g), acc);
    acc = _mm512_fmadd_ps(v1, _mm512_loadu_ps(s.query + 4 * g + 16), acc);
  }
  float total = _mm512_reduce_add_ps(acc);
  for (; g < s.full_groups; ++g) {
    const uint8_t* group = s.block + g * group_bytes;
    for (int j = 0; j < 4; ++j) total += s.query[4 * g + j] * s.values[read_code(group, 4, b, r, j)];
  }
  const uint8_t* tail = s.block + g * group_bytes;
  for (int j = 0; j < s.tail_channels; ++j) {
    total += s.query[4 * g + j] * s.values[read_code(tail, s.tail_channels, b, r, j)];
  }
  return total;
}

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k{"avx512", kQueries, kQueries, 127, 0, scan, rescore, kv256::kv_scores, kv_weighted_sum, kv_decode, matmul, nullptr};
  return k;
}

}  // namespace rq
