// One index's search, built once (index/search.py keeps one per VectorIndex): the codec
// streams, the query map and, per kernel variant, the scan plan. `search` takes raw queries, so
// a single query pays for its transform, weights and scan, and nothing that depends only on the
// index.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels.h"
#include "query_map.h"
#include "scan.h"
#include "scan_plan.h"

namespace rq {

// An IVF index's lists as the scan takes them: every list's segments, list after list, and
// the centroids a query is probed against. Built once per state of the index (Python rebuilds
// it after a write), read by any number of searches at once.
struct ListSet {
  std::vector<SegmentView> segments;  // list after list
  std::vector<int64_t> first;         // [nlist + 1]: list l's segments [first[l], first[l+1])
  std::vector<int64_t> rows;          // [nlist]: rows per list (empty lists are never probed)
  std::vector<float> centroids_t;     // dim x nlist: the centroids, transposed
  std::vector<float> offset;          // [nlist]: closeness = <q, c> + offset (l2: -|c|^2/2)
  int32_t nlist = 0;
};

// Restricts an IVF search to some rows: `rows` (sorted, distinct index rows); each query reads
// its nearest lists holding allowed rows until they hold `target` of them.
struct RowFilter {
  const int64_t* rows = nullptr;
  int64_t count = 0;
  double target = 0;
};

class Searcher {
 public:
  // Throws std::invalid_argument when the map or the codec do not fit together.
  Searcher(std::vector<CodecStream> codec, QueryMap map);

  const std::vector<CodecStream>& codec() const { return codec_; }
  int32_t dim() const { return map_.dim; }

  // queries (m, dim) float32: the best k rows of the segments for each (see scan(); `probes`
  // restricts which queries scan which segment).
  ScanStats search(const std::vector<SegmentView>& segments, const float* queries, int64_t m,
                   int32_t k, int64_t* out_rows, float* out_scores,
                   const Probes* probes = nullptr) const;

  // queries (m, dim) float32: the best k rows of each query's `nprobe` nearest lists (by
  // closeness, ties by lower list; empty ones included and skipped), each list scanned once
  // for all the queries probing it,
  // scores plus scale * <q, c> (residual codes). One query scans its lists nearest first.
  // With a `filter`, only its rows, in the lists it selects (RowFilter).
  ScanStats search_lists(const ListSet& lists, const float* queries, int64_t m, int32_t k,
                         int32_t nprobe, const RowFilter* filter, int64_t* out_rows,
                         float* out_scores) const;

 private:
  std::shared_ptr<const ScanPlan> plan_for(const Kernels& kern) const;

  std::vector<CodecStream> codec_;
  QueryMap map_;
  bool projects_ = false;
  mutable std::mutex mutex_;
  mutable std::vector<std::pair<const Kernels*, std::shared_ptr<const ScanPlan>>> plans_;
};

}  // namespace rq
