// The block layout (see layout.h): building it and reading rows back.
#include "layout.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "codes.h"
#include "pool.h"

namespace rq {

namespace {
constexpr int64_t kPackBlocks = 256;  // blocks per pool task when packing many rows
}  // namespace

BlockLayout BlockLayout::make(int channels, int bits) {
  if (channels < 1 || bits < 1 || bits > 8) {
    throw std::invalid_argument("block layout: need channels >= 1 and bits in 1..8, got " +
                                std::to_string(channels) + " channels at " +
                                std::to_string(bits) + " bits");
  }
  BlockLayout layout;
  layout.channels = channels;
  layout.bits = bits;
  int32_t offset = 0;
  for (int first = 0; first < channels; first += kGroupChannels) {
    Group g;
    g.first = first;
    g.channels = first + kGroupChannels <= channels ? kGroupChannels : channels - first;
    g.offset = offset;
    g.bytes = 4 * g.channels * bits;
    offset += g.bytes;
    layout.groups.push_back(g);
  }
  layout.block_bytes = offset;
  return layout;
}

namespace {

void write_code(uint8_t* group, int channels, int bits, int r, int j, uint32_t code) {
  const int64_t bit = (int64_t(r) * channels + j) * bits;
  uint8_t* p = group + (bit >> 3);
  const int shift = static_cast<int>(bit & 7);
  const uint32_t mask = ((1u << bits) - 1) << shift;
  const uint32_t value = (code << shift) & mask;
  p[0] = static_cast<uint8_t>((p[0] & ~mask) | value);
  if (shift + bits > 8) p[1] = static_cast<uint8_t>((p[1] & ~(mask >> 8)) | (value >> 8));
}

// A whole block from 32 rows of codes (32, C): each group is one bit stream, built a row's
// group word (channels * bits <= 32 bits) at a time and written out 32 bits at a time (a
// group's 32 rows fill a multiple of 32 bits).
void pack_block(const BlockLayout& layout, const uint8_t* codes, uint8_t* block) {
  const int bits = layout.bits;
  for (const Group& g : layout.groups) {
    uint8_t* out = block + g.offset;
    const int width = g.channels * bits;
    uint64_t acc = 0;
    int filled = 0;
    for (int r = 0; r < kBlockRows; ++r) {
      const uint8_t* code = codes + int64_t(r) * layout.channels + g.first;
      uint64_t word = 0;
      for (int j = 0; j < g.channels; ++j) word |= uint64_t(code[j]) << (j * bits);
      acc |= word << filled;
      filled += width;
      if (filled >= 32) {
        for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(acc >> (8 * i));
        out += 4;
        acc >>= 32;
        filled -= 32;
      }
    }
  }
}

void pack_row(const BlockLayout& layout, const uint8_t* code, uint8_t* stream, int64_t row) {
  uint8_t* block = stream + (row / kBlockRows) * layout.block_bytes;
  const int r = static_cast<int>(row % kBlockRows);
  for (const Group& g : layout.groups) {
    for (int j = 0; j < g.channels; ++j) {
      write_code(block + g.offset, g.channels, layout.bits, r, j, code[g.first + j]);
    }
  }
}

}  // namespace

void pack_blocks(const BlockLayout& layout, const uint8_t* codes, int64_t rows, uint8_t* stream,
                 int64_t first_row) {
  int64_t i = 0;
  const int64_t C = layout.channels;
  // rows before the first block boundary, then whole blocks, then the rest
  for (; i < rows && (first_row + i) % kBlockRows; ++i) {
    pack_row(layout, codes + i * C, stream, first_row + i);
  }
  // whole blocks, split over the pool in runs of kPackBlocks
  const int64_t blocks = (rows - i) / kBlockRows;
  const int64_t head = i;
  parallel_for((blocks + kPackBlocks - 1) / kPackBlocks, [&](int64_t task, int) {
    const int64_t end = std::min(blocks, (task + 1) * kPackBlocks);
    for (int64_t b = task * kPackBlocks; b < end; ++b) {
      const int64_t at = head + b * kBlockRows;
      pack_block(layout, codes + at * C, stream + ((first_row + at) / kBlockRows) * layout.block_bytes);
    }
  });
  for (i = head + blocks * kBlockRows; i < rows; ++i) pack_row(layout, codes + i * C, stream, first_row + i);
}

void unpack_blocks(const BlockLayout& layout, const uint8_t* stream, const int64_t* rows,
                   int64_t count, uint8_t* out) {
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* block = stream + (rows[i] / kBlockRows) * layout.block_bytes;
    const int r = static_cast<int>(rows[i] % kBlockRows);
    uint8_t* code = out + i * layout.channels;
    for (const Group& g : layout.groups) {
      for (int j = 0; j < g.channels; ++j) {
        code[g.first + j] =
            static_cast<uint8_t>(read_code(block + g.offset, g.channels, layout.bits, r, j));
      }
    }
  }
}

void copy_row(const BlockLayout& layout, uint8_t* dst, int64_t dst_row, const uint8_t* src,
              int64_t src_row) {
  const uint8_t* from = src + (src_row / kBlockRows) * layout.block_bytes;
  uint8_t* to = dst + (dst_row / kBlockRows) * layout.block_bytes;
  const int rs = static_cast<int>(src_row % kBlockRows);
  const int rd = static_cast<int>(dst_row % kBlockRows);
  for (const Group& g : layout.groups) {
    for (int j = 0; j < g.channels; ++j) {
      const uint32_t code = read_code(from + g.offset, g.channels, layout.bits, rs, j);
      write_code(to + g.offset, g.channels, layout.bits, rd, j, code);
    }
  }
}

}  // namespace rq
