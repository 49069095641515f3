// AVX-512 variant (F, BW, VL, DQ, VBMI, VNNI): two blocks (64 rows) per scan step, up to 8
// queries per pass.
//
// Index registers hold [block 0 low nibbles | block 0 high nibbles | block 1 low | block 1 high]
// (128-bit lanes), so the row of byte j of lane L is 32*(L/2) + P[j] + 16*(L%2). 4-bit units
// look up with one byte shuffle against the table broadcast to the four lanes; wider units
// (3-bit pairs: 6 bits) with one VBMI permute over a 64-entry table, or two-register permutes
// for 7 and 8 bits. 2-bit and 1-bit planes are spread to byte positions with multishift.
// Sums are 16-bit lanes folded to 32 bits as in the AVX2 variant.
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace rq {
namespace {

constexpr int kRows = 64;
constexpr int kQueries = 8;
constexpr uint8_t kNibbleRow[16] = {0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15};

struct Bytes64 {
  uint8_t v[64];
};

// Bit offset, within its block's plane word, of the row at each byte position.
constexpr Bytes64 plane_offsets(int width) {
  Bytes64 b{};
  for (int lane = 0; lane < 4; ++lane) {
    for (int j = 0; j < 16; ++j) {
      const int row = kNibbleRow[j] + 16 * (lane % 2);
      b.v[16 * lane + j] = static_cast<uint8_t>(width * row);
    }
  }
  return b;
}
alignas(64) constexpr Bytes64 kCrumbOffsets = plane_offsets(2);
alignas(64) constexpr Bytes64 kBitOffsets = plane_offsets(1);

inline __m512i load64(const Bytes64& b) { return _mm512_load_si512(b.v); }

inline __m256i nibbles256(const uint8_t* p) {
  const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_inserti128_si256(_mm256_castsi128_si256(c), _mm_srli_epi16(c, 4), 1);
}

// p0: the unit in block 0; p1: in block 1 or null (a step of one block)
inline __m512i nibbles(const uint8_t* p0, const uint8_t* p1) {
  const __m256i y1 = p1 ? nibbles256(p1) : _mm256_setzero_si256();
  const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(nibbles256(p0)), y1, 1);
  return _mm512_and_si512(both, _mm512_set1_epi8(0x0F));
}

// Field values (< 2**width) of a 2-bit (8-byte) or 1-bit (4-byte) plane at byte positions.
inline __m512i small_plane(const uint8_t* p0, const uint8_t* p1, int width) {
  int64_t w0 = 0, w1 = 0;
  const int bytes = 4 * width;
  std::memcpy(&w0, p0, bytes);
  if (p1) std::memcpy(&w1, p1, bytes);
  const __m512i words =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi64x(w0)), _mm256_set1_epi64x(w1), 1);
  const __m512i fields = _mm512_multishift_epi64_epi8(load64(width == 2 ? kCrumbOffsets : kBitOffsets), words);
  return _mm512_and_si512(fields, _mm512_set1_epi8(static_cast<char>((1 << width) - 1)));
}

inline __m512i index_bytes(const uint8_t* p0, const uint8_t* p1, int width) {
  __m512i idx = _mm512_setzero_si512();
  int low = 0, offset = 0;
  const auto at = [&](const uint8_t* p) { return p ? p + offset : nullptr; };
  while (width - low >= 4) {
    const __m512i n = nibbles(p0 + offset, at(p1));
    idx = _mm512_or_si512(idx, low ? _mm512_slli_epi16(n, 4) : n);
    low += 4;
    offset += 16;
  }
  if (width - low >= 2) {
    idx = _mm512_or_si512(idx, _mm512_sll_epi16(small_plane(p0 + offset, at(p1), 2), _mm_cvtsi32_si128(low)));
    low += 2;
    offset += 8;
  }
  if (width - low == 1) {
    idx = _mm512_or_si512(idx, _mm512_sll_epi16(small_plane(p0 + offset, at(p1), 1), _mm_cvtsi32_si128(low)));
  }
  return idx;
}

inline __m512i table16(const uint8_t* t) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}

inline __m512i lookup_any(const uint8_t* t, __m512i idx, int width) {
  if (width <= 4) return _mm512_shuffle_epi8(table16(t), idx);
  if (width <= 6) return _mm512_permutexvar_epi8(idx, _mm512_loadu_si512(t));
  const __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512(t), idx, _mm512_loadu_si512(t + 64));
  if (width == 7) return lo;
  const __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512(t + 128), idx, _mm512_loadu_si512(t + 192));
  return _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi);
}

template <int Q>
struct Accumulators {
  __m512i a[Q], b[Q];
  void zero() {
    for (int q = 0; q < Q; ++q) a[q] = b[q] = _mm512_setzero_si512();
  }
  void add(int q, __m512i r) {
    a[q] = _mm512_add_epi16(a[q], r);
    b[q] = _mm512_add_epi16(b[q], _mm512_srli_epi16(r, 8));
  }
  void fold(int32_t (*sums)[kRows]) {
    for (int q = 0; q < Q; ++q) {
      const __m512i lo = _mm512_sub_epi16(a[q], _mm512_slli_epi16(b[q], 8));
      for (int c = 0; c < 4; ++c) {  // rows 16c..16c+7 in lane c of lo, 16c+8.. in lane c of b
        const __m256i pair = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm512_extracti32x4_epi32(lo, c)), _mm512_extracti32x4_epi32(b[q], c), 1);
        int32_t* dst = sums[q] + 16 * c;
        _mm512_store_si512(dst, _mm512_add_epi32(_mm512_load_si512(dst), _mm512_cvtepu16_epi32(pair)));
      }
    }
    zero();
  }
};

inline __m512 load_factors(const void* f, int half, int first) {
  if (half) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(f) + first)));
  }
  return _mm512_loadu_ps(static_cast<const float*>(f) + first);
}

template <int Q>
void scan_step_q(const StepArgs& a) {
  alignas(64) int32_t sums[kMaxClasses][Q][kRows];
  std::memset(sums, 0, sizeof sums);
  Accumulators<Q> acc;
  acc.zero();
  const bool two = a.n_blocks > 1;
  for (int i = 0; i < a.n_runs; ++i) {
    const ScanRun& run = a.runs[i];
    const uint8_t* unit0 = a.blocks[run.stream] + run.offset;
    const int64_t next = a.block_bytes[run.stream];
    const uint8_t* tables[Q];
    for (int q = 0; q < Q; ++q) tables[q] = a.tables[q] + run.table_offset;
    const int stride = 4 * run.width;
    if (run.width == 4) {
      for (int u = 0; u < run.count; ++u, unit0 += stride) {
        const __m512i idx = nibbles(unit0, two ? unit0 + next : nullptr);
        for (int q = 0; q < Q; ++q) acc.add(q, _mm512_shuffle_epi8(table16(tables[q] + 16 * u), idx));
      }
    } else if (run.width == 6) {
      for (int u = 0; u < run.count; ++u, unit0 += stride) {
        const uint8_t* unit1 = two ? unit0 + next : nullptr;
        const __m512i idx = _mm512_or_si512(
            nibbles(unit0, unit1), _mm512_slli_epi16(small_plane(unit0 + 16, unit1 ? unit1 + 16 : nullptr, 2), 4));
        for (int q = 0; q < Q; ++q) {
          acc.add(q, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512(tables[q] + 64 * u)));
        }
      }
    } else {
      for (int u = 0; u < run.count; ++u, unit0 += stride) {
        const __m512i idx = index_bytes(unit0, two ? unit0 + next : nullptr, run.width);
        for (int q = 0; q < Q; ++q) acc.add(q, lookup_any(tables[q] + run.table_size * u, idx, run.width));
      }
    }
    if (run.flush) acc.fold(sums[run.cls]);
  }
  const int chunks = two ? 4 : 2;
  for (int q = 0; q < Q; ++q) {
    const QueryConsts& c = a.consts[q];
    const __m512 threshold = _mm512_set1_ps(a.thresholds[q]);
    uint64_t mask = 0;
    for (int p = 0; p < chunks; ++p) {
      __m512 value = a.shift ? _mm512_loadu_ps(a.shift + 16 * p) : _mm512_setzero_ps();
      __m512 margin = _mm512_setzero_ps();
      for (int k = 0; k < a.n_classes; ++k) {
        const __m512 f = load_factors(a.factors[k], a.factor_half[k], 16 * p);
        const __m512 s = _mm512_cvtepi32_ps(_mm512_load_si512(sums[k][q] + 16 * p));
        const __m512 score = _mm512_fmadd_ps(s, _mm512_set1_ps(c.cls[k].delta), _mm512_set1_ps(c.cls[k].bias));
        value = _mm512_fmadd_ps(f, score, value);
        margin = _mm512_fmadd_ps(f, _mm512_set1_ps(c.cls[k].margin), margin);
      }
      const __m512 upper = _mm512_add_ps(value, margin);
      _mm512_storeu_ps(a.lower + q * kMaxStepRows + 16 * p, _mm512_sub_ps(value, margin));
      _mm512_storeu_ps(a.upper + q * kMaxStepRows + 16 * p, upper);
      mask |= uint64_t(_mm512_cmp_ps_mask(upper, threshold, _CMP_GE_OQ)) << (16 * p);
    }
    a.masks[q] = mask & a.eligible;
  }
}

void scan_step(const StepArgs& a) {
  StepArgs part = a;
  for (int q0 = 0; q0 < a.n_queries; q0 += kQueries) {
    const int n = a.n_queries - q0 < kQueries ? a.n_queries - q0 : kQueries;
    for (int q = 0; q < n; ++q) part.tables[q] = a.tables[q0 + q];
    part.n_queries = n;
    part.consts = a.consts + q0;
    part.thresholds = a.thresholds + q0;
    part.masks = a.masks + q0;
    part.lower = a.lower + q0 * kMaxStepRows;
    part.upper = a.upper + q0 * kMaxStepRows;
    switch (n) {
      case 1: scan_step_q<1>(part); break;
      case 2: scan_step_q<2>(part); break;
      case 3: scan_step_q<3>(part); break;
      case 4: scan_step_q<4>(part); break;
      case 5: scan_step_q<5>(part); break;
      case 6: scan_step_q<6>(part); break;
      case 7: scan_step_q<7>(part); break;
      default: scan_step_q<8>(part); break;
    }
  }
}

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k{"avx512", 2, kQueries, scan_step, nullptr, nullptr, nullptr};
  return k;
}

}  // namespace rq
