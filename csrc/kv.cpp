// KV cache cold-tier readers: the Python boundary of the kernels' kv_* entries.
//
// A stream is `packed` (heads, capacity, row bytes) uint8 with `scales` (heads, capacity)
// float16 (passed as uint16 bits); `ranges` (R, 2) int64 lists the live row ranges, whose rows
// become columns 0, 1, ... of the outputs (scores) or inputs (weights). Those arrays may be
// wider than the live rows (the attention's logits, cold columns first): the kernels touch
// only the first columns. Work is cut into (head, row piece) tasks over the pool when
// `threads` allows (1: the calling thread only).
#include "kv.h"

#include <nanobind/ndarray.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "cpu.h"
#include "pool.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace rq {
namespace {

struct Stream {
  KvRows rows;      // head 0
  int64_t heads, capacity, row_bytes, scale_stride;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  int64_t length = 0;  // live rows
};

Stream stream_of(const Array<const uint8_t, 3>& packed, int64_t bits, const Array<const float, 1>& values,
                 const Array<const uint16_t, 2>& scales, const Array<const int64_t, 2>& ranges) {
  if (bits < 1 || bits > 8) fail("kv: bits must be in 1..8");
  Stream s;
  s.heads = static_cast<int64_t>(packed.shape(0));
  s.capacity = static_cast<int64_t>(packed.shape(1));
  s.row_bytes = static_cast<int64_t>(packed.shape(2));
  if (s.row_bytes * 8 % bits) fail("kv: row bytes do not hold whole codes");
  const int64_t channels = s.row_bytes * 8 / bits;
  if (channels % 8 || channels < 8 || channels > kMaxKvChannels) {
    fail("kv: rows must hold a multiple of 8 channels, at most " + std::to_string(kMaxKvChannels));
  }
  if (static_cast<int64_t>(values.shape(0)) != (int64_t(1) << bits)) fail("kv: values need 2**bits entries");
  if (static_cast<int64_t>(scales.shape(0)) != s.heads || static_cast<int64_t>(scales.shape(1)) < s.capacity) {
    fail("kv: scales must be (heads, capacity)");
  }
  s.scale_stride = static_cast<int64_t>(scales.shape(1));
  if (ranges.shape(1) != 2) fail("kv: ranges must be (R, 2)");
  const int64_t* r = ranges.data();
  for (size_t i = 0; i < ranges.shape(0); ++i) {
    const int64_t a = r[2 * i], b = r[2 * i + 1];
    if (a < 0 || b < a || b > s.capacity) fail("kv: a range lies outside the rows held");
    s.ranges.emplace_back(a, b);
    s.length += b - a;
  }
  s.rows.packed = packed.data();
  s.rows.end = packed.data() + packed.size();
  s.rows.bits = static_cast<int32_t>(bits);
  s.rows.channels = static_cast<int32_t>(channels);
  s.rows.values = values.data();
  s.rows.scales = scales.data();
  return s;
}

KvRows head_rows(const Stream& s, int64_t head) {
  KvRows r = s.rows;
  r.packed += head * s.capacity * s.row_bytes;
  r.scales += head * s.scale_stride;
  return r;
}

struct Task {
  int64_t head, first, count, column;
};

// (head, row piece) tasks: every range of every head cut into `pieces`
std::vector<Task> tasks_of(const Stream& s, int64_t pieces) {
  std::vector<Task> tasks;
  int64_t column = 0;
  for (const auto& [a, b] : s.ranges) {
    for (int64_t head = 0; head < s.heads; ++head) {
      for (int64_t p = 0; p < pieces; ++p) {
        const int64_t lo = a + (b - a) * p / pieces, hi = a + (b - a) * (p + 1) / pieces;
        if (hi > lo) tasks.push_back({head, lo, hi - lo, column + lo - a});
      }
    }
    column += b - a;
  }
  return tasks;
}

int64_t pieces_for(const Stream& s, int64_t threads) {
  const int64_t workers = std::min<int64_t>(threads, pool_size());
  if (workers <= 1 || s.length * s.rows.channels < (1 << 16)) return 1;
  return std::max<int64_t>(1, (2 * workers + s.heads - 1) / s.heads);
}

void run(const std::vector<Task>& tasks, int64_t threads, const std::function<void(int64_t, int)>& fn) {
  if (threads <= 1 || tasks.size() <= 1) {
    for (size_t i = 0; i < tasks.size(); ++i) fn(static_cast<int64_t>(i), 0);
  } else {
    parallel_for(static_cast<int64_t>(tasks.size()), fn);
  }
}

void kv_scores_py(Array<const uint8_t, 3> packed, int64_t bits, Array<const float, 1> values,
                  Array<const uint16_t, 2> scales, Array<const int64_t, 2> ranges, Array<const float, 3> queries,
                  Array<float, 3> out, int64_t threads) {
  const Stream s = stream_of(packed, bits, values, scales, ranges);
  if (static_cast<int64_t>(queries.shape(0)) != s.heads || static_cast<int64_t>(queries.shape(2)) != s.rows.channels) {
    fail("kv_scores: queries must be (heads, queries, channels)");
  }
  const int64_t nq = static_cast<int64_t>(queries.shape(1));
  const int64_t width = static_cast<int64_t>(out.shape(2));
  if (static_cast<int64_t>(out.shape(0)) != s.heads || static_cast<int64_t>(out.shape(1)) != nq ||
      width < s.length) {
    fail("kv_scores: out must be (heads, queries, >= live rows)");
  }
  const Kernels& k = active_kernels();
  const std::vector<Task> tasks = tasks_of(s, pieces_for(s, threads));
  const float* q = queries.data();
  float* o = out.data();
  nb::gil_scoped_release release;
  run(tasks, threads, [&](int64_t i, int) {
    const Task& t = tasks[i];
    KvScoresArgs a{head_rows(s, t.head), t.first, t.count, q + t.head * nq * s.rows.channels,
                   static_cast<int32_t>(nq), o + t.head * nq * width + t.column, width};
    k.kv_scores(a);
  });
}

void kv_weighted_sum_py(Array<const uint8_t, 3> packed, int64_t bits, Array<const float, 1> values,
                        Array<const uint16_t, 2> scales, Array<const int64_t, 2> ranges,
                        Array<const float, 3> weights, Array<float, 3> out, int64_t threads) {
  const Stream s = stream_of(packed, bits, values, scales, ranges);
  const int64_t nq = static_cast<int64_t>(weights.shape(1));
  const int64_t width = static_cast<int64_t>(weights.shape(2));
  if (static_cast<int64_t>(weights.shape(0)) != s.heads || width < s.length) {
    fail("kv_weighted_sum: weights must be (heads, queries, >= live rows)");
  }
  if (static_cast<int64_t>(out.shape(0)) != s.heads || static_cast<int64_t>(out.shape(1)) != nq ||
      static_cast<int64_t>(out.shape(2)) != s.rows.channels) {
    fail("kv_weighted_sum: out must be (heads, queries, channels)");
  }
  const Kernels& k = active_kernels();
  const std::vector<Task> tasks = tasks_of(s, pieces_for(s, threads));
  const float* w = weights.data();
  float* o = out.data();
  const int64_t slab = nq * s.rows.channels;
  nb::gil_scoped_release release;
  // tasks of one head add into private partial sums, folded into out afterwards
  std::vector<float> partial(tasks.size() * slab, 0.0f);
  run(tasks, threads, [&](int64_t i, int) {
    const Task& t = tasks[i];
    KvWeightedArgs a{head_rows(s, t.head), t.first, t.count, w + t.head * nq * width + t.column, width,
                     static_cast<int32_t>(nq), partial.data() + i * slab};
    k.kv_weighted_sum(a);
  });
  for (size_t i = 0; i < tasks.size(); ++i) {
    float* target = o + tasks[i].head * slab;
    const float* source = partial.data() + i * slab;
    for (int64_t j = 0; j < slab; ++j) target[j] += source[j];
  }
}

void kv_decode_py(Array<const uint8_t, 3> packed, int64_t bits, Array<const float, 1> values,
                  Array<const uint16_t, 2> scales, Array<const int64_t, 2> ranges, Array<float, 3> out,
                  int64_t threads) {
  const Stream s = stream_of(packed, bits, values, scales, ranges);
  if (static_cast<int64_t>(out.shape(0)) != s.heads || static_cast<int64_t>(out.shape(1)) != s.length ||
      static_cast<int64_t>(out.shape(2)) != s.rows.channels) {
    fail("kv_decode: out must be (heads, live rows, channels)");
  }
  const Kernels& k = active_kernels();
  const std::vector<Task> tasks = tasks_of(s, pieces_for(s, threads));
  float* o = out.data();
  nb::gil_scoped_release release;
  run(tasks, threads, [&](int64_t i, int) {
    const Task& t = tasks[i];
    KvDecodeArgs a{head_rows(s, t.head), t.first, t.count,
                   o + (t.head * s.length + t.column) * s.rows.channels, s.rows.channels};
    k.kv_decode(a);
  });
}

}  // namespace

void register_kv(nb::module_& m) {
  m.def("kv_scores", &kv_scores_py, "packed"_a.noconvert(), "bits"_a, "values"_a.noconvert(), "scales"_a.noconvert(),
        "ranges"_a.noconvert(), "queries"_a.noconvert(), "out"_a.noconvert(), "threads"_a,
        "out[h, q, t] += scale * <queries[h, q], decoded row t> over the live rows.");
  m.def("kv_weighted_sum", &kv_weighted_sum_py, "packed"_a.noconvert(), "bits"_a, "values"_a.noconvert(),
        "scales"_a.noconvert(), "ranges"_a.noconvert(), "weights"_a.noconvert(), "out"_a.noconvert(), "threads"_a,
        "out[h, q] += sum_t weights[h, q, t] * scale * decoded row t.");
  m.def("kv_decode", &kv_decode_py, "packed"_a.noconvert(), "bits"_a, "values"_a.noconvert(), "scales"_a.noconvert(),
        "ranges"_a.noconvert(), "out"_a.noconvert(), "threads"_a, "out[h, t] = scale * decoded row t.");
}

}  // namespace rq
