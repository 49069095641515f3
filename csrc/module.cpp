// rotaquant._core: the Python boundary of the native core.
//
// Every entry point checks the shapes, dtypes, strides (C-contiguous) and lengths of its
// arrays against what the kernels will touch *before* any kernel runs, raising ValueError, so
// no crafted file or array can make a kernel read or write out of bounds. Kernels run with
// the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "cpu.h"
#include "kv.h"
#include "mapped.h"
#include "layout.h"
#include "pool.h"
#include "scan.h"
#include "searcher.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace rq {
namespace {

using AnyArray1 = nb::ndarray<nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// An array argument inside a list or tuple, taken as it is: no implicit dtype conversion (a
// converted temporary would not outlive this call's borrowed pointers).
template <typename T>
T array_arg(nb::handle h, const char* what) {
  try {
    return nb::cast<T>(h, false);
  } catch (const nb::cast_error&) {
    fail(std::string(what) + ": expected a C-contiguous numpy array of the right dtype and rank");
  }
}

int64_t blocks_for(int64_t rows) { return (rows + kBlockRows - 1) / kBlockRows; }

BlockLayout layout_or_fail(int64_t channels, int64_t bits) {
  if (channels < 1 || channels > (1 << 20)) fail("channels must be in 1..2**20, got " + std::to_string(channels));
  if (bits < 1 || bits > 8) fail("bits must be in 1..8, got " + std::to_string(bits));
  return BlockLayout::make(static_cast<int>(channels), static_cast<int>(bits));
}

template <typename T>
nb::ndarray<nb::numpy, T> numpy_array(std::vector<size_t> shape) {
  size_t count = 1;
  for (size_t s : shape) {
    if (__builtin_mul_overflow(count, s, &count) || count > PTRDIFF_MAX / sizeof(T)) fail("result too large");
  }
  T* data = new T[count ? count : 1]();
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  return nb::ndarray<nb::numpy, T>(data, shape.size(), shape.data(), owner);
}

// ------------------------------------------------------------------------- layout
nb::tuple layout_info(int64_t channels, int64_t bits) {
  const BlockLayout layout = layout_or_fail(channels, bits);
  nb::list groups;
  for (const Group& g : layout.groups) groups.append(nb::make_tuple(g.first, g.channels, g.offset, g.bytes));
  return nb::make_tuple(layout.block_bytes, groups);
}

void check_stream(const BlockLayout& layout, size_t length, int64_t rows, const char* what) {
  const int64_t need = blocks_for(rows) * layout.block_bytes;
  if (static_cast<int64_t>(length) < need)
    fail(std::string(what) + ": stream holds " + std::to_string(length) + " bytes, " +
              std::to_string(need) + " needed for " + std::to_string(rows) + " rows");
}

void pack_blocks_py(Array2<const uint8_t> codes, int64_t bits, Array1<uint8_t> stream, int64_t first_row) {
  const BlockLayout layout = layout_or_fail(static_cast<int64_t>(codes.shape(1)), bits);
  require(first_row >= 0, "first_row must be >= 0");
  const int64_t rows = static_cast<int64_t>(codes.shape(0));
  check_stream(layout, stream.shape(0), first_row + rows, "pack_blocks");
  const uint8_t* c = codes.data();
  const size_t count = codes.size();
  uint8_t* s = stream.data();
  uint8_t largest = 0;
  {
    nb::gil_scoped_release release;
    for (size_t i = 0; i < count; ++i) largest = std::max(largest, c[i]);
    if (largest >> bits == 0) pack_blocks(layout, c, rows, s, first_row);
  }
  if (largest >> bits) {
    fail("pack_blocks: code " + std::to_string(largest) + " does not fit " + std::to_string(bits) + " bits");
  }
}

nb::ndarray<nb::numpy, uint8_t> unpack_blocks_py(Array1<const uint8_t> stream, int64_t channels, int64_t bits,
                                               Array1<const int64_t> rows) {
  const BlockLayout layout = layout_or_fail(channels, bits);
  const int64_t capacity = static_cast<int64_t>(stream.shape(0)) / layout.block_bytes * kBlockRows;
  const int64_t* r = rows.data();
  for (size_t i = 0; i < rows.shape(0); ++i) {
    if (r[i] < 0 || r[i] >= capacity) {
      fail("unpack_blocks: row " + std::to_string(r[i]) + " outside the stream's " + std::to_string(capacity) +
           " rows");
    }
  }
  auto out = numpy_array<uint8_t>({rows.shape(0), static_cast<size_t>(channels)});
  const uint8_t* s = stream.data();
  uint8_t* o = out.data();
  {
    nb::gil_scoped_release release;
    unpack_blocks(layout, s, r, static_cast<int64_t>(rows.shape(0)), o);
  }
  return out;
}

void copy_row_py(Array1<uint8_t> dst, int64_t dst_row, Array1<const uint8_t> src, int64_t src_row, int64_t channels,
                 int64_t bits) {
  const BlockLayout layout = layout_or_fail(channels, bits);
  require(dst_row >= 0 && src_row >= 0, "copy_row: rows must be >= 0");
  check_stream(layout, dst.shape(0), dst_row + 1, "copy_row (destination)");
  check_stream(layout, src.shape(0), src_row + 1, "copy_row (source)");
  copy_row(layout, dst.data(), dst_row, src.data(), src_row);
}

// ------------------------------------------------------------------------- scan
std::vector<CodecStream> codec_from(const nb::list& codec, int64_t dim, bool projected) {
  std::vector<CodecStream> out;
  require(codec.size() >= 1 && codec.size() <= 4, "codec: 1 to 4 streams");
  for (nb::handle h : codec) {
    nb::tuple t = nb::cast<nb::tuple>(h);
    require(t.size() == 8, "codec stream: (first, channels, bits, domain, cls, scale, values, probs)");
    CodecStream s;
    s.first = nb::cast<int32_t>(t[0]);
    s.channels = nb::cast<int32_t>(t[1]);
    s.bits = nb::cast<int32_t>(t[2]);
    s.domain = nb::cast<int32_t>(t[3]);
    s.cls = nb::cast<int32_t>(t[4]);
    s.scale = nb::cast<float>(t[5]);
    auto values = array_arg<Array1<const float>>(t[6], "codec stream values");
    auto probs = array_arg<Array1<const float>>(t[7], "codec stream probs");
    s.layout = layout_or_fail(s.channels, s.bits);
    require(s.first >= 0 && s.first + s.channels <= dim, "codec stream channels outside the query dimension");
    require(s.domain == 0 || (s.domain == 1 && projected), "codec stream domain must be 0, or 1 with projected queries");
    require(s.cls >= 0 && s.cls < kMaxClasses, "codec stream class must be 0 or 1");
    require(std::isfinite(s.scale), "codec stream scale must be finite");
    const size_t levels = size_t(1) << s.bits;
    require(values.shape(0) == levels && probs.shape(0) == levels, "codec stream: values and probs need 2**bits entries");
    s.values.assign(values.data(), values.data() + levels);
    s.probs.assign(probs.data(), probs.data() + levels);
    for (size_t i = 0; i < levels; ++i) {
      require(std::isfinite(s.values[i]) && std::isfinite(s.probs[i]) && s.probs[i] >= 0, "codec stream: values and probs must be finite (probs >= 0)");
    }
    out.push_back(std::move(s));
  }
  return out;
}

int factor_half(const AnyArray1& a, const char* what) {
  const nb::dlpack::dtype d = a.dtype();
  if (!(d.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Float) && d.lanes == 1 &&
        (d.bits == 16 || d.bits == 32))) {
    fail(std::string(what) + " must be float16 or float32");
  }
  return d.bits == 16;
}

// Segments keep their Python arrays alive in `keep` while the kernels run.
SegmentView segment_from(nb::handle h, const std::vector<CodecStream>& codec, std::vector<nb::object>& keep) {
  nb::tuple t = nb::cast<nb::tuple>(h);
  require(t.size() == 7, "segment: (rows, first_row, streams, factors, residual_factors, shift, allow)");
  SegmentView v;
  v.rows = nb::cast<int64_t>(t[0]);
  v.first_row = nb::cast<int64_t>(t[1]);
  require(v.rows >= 0 && v.rows < (int64_t(1) << 31) && v.first_row >= 0, "segment: bad row counts");
  nb::list streams = nb::cast<nb::list>(t[2]);
  require(streams.size() == codec.size(), "segment: one stream per codec stream");
  for (size_t s = 0; s < codec.size(); ++s) {
    auto a = array_arg<Array1<const uint8_t>>(streams[s], "segment stream");
    check_stream(codec[s].layout, a.shape(0), v.rows, "segment stream");
    v.streams.push_back(a.data());
    keep.push_back(nb::borrow(streams[s]));
  }
  int classes = 1;
  for (const CodecStream& s : codec) classes = std::max(classes, s.cls + 1);
  for (int c = 0; c < classes; ++c) {
    require(!t[3 + c].is_none(), "segment: missing factors for a class");
    auto f = array_arg<AnyArray1>(t[3 + c], "segment factors");
    v.factor_half[c] = factor_half(f, "segment factors");
    require(static_cast<int64_t>(f.shape(0)) >= v.rows, "segment factors shorter than its rows");
    v.factors[c] = f.data();
    keep.push_back(nb::borrow(t[3 + c]));
  }
  if (!t[5].is_none()) {
    auto s = array_arg<Array1<const float>>(t[5], "segment shift");
    require(static_cast<int64_t>(s.shape(0)) >= v.rows, "segment shift shorter than its rows");
    v.shift = s.data();
    keep.push_back(nb::borrow(t[5]));
  }
  if (!t[6].is_none()) {
    auto a = array_arg<Array1<const uint64_t>>(t[6], "segment allow bitmap");
    require(static_cast<int64_t>(a.shape(0)) >= (v.rows + 63) / 64, "segment allow bitmap shorter than its rows");
    v.allow = a.data();
    keep.push_back(nb::borrow(t[6]));
  }
  return v;
}

void check_queries(const Array2<const float>& q, int64_t dim, const char* what) {
  if (static_cast<int64_t>(q.shape(1)) != dim) fail(std::string(what) + ": wrong dimension");
  const float* p = q.data();
  bool finite = true;
  for (size_t i = 0; i < q.size(); ++i) finite &= std::isfinite(p[i]);
  if (!finite) fail(std::string(what) + " must be finite");
}

// Rotated queries (m, dim) and, with a QJL stream, projected ones of the same shape: finite.
void check_query_pair(const Array2<const float>& rotated, const std::optional<Array2<const float>>& projected) {
  const int64_t dim = static_cast<int64_t>(rotated.shape(1));
  check_queries(rotated, dim, "queries");
  if (projected) {
    check_queries(*projected, dim, "projected queries");
    require(projected->shape(0) == rotated.shape(0), "projected queries: wrong count");
  }
}

nb::tuple scan_py(nb::list codec_list, nb::list segment_list, Array2<const float> rotated,
                  std::optional<Array2<const float>> projected, int64_t k) {
  const int64_t dim = static_cast<int64_t>(rotated.shape(1));
  const int64_t m = static_cast<int64_t>(rotated.shape(0));
  check_query_pair(rotated, projected);
  require(k >= 0 && k <= (int64_t(1) << 24), "k must be in 0..2**24");
  const std::vector<CodecStream> codec = codec_from(codec_list, dim, projected.has_value());
  std::vector<nb::object> keep;
  std::vector<SegmentView> segments;
  for (nb::handle h : segment_list) segments.push_back(segment_from(h, codec, keep));
  auto rows = numpy_array<int64_t>({static_cast<size_t>(m), static_cast<size_t>(k)});
  auto scores = numpy_array<float>({static_cast<size_t>(m), static_cast<size_t>(k)});
  ScanStats stats;
  {
    nb::gil_scoped_release release;
    stats = scan(codec, segments, rotated.data(), projected ? projected->data() : nullptr, m,
                 static_cast<int32_t>(dim), static_cast<int32_t>(k), rows.data(), scores.data());
  }
  return nb::make_tuple(rows, scores, stats.candidates, stats.reported);
}

nb::ndarray<nb::numpy, float> exact_scores_py(nb::list codec_list, nb::handle segment, Array2<const float> rotated,
                                              std::optional<Array2<const float>> projected,
                                              Array1<const int64_t> rows) {
  const int64_t dim = static_cast<int64_t>(rotated.shape(1));
  const int64_t m = static_cast<int64_t>(rotated.shape(0));
  check_query_pair(rotated, projected);
  const std::vector<CodecStream> codec = codec_from(codec_list, dim, projected.has_value());
  std::vector<nb::object> keep;
  const SegmentView view = segment_from(segment, codec, keep);
  const int64_t* r = rows.data();
  for (size_t i = 0; i < rows.shape(0); ++i) require(r[i] >= 0 && r[i] < view.rows, "exact_scores: row outside the segment");
  auto out = numpy_array<float>({static_cast<size_t>(m), rows.shape(0)});
  float* o = out.data();
  {
    nb::gil_scoped_release release;
    exact_scores(codec, view, rotated.data(), projected ? projected->data() : nullptr, m, static_cast<int32_t>(dim), r,
                 static_cast<int64_t>(rows.shape(0)), o);
  }
  return out;
}

// ------------------------------------------------------------------------- matmul
nb::ndarray<nb::numpy, float> matmul_py(Array2<const float> x, Array2<const float> w) {
  require(x.shape(1) == w.shape(0), "matmul: x (rows, n) and w (n, p) do not fit");
  require(w.shape(0) <= (1 << 20) && w.shape(1) <= (1 << 20), "matmul: w too large");
  require(x.shape(0) <= (size_t(1) << 31), "matmul: x too large");
  auto out = numpy_array<float>({x.shape(0), w.shape(1)});
  const MatmulArgs args{x.data(), static_cast<int64_t>(x.shape(0)), static_cast<int32_t>(w.shape(0)), w.data(),
                        static_cast<int32_t>(w.shape(1)), out.data()};
  {
    nb::gil_scoped_release release;
    if (args.rows && args.p) active_kernels().matmul(args);
  }
  return out;
}

// ------------------------------------------------------------------------- searcher
std::vector<float> matrix_of(nb::handle h, int64_t rows, int64_t cols, const char* what) {
  auto m = array_arg<Array2<const float>>(h, what);
  if (static_cast<int64_t>(m.shape(0)) != rows || static_cast<int64_t>(m.shape(1)) != cols) {
    fail(std::string(what) + ": expected shape (" + std::to_string(rows) + ", " + std::to_string(cols) + ")");
  }
  std::vector<float> out(m.data(), m.data() + m.size());
  for (float v : out) require(std::isfinite(v), "searcher: rotation and projection must be finite");
  return out;
}

// rotation: ("dense", R^T (dim, dim)) or ("factored", signs (rounds, dim), F_a^T (a, a),
// F_b^T (b, b)); projection: S^T (dim, dim) or None; scale: the metric's factor.
std::pair<std::vector<CodecStream>, QueryMap> searcher_parts(nb::list codec_list, int64_t dim, nb::tuple rotation,
                                                             nb::handle projection, float scale) {
  require(dim >= 1 && dim <= (1 << 20), "searcher: dim must be in 1..2**20");
  require(std::isfinite(scale) && scale > 0, "searcher: scale must be finite and positive");
  QueryMap map;
  map.dim = static_cast<int32_t>(dim);
  map.scale = scale;
  require(rotation.size() >= 1, "searcher: rotation must be ('dense', R^T) or ('factored', signs, F_a^T, F_b^T)");
  const std::string kind = nb::cast<std::string>(rotation[0]);
  if (kind == "dense" && rotation.size() == 2) {
    map.dense = matrix_of(rotation[1], dim, dim, "rotation matrix");
  } else if (kind == "factored" && rotation.size() == 4) {
    auto signs = array_arg<Array2<const float>>(rotation[1], "rotation signs");
    require(static_cast<int64_t>(signs.shape(1)) == dim && signs.shape(0) >= 1 && signs.shape(0) <= 8,
            "rotation signs: expected (rounds, dim), 1 to 8 rounds");
    map.signs.assign(signs.data(), signs.data() + signs.size());
    for (float v : map.signs) require(std::isfinite(v), "searcher: rotation and projection must be finite");
    const int64_t a = static_cast<int64_t>(array_arg<Array2<const float>>(rotation[2], "rotation F_a").shape(0));
    require(a >= 1 && dim % a == 0, "rotation factors: a must divide dim");
    map.a = static_cast<int32_t>(a);
    map.b = static_cast<int32_t>(dim / a);
    map.fa_t = matrix_of(rotation[2], a, a, "rotation F_a");
    map.fb_t = matrix_of(rotation[3], dim / a, dim / a, "rotation F_b");
  } else {
    fail("searcher: rotation must be ('dense', R^T) or ('factored', signs, F_a^T, F_b^T)");
  }
  if (!projection.is_none()) map.projection = matrix_of(projection, dim, dim, "projection");
  return {codec_from(codec_list, dim, !projection.is_none()), std::move(map)};
}

nb::tuple searcher_search(const Searcher& searcher, nb::list segment_list, Array2<const float> queries, int64_t k) {
  const int64_t m = static_cast<int64_t>(queries.shape(0));
  check_queries(queries, searcher.dim(), "queries");
  require(k >= 0 && k <= (int64_t(1) << 24), "k must be in 0..2**24");
  std::vector<nb::object> keep;
  std::vector<SegmentView> segments;
  for (nb::handle h : segment_list) segments.push_back(segment_from(h, searcher.codec(), keep));
  auto rows = numpy_array<int64_t>({static_cast<size_t>(m), static_cast<size_t>(k)});
  auto scores = numpy_array<float>({static_cast<size_t>(m), static_cast<size_t>(k)});
  ScanStats stats;
  {
    nb::gil_scoped_release release;
    stats = searcher.search(segments, queries.data(), m, static_cast<int32_t>(k), rows.data(), scores.data());
  }
  return nb::make_tuple(rows, scores, stats.candidates, stats.reported);
}

// An IVF index's lists (searcher.h, ListSet) with the Python arrays they view kept alive.
struct PyListSet {
  ListSet set;
  std::vector<nb::object> keep;
};

// segments: every list's segments, list after list; first (nlist + 1) int64: list l's
// segments are [first[l], first[l+1]); centroids (nlist, dim) float32; offset (nlist,) float32.
PyListSet* searcher_lists(const Searcher& searcher, nb::list segment_list, Array1<const int64_t> first,
                          Array2<const float> centroids, Array1<const float> offset) {
  const int64_t nlist = static_cast<int64_t>(centroids.shape(0));
  const int64_t dim = searcher.dim();
  require(nlist >= 1 && nlist <= (int64_t(1) << 20), "lists: nlist must be in 1..2**20");
  require(static_cast<int64_t>(centroids.shape(1)) == dim, "lists: centroids of the wrong dimension");
  require(static_cast<int64_t>(first.shape(0)) == nlist + 1, "lists: first must hold nlist + 1 values");
  require(static_cast<int64_t>(offset.shape(0)) == nlist, "lists: one offset per list");
  const int64_t n_segments = static_cast<int64_t>(segment_list.size());
  require(first.data()[0] == 0 && first.data()[nlist] == n_segments,
          "lists: first must run from 0 to the number of segments");
  auto out = std::make_unique<PyListSet>();
  ListSet& set = out->set;
  set.nlist = static_cast<int32_t>(nlist);
  for (nb::handle h : segment_list) set.segments.push_back(segment_from(h, searcher.codec(), out->keep));
  set.first.assign(first.data(), first.data() + nlist + 1);
  set.rows.assign(nlist, 0);
  int64_t row_end = 0;
  for (int64_t l = 0; l < nlist; ++l) {
    require(set.first[l] <= set.first[l + 1], "lists: first must not decrease");
    for (int64_t s = set.first[l]; s < set.first[l + 1]; ++s) {
      set.rows[l] += set.segments[s].rows;
      row_end = std::max(row_end, set.segments[s].first_row + set.segments[s].rows);
    }
  }
  require(row_end < (int64_t(1) << 62), "lists: rows out of range");
  set.centroids_t.assign(dim * nlist, 0.0f);
  const float* c = centroids.data();
  for (int64_t l = 0; l < nlist; ++l) {
    for (int64_t j = 0; j < dim; ++j) {
      require(std::isfinite(c[l * dim + j]), "lists: centroids must be finite");
      set.centroids_t[j * nlist + l] = c[l * dim + j];
    }
    require(std::isfinite(offset.data()[l]), "lists: offsets must be finite");
  }
  set.offset.assign(offset.data(), offset.data() + nlist);
  return out.release();
}

nb::tuple searcher_search_lists(const Searcher& searcher, const PyListSet& lists, Array2<const float> queries,
                                int64_t k, int64_t nprobe, std::optional<Array1<const int64_t>> allowed,
                                double target) {
  const int64_t m = static_cast<int64_t>(queries.shape(0));
  check_queries(queries, searcher.dim(), "queries");
  require(k >= 0 && k <= (int64_t(1) << 24), "k must be in 0..2**24");
  require(nprobe >= 1 && nprobe <= (int64_t(1) << 20), "nprobe must be in 1..2**20");
  RowFilter filter;
  if (allowed) {
    const int64_t* rows = allowed->data();
    const int64_t count = static_cast<int64_t>(allowed->shape(0));
    for (int64_t i = 0; i < count; ++i) {
      require(rows[i] >= 0 && (i == 0 || rows[i] > rows[i - 1]), "allowed rows must be sorted, distinct and >= 0");
    }
    require(std::isfinite(target) && target >= 0, "target must be finite and >= 0");
    filter = RowFilter{rows, count, target};
  }
  auto rows = numpy_array<int64_t>({static_cast<size_t>(m), static_cast<size_t>(k)});
  auto scores = numpy_array<float>({static_cast<size_t>(m), static_cast<size_t>(k)});
  ScanStats stats;
  {
    nb::gil_scoped_release release;
    stats = searcher.search_lists(lists.set, queries.data(), m, static_cast<int32_t>(k),
                                  static_cast<int32_t>(nprobe), allowed ? &filter : nullptr, rows.data(),
                                  scores.data());
  }
  return nb::make_tuple(rows, scores, stats.candidates, stats.reported);
}



// ------------------------------------------------------------------------- probes
// A dependent chain of 8n integer additions (one per cycle on every x86-64 and AArch64 core),
// GIL released: 8n / seconds estimates the core clock, and the rate of several threads
// spinning at once shows whether each has a core of its own (SMT siblings share one).
// For the benchmarks (bench/scan.py); returns seconds.
double spin(int64_t n) {
  require(n >= 0 && n <= (int64_t(1) << 40), "spin: n must be in 0..2**40");
  nb::gil_scoped_release release;
  const auto start = std::chrono::steady_clock::now();
  uint64_t x = 0;
  for (int64_t i = 0; i < n; ++i) {
#if defined(__x86_64__) || defined(_M_X64)
    __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                     "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                     : "+r"(x));
#elif defined(__aarch64__)
    __asm__ volatile("add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\t"
                     "add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1"
                     : "+r"(x));
#else
    x += 8;
#endif
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  return x == uint64_t(-1) ? 0.0 : elapsed.count();  // x used: the loop stays
}

// ------------------------------------------------------------------------- config
nb::dict config() {
  nb::dict d;
  nb::list names;
  for (const Kernels* k : available_kernels()) names.append(k->name);
  d["variants"] = names;
  d["active"] = active_kernels().name;
  d["threads"] = pool_size();
  d["avx2"] = cpu_features().avx2;
  d["avx512"] = cpu_features().avx512;
  d["neon"] = cpu_features().neon;
  d["dotprod"] = cpu_features().dotprod;
  return d;
}

}  // namespace
}  // namespace rq

NB_MODULE(_core, m) {
  using namespace rq;
  m.doc() = "rotaquant native core: block layout, index scan and KV row kernels (see csrc/)";
  m.def("config", &config, "Variants available, the active one, thread count, CPU features.");
  m.def("select", [](const std::string& name) { select_kernels(name); }, "name"_a,
        "Make `name` the active kernel variant (ValueError if not available).");
  m.def("layout_info", &layout_info, "channels"_a, "bits"_a,
        "(block bytes, groups [(first channel, channels, byte offset, bytes)]).");
  m.def("pack_blocks", &pack_blocks_py, "codes"_a.noconvert(), "bits"_a, "stream"_a.noconvert(), "first_row"_a);
  m.def("unpack_blocks", &unpack_blocks_py, "stream"_a.noconvert(), "channels"_a, "bits"_a, "rows"_a.noconvert());
  m.def("copy_row", &copy_row_py, "dst"_a.noconvert(), "dst_row"_a, "src"_a.noconvert(), "src_row"_a, "channels"_a,
        "bits"_a);
  m.def("scan", &scan_py, "codec"_a, "segments"_a, "rotated"_a.noconvert(), "projected"_a.noconvert().none(), "k"_a);
  m.def("exact_scores", &exact_scores_py, "codec"_a, "segment"_a, "rotated"_a.noconvert(),
        "projected"_a.noconvert().none(), "rows"_a.noconvert());
  m.def("spin", &spin, "n"_a, "Seconds for a dependent chain of 8n integer additions (clock probe).");
  m.def("matmul", &matmul_py, "x"_a.noconvert(), "w"_a.noconvert(),
        "x @ w (float32) with the active variant's kernel (the query transforms' products).");
  nb::class_<Searcher>(m, "Searcher",
                       "One index's search: codec streams, query transform, scan plans (csrc/searcher.h).")
      .def("__init__",
           [](Searcher* self, nb::list codec, int64_t dim, nb::tuple rotation, nb::handle projection, float scale) {
             auto [streams, map] = searcher_parts(codec, dim, rotation, projection, scale);
             new (self) Searcher(std::move(streams), std::move(map));
           },
           "codec"_a, "dim"_a, "rotation"_a, "projection"_a.none(), "scale"_a)
      .def("search", &searcher_search, "segments"_a, "queries"_a.noconvert(), "k"_a,
           "(rows (m, k) int64, scores (m, k) float32, candidates, reported) of raw queries (m, dim).")
      .def("lists", &searcher_lists, "segments"_a, "first"_a.noconvert(), "centroids"_a.noconvert(),
           "offset"_a.noconvert(), nb::rv_policy::take_ownership,
           "An IVF index's lists for search_lists (csrc/searcher.h, ListSet).")
      .def("search_lists", &searcher_search_lists, "lists"_a, "queries"_a.noconvert(), "k"_a, "nprobe"_a,
           "allowed"_a.noconvert().none() = nb::none(), "target"_a = 0.0,
           "(rows, scores, candidates, reported): the best k of each query's nprobe nearest lists "
           "(allowed: sorted index rows; then the nearest lists holding them until they hold target).");
  nb::class_<PyListSet>(m, "ListSet", "An IVF index's lists as the native scan reads them.");
  register_kv(m);
  register_mapped(m);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
}
