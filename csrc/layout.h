// The block layout of the index's packed codes: the kernels' layout, in memory and on disk.
//
// A stream (one channel group of C channels at b bits, or the QJL signs at 1 bit) is stored in
// blocks of 32 rows. A block cuts the channels into *groups* of 4 (the last group holds the
// C % 4 remaining channels, if any) and stores, group after group, the 32 rows' codes of that
// group as one little-endian bit stream, row after row:
//
//   group g of a block = codes[32 rows][channels 4g .. 4g+n-1] packed like codec/packing.py:
//   code (row r, channel j) at bits [(r*n + j)*b, (r*n + j + 1)*b) of the group's 4*n*b bytes
//
// so a block takes exactly 32*C*b/8 = 4*C*b bytes: no bit is padded, whatever b and C (3-bit
// codes stay 3 bits, d = 50 stays 50). A stream of n rows takes ceil(n/32) blocks; rows past n
// in the last block are zero (and counted by nbytes).
//
// Why groups of four: the kernels decode a group of 16 rows into one register of bytes, row r
// in 32-bit lane r and channel j in byte j of it, map codes to int8 levels with one byte
// shuffle (one codebook per stream), and take dot products with the query's int8 weights four
// channels per lane (VNNI vpdpbusd, or maddubs + madd on AVX2). 16 rows of a group span at most
// 2*4*8 = 64 bytes: one load.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rq {

constexpr int kBlockRows = 32;
constexpr int kGroupChannels = 4;

struct Group {
  int32_t first;     // first channel of the group within its stream
  int32_t channels;  // 1..4
  int32_t offset;    // byte offset of the group within a block
  int32_t bytes;     // 4 * channels * bits
};

// The block layout of one stream (named apart from kv/codec.py's StreamLayout, which
// describes a KV cache stream).
struct BlockLayout {
  int32_t channels = 0;
  int32_t bits = 0;
  int64_t block_bytes = 0;  // 4 * channels * bits
  std::vector<Group> groups;

  static BlockLayout make(int channels, int bits);  // throws std::invalid_argument
};

// codes: (rows, C) uint8 row-major, written at rows [first_row, first_row + rows) of a stream
// of blocks (the stream must hold ceil((first_row + rows)/32) blocks). Not codec/packing.py's
// pack_rows, whose rows are row-major bit streams.
void pack_blocks(const BlockLayout& layout, const uint8_t* codes, int64_t rows,
                 uint8_t* stream, int64_t first_row);
// Inverse: codes of `count` rows listed in `rows` (any order) into out (count, C).
void unpack_blocks(const BlockLayout& layout, const uint8_t* stream, const int64_t* rows,
                   int64_t count, uint8_t* out);
// Row copy between streams of the same layout (dst may equal src).
void copy_row(const BlockLayout& layout, uint8_t* dst, int64_t dst_row, const uint8_t* src,
              int64_t src_row);

}  // namespace rq
