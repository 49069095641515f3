#include "searcher.h"

#include <cmath>
#include <stdexcept>

#include "cpu.h"

namespace rq {

Searcher::Searcher(std::vector<CodecStream> codec, QueryMap map)
    : codec_(std::move(codec)), map_(std::move(map)) {
  map_.validate();
  if (codec_.empty()) throw std::invalid_argument("searcher: no codec streams");
  for (const CodecStream& s : codec_) {
    if (s.first < 0 || s.first + s.channels > map_.dim) {
      throw std::invalid_argument("searcher: codec stream channels outside the query dimension");
    }
    projects_ = projects_ || s.domain == 1;
  }
  if (projects_ != !map_.projection.empty()) {
    throw std::invalid_argument("searcher: a projection goes with a projected (QJL) stream, and only then");
  }
  plan_for(active_kernels());  // a codec the kernels cannot take fails here, not at the first search
}

std::shared_ptr<const ScanPlan> Searcher::plan_for(const Kernels& kern) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [k, plan] : plans_) {
    if (k == &kern) return plan;
  }
  auto plan = std::make_shared<const ScanPlan>(make_plan(codec_, kern));
  plans_.emplace_back(&kern, plan);
  return plan;
}

ScanStats Searcher::search(const std::vector<SegmentView>& segments, const float* queries,
                           int64_t m, int32_t k, int64_t* out_rows, float* out_scores,
                           const Probes* probes) const {
  const Kernels& kern = active_kernels();
  const std::shared_ptr<const ScanPlan> plan = plan_for(kern);
  const int64_t size = m * map_.dim;
  // kept per calling thread across calls, like scan()'s query data (no page faults per call)
  thread_local std::vector<float> kept_rotated, kept_projected;
  std::vector<float>& rotated = kept_rotated;
  std::vector<float>& projected = kept_projected;
  rotated.resize(size);
  projected.resize(projects_ ? size : 0);
  map_.apply(queries, m, rotated.data(), projects_ ? projected.data() : nullptr);
  // finite queries can still overflow in the transform: nothing non-finite reaches the kernels
  bool finite = true;
  for (float x : rotated) finite &= std::isfinite(x);
  for (float x : projected) finite &= std::isfinite(x);
  if (!finite) throw std::invalid_argument("queries: too large (not finite once rotated)");
  const ScanStats stats = scan(codec_, *plan, kern, segments, rotated.data(),
                               projects_ ? projected.data() : nullptr, m, map_.dim, k, out_rows, out_scores,
                               probes);
  if (rotated.capacity() * sizeof(float) > kKeepBytes) {
    std::vector<float>().swap(rotated);
    std::vector<float>().swap(projected);
  }
  return stats;
}

}  // namespace rq
