// IEEE half -> float, for every translation unit: one F16C instruction where the unit is
// compiled with F16C (the x86 variants), portable code otherwise. Internal linkage, so that
// each unit keeps the version its own flags allow: an inline function with external linkage
// compiled with F16C could be the one the linker keeps for code that runs without it.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace rq {
namespace {

inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
#elif defined(__aarch64__)
  __fp16 x;  // one fcvt instead of the portable bit arithmetic
  std::memcpy(&x, &h, 2);
  return x;
#else
  const uint32_t sign = uint32_t(h >> 15) << 31;
  const uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int shift = 0;
      while (!(mantissa & 0x400)) {
        mantissa <<= 1;
        ++shift;
      }
      bits = sign | uint32_t(127 - 15 - shift + 1) << 23 | (mantissa & 0x3FF) << 13;
    }
  } else if (exponent == 31) {
    bits = sign | 0x7F800000u | mantissa << 13;
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
#endif
}

// Element `i` of an array of T at any address: arrays mapped from a file need not be aligned
// for their type (a crafted file can place them at an odd offset), so no typed dereference.
template <typename T>
inline T load_any(const void* base, int64_t i) {
  T value;
  std::memcpy(&value, static_cast<const char*>(base) + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return value;
}

// Row `row` of a per-row factor array: float16 (half = 1) or float32.
inline float factor_at(const void* factors, int half, int64_t row) {
  if (half) return half_to_float(load_any<uint16_t>(factors, row));
  return load_any<float>(factors, row);
}

}  // namespace
}  // namespace rq
