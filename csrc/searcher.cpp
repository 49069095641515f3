#include "searcher.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "cpu.h"
#include "pool.h"

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

ScanStats Searcher::search_lists(const ListSet& lists, const float* queries, int64_t m,
                                 int32_t k, int32_t nprobe, const RowFilter* filter,
                                 int64_t* out_rows, float* out_scores) const {
  const Kernels& kern = active_kernels();
  const int64_t nlist = lists.nlist;
  // <q, c> for every query and list
  std::vector<float> dots(m * nlist);
  if (m && nlist) {
    kern.matmul(MatmulArgs{queries, m, map_.dim, lists.centroids_t.data(), lists.nlist, dots.data()});
  }
  // a filter: the allowed rows of each list (its rows are [first_row of its first segment, + rows))
  const auto allowed_in = [&](int64_t lo, int64_t hi) {
    const int64_t* a = std::lower_bound(filter->rows, filter->rows + filter->count, lo);
    const int64_t* b = std::lower_bound(a, filter->rows + filter->count, hi);
    return std::make_pair(a, b);
  };
  std::vector<int64_t> held;
  if (filter) {
    held.assign(nlist, 0);
    for (int64_t l = 0; l < nlist; ++l) {
      if (lists.first[l] == lists.first[l + 1]) continue;
      const int64_t lo = lists.segments[lists.first[l]].first_row;
      const auto [a, b] = allowed_in(lo, lo + lists.rows[l]);
      held[l] = b - a;
    }
  }
  // each query's lists, nearest first: the nprobe nearest whether or not they hold rows (as
  // FAISS: which lists a query reads does not depend on what else is stored, so a shard probes
  // the lists one index would); with a filter, the nearest holding allowed rows until they
  // hold `target` of them
  std::vector<std::vector<int32_t>> chosen(m);
  parallel_for(m, [&](int64_t q, int) {
    const float* d = dots.data() + q * nlist;
    thread_local std::vector<float> close;
    thread_local std::vector<int32_t> order;
    close.resize(nlist);
    order.clear();
    for (int32_t l = 0; l < nlist; ++l) {
      close[l] = d[l] + lists.offset[l];
      if (!filter || held[l] > 0) order.push_back(l);
    }
    const auto nearer = [&](int32_t a, int32_t b) {  // ties by lower list
      return close[a] > close[b] || (close[a] == close[b] && a < b);
    };
    std::vector<int32_t>& mine = chosen[q];
    if (filter) {
      std::sort(order.begin(), order.end(), nearer);
      double sum = 0;
      for (int32_t l : order) {
        if (sum >= filter->target) break;
        mine.push_back(l);
        sum += static_cast<double>(held[l]);
      }
      return;
    }
    const int64_t probes = std::min<int64_t>(nprobe, nlist);
    const auto cut = order.begin() + probes;
    if (probes <= 64) {  // a heap of the nearest: n log(probes)
      std::partial_sort(order.begin(), cut, order.end(), nearer);
    } else {  // selection, then the chosen sorted: n + probes log(probes)
      std::nth_element(order.begin(), cut - 1, order.end(), nearer);
      std::sort(order.begin(), cut, nearer);
    }
    mine.assign(order.begin(), cut);
  });
  // the segments to scan and, per segment, the queries scanning it (CSR, see Probes); with a
  // filter each segment gets a bitmap of its allowed rows (segments without any are skipped)
  std::vector<SegmentView> segments;
  std::vector<int64_t> starts{0};
  std::vector<int32_t> entry_query;
  std::vector<float> entry_bias;
  std::vector<std::vector<uint64_t>> bitmaps;
  const float scale = map_.scale;
  const auto add_list = [&](int32_t l, const int32_t* query, int64_t count) {
    for (int64_t s = lists.first[l]; s < lists.first[l + 1]; ++s) {
      SegmentView view = lists.segments[s];
      if (view.rows == 0) continue;
      if (filter) {
        const auto [a, b] = allowed_in(view.first_row, view.first_row + view.rows);
        if (a == b) continue;
        std::vector<uint64_t> bits((view.rows + 63) / 64, 0);
        for (const int64_t* r = a; r < b; ++r) {
          const int64_t local = *r - view.first_row;
          bits[local / 64] |= uint64_t(1) << (local % 64);
        }
        bitmaps.push_back(std::move(bits));
        view.allow = bitmaps.back().data();  // a vector's buffer survives moves of the outer one
      }
      segments.push_back(view);
      for (int64_t i = 0; i < count; ++i) {
        entry_query.push_back(query[i]);
        entry_bias.push_back(scale * dots[query[i] * nlist + l]);
      }
      starts.push_back(static_cast<int64_t>(entry_query.size()));
    }
  };
  if (m == 1) {  // nearest first: good thresholds early
    const int32_t zero = 0;
    for (int32_t l : chosen[0]) add_list(l, &zero, 1);
  } else {  // list by list, each once for every query probing it
    std::vector<int64_t> count(nlist + 1, 0);
    for (const auto& mine : chosen) {
      for (int32_t l : mine) ++count[l + 1];
    }
    std::partial_sum(count.begin(), count.end(), count.begin());
    std::vector<int32_t> by_list(count[nlist]);
    std::vector<int64_t> fill(count.begin(), count.end() - 1);
    for (int64_t q = 0; q < m; ++q) {
      for (int32_t l : chosen[q]) by_list[fill[l]++] = static_cast<int32_t>(q);
    }
    for (int32_t l = 0; l < nlist; ++l) {
      if (count[l + 1] > count[l]) add_list(l, by_list.data() + count[l], count[l + 1] - count[l]);
    }
  }
  const Probes plan{starts.data(), entry_query.data(), entry_bias.data()};
  return search(segments, queries, m, k, out_rows, out_scores, &plan);
}

}  // namespace rq
