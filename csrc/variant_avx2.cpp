// AVX2 variant (+ FMA, F16C): one block of 32 rows per scan step, up to 4 queries per pass.
//
// A unit's 4-bit plane (16 bytes) becomes one 256-bit register of indices: lane 0 holds the
// low nibbles (rows P[j]), lane 1 the high nibbles (rows P[j] + 16). One byte shuffle against
// the unit's 16-entry table (broadcast to both lanes) looks up all 32 rows. Results are added
// as 16-bit lanes: lane i of `a` accumulates (row P[2i]) + 256 * (row P[2i+1]) and `b` the high
// byte alone, so at the fold a - (b << 8) holds rows 0..7 | 16..23 and b rows 8..15 | 24..31
// (P puts rows i and i + 8 side by side). Wider indices (6 bits for 3-bit pairs, up to 8) look
// up 16-entry sub-tables and select between them by their high bits (blend tree).
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace rq {
namespace {

constexpr int kRows = 32;
constexpr int kQueries = 4;
constexpr uint8_t kNibbleRow[16] = {0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15};

struct Bytes32 {
  uint8_t v[32];
};

// For each byte position of an index register: the byte of a 2-bit (width 2) or 1-bit
// (width 1) plane holding its row, and the bit of that row's field.
constexpr Bytes32 plane_source(int width) {
  Bytes32 b{};
  for (int lane = 0; lane < 2; ++lane) {
    for (int j = 0; j < 16; ++j) {
      const int row = kNibbleRow[j] + 16 * lane;
      b.v[16 * lane + j] = static_cast<uint8_t>(width == 2 ? row / 4 : row / 8);
    }
  }
  return b;
}
constexpr Bytes32 plane_bit(int width, int bit) {
  Bytes32 b{};
  for (int lane = 0; lane < 2; ++lane) {
    for (int j = 0; j < 16; ++j) {
      const int row = kNibbleRow[j] + 16 * lane;
      b.v[16 * lane + j] = static_cast<uint8_t>(width == 2 ? 1 << (2 * (row % 4) + bit) : 1 << (row % 8));
    }
  }
  return b;
}
alignas(32) constexpr Bytes32 kCrumbSource = plane_source(2);
alignas(32) constexpr Bytes32 kCrumbBit0 = plane_bit(2, 0);
alignas(32) constexpr Bytes32 kCrumbBit1 = plane_bit(2, 1);
alignas(32) constexpr Bytes32 kBitSource = plane_source(1);
alignas(32) constexpr Bytes32 kBitBit = plane_bit(1, 0);

inline __m256i load32(const Bytes32& b) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(b.v)); }

inline __m256i nibbles(const uint8_t* p) {
  const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(c), _mm_srli_epi16(c, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 0xFF where the row's bit is set, per byte position: for a 2-bit plane (bit 0 or 1 of the
// field) or a 1-bit plane.
inline __m256i crumb_mask(const uint8_t* p, const Bytes32& bit) {
  int64_t word;
  std::memcpy(&word, p, 8);
  const __m256i rep = _mm256_shuffle_epi8(_mm256_set1_epi64x(word), load32(kCrumbSource));
  const __m256i b = load32(bit);
  return _mm256_cmpeq_epi8(_mm256_and_si256(rep, b), b);
}
inline __m256i bit_mask(const uint8_t* p) {
  int32_t word;
  std::memcpy(&word, p, 4);
  const __m256i rep = _mm256_shuffle_epi8(_mm256_set1_epi32(word), load32(kBitSource));
  const __m256i b = load32(kBitBit);
  return _mm256_cmpeq_epi8(_mm256_and_si256(rep, b), b);
}

// The full index bytes (< 2**width) of a unit of any width.
inline __m256i index_bytes(const uint8_t* p, int width) {
  __m256i idx = _mm256_setzero_si256();
  int low = 0;
  const __m256i one = _mm256_set1_epi8(1);
  while (width - low >= 4) {
    const __m256i n = nibbles(p);
    idx = _mm256_or_si256(idx, low ? _mm256_slli_epi16(n, 4) : n);
    low += 4;
    p += 16;
  }
  if (width - low >= 2) {
    const __m256i lo = _mm256_and_si256(crumb_mask(p, kCrumbBit0), one);
    const __m256i hi = _mm256_and_si256(crumb_mask(p, kCrumbBit1), _mm256_set1_epi8(2));
    const __m256i v = _mm256_or_si256(lo, hi);
    idx = _mm256_or_si256(idx, _mm256_sll_epi16(v, _mm_cvtsi32_si128(low)));
    low += 2;
    p += 8;
  }
  if (width - low == 1) {
    const __m256i v = _mm256_and_si256(bit_mask(p), one);
    idx = _mm256_or_si256(idx, _mm256_sll_epi16(v, _mm_cvtsi32_si128(low)));
  }
  return idx;
}

inline __m256i table16(const uint8_t* t) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}

// Lookup of index bytes in a table of 2**width entries (16-entry sub-tables + blend tree).
inline __m256i lookup_any(const uint8_t* table, __m256i idx, int width) {
  const __m256i low = _mm256_and_si256(idx, _mm256_set1_epi8(0x0F));
  if (width <= 4) return _mm256_shuffle_epi8(table16(table), low);
  __m256i r[16];
  const int subs = 1 << (width - 4);
  for (int s = 0; s < subs; ++s) r[s] = _mm256_shuffle_epi8(table16(table + 16 * s), low);
  for (int level = 0, n = subs; n > 1; ++level, n /= 2) {
    // bit 4 + level of the index moved to each byte's sign bit
    const __m256i select = level < 3 ? _mm256_sll_epi16(idx, _mm_cvtsi32_si128(3 - level)) : idx;
    for (int s = 0; s < n / 2; ++s) r[s] = _mm256_blendv_epi8(r[2 * s], r[2 * s + 1], select);
  }
  return r[0];
}

template <int Q>
struct Accumulators {
  __m256i a[Q], b[Q];
  void zero() {
    for (int q = 0; q < Q; ++q) a[q] = b[q] = _mm256_setzero_si256();
  }
  void add(int q, __m256i r) {
    a[q] = _mm256_add_epi16(a[q], r);
    b[q] = _mm256_add_epi16(b[q], _mm256_srli_epi16(r, 8));
  }
  // 16-bit sums into sums[q][row] (int32), rows in natural order
  void fold(int32_t (*sums)[kRows]) {
    for (int q = 0; q < Q; ++q) {
      const __m256i lo = _mm256_sub_epi16(a[q], _mm256_slli_epi16(b[q], 8));
      const __m256i parts[4] = {
          _mm256_cvtepu16_epi32(_mm256_castsi256_si128(lo)),
          _mm256_cvtepu16_epi32(_mm256_castsi256_si128(b[q])),
          _mm256_cvtepu16_epi32(_mm256_extracti128_si256(lo, 1)),
          _mm256_cvtepu16_epi32(_mm256_extracti128_si256(b[q], 1)),
      };
      for (int p = 0; p < 4; ++p) {
        __m256i* dst = reinterpret_cast<__m256i*>(sums[q] + 8 * p);
        _mm256_store_si256(dst, _mm256_add_epi32(_mm256_load_si256(dst), parts[p]));
      }
    }
    zero();
  }
};

inline __m256 load_factors(const void* f, int half, int first) {
  if (half) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(f) + first)));
  }
  return _mm256_loadu_ps(static_cast<const float*>(f) + first);
}

template <int Q>
void scan_step_q(const StepArgs& a) {
  alignas(32) int32_t sums[kMaxClasses][Q][kRows];
  std::memset(sums, 0, sizeof sums);
  Accumulators<Q> acc;
  acc.zero();
  for (int i = 0; i < a.n_runs; ++i) {
    const ScanRun& run = a.runs[i];
    const uint8_t* unit = a.blocks[run.stream] + run.offset;
    const uint8_t* tables[Q];
    for (int q = 0; q < Q; ++q) tables[q] = a.tables[q] + run.table_offset;
    const int stride = 4 * run.width;
    if (run.width == 4) {
      for (int u = 0; u < run.count; ++u, unit += stride) {
        const __m256i idx = nibbles(unit);
        for (int q = 0; q < Q; ++q) acc.add(q, _mm256_shuffle_epi8(table16(tables[q] + 16 * u), idx));
      }
    } else if (run.width == 6) {
      for (int u = 0; u < run.count; ++u, unit += stride) {
        const __m256i idx = nibbles(unit);
        const __m256i m0 = crumb_mask(unit + 16, kCrumbBit0);
        const __m256i m1 = crumb_mask(unit + 16, kCrumbBit1);
        for (int q = 0; q < Q; ++q) {
          const uint8_t* t = tables[q] + 64 * u;
          const __m256i r0 = _mm256_shuffle_epi8(table16(t), idx);
          const __m256i r1 = _mm256_shuffle_epi8(table16(t + 16), idx);
          const __m256i r2 = _mm256_shuffle_epi8(table16(t + 32), idx);
          const __m256i r3 = _mm256_shuffle_epi8(table16(t + 48), idx);
          acc.add(q, _mm256_blendv_epi8(_mm256_blendv_epi8(r0, r1, m0),
                                        _mm256_blendv_epi8(r2, r3, m0), m1));
        }
      }
    } else {
      for (int u = 0; u < run.count; ++u, unit += stride) {
        const __m256i idx = index_bytes(unit, run.width);
        for (int q = 0; q < Q; ++q) acc.add(q, lookup_any(tables[q] + run.table_size * u, idx, run.width));
      }
    }
    if (run.flush) acc.fold(sums[run.cls]);
  }
  // approximate scores, bounds and the threshold test, 8 rows at a time
  for (int q = 0; q < Q; ++q) {
    const QueryConsts& c = a.consts[q];
    const __m256 threshold = _mm256_set1_ps(a.thresholds[q]);
    uint64_t mask = 0;
    for (int p = 0; p < kRows / 8; ++p) {
      __m256 value = a.shift ? _mm256_loadu_ps(a.shift + 8 * p) : _mm256_setzero_ps();
      __m256 margin = _mm256_setzero_ps();
      for (int k = 0; k < a.n_classes; ++k) {
        const __m256 f = load_factors(a.factors[k], a.factor_half[k], 8 * p);
        const __m256 s = _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sums[k][q] + 8 * p)));
        const __m256 score = _mm256_fmadd_ps(s, _mm256_set1_ps(c.cls[k].delta), _mm256_set1_ps(c.cls[k].bias));
        value = _mm256_fmadd_ps(f, score, value);
        margin = _mm256_fmadd_ps(f, _mm256_set1_ps(c.cls[k].margin), margin);
      }
      const __m256 upper = _mm256_add_ps(value, margin);
      _mm256_storeu_ps(a.lower + q * kMaxStepRows + 8 * p, _mm256_sub_ps(value, margin));
      _mm256_storeu_ps(a.upper + q * kMaxStepRows + 8 * p, upper);
      mask |= uint64_t(_mm256_movemask_ps(_mm256_cmp_ps(upper, threshold, _CMP_GE_OQ))) << (8 * p);
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
      default: scan_step_q<4>(part); break;
    }
  }
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{"avx2", 1, kQueries, scan_step, nullptr, nullptr, nullptr};
  return k;
}

}  // namespace rq
