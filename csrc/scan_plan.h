// The scan's plan and margins: what one scan call derives from the codec once (the kernels'
// runs, int8 levels, the moments of the codes' rounding errors) and from each query (int8
// weights and the constants that bound a row's score). See scan_plan.cpp for the arithmetic.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels.h"
#include "scan.h"

namespace rq {

// What the kernels need of the codec, and what the margins need of its codes.
struct ScanPlan {
  std::vector<ScanRun> runs;
  int32_t n_classes = 1;
  bool tables[kMaxClasses] = {false, false};  // per class: scored by pair tables
  int64_t weight_bytes = 0;                  // per query: weights and tables
  int64_t block_bytes_total = 0;
  int32_t level_max = 63;                    // of the kernel variant
  int32_t level_offset = 64;                 // level_max + 1 of the kernel variant (0 with
                                             // signed levels)
  std::vector<std::vector<uint8_t>> levels;  // per stream: 256 entries, level + offset (as
                                             // uint8: an int8 level's bits when offset is 0)
  // per stream, under its code law: E[v], E[l], E[v^2], E[v l], E[l^2] (v the code's value,
  // l its signed level), the largest |l| and the largest |v - cs * l|
  struct Moments {
    double v = 0, l = 0, vv = 0, vl = 0, ll = 0, max_level = 0, max_gap = 0;
  };
  std::vector<Moments> moments;
  double level_scale[kMaxClasses] = {1, 1};  // cs per class
  std::vector<int32_t> stream_weight_offset;
  std::vector<std::vector<PairTerm>> terms;  // per stream: its table terms (table classes)
  void (*pair_tables_of)(const PairTableArgs&) = nullptr;  // the variant's table builder
};

// The plan of a codec for a kernel variant: its levels lie in [-level_max, level_max]; with
// a table builder (pair_tables_of) 2-bit classes are scored by pair tables.
ScanPlan make_plan(const std::vector<CodecStream>& codec, const Kernels& kern);

// The data of one query (plan.weight_bytes: int8 weights, or the tables of table classes) and
// its constants.
void prepare_query(const std::vector<CodecStream>& codec, const ScanPlan& plan,
                   const float* rotated, const float* projected, int8_t* weights,
                   QueryConsts& consts);

}  // namespace rq
