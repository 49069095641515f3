"""The native scan (csrc/scan.cpp + variants) against a numpy reference: exact top-k of the
float scores, for every width, fractional and QJL streams, odd dims, partial blocks, several
segments, allow-lists, l2 shifts, k beyond n, and every kernel variant this CPU runs."""

import threading

import numpy as np
import pytest

from rotaquant import _core, _native

from .test_layout import packed

VARIANTS = _native.variants()

# (dim, [(first, channels, bits, domain, cls, scale)])
CODECS = {
    "4bit-d50": (50, [(0, 50, 4, 0, 0, 1.0)]),
    "2bit-d64": (64, [(0, 64, 2, 0, 0, 1.0)]),
    "3bit-d101": (101, [(0, 101, 3, 0, 0, 1.0)]),
    "1bit-d30": (30, [(0, 30, 1, 0, 0, 1.0)]),
    "5bit-d17": (17, [(0, 17, 5, 0, 0, 1.0)]),
    "6bit-d9": (9, [(0, 9, 6, 0, 0, 1.0)]),
    "7bit-d7": (7, [(0, 7, 7, 0, 0, 1.0)]),
    "8bit-d12": (12, [(0, 12, 8, 0, 0, 1.0)]),
    "3.5bit-d64": (64, [(0, 32, 4, 0, 0, 1.0), (32, 32, 3, 0, 0, 1.0)]),
    "2.5bit-d50": (50, [(0, 25, 3, 0, 0, 1.0), (25, 25, 2, 0, 0, 1.0)]),
    "prod3-d64": (64, [(0, 64, 2, 0, 0, 1.0), (0, 64, 1, 1, 1, float(np.sqrt(np.pi / 2) / 64))]),
    "4bit-d384": (384, [(0, 384, 4, 0, 0, 1.0)]),
    # 2-bit classes go through pair tables where a variant has them (AVX2): a partial group
    # alone, full groups + a partial one, more groups than the 16-bit lanes hold unflushed
    "2bit-d3": (3, [(0, 3, 2, 0, 0, 1.0)]),
    "2bit-d50": (50, [(0, 50, 2, 0, 0, 1.0)]),
    "2bit-d1100": (1100, [(0, 1100, 2, 0, 0, 1.0)]),
    "prod3-d50": (50, [(0, 50, 2, 0, 0, 1.0), (0, 50, 1, 1, 1, float(np.sqrt(np.pi / 2) / 50))]),
    # full 3- and 4-bit groups only (the AVX2 variant's own decoders): the last group of the
    # last block ends the buffer, so any load past the group would leave it
    "3bit-d64": (64, [(0, 64, 3, 0, 0, 1.0)]),
    "4bit-d64": (64, [(0, 64, 4, 0, 0, 1.0)]),
}


def make_codec(rng, spec):
    codec = []
    for first, channels, bits, domain, cls, scale in spec:
        levels = 2**bits
        if domain == 1:
            values = np.array([-1.0, 1.0], np.float32)
            probs = np.array([0.5, 0.5], np.float32)
        else:
            values = np.sort(rng.standard_normal(levels)).astype(np.float32) / 8
            probs = rng.uniform(0.2, 1.0, levels)
            probs = (probs / probs.sum()).astype(np.float32)
        codec.append((first, channels, bits, domain, cls, scale, values, probs))
    return codec


def _normalized(probs):
    p = probs.astype(np.float64)
    return p / p.sum()


def make_segment(rng, codec, rows, first_row, shift=False, allow=None):
    """(segment tuple for _core.scan, per-stream codes, factors, shift)"""
    codes = [
        rng.choice(2**bits, size=(rows, channels), p=_normalized(probs)).astype(np.uint8)
        for _, channels, bits, _, _, _, _, probs in codec
    ]
    streams = [
        packed(c, s[2]) if rows else np.zeros(0, np.uint8)
        for c, s in zip(codes, codec, strict=True)
    ]
    classes = max(s[4] for s in codec) + 1
    factors = [
        rng.uniform(0.5, 2.0, rows).astype(np.float16 if c == 0 else np.float32)
        for c in range(classes)
    ]
    shifts = -rng.uniform(0, 1, rows).astype(np.float32) if shift else None
    bitmap = None
    if allow is not None:
        bits = np.zeros(-(-rows // 64) * 64, bool)
        bits[allow] = True
        bitmap = np.packbits(bits, bitorder="little").view(np.uint64).copy()
    second = factors[1] if classes > 1 else None
    segment = (rows, first_row, streams, factors[0], second, shifts, bitmap)
    return segment, codes, factors, shifts


def reference_scores(codec, codes, factors, shifts, rotated, projected):
    """(m, rows) float64 exact scores."""
    total = 0
    per_class = {}
    for (first, channels, _, domain, cls, scale, values, _), c in zip(codec, codes, strict=True):
        q = (projected if domain else rotated)[:, first : first + channels].astype(np.float64)
        decoded = values.astype(np.float64)[c]  # (rows, channels)
        per_class[cls] = per_class.get(cls, 0) + scale * (q @ decoded.T)
    for cls, s in per_class.items():
        total = total + s * factors[cls].astype(np.float64)[None, :]
    if shifts is not None:
        total = total + shifts[None, :]
    return total


def reference_topk(scores, rows, k):
    order = np.lexsort((rows[None, :].repeat(scores.shape[0], 0), -scores), axis=1)[:, :k]
    top_rows = rows[order]
    top = np.take_along_axis(scores, order, axis=1)
    out_rows = np.full((scores.shape[0], k), -1, np.int64)
    out_scores = np.full((scores.shape[0], k), -np.inf)
    out_rows[:, : top.shape[1]] = top_rows
    out_scores[:, : top.shape[1]] = top
    return out_rows, out_scores


def run_case(name, m, k, sizes, seed, shift=False, allow_fraction=None):
    rng = np.random.default_rng(seed)
    dim, spec = CODECS[name]
    codec = make_codec(rng, spec)
    segments, all_scores, all_rows = [], [], []
    first = 0
    rotated = rng.standard_normal((m, dim)).astype(np.float32)
    prod = any(s[3] for s in spec)
    projected = rng.standard_normal((m, dim)).astype(np.float32) if prod else None
    for rows in sizes:
        allow = None
        if allow_fraction is not None:
            allow = np.flatnonzero(rng.uniform(size=rows) < allow_fraction)
        segment, codes, factors, shifts = make_segment(rng, codec, rows, first, shift, allow)
        segments.append(segment)
        scores = reference_scores(codec, codes, factors, shifts, rotated, projected)
        local = np.arange(rows) if allow is None else allow
        all_scores.append(scores[:, local])
        all_rows.append(first + local)
        first += rows
    scores = np.concatenate(all_scores, axis=1) if all_scores else np.zeros((m, 0))
    rows = np.concatenate(all_rows) if all_rows else np.zeros(0, np.int64)
    expected = reference_topk(scores, rows, k)
    results = {}
    for variant in VARIANTS:
        with _native.using_variant(variant):
            got_rows, got_scores, candidates, _ = _core.scan(codec, segments, rotated, projected, k)
        np.testing.assert_array_equal(got_rows, expected[0], err_msg=variant)
        finite = np.isfinite(expected[1])
        np.testing.assert_allclose(got_scores[finite], expected[1][finite], rtol=2e-5, atol=2e-5)
        assert np.isneginf(got_scores[~finite]).all()
        assert candidates >= min(k, rows.size) * m
        results[variant] = (got_rows, got_scores)
    return results


@pytest.mark.parametrize("name", list(CODECS))
def test_exact_topk_of_every_width_on_every_variant(name):
    run_case(name, m=3, k=10, sizes=[1000], seed=1)


@pytest.mark.parametrize("name", ["4bit-d50", "3bit-d101", "prod3-d64", "3.5bit-d64"])
@pytest.mark.parametrize(
    "sizes", [[70, 33], [0, 31], [1], [64, 64, 5]], ids=["two", "empty+partial", "one-row", "three"]
)
def test_segments_partial_blocks_and_k_beyond_n(name, sizes):
    run_case(name, m=13, k=50, sizes=sizes, seed=2)


@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.5, 1.0])
def test_allow_lists_are_exact_within_the_allowed_rows(fraction):
    run_case("2bit-d64", m=5, k=7, sizes=[300, 95], seed=3, allow_fraction=fraction)


def test_l2_shift_and_many_queries():
    run_case("2.5bit-d50", m=21, k=5, sizes=[500], seed=4, shift=True)


@pytest.mark.parametrize("m", [1, 7, 8, 9, 17])
@pytest.mark.parametrize("name", ["3bit-d64", "4bit-d64", "2bit-d50", "prod3-d50"])
def test_query_counts_around_a_pass(name, m):
    """Passes of 8 queries (3 with AVX2 pair tables, 4 with NEON ones) and their remainders."""
    run_case(name, m=m, k=6, sizes=[333], seed=7)


def test_variants_agree():
    """Same rows; scores equal up to float32 summation order (AVX-512 re-scores in SIMD)."""
    results = run_case("4bit-d384", m=9, k=20, sizes=[2000], seed=5)
    first = next(iter(results.values()))
    for rows, scores in results.values():
        np.testing.assert_array_equal(rows, first[0])
        np.testing.assert_allclose(scores, first[1], rtol=1e-6, atol=1e-6)


def test_concurrent_callers_get_their_own_results():
    rng = np.random.default_rng(6)
    dim, spec = CODECS["4bit-d50"]
    codec = make_codec(rng, spec)
    segment, *_ = make_segment(rng, codec, 5000, 0)
    queries = [rng.standard_normal((4, dim)).astype(np.float32) for _ in range(8)]
    expected = [_core.scan(codec, [segment], q, None, 10)[0] for q in queries]
    got = [None] * len(queries)

    def work(i):
        for _ in range(5):
            got[i] = _core.scan(codec, [segment], queries[i], None, 10)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)


def test_the_boundary_checks_every_array():
    rng = np.random.default_rng(7)
    dim, spec = CODECS["4bit-d50"]
    codec = make_codec(rng, spec)
    segment, *_ = make_segment(rng, codec, 100, 0)
    q = rng.standard_normal((2, dim)).astype(np.float32)
    rows, stream_list, f0 = segment[0], segment[2], segment[3]
    bad = [
        ((200, 0, stream_list, f0, None, None, None), "stream holds"),
        ((rows, 0, [stream_list[0][:-1]], f0, None, None, None), "stream holds"),
        ((rows, 0, stream_list, f0[:50], None, None, None), "factors shorter"),
        ((rows, 0, stream_list, f0.astype(np.float64), None, None, None), "float16 or float32"),
        ((rows, 0, stream_list, f0, None, np.zeros(10, np.float32), None), "shift shorter"),
        ((rows, 0, stream_list, f0, None, None, np.zeros(1, np.uint64)), "allow bitmap shorter"),
        ((rows, 0, stream_list, f0, None, None, np.zeros(2, np.int64)), "right dtype"),
    ]
    for seg, message in bad:
        with pytest.raises(ValueError, match=message):
            _core.scan(codec, [seg], q, None, 5)
    with pytest.raises(ValueError, match="finite"):
        _core.scan(codec, [segment], np.full((1, dim), np.nan, np.float32), None, 5)
    with pytest.raises(ValueError, match="dimension"):
        _core.scan(codec, [segment], q, np.zeros((2, dim + 1), np.float32), 5)
    wide = [(0, 60, 4, 0, 0, 1.0, *codec[0][6:])]
    with pytest.raises(ValueError, match="outside the query dimension"):
        _core.scan(wide, [segment], q, None, 5)


def test_int32_sums_refused_past_their_range():
    """127 * 255 per channel on the scalar variant: 70,000 channels at 8 bits could overflow."""
    rng = np.random.default_rng(8)
    codec = make_codec(rng, [(0, 70_000, 8, 0, 0, 1.0)])
    segment, *_ = make_segment(rng, codec, 1, 0)
    query = rng.standard_normal((1, 70_000)).astype(np.float32)
    with _native.using_variant("scalar"), pytest.raises(ValueError, match="int32 sums"):
        _core.scan(codec, [segment], query, None, 1)
