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
#include "scan_plan.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace rq {

namespace {

constexpr double kLogTwoOverDelta = 21.416;  // ln(2 / 1e-9)

struct ClassStats {
  double mean = 0, variance = 0, worst = 0, largest = 0, weight_sum = 0;
};

}  // namespace

ScanPlan make_plan(const std::vector<CodecStream>& codec, int level_max) {
  ScanPlan plan;
  plan.level_offset = level_max + 1;
  for (const CodecStream& s : codec) plan.n_classes = std::max(plan.n_classes, s.cls + 1);
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
      table[c] = static_cast<uint8_t>(level + plan.level_offset);
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
    for (size_t i = 0; i < layout.groups.size();) {
      const Group& g = layout.groups[i];
      ScanRun run{};
      run.stream = static_cast<int32_t>(s);
      run.offset = g.offset;
      run.channels = g.channels;
      run.bits = cs.bits;
      run.weight_group = weight_offset / 4 + static_cast<int32_t>(i);
      run.cls = cs.cls;
      size_t j = i;
      while (j < layout.groups.size() && layout.groups[j].channels == g.channels) ++j;
      run.count = static_cast<int32_t>(j - i);
      plan.runs.push_back(run);
      i = j;
    }
    weight_offset += 4 * static_cast<int32_t>(layout.groups.size());
  }
  plan.weight_bytes = weight_offset;
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
  // channel i of weight w: err(c) = x v(c) - delta w l(c) for the query value x; its mean and
  // variance under the code law follow from the stream's moments, and since
  // v = cs l + gap, |err| <= cs max|l| |x - qs w| + |x| max|gap|
  for (size_t s = 0; s < codec.size(); ++s) {
    const CodecStream& cs = codec[s];
    const float* q = (cs.domain ? projected : rotated) + cs.first;
    const double delta = qs[cs.cls] * plan.level_scale[cs.cls];
    const ScanPlan::Moments& mo = plan.moments[s];
    ClassStats& st = stats[cs.cls];
    int8_t* w = weights + plan.stream_weight_offset[s];
    const double to_weight = 1.0 / qs[cs.cls];
    for (int i = 0; i < cs.channels; ++i) {
      const double x = double(q[i]) * cs.scale;
      const double wi = std::max(-127.0, std::min(127.0, std::nearbyint(x * to_weight)));
      w[i] = static_cast<int8_t>(wi);
      st.weight_sum += wi;
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
    const double delta = qs[c] * plan.level_scale[c];
    const double a = st.largest * kLogTwoOverDelta / 3;
    const double bernstein = a + std::sqrt(a * a + 2 * st.variance * kLogTwoOverDelta);
    const double worst = st.worst + std::fabs(st.mean);
    const double bias = -plan.level_offset * delta * st.weight_sum + st.mean;
    // float32 evaluation of bias + delta * S, with room to spare
    const double slack = 1e-6 * (std::fabs(bias) + delta * 127.0 * 255.0 * plan.weight_bytes);
    consts.cls[c].bias = static_cast<float>(bias);
    consts.cls[c].delta = static_cast<float>(delta);
    consts.cls[c].margin = static_cast<float>(std::min(worst, bernstein) + slack);
  }
}

}  // namespace rq
