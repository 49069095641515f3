// Kernel checks without Python: every kernel variant this build holds and this CPU runs against
// a plain reference, on the random cases of tests/native (every width 1-8, 2.5 / 3.5-bit channel
// splits, prod mode's QJL stream, odd dimensions and row counts, several segments, allow
// bitmaps, l2 shifts, query counts around a pass, k beyond n): the scan's exact top-k, exact
// re-scoring, the query transform's matmul, the KV row readers and the block layout.
//
// Built and run by tools/test_neon.sh for aarch64 under qemu-user (the NEON variants cannot run
// here otherwise), and natively by the same script on x86-64. Exit status 0: all passed.
//
//   kernel_check [--expect-best NAME]   (NAME: the variant the CPU should pick first)
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu.h"
#include "half.h"
#include "kernels.h"
#include "layout.h"
#include "scan.h"

using namespace rq;

namespace {

int failures = 0;
int checks = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    if (failures <= 20) std::printf("FAIL: %s\n", what.c_str());
  }
}

std::mt19937_64 rng(20261206);

double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
double gaussian() { return std::normal_distribution<double>(0, 1)(rng); }

// float -> IEEE half bits (round to nearest; normal range only: the factors here lie in [0.5, 2)).
uint16_t to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int exponent = int((x >> 23) & 0xFF) - 127 + 15;
  uint32_t mantissa = x & 0x7FFFFF;
  uint32_t h = sign | (uint32_t(exponent) << 10) | (mantissa >> 13);
  if ((mantissa >> 12) & 1) ++h;  // round half up
  return static_cast<uint16_t>(h);
}

struct StreamSpec {
  int first, channels, bits, domain, cls;
  double scale;
};

struct Case {
  const char* name;
  int dim;
  std::vector<StreamSpec> streams;
};

const double kQjl64 = std::sqrt(M_PI / 2) / 64, kQjl50 = std::sqrt(M_PI / 2) / 50;

// tests/native/test_scan.py's CODECS
const std::vector<Case> kCases = {
    {"4bit-d50", 50, {{0, 50, 4, 0, 0, 1.0}}},
    {"2bit-d64", 64, {{0, 64, 2, 0, 0, 1.0}}},
    {"3bit-d101", 101, {{0, 101, 3, 0, 0, 1.0}}},
    {"1bit-d30", 30, {{0, 30, 1, 0, 0, 1.0}}},
    {"5bit-d17", 17, {{0, 17, 5, 0, 0, 1.0}}},
    {"6bit-d9", 9, {{0, 9, 6, 0, 0, 1.0}}},
    {"7bit-d7", 7, {{0, 7, 7, 0, 0, 1.0}}},
    {"8bit-d12", 12, {{0, 12, 8, 0, 0, 1.0}}},
    {"3.5bit-d64", 64, {{0, 32, 4, 0, 0, 1.0}, {32, 32, 3, 0, 0, 1.0}}},
    {"2.5bit-d50", 50, {{0, 25, 3, 0, 0, 1.0}, {25, 25, 2, 0, 0, 1.0}}},
    {"prod3-d64", 64, {{0, 64, 2, 0, 0, 1.0}, {0, 64, 1, 1, 1, kQjl64}}},
    {"4bit-d384", 384, {{0, 384, 4, 0, 0, 1.0}}},
    {"2bit-d3", 3, {{0, 3, 2, 0, 0, 1.0}}},
    {"2bit-d50", 50, {{0, 50, 2, 0, 0, 1.0}}},
    {"2bit-d1100", 1100, {{0, 1100, 2, 0, 0, 1.0}}},
    {"prod3-d50", 50, {{0, 50, 2, 0, 0, 1.0}, {0, 50, 1, 1, 1, kQjl50}}},
    {"3bit-d64", 64, {{0, 64, 3, 0, 0, 1.0}}},
    {"4bit-d64", 64, {{0, 64, 4, 0, 0, 1.0}}},
};

std::vector<CodecStream> make_codec(const Case& c) {
  std::vector<CodecStream> codec;
  for (const StreamSpec& s : c.streams) {
    CodecStream cs;
    cs.first = s.first;
    cs.channels = s.channels;
    cs.bits = s.bits;
    cs.domain = s.domain;
    cs.cls = s.cls;
    cs.scale = static_cast<float>(s.scale);
    const int levels = 1 << s.bits;
    if (s.domain == 1) {
      cs.values = {-1.0f, 1.0f};
      cs.probs = {0.5f, 0.5f};
    } else {
      std::vector<double> v(levels), p(levels);
      for (double& x : v) x = gaussian() / 8;
      std::sort(v.begin(), v.end());
      for (double& x : p) x = uniform(0.2, 1.0);
      const double total = std::accumulate(p.begin(), p.end(), 0.0);
      for (int i = 0; i < levels; ++i) {
        cs.values.push_back(static_cast<float>(v[i]));
        cs.probs.push_back(static_cast<float>(p[i] / total));
      }
    }
    cs.layout = BlockLayout::make(s.channels, s.bits);
    codec.push_back(std::move(cs));
  }
  return codec;
}

struct Segment {
  int64_t rows = 0, first_row = 0;
  std::vector<std::vector<uint8_t>> codes;    // per stream: (rows, channels)
  std::vector<std::vector<uint8_t>> streams;  // per stream: block layout
  std::vector<uint16_t> factor16;             // class 0
  std::vector<float> factor32;                // class 1
  std::vector<float> shift;
  std::vector<uint64_t> allow;
  std::vector<int64_t> allowed;               // local rows allowed (all when no bitmap)

  SegmentView view() const {
    SegmentView v;
    v.rows = rows;
    v.first_row = first_row;
    for (const auto& s : streams) v.streams.push_back(s.data());
    v.factors[0] = factor16.data();
    v.factor_half[0] = 1;
    v.factors[1] = factor32.data();
    v.factor_half[1] = 0;
    v.shift = shift.empty() ? nullptr : shift.data();
    v.allow = allow.empty() ? nullptr : allow.data();
    return v;
  }
};

Segment make_segment(const std::vector<CodecStream>& codec, int64_t rows, int64_t first_row, bool shift,
                     double allow_fraction) {
  Segment seg;
  seg.rows = rows;
  seg.first_row = first_row;
  for (const CodecStream& cs : codec) {
    std::discrete_distribution<int> law(cs.probs.begin(), cs.probs.end());
    std::vector<uint8_t> codes(rows * cs.channels);
    for (uint8_t& c : codes) c = static_cast<uint8_t>(law(rng));
    const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
    std::vector<uint8_t> stream(std::max<int64_t>(1, blocks * cs.layout.block_bytes), 0);
    if (rows) pack_blocks(cs.layout, codes.data(), rows, stream.data(), 0);
    // exactly the stream's bytes: loads past them would leave the allocation (ASan, qemu)
    stream.resize(blocks * cs.layout.block_bytes);
    seg.codes.push_back(std::move(codes));
    seg.streams.push_back(std::move(stream));
  }
  for (int64_t r = 0; r < rows; ++r) {
    seg.factor16.push_back(to_half(static_cast<float>(uniform(0.5, 2.0))));
    seg.factor32.push_back(static_cast<float>(uniform(0.5, 2.0)));
    if (shift) seg.shift.push_back(static_cast<float>(-uniform(0, 1)));
  }
  if (allow_fraction >= 0) {
    seg.allow.assign((rows + 63) / 64 + 1, 0);
    for (int64_t r = 0; r < rows; ++r) {
      if (uniform(0, 1) < allow_fraction) {
        seg.allow[r / 64] |= uint64_t(1) << (r % 64);
        seg.allowed.push_back(r);
      }
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) seg.allowed.push_back(r);
  }
  return seg;
}

// exact score of a row in double
double reference_score(const std::vector<CodecStream>& codec, const Segment& seg, int64_t row, const float* rotated,
                       const float* projected) {
  double per_class[2] = {0, 0};
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    const float* q = (cs.domain ? projected : rotated) + cs.first;
    double acc = 0;
    for (int j = 0; j < cs.channels; ++j) acc += double(q[j]) * cs.values[seg.codes[s][row * cs.channels + j]];
    per_class[cs.cls] += cs.scale * acc;
  }
  double total = per_class[0] * half_to_float(seg.factor16[row]) + per_class[1] * seg.factor32[row];
  if (!seg.shift.empty()) total += seg.shift[row];
  return total;
}

bool close(double got, double want) { return std::fabs(got - want) <= 2e-5 * (1 + std::fabs(want)); }

void check_scan(const Case& c, int m, int k, const std::vector<int64_t>& sizes, bool shift, double allow_fraction,
                const std::string& variant) {
  const std::vector<CodecStream> codec = make_codec(c);
  bool prod = false;
  for (const CodecStream& s : codec) prod = prod || s.domain == 1;
  std::vector<Segment> segments;
  int64_t first = 0;
  for (int64_t rows : sizes) {
    segments.push_back(make_segment(codec, rows, first, shift, allow_fraction));
    first += rows;
  }
  std::vector<float> rotated(m * c.dim), projected(prod ? m * c.dim : 0);
  for (float& x : rotated) x = static_cast<float>(gaussian());
  for (float& x : projected) x = static_cast<float>(gaussian());
  std::vector<SegmentView> views;
  for (const Segment& s : segments) views.push_back(s.view());
  std::vector<int64_t> rows(m * k);
  std::vector<float> scores(m * k);
  scan(codec, views, rotated.data(), prod ? projected.data() : nullptr, m, c.dim, k, rows.data(), scores.data());
  const std::string what = variant + " " + c.name + " m=" + std::to_string(m) + " k=" + std::to_string(k);
  for (int q = 0; q < m; ++q) {
    std::vector<std::pair<double, int64_t>> all;  // (score, index row)
    for (const Segment& s : segments) {
      for (int64_t r : s.allowed) {
        all.emplace_back(reference_score(codec, s, r, rotated.data() + q * c.dim,
                                         prod ? projected.data() + q * c.dim : nullptr),
                         s.first_row + r);
      }
    }
    std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
      return x.first > y.first || (x.first == y.first && x.second < y.second);
    });
    for (int j = 0; j < k; ++j) {
      const int64_t got = rows[q * k + j];
      const float got_score = scores[q * k + j];
      if (j >= static_cast<int>(all.size())) {
        expect(got == -1 && std::isinf(got_score) && got_score < 0, what + ": padding");
        continue;
      }
      expect(close(got_score, all[j].first), what + ": score " + std::to_string(got_score) + " vs " +
                                                 std::to_string(all[j].first));
      if (got != all[j].second) {  // equal only up to a tie within rounding
        double tied = 1e300;
        for (const auto& e : all) {
          if (e.second == got) tied = e.first;
        }
        expect(close(tied, all[j].first), what + ": row " + std::to_string(got) + " vs " + std::to_string(all[j].second));
      }
    }
  }
  // exact re-scoring of some rows
  const Segment& seg = segments.front();
  if (seg.rows) {
    std::vector<int64_t> pick;
    for (int64_t r = 0; r < seg.rows; r += std::max<int64_t>(1, seg.rows / 17)) pick.push_back(r);
    pick.push_back(seg.rows - 1);
    std::vector<float> out(pick.size());
    exact_scores(codec, seg.view(), rotated.data(), prod ? projected.data() : nullptr, 1, c.dim, pick.data(),
                 static_cast<int64_t>(pick.size()), out.data());
    for (size_t i = 0; i < pick.size(); ++i) {
      const double want = reference_score(codec, seg, pick[i], rotated.data(), prod ? projected.data() : nullptr);
      expect(close(out[i], want), what + ": exact score of row " + std::to_string(pick[i]));
    }
  }
}

void check_scans(const std::string& variant) {
  for (const Case& c : kCases) check_scan(c, 3, 10, {1000}, false, -1, variant);
  for (const char* name : {"4bit-d50", "3bit-d101", "prod3-d64", "3.5bit-d64"}) {
    const Case& c = *std::find_if(kCases.begin(), kCases.end(), [&](const Case& x) { return x.name == std::string(name); });
    for (const auto& sizes : std::vector<std::vector<int64_t>>{{70, 33}, {0, 31}, {1}, {64, 64, 5}}) {
      check_scan(c, 13, 50, sizes, false, -1, variant);
    }
  }
  const Case& two = kCases[1];  // 2bit-d64
  for (double fraction : {0.0, 0.02, 0.5, 1.0}) check_scan(two, 5, 7, {300, 95}, false, fraction, variant);
  check_scan(kCases[9], 21, 5, {500}, true, -1, variant);  // 2.5bit-d50 with l2 shifts
  for (const char* name : {"3bit-d64", "4bit-d64", "2bit-d50", "prod3-d50"}) {
    const Case& c = *std::find_if(kCases.begin(), kCases.end(), [&](const Case& x) { return x.name == std::string(name); });
    for (int m : {1, 7, 8, 9, 17}) check_scan(c, m, 6, {333}, false, -1, variant);
  }
}

void check_matmul(const Kernels& kern) {
  for (const auto& shape : std::vector<std::array<int, 3>>{{1, 3, 1}, {5, 7, 8}, {9, 24, 24}, {4, 32, 33}, {8, 64, 70}}) {
    const int rows = shape[0], n = shape[1], p = shape[2];
    std::vector<float> x(rows * n), w(n * p), out(rows * p);
    for (float& v : x) v = static_cast<float>(gaussian());
    for (float& v : w) v = static_cast<float>(gaussian());
    kern.matmul(MatmulArgs{x.data(), rows, n, w.data(), p, out.data()});
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < p; ++c) {
        double want = 0;
        for (int i = 0; i < n; ++i) want += double(x[r * n + i]) * w[i * p + c];
        expect(std::fabs(out[r * p + c] - want) <= 1e-4 * (1 + std::fabs(want)),
               std::string(kern.name) + " matmul " + std::to_string(rows) + "x" + std::to_string(n) + "x" + std::to_string(p));
      }
    }
  }
}

// KV rows: 8 codes in every `bits` bytes, little-endian, each decoding to values[code] * scale.
void check_kv(const Kernels& kern) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (int channels : {8, 64, 136, 256}) {
      const int rows = 37, row_bytes = channels * bits / 8;
      std::vector<uint8_t> packed(rows * row_bytes);
      for (uint8_t& b : packed) b = static_cast<uint8_t>(rng());
      std::vector<float> values(1 << bits);
      for (float& v : values) v = static_cast<float>(gaussian());
      std::vector<uint16_t> scales(rows);
      for (uint16_t& s : scales) s = to_half(static_cast<float>(uniform(0.5, 2.0)));
      std::vector<float> decoded(rows * channels);
      for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < channels; ++c) {
          const int bit = c * bits;
          uint32_t word = packed[r * row_bytes + bit / 8];
          if (bit % 8 + bits > 8) word |= uint32_t(packed[r * row_bytes + bit / 8 + 1]) << 8;
          decoded[r * channels + c] = values[(word >> (bit % 8)) & ((1u << bits) - 1)] * half_to_float(scales[r]);
        }
      }
      const KvRows s{packed.data(), packed.data() + packed.size(), bits, channels, values.data(), scales.data()};
      const std::string what = std::string(kern.name) + " kv bits=" + std::to_string(bits) + " channels=" + std::to_string(channels);
      // rows 3.. to the end of the buffer: the last rows take the readers' bounds-checked reads
      const int first = 3, count = rows - 3, nq = 5;
      std::vector<float> queries(nq * channels);
      for (float& v : queries) v = static_cast<float>(gaussian());
      std::vector<float> out(nq * count, 1.0f);
      kern.kv_scores(KvScoresArgs{s, first, count, queries.data(), nq, out.data(), count});
      for (int q = 0; q < nq; ++q) {
        for (int t = 0; t < count; ++t) {
          double want = 1.0;
          for (int c = 0; c < channels; ++c) want += double(queries[q * channels + c]) * decoded[(first + t) * channels + c];
          expect(std::fabs(out[q * count + t] - want) <= 1e-4 * (1 + std::fabs(want)), what + " scores");
        }
      }
      std::vector<float> weights(nq * count), sums(nq * channels, 0.5f);
      for (float& v : weights) v = static_cast<float>(uniform(0, 1));
      kern.kv_weighted_sum(KvWeightedArgs{s, first, count, weights.data(), count, nq, sums.data()});
      for (int q = 0; q < nq; ++q) {
        for (int c = 0; c < channels; ++c) {
          double want = 0.5;
          for (int t = 0; t < count; ++t) want += double(weights[q * count + t]) * decoded[(first + t) * channels + c];
          expect(std::fabs(sums[q * channels + c] - want) <= 1e-4 * (1 + std::fabs(want)), what + " weighted sum");
        }
      }
      std::vector<float> rows_out(count * (channels + 3));
      kern.kv_decode(KvDecodeArgs{s, first, count, rows_out.data(), channels + 3});
      for (int t = 0; t < count; ++t) {
        for (int c = 0; c < channels; ++c) {
          expect(rows_out[t * (channels + 3) + c] == decoded[(first + t) * channels + c], what + " decode");
        }
      }
    }
  }
}

void check_layout() {
  for (int bits = 1; bits <= 8; ++bits) {
    for (int channels : {1, 3, 4, 5, 50, 101}) {
      const BlockLayout layout = BlockLayout::make(channels, bits);
      expect(layout.block_bytes == 4 * channels * bits, "layout block bytes");
      const int64_t rows = 77;
      std::vector<uint8_t> codes(rows * channels);
      for (uint8_t& c : codes) c = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
      std::vector<uint8_t> stream(3 * layout.block_bytes);
      pack_blocks(layout, codes.data(), rows, stream.data(), 0);
      std::vector<int64_t> order(rows);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      std::vector<uint8_t> back(rows * channels);
      unpack_blocks(layout, stream.data(), order.data(), rows, back.data());
      bool same = true;
      for (int64_t i = 0; i < rows; ++i) {
        same &= std::equal(back.begin() + i * channels, back.begin() + (i + 1) * channels,
                           codes.begin() + order[i] * channels);
      }
      expect(same, "layout round trip bits=" + std::to_string(bits) + " channels=" + std::to_string(channels));
    }
  }
  // the worked example of layout.h: 2 channels at 3 bits, row r channel j at bits (2r + j) * 3
  const BlockLayout layout = BlockLayout::make(2, 3);
  std::vector<uint8_t> codes(64, 0), stream(layout.block_bytes, 0);
  codes[0] = 5;  // row 0, channel 0: bits 0..2
  codes[3] = 6;  // row 1, channel 1: bits 9..11
  pack_blocks(layout, codes.data(), 32, stream.data(), 0);
  expect(stream[0] == 0x05 && stream[1] == 0x0C && layout.block_bytes == 24, "layout worked example");
}

}  // namespace

int main(int argc, char** argv) {
  std::string expect_best;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--expect-best") expect_best = argv[i + 1];
  }
  std::printf("variants here:");
  for (const Kernels* k : available_kernels()) std::printf(" %s", k->name);
  std::printf("\n");
  if (!expect_best.empty()) {
    expect(available_kernels().front()->name == expect_best,
           std::string("run-time choice: ") + available_kernels().front()->name + ", expected " + expect_best);
  }
  check_layout();
  for (const Kernels* k : available_kernels()) {
    const int before = failures;
    select_kernels(k->name);
    check_scans(k->name);
    check_matmul(*k);
    check_kv(*k);
    std::printf("%-13s %s\n", k->name, failures == before ? "ok" : "FAILED");
  }
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
