// The ISA-independent half of the variants that decode codes to bytes in 256-bit or 128-bit
// registers (AVX2, NEON): which routine scores each run of a block, the pair-table groups
// split into passes of kTableQueries queries, and the variant's entry points.
//
// Not a self-contained header: a variant includes it inside its own unnamed namespace, after
// defining what it calls (Decoder, NibbleCodes, TripleCodes, SmallLevels, WideLevels,
// run_groups, table_queries, table_partial, Lanes, kQueries, kTableQueries), so that each
// copy is compiled with that variant's instruction-set flags.

template <int Q>
inline void table_groups(const ScanArgs& a, const ScanRun& run, int64_t block, int32_t (&sums)[Q][32]) {
  const uint8_t* first = a.blocks[run.stream] + block * a.block_bytes[run.stream] + run.offset;
  const uint8_t* tables = reinterpret_cast<const uint8_t*>(a.weights) + Q * run.weight_offset;
  constexpr int Full = Q / kTableQueries * kTableQueries, Rest = Q - Full;
  for (int q0 = 0; q0 < Full; q0 += kTableQueries) {
    table_queries<Q, kTableQueries>(run, first, tables, q0, sums);
  }
  if constexpr (Rest > 0) table_queries<Q, Rest>(run, first, tables, Full, sums);
}

template <int Q>
inline void block_sums(const ScanArgs& a, const Decoder* decoders, int64_t block,
                       int32_t (&sums)[kMaxClasses][Q][32]) {
  std::memset(sums, 0, sizeof sums);
  for (int i = 0; i < a.n_runs; ++i) {
    const ScanRun& run = a.runs[i];
    int32_t (&s)[Q][32] = sums[run.cls];
    if (run.table) {
      if (run.channels == 4) {
        table_groups<Q>(a, run, block, s);
      } else {
        table_partial<Q>(a, run, decoders[i], block, s);
      }
    } else if (run.channels == 4 && run.bits == 4) {
      run_groups<Q, NibbleCodes, SmallLevels>(a, run, NibbleCodes{}, block, s);
    } else if (run.channels == 4 && run.bits == 3) {
      run_groups<Q, TripleCodes, SmallLevels>(a, run, TripleCodes{}, block, s);
    } else if (run.bits <= 4) {
      run_groups<Q, Decoder, SmallLevels>(a, run, decoders[i], block, s);
    } else {
      run_groups<Q, Decoder, WideLevels>(a, run, decoders[i], block, s);
    }
  }
}

void scan(ScanArgs& a) {
  Decoder decoders[kMaxRuns];
  for (int i = 0; i < a.n_runs; ++i) decoders[i].init(a.runs[i].channels, a.runs[i].bits);
  scan_with<Lanes, kQueries>(a, [&](int64_t b, auto& sums) { block_sums(a, decoders, b, sums); });
}

void matmul(const MatmulArgs& a) { matmul_with<Lanes>(a); }

void pair_tables_of(const PairTableArgs& a) { fill_pair_tables_with(a); }
