// The block layout (see layout.h): building it and reading single rows back.
#include "layout.h"

#include <stdexcept>
#include <string>

namespace rq {

StreamLayout StreamLayout::make(int channels, int bits) {
  if (channels < 1 || bits < 1 || bits > 8) {
    throw std::invalid_argument("stream layout: need channels >= 1 and bits in 1..8, got " +
                                std::to_string(channels) + " channels at " +
                                std::to_string(bits) + " bits");
  }
  StreamLayout layout;
  layout.channels = channels;
  layout.bits = bits;
  const int g = unit_channels(bits);
  int32_t offset = 0;
  for (int first = 0; first < channels; first += g) {
    Unit u;
    u.first = first;
    u.channels = first + g <= channels ? g : channels - first;
    u.width = u.channels * bits;
    u.offset = offset;
    u.table_size = table_size(u.width);
    offset += 4 * u.width;
    layout.table_bytes += u.table_size;
    layout.units.push_back(u);
  }
  layout.block_bytes = offset;
  return layout;
}

namespace {

// Where row r's bits of a plane of the given width live: (byte, shift).
inline void plane_position(int plane_width, int r, int& byte, int& shift) {
  if (plane_width == 4) {
    byte = kNibbleByte[r & 15];
    shift = (r >> 4) * 4;
  } else if (plane_width == 2) {
    byte = r >> 2;
    shift = 2 * (r & 3);
  } else {
    byte = r >> 3;
    shift = r & 7;
  }
}

}  // namespace

uint32_t read_index(const uint8_t* block, const Unit& u, int r) {
  int widths[3];
  const int planes = plane_widths(u.width, widths);
  const uint8_t* plane = block + u.offset;
  uint32_t value = 0;
  int low = 0;
  for (int p = 0; p < planes; ++p) {
    int byte, shift;
    plane_position(widths[p], r, byte, shift);
    const uint32_t bits = (plane[byte] >> shift) & ((1u << widths[p]) - 1);
    value |= bits << low;
    low += widths[p];
    plane += plane_bytes(widths[p]);
  }
  return value;
}

void write_index(uint8_t* block, const Unit& u, int r, uint32_t value) {
  int widths[3];
  const int planes = plane_widths(u.width, widths);
  uint8_t* plane = block + u.offset;
  for (int p = 0; p < planes; ++p) {
    int byte, shift;
    plane_position(widths[p], r, byte, shift);
    const uint32_t mask = (1u << widths[p]) - 1;
    plane[byte] = static_cast<uint8_t>((plane[byte] & ~(mask << shift)) |
                                       ((value & mask) << shift));
    value >>= widths[p];
    plane += plane_bytes(widths[p]);
  }
}

namespace {

// The planes of one unit for 32 rows at once, from the rows' indices.
void write_planes(uint8_t* plane, int width, const uint32_t index[kBlockRows]) {
  int widths[3];
  const int planes = plane_widths(width, widths);
  int low = 0;
  for (int p = 0; p < planes; ++p) {
    const int w = widths[p];
    if (w == 4) {
      for (int j = 0; j < 16; ++j) {
        const int r = kNibbleRow[j];
        plane[j] = static_cast<uint8_t>(((index[r] >> low) & 15) |
                                        (((index[r + 16] >> low) & 15) << 4));
      }
    } else {
      const int per_byte = 8 / w;
      for (int byte = 0; byte < 4 * w; ++byte) {
        uint32_t value = 0;
        for (int t = 0; t < per_byte; ++t) {
          value |= ((index[byte * per_byte + t] >> low) & ((1u << w) - 1)) << (t * w);
        }
        plane[byte] = static_cast<uint8_t>(value);
      }
    }
    low += w;
    plane += plane_bytes(w);
  }
}

// A whole block from 32 rows of codes (32, C).
void pack_block(const StreamLayout& layout, const uint8_t* codes, uint8_t* block) {
  uint32_t index[kBlockRows];
  const int bits = layout.bits;
  for (const Unit& u : layout.units) {
    for (int r = 0; r < kBlockRows; ++r) {
      const uint8_t* code = codes + r * layout.channels + u.first;
      uint32_t value = 0;
      for (int j = 0; j < u.channels; ++j) value |= uint32_t(code[j]) << (j * bits);
      index[r] = value;
    }
    write_planes(block + u.offset, u.width, index);
  }
}

void pack_row(const StreamLayout& layout, const uint8_t* code, uint8_t* stream, int64_t row) {
  uint8_t* block = stream + (row / kBlockRows) * layout.block_bytes;
  const int r = static_cast<int>(row % kBlockRows);
  for (const Unit& u : layout.units) {
    uint32_t value = 0;
    for (int j = 0; j < u.channels; ++j) value |= uint32_t(code[u.first + j]) << (j * layout.bits);
    write_index(block, u, r, value);
  }
}

}  // namespace

void pack_rows(const StreamLayout& layout, const uint8_t* codes, int64_t rows, uint8_t* stream,
               int64_t first_row) {
  int64_t i = 0;
  const int64_t C = layout.channels;
  // rows before the first block boundary, then whole blocks, then the rest
  for (; i < rows && (first_row + i) % kBlockRows; ++i) {
    pack_row(layout, codes + i * C, stream, first_row + i);
  }
  for (; i + kBlockRows <= rows; i += kBlockRows) {
    pack_block(layout, codes + i * C, stream + ((first_row + i) / kBlockRows) * layout.block_bytes);
  }
  for (; i < rows; ++i) pack_row(layout, codes + i * C, stream, first_row + i);
}

void unpack_rows(const StreamLayout& layout, const uint8_t* stream, const int64_t* rows,
                 int64_t count, uint8_t* out) {
  const int bits = layout.bits;
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* block = stream + (rows[i] / kBlockRows) * layout.block_bytes;
    const int r = static_cast<int>(rows[i] % kBlockRows);
    uint8_t* code = out + i * layout.channels;
    for (const Unit& u : layout.units) {
      const uint32_t value = read_index(block, u, r);
      for (int j = 0; j < u.channels; ++j) {
        code[u.first + j] = static_cast<uint8_t>((value >> (j * bits)) & mask);
      }
    }
  }
}

void copy_row(const StreamLayout& layout, uint8_t* dst, int64_t dst_row, const uint8_t* src,
              int64_t src_row) {
  const uint8_t* from = src + (src_row / kBlockRows) * layout.block_bytes;
  uint8_t* to = dst + (dst_row / kBlockRows) * layout.block_bytes;
  const int rs = static_cast<int>(src_row % kBlockRows);
  const int rd = static_cast<int>(dst_row % kBlockRows);
  for (const Unit& u : layout.units) write_index(to, u, rd, read_index(from, u, rs));
}

}  // namespace rq
