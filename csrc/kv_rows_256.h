// The KV row readers on 256-bit registers (AVX2 + FMA + F16C): the AVX2 variant's, and the
// AVX-512 variant's scores (at head sizes of 64-256 channels, decoding 8 codes per 32-bit word
// and reducing 4 queries' sums together measured 10.8 ns per 64-channel row against 17.5 for
// its 512-bit version; its own weighted sum stays: 7.5 against 8.9-10.1 ns). Internal linkage,
// compiled in each including unit with its own flags (scan_loop.h).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "half.h"
#include "kernels.h"

namespace rq {
namespace {
namespace kv256 {

// 8 codes (one group of `bits` bytes) at a time as 32-bit lanes: up to 4 bits, the group's 4
// bytes as one 32-bit word broadcast and shifted per lane (one variable shift); 5..8 bits, the
// group as one 64-bit word shifted per lane (two 64-bit variable shifts, even and odd codes).
// Values through a float permute (<= 3 bits), two permutes and a blend (4 bits), or a gather.
// The kind of code is a compile-time constant of each reader loop, and rows whose every read
// stays inside the buffer (all but the last few) are read without a bounds test.
enum CodeKind { kSmall, kNibble, kWide };  // <= 3 bits, 4 bits, 5..8 bits

struct RowDecoder {
  int bits;
  __m256 lo, hi;
  __m256i shifts, even_shift, odd_shift, mask;
  const float* values;

  RowDecoder(int b, const float* v) : bits(b), values(v) {
    float padded[16] = {};
    for (int c = 0; c < (1 << b) && c < 16; ++c) padded[c] = v[c];
    lo = _mm256_loadu_ps(padded);
    hi = _mm256_loadu_ps(padded + 8);
    shifts = _mm256_setr_epi32(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b);
    even_shift = _mm256_setr_epi64x(0, 2 * b, 4 * b, 6 * b);
    odd_shift = _mm256_setr_epi64x(b, 3 * b, 5 * b, 7 * b);
    mask = _mm256_set1_epi32((1 << b) - 1);
  }

  // bytes a group's read may touch past its start
  static int reach(CodeKind kind) { return kind == kWide ? 8 : 4; }

  // the 8 codes of the group at p (`bits` bytes); Checked: p + reach may pass `end`
  template <CodeKind Kind, bool Checked>
  __m256i codes8(const uint8_t* p, const uint8_t* end) const {
    if (Kind != kWide) {
      uint32_t word = 0;
      if (!Checked || p + 4 <= end) {
        std::memcpy(&word, p, 4);  // the bytes past the group shift out or are masked off
      } else {
        for (int i = 0; i < bits; ++i) word |= uint32_t(p[i]) << (8 * i);
      }
      return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), shifts), mask);
    }
    uint64_t word = 0;
    if (!Checked || p + 8 <= end) {
      std::memcpy(&word, p, 8);
      if (bits < 8) word &= (uint64_t(1) << (8 * bits)) - 1;
    } else {
      for (int i = 0; i < bits; ++i) word |= uint64_t(p[i]) << (8 * i);
    }
    const __m256i w = _mm256_set1_epi64x(static_cast<long long>(word));
    const __m256i even = _mm256_srlv_epi64(w, even_shift);
    const __m256i odd = _mm256_slli_epi64(_mm256_srlv_epi64(w, odd_shift), 32);
    return _mm256_and_si256(_mm256_blend_epi32(even, odd, 0xAA), mask);
  }

  template <CodeKind Kind, bool Checked>
  __m256 decode8(const uint8_t* p, const uint8_t* end) const {
    return lookup<Kind>(codes8<Kind, Checked>(p, end));
  }

  // values of 8 codes (32-bit lanes)
  template <CodeKind Kind>
  __m256 lookup(__m256i codes) const {
    if (Kind == kSmall) return _mm256_permutevar8x32_ps(lo, codes);
    if (Kind == kNibble) {
      const __m256 a = _mm256_permutevar8x32_ps(lo, codes);
      const __m256 b = _mm256_permutevar8x32_ps(hi, codes);
      return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(codes, 28)));
    }
    return _mm256_i32gather_ps(values, codes, 4);
  }
};

// fn(kind, checked) for rows [0, count) of `s` from `first`, in two calls: the rows whose reads
// stay below the buffer's end unchecked, the rest checked.
template <class Fn>
inline void over_rows(const KvRows& s, int64_t first, int64_t count, Fn&& fn) {
  const CodeKind kind = s.bits <= 3 ? kSmall : s.bits == 4 ? kNibble : kWide;
  const int64_t row_bytes = s.channels * s.bits / 8;
  // row t is safe when its last group's read ends inside the buffer
  const int64_t room = (s.end - s.packed) - (row_bytes - s.bits) - RowDecoder::reach(kind);
  const int64_t safe_end = room < 0 ? 0 : std::min<int64_t>(first + count, room / row_bytes + 1);
  const int64_t split = std::max<int64_t>(first, safe_end);
  const auto run = [&](auto k) {
    fn(k, std::false_type{}, first, split - first);
    if (first + count > split) fn(k, std::true_type{}, split, first + count - split);
  };
  if (kind == kSmall) {
    run(std::integral_constant<CodeKind, kSmall>{});
  } else if (kind == kNibble) {
    run(std::integral_constant<CodeKind, kNibble>{});
  } else {
    run(std::integral_constant<CodeKind, kWide>{});
  }
}

inline float sum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// lane q of the result: the sum of v_q's 8 lanes
inline __m128 sum8x4(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Rows [first, first + count) decoded once each for NQ (<= 4) queries, the groups straight into
// fused multiply-adds, the NQ dot products reduced together; out at column `column`.
template <int NQ, CodeKind Kind, bool Checked>
void scores_rows(const KvScoresArgs& a, const RowDecoder& dec, const float* const* qs, int q0, int64_t first,
                 int64_t count) {
  const KvRows& s = a.s;
  const int row_bytes = s.channels * s.bits / 8;
  const int groups = s.channels / 8;
  for (int64_t t = first; t < first + count; ++t) {
    const uint8_t* row = s.packed + t * row_bytes;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int g = 0; g < groups; ++g) {
      const __m256 v = dec.decode8<Kind, Checked>(row + g * s.bits, s.end);
      for (int q = 0; q < NQ; ++q) acc[q] = _mm256_fmadd_ps(v, _mm256_loadu_ps(qs[q] + 8 * g), acc[q]);
    }
    alignas(16) float sums[4];
    const __m128 scale = _mm_set1_ps(half_to_float(s.scales[t]));
    _mm_store_ps(sums, _mm_mul_ps(sum8x4(acc[0], acc[1], acc[2], acc[3]), scale));
    for (int q = 0; q < NQ; ++q) a.out[(q0 + q) * a.out_stride + (t - a.first)] += sums[q];
  }
}

inline void kv_scores(const KvScoresArgs& a) {
  const RowDecoder dec(a.s.bits, a.s.values);
  for (int q0 = 0; q0 < a.n_queries; q0 += 4) {
    const int nq = a.n_queries - q0 < 4 ? a.n_queries - q0 : 4;
    const float* qs[4];
    for (int q = 0; q < 4; ++q) qs[q] = a.queries + (q0 + (q < nq ? q : 0)) * a.s.channels;
    over_rows(a.s, a.first, a.count, [&](auto kind, auto checked, int64_t first, int64_t count) {
      constexpr CodeKind K = decltype(kind)::value;
      constexpr bool C = decltype(checked)::value;
      switch (nq) {
        case 1: scores_rows<1, K, C>(a, dec, qs, q0, first, count); break;
        case 2: scores_rows<2, K, C>(a, dec, qs, q0, first, count); break;
        case 3: scores_rows<3, K, C>(a, dec, qs, q0, first, count); break;
        default: scores_rows<4, K, C>(a, dec, qs, q0, first, count); break;
      }
    });
  }
}

// A tile of rows decoded once into a buffer (kept in L1), then, per 16 channels and 4 queries,
// 8 accumulators take every row of the tile: each decoded value is read once per 4 queries
// and each row decoded once per call.
constexpr int kTileFloats = 4096;  // 16 KiB
constexpr int kTileRows = 64;

template <int Q>
void weighted_tile(const float* tile, int rows, int channels, const float* w, float* out) {
  int c = 0;
  for (; c + 16 <= channels; c += 16) {
    __m256 acc[Q][2];
    for (int q = 0; q < Q; ++q) {
      acc[q][0] = _mm256_loadu_ps(out + q * channels + c);
      acc[q][1] = _mm256_loadu_ps(out + q * channels + c + 8);
    }
    for (int t = 0; t < rows; ++t) {
      const __m256 d0 = _mm256_load_ps(tile + t * channels + c), d1 = _mm256_load_ps(tile + t * channels + c + 8);
      for (int q = 0; q < Q; ++q) {
        const __m256 x = _mm256_broadcast_ss(w + q * kTileRows + t);
        acc[q][0] = _mm256_fmadd_ps(x, d0, acc[q][0]);
        acc[q][1] = _mm256_fmadd_ps(x, d1, acc[q][1]);
      }
    }
    for (int q = 0; q < Q; ++q) {
      _mm256_storeu_ps(out + q * channels + c, acc[q][0]);
      _mm256_storeu_ps(out + q * channels + c + 8, acc[q][1]);
    }
  }
  if (c < channels) {  // the last 8
    __m256 acc[Q];
    for (int q = 0; q < Q; ++q) acc[q] = _mm256_loadu_ps(out + q * channels + c);
    for (int t = 0; t < rows; ++t) {
      const __m256 d = _mm256_load_ps(tile + t * channels + c);
      for (int q = 0; q < Q; ++q) acc[q] = _mm256_fmadd_ps(_mm256_broadcast_ss(w + q * kTileRows + t), d, acc[q]);
    }
    for (int q = 0; q < Q; ++q) _mm256_storeu_ps(out + q * channels + c, acc[q]);
  }
}

template <CodeKind Kind, bool Checked>
void decode_tile(const KvRows& s, const RowDecoder& dec, int64_t first, int rows, float* tile, float* scales) {
  const int row_bytes = s.channels * s.bits / 8;
  for (int t = 0; t < rows; ++t) {
    const uint8_t* row = s.packed + (first + t) * row_bytes;
    for (int g = 0; g < s.channels / 8; ++g) {
      _mm256_store_ps(tile + t * s.channels + 8 * g, dec.decode8<Kind, Checked>(row + g * s.bits, s.end));
    }
    scales[t] = half_to_float(s.scales[first + t]);
  }
}

inline void kv_weighted_sum(const KvWeightedArgs& a) {
  const KvRows& s = a.s;
  const RowDecoder dec(s.bits, s.values);
  const int tile_rows = kTileFloats / s.channels > kTileRows ? kTileRows : kTileFloats / s.channels;  // >= 4
  alignas(32) float tile[kTileFloats];
  alignas(32) float scales[kTileRows];
  alignas(32) float weights[4 * kTileRows];  // per query of a pass: weight * scale of each tile row
  for (int64_t t0 = 0; t0 < a.count; t0 += tile_rows) {
    const int rows = a.count - t0 < tile_rows ? static_cast<int>(a.count - t0) : tile_rows;
    over_rows(s, a.first + t0, rows, [&](auto kind, auto checked, int64_t first, int64_t count) {
      const int at = static_cast<int>(first - a.first - t0);
      decode_tile<decltype(kind)::value, decltype(checked)::value>(s, dec, first, static_cast<int>(count),
                                                                   tile + at * s.channels, scales + at);
    });
    for (int q0 = 0; q0 < a.n_queries; q0 += 4) {
      const int nq = a.n_queries - q0 < 4 ? a.n_queries - q0 : 4;
      for (int q = 0; q < nq; ++q) {
        const float* w = a.weights + (q0 + q) * a.weights_stride + t0;
        for (int t = 0; t < rows; ++t) weights[q * kTileRows + t] = w[t] * scales[t];
      }
      float* out = a.out + q0 * s.channels;
      switch (nq) {
        case 1: weighted_tile<1>(tile, rows, s.channels, weights, out); break;
        case 2: weighted_tile<2>(tile, rows, s.channels, weights, out); break;
        case 3: weighted_tile<3>(tile, rows, s.channels, weights, out); break;
        default: weighted_tile<4>(tile, rows, s.channels, weights, out); break;
      }
    }
  }
}

inline void kv_decode(const KvDecodeArgs& a) {
  const KvRows& s = a.s;
  const RowDecoder dec(s.bits, s.values);
  const int row_bytes = s.channels * s.bits / 8;
  over_rows(s, a.first, a.count, [&](auto kind, auto checked, int64_t first, int64_t count) {
    constexpr CodeKind K = decltype(kind)::value;
    constexpr bool C = decltype(checked)::value;
    for (int64_t t = first; t < first + count; ++t) {
      const uint8_t* row = s.packed + t * row_bytes;
      const __m256 scale = _mm256_set1_ps(half_to_float(s.scales[t]));
      float* out = a.out + (t - a.first) * a.out_stride;
      for (int g = 0; g < s.channels / 8; ++g) {
        _mm256_storeu_ps(out + 8 * g, _mm256_mul_ps(dec.decode8<K, C>(row + g * s.bits, s.end), scale));
      }
    }
  });
}

}  // namespace kv256
}  // namespace
}  // namespace rq
