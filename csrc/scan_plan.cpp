// The scan's plan and margins (scan_plan.h).
//
// Quantization. Per class, the query's channels (times the stream's scale) become int8
// weights w = round(q / qs), qs = max|q| / 127, and every stream's codebook values int8 levels
// l = round(value / cs), cs = max|value| / L (one cs per class, so the streams of a class add
// into one integer sum; L the variant's level_max: 127 for VNNI and scalar, 63 for AVX2, whose
// byte products saturate at int16). A row's approximate score is qs * cs * sum w * l, which the
// kernels get as delta * (S - (L + 1) * sum w) with S = sum w * (l + L + 1) (unsigned levels
// for the byte dot products); bias folds in the constant.
//
// Margin. The error of channel i for code c, err_i(c) = q_i * value(c) - qs * cs * w_i * l(c),
// depends only on the code. A row's error is the sum over its channels; we centre it by its
// mean under the codec's code law (mu) and bound the rest two ways, taking the smaller:
//   worst case: sum of each channel's largest |err| (+ |mu|): always holds;
//   Bernstein: for independent centred terms bounded by c with total variance s2,
//     P(|sum| > t) <= 2 exp(-t^2 / (2 (s2 + c t / 3))); t solves it for 1e-9.
// The Bernstein bound treats the channels of a rotated vector as independent (what the codec's
// rotation is for); it is the one in force at large dimension, where the worst case is about
// sqrt(d) times too wide to prune. A row's lower bound is score - margin, its upper bound
// score + margin, both times the row's factor.
//
// Pair tables (a class whose streams are all 2-bit, on variants that take them). Two channels'
// exact contribution e(c) = x_a v(c_a) + x_b v(c_b) has 16 values, one per code pair c; the
// table holds T(c) = round((e(c) - min e) / delta) in 0..127, delta = (the largest range of
// any pair) / 127, so that two entries add within a byte and a lookup does the work of two
// multiplications. A partial group's channels get single-channel tables the same way. The
// error of a term, e(c) - min e - delta T(c), again depends only on the code (pair), so the
// same centring and the same two bounds apply, with the moments computed from the 16 (or 4)
// cases under the code law (the channels of a pair independent). The variant that scans by
// tables builds them (pair_tables.h: float32, vectorized over terms; the float32 slack below
// covers its rounding).
#include "scan_plan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace rq {

namespace {

constexpr double kLogTwoOverDelta = 21.416;  // ln(2 / 1e-9)

struct ClassStats {
  double mean = 0, variance = 0, worst = 0, largest = 0, weight_sum = 0;
  double base = 0;  // tables: the sum of the terms' minima
  double sum_bound = 0;  // the largest |S| the kernels may accumulate
};

// Round half away from zero, for |x| well inside the int64 range: an integer conversion, where
// std::nearbyint is a libm call in code compiled for baseline x86-64 (no SSE4.1).
inline double round_int(double x) { return double(int64_t(x + (x >= 0 ? 0.5 : -0.5))); }

// The two bounds on a class's centred error (module comment): the smaller.
double margin_of(const ClassStats& st) {
  const double a = st.largest * kLogTwoOverDelta / 3;
  const double bernstein = a + std::sqrt(a * a + 2 * st.variance * kLogTwoOverDelta);
  return std::min(st.worst + std::fabs(st.mean), bernstein);
}

// The step of a table class: its widest term's range / 127, so that no entry clamps. (Finer
// steps that clamp the widest terms measured wider margins on Gaussian queries at d = 384:
// the clamped cases' errors dominate the bound.) A term's range is the sum of its channels'.
double table_delta(const std::vector<CodecStream>& codec, const ScanPlan& plan, int cls,
                   const float* rotated, const float* projected) {
  double widest = 0;
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    if (cs.cls != cls) continue;
    const float* q = (cs.domain ? projected : rotated) + cs.first;
    double vmin = cs.values[0], vmax = vmin;
    for (int c = 1; c < 4; ++c) {
      vmin = std::min(vmin, double(cs.values[c]));
      vmax = std::max(vmax, double(cs.values[c]));
    }
    const double span = (vmax - vmin) * std::fabs(double(cs.scale));
    for (const PairTerm& t : plan.terms[s]) {
      double x = std::fabs(double(q[t.first]));
      if (t.channels == 2) x += std::fabs(double(q[t.first + 1]));
      widest = std::max(widest, x * span);
    }
  }
  return widest > 0 ? widest / 127 : 1;
}

}  // namespace

ScanPlan make_plan(const std::vector<CodecStream>& codec, const Kernels& kern) {
  const int level_max = kern.level_max;
  const bool pair_tables = kern.pair_tables_of != nullptr;
  ScanPlan plan;
  plan.pair_tables_of = kern.pair_tables_of;
  plan.level_max = level_max;
  plan.level_offset = kern.signed_levels ? 0 : level_max + 1;
  for (const CodecStream& s : codec) plan.n_classes = std::max(plan.n_classes, s.cls + 1);
  for (int c = 0; c < plan.n_classes; ++c) plan.tables[c] = pair_tables;
  for (const CodecStream& s : codec) plan.tables[s.cls] = plan.tables[s.cls] && s.bits == 2;
  double largest[kMaxClasses] = {0, 0};
  for (const CodecStream& s : codec) {
    for (float v : s.values) largest[s.cls] = std::max(largest[s.cls], double(std::fabs(v)));
  }
  for (int c = 0; c < kMaxClasses; ++c) {
    plan.level_scale[c] = largest[c] > 0 ? largest[c] / level_max : 1;
  }
  int32_t weight_offset = 0;
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    const BlockLayout& layout = cs.layout;
    plan.block_bytes_total += layout.block_bytes;
    plan.stream_weight_offset.push_back(weight_offset);
    std::vector<uint8_t> table(256, static_cast<uint8_t>(plan.level_offset));
    ScanPlan::Moments mo;
    const double scale = plan.level_scale[cs.cls];
    for (size_t c = 0; c < cs.values.size(); ++c) {
      const double level =
          std::max(-double(level_max), std::min(double(level_max), std::nearbyint(cs.values[c] / scale)));
      table[c] = static_cast<uint8_t>(static_cast<int>(level) + plan.level_offset);  // modulo 256
      const double v = cs.values[c], p = cs.probs[c];
      mo.v += p * v;
      mo.l += p * level;
      mo.vv += p * v * v;
      mo.vl += p * v * level;
      mo.ll += p * level * level;
      mo.max_level = std::max(mo.max_level, std::fabs(level));
      mo.max_gap = std::max(mo.max_gap, std::fabs(v - scale * level));
    }
    plan.levels.push_back(table);
    plan.moments.push_back(mo);
    const bool by_tables = plan.tables[cs.cls];
    std::vector<PairTerm> terms;
    if (by_tables) {  // the tables' terms, at their byte offsets in the stream's data
      int32_t at = 0;
      for (const Group& g : layout.groups) {
        if (g.channels == kGroupChannels) {
          terms.push_back({g.first, 2, at});
          terms.push_back({g.first + 2, 2, at + 16});
          at += 32;
        } else {
          for (int j = 0; j < g.channels; ++j) terms.push_back({g.first + j, 1, at + 4 * j});
          at += 16;
        }
      }
    }
    plan.terms.push_back(std::move(terms));
    for (size_t i = 0; i < layout.groups.size();) {
      const Group& g = layout.groups[i];
      ScanRun run{};
      run.stream = static_cast<int32_t>(s);
      run.offset = g.offset;
      run.channels = g.channels;
      run.bits = cs.bits;
      run.weight_offset = weight_offset;
      run.chunk = !by_tables ? 4 : g.channels == kGroupChannels ? 32 : 16;
      run.cls = cs.cls;
      run.table = by_tables;
      size_t j = i;
      while (j < layout.groups.size() && layout.groups[j].channels == g.channels) ++j;
      run.count = static_cast<int32_t>(j - i);
      plan.runs.push_back(run);
      weight_offset += run.chunk * run.count;
      i = j;
    }
  }
  plan.weight_bytes = weight_offset;
  // the kernels' int32 sums must not overflow: |S| <= 127 per table term, or 127 *
  // (level_max + offset) per channel of a weights class
  double bound[kMaxClasses] = {0, 0};
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    bound[cs.cls] += plan.tables[cs.cls] ? 127.0 * plan.terms[s].size()
                                         : 127.0 * (level_max + plan.level_offset) * cs.channels;
  }
  for (double b : bound) {
    if (b >= 2147483647.0) {
      throw std::invalid_argument("the scan's int32 sums could overflow at this dimension (" +
                                  std::to_string(static_cast<int64_t>(b)) + " > 2**31 - 1)");
    }
  }
  if (plan.runs.size() > static_cast<size_t>(kMaxRuns)) throw std::invalid_argument("scan plan: too many runs");
  // the kernels keep one class's sums in registers at a time: runs of a class together
  std::stable_sort(plan.runs.begin(), plan.runs.end(),
                   [](const ScanRun& x, const ScanRun& y) { return x.cls < y.cls; });
  return plan;
}

void prepare_query(const std::vector<CodecStream>& codec, const ScanPlan& plan,
                   const float* rotated, const float* projected, int8_t* weights,
                   QueryConsts& consts) {
  double largest[kMaxClasses] = {0, 0};
  for (const CodecStream& s : codec) {
    const float* q = (s.domain ? projected : rotated) + s.first;
    for (int i = 0; i < s.channels; ++i) {
      largest[s.cls] = std::max(largest[s.cls], std::fabs(double(q[i]) * s.scale));
    }
  }
  double qs[kMaxClasses];
  for (int c = 0; c < kMaxClasses; ++c) qs[c] = largest[c] > 0 ? largest[c] / 127 : 1;
  std::memset(weights, 0, plan.weight_bytes);
  ClassStats stats[kMaxClasses];
  double table_step[kMaxClasses] = {1, 1};
  for (int c = 0; c < plan.n_classes; ++c) {
    if (plan.tables[c]) table_step[c] = table_delta(codec, plan, c, rotated, projected);
  }
  // channel i of weight w: err(c) = x v(c) - delta w l(c) for the query value x; its mean and
  // variance under the code law follow from the stream's moments, and since
  // v = cs l + gap, |err| <= cs max|l| |x - qs w| + |x| max|gap|
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    const float* q = (cs.domain ? projected : rotated) + cs.first;
    if (plan.tables[cs.cls]) {
      PairTableStats ts;
      const std::vector<PairTerm>& terms = plan.terms[s];
      plan.pair_tables_of(PairTableArgs{terms.data(), static_cast<int32_t>(terms.size()), q, cs.scale,
                                        cs.values.data(), cs.probs.data(), table_step[cs.cls],
                                        reinterpret_cast<uint8_t*>(weights) + plan.stream_weight_offset[s],
                                        &ts});
      ClassStats& st = stats[cs.cls];
      st.base += ts.base;
      st.sum_bound += 127.0 * terms.size();
      st.mean += ts.mean;
      st.variance += ts.variance;
      st.worst += ts.worst;
      st.largest = std::max(st.largest, ts.largest);
      continue;
    }
    const double delta = qs[cs.cls] * plan.level_scale[cs.cls];
    const ScanPlan::Moments& mo = plan.moments[s];
    ClassStats& st = stats[cs.cls];
    int8_t* w = weights + plan.stream_weight_offset[s];
    const double to_weight = 1.0 / qs[cs.cls];
    for (int i = 0; i < cs.channels; ++i) {
      const double x = double(q[i]) * cs.scale;
      const double wi = std::max(-127.0, std::min(127.0, round_int(x * to_weight)));
      w[i] = static_cast<int8_t>(wi);
      st.weight_sum += wi;
      st.sum_bound += 127.0 * (plan.level_max + plan.level_offset);
      const double b = delta * wi;
      const double mean = x * mo.v - b * mo.l;
      const double square = x * x * mo.vv - 2 * x * b * mo.vl + b * b * mo.ll;
      const double worst = plan.level_scale[cs.cls] * mo.max_level * std::fabs(x - qs[cs.cls] * wi) +
                           std::fabs(x) * mo.max_gap;
      st.mean += mean;
      st.variance += std::max(0.0, square - mean * mean);
      st.worst += worst;
      st.largest = std::max(st.largest, worst + std::fabs(mean));
    }
  }
  for (int c = 0; c < kMaxClasses; ++c) {
    const ClassStats& st = stats[c];
    const double delta = plan.tables[c] ? table_step[c] : qs[c] * plan.level_scale[c];
    // tables: sum of the terms' minima; weights: the unsigned levels' offset taken back out
    const double bias = (plan.tables[c] ? st.base : -plan.level_offset * delta * st.weight_sum) +
                        st.mean;
    // float32 evaluation of bias + delta * S, with room to spare
    const double slack = 1e-6 * (std::fabs(bias) + delta * st.sum_bound);
    consts.cls[c].bias = static_cast<float>(bias);
    consts.cls[c].delta = static_cast<float>(delta);
    consts.cls[c].margin = static_cast<float>(margin_of(st) + slack);
  }
}

}  // namespace rq
