// Reading codes out of a group of the block layout (layout.h): one code, or a row's codes of
// the group as one word. Shared by portable code and the variants' portable fallbacks, so
// everything here has internal linkage: each translation unit compiles its own copy with its
// own instruction-set flags, and none compiled for a wider ISA can be picked by the linker for
// another.
#pragma once

#include <cstdint>
#include <cstring>

namespace rq {
namespace {

// Code of (row r in 0..31, channel j) of a group of `channels` channels at `bits` bits.
inline uint32_t read_code(const uint8_t* group, int channels, int bits, int r, int j) {
  const int64_t bit = (int64_t(r) * channels + j) * bits;
  const uint8_t* p = group + (bit >> 3);
  const int shift = static_cast<int>(bit & 7);
  uint32_t word = p[0];
  if (shift + bits > 8) word |= uint32_t(p[1]) << 8;
  return (word >> shift) & ((1u << bits) - 1);
}

// The codes of row r of a group as one little-endian word (channel j at bits j*bits), read
// without passing the group's `group_bytes` bytes.
inline uint64_t row_word(const uint8_t* group, int group_bytes, int channels, int bits, int r) {
  const int bit = r * channels * bits;
  const int byte = bit >> 3;
  uint64_t word = 0;
  if (byte + 8 <= group_bytes) {
    std::memcpy(&word, group + byte, 8);
  } else {
    for (int i = 0; byte + i < group_bytes; ++i) word |= uint64_t(group[byte + i]) << (8 * i);
  }
  return word >> (bit & 7);
}

}  // namespace
}  // namespace rq
