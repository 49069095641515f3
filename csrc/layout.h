// The block layout of the index's packed codes: the kernels' layout, in memory and on disk.
//
// A stream (one channel group of C channels at b bits, or the QJL signs at 1 bit) is stored in
// blocks of 32 rows. Within a block the channels are cut into *units* of g consecutive
// channels (g = 4 at 1 bit, 2 at 2 bits, 2 at 3 bits, 1 at 4 bits, 1 at 5..8 bits; the last
// unit may hold fewer): a unit's codes, concatenated little-endian (channel j of the unit at
// bits [j*b, (j+1)*b)), form the *index* of that unit, of width w = channels*b bits, into a
// per-query lookup table. The index bits are stored as *planes* of 4, 2 and 1 bits (low bits
// first: w = 8 -> 4+4, 7 -> 4+2+1, 6 -> 4+2, 5 -> 4+1, 4 -> 4, 3 -> 2+1, 2 -> 2, 1 -> 1), each
// plane holding the 32 rows' slices of those bits:
//
//   4-bit plane, 16 bytes: byte j = row P[j] in the low nibble, row P[j]+16 in the high
//                          nibble, P = 0 8 1 9 2 10 3 11 4 12 5 13 6 14 7 15
//   2-bit plane,  8 bytes: row r at byte r/4, bits 2*(r%4)
//   1-bit plane,  4 bytes: row r at byte r/8, bit r%8
//
// so a unit takes 4*w bytes and a block exactly 32*C*b/8 = 4*C*b bytes: no bit is padded,
// whatever b and C (3-bit codes stay 3 bits). A stream of n rows takes ceil(n/32) blocks; rows
// past n in the last block are zero (and counted by nbytes). P is FAISS's nibble order: after
// a byte-shuffle lookup, adding the result as 16-bit lanes sums rows i and i+8 side by side,
// which the kernels take apart at the end (see variant_avx2.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rq {

constexpr int kBlockRows = 32;

struct Unit {
  int32_t first;        // first channel of the unit within its stream
  int32_t channels;     // codes in the unit
  int32_t width;        // index bits = channels * bits
  int32_t offset;       // byte offset of the unit's planes within a block
  int32_t table_size;   // entries of its lookup table: 16 (w <= 4), 64 (w <= 6), 128, 256
};

struct StreamLayout {
  int32_t channels = 0;
  int32_t bits = 0;
  int64_t block_bytes = 0;  // 4 * channels * bits
  int64_t table_bytes = 0;  // sum of the units' table sizes
  std::vector<Unit> units;

  static StreamLayout make(int channels, int bits);  // throws std::invalid_argument
};

inline int unit_channels(int bits) {
  return bits == 1 ? 4 : bits == 2 ? 2 : bits == 3 ? 2 : 1;
}

// Plane widths of an index of `width` bits, low bits first; returns how many.
inline int plane_widths(int width, int out[3]) {
  int n = 0;
  while (width >= 4) { out[n++] = 4; width -= 4; }
  if (width >= 2) { out[n++] = 2; width -= 2; }
  if (width == 1) out[n++] = 1;
  return n;
}

inline int plane_bytes(int plane_width) { return plane_width * 4; }  // 32 rows

inline int table_size(int width) {
  return width <= 4 ? 16 : width <= 6 ? 64 : width == 7 ? 128 : 256;
}

constexpr uint8_t kNibbleRow[16] = {0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15};
constexpr uint8_t kNibbleByte[16] = {0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15};

// Index of unit `u` for row `r` (0..31) of the block at `block`.
uint32_t read_index(const uint8_t* block, const Unit& u, int r);
// Writes index `value` of unit `u` for row `r` of the block (the row's bits are cleared first).
void write_index(uint8_t* block, const Unit& u, int r, uint32_t value);

// codes: (rows, C) uint8 row-major, written at rows [first_row, first_row + rows) of a stream
// of blocks (the stream must hold ceil((first_row + rows)/32) blocks).
void pack_rows(const StreamLayout& layout, const uint8_t* codes, int64_t rows,
               uint8_t* stream, int64_t first_row);
// Inverse: codes of `count` rows listed in `rows` (any order) into out (count, C).
void unpack_rows(const StreamLayout& layout, const uint8_t* stream, const int64_t* rows,
                 int64_t count, uint8_t* out);
// Row copy between streams of the same layout (dst may equal src).
void copy_row(const StreamLayout& layout, uint8_t* dst, int64_t dst_row, const uint8_t* src,
              int64_t src_row);

}  // namespace rq
