"""ColdTier storage and the native readers (against the torch codec and plain matmuls)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rotaquant import _native
from rotaquant.kv import cold as cold_module
from rotaquant.kv.codec import HeadCodec
from rotaquant.kv.cold import ColdTier

CODECS = [
    pytest.param(lambda bits=bits: HeadCodec(64, bits, seed=3), id=f"{bits}b")
    for bits in (1, 2, 3, 4, 5, 6, 7, 8)
] + [
    pytest.param(lambda: HeadCodec(64, 3.5), id="3.5b"),
    pytest.param(
        lambda: HeadCodec(64, 2.5, outliers=torch.arange(32)[None].expand(2, 32)),
        id="2.5b-outliers",
    ),
    pytest.param(lambda: HeadCodec(64, 3, mode="prod"), id="3b-prod"),
]


def _tier(codec, tokens=300, batch=2, heads=2):
    torch.manual_seed(0)
    tier = ColdTier(codec)
    states = torch.randn(batch, heads, tokens, codec.head_dim)
    tier.append(states[..., :100, :])
    tier.append(states[..., 100:, :])
    return tier, states


@pytest.mark.parametrize("make", CODECS)
def test_compiled_readers_equal_torch_decode(make):
    tier, _ = _tier(make())
    tier.evict(keep=7, count=50)  # two live ranges
    snap = tier.snapshot()
    packed = [torch.cat([p[..., a:b, :] for a, b in snap.ranges], -2) for p in snap.packed]
    scales = [torch.cat([s[..., a:b] for a, b in snap.ranges], -1) for s in snap.scales]
    reference = snap.codec.decode(packed, scales, rotated=True)  # torch ops
    torch.testing.assert_close(snap.decode(rotated=True), reference, rtol=1e-5, atol=1e-5)
    queries = torch.randn(2, 2, 5, 64)
    domains = snap.codec.query_domains(queries)
    torch.testing.assert_close(
        snap.scores(domains),
        domains["rotated"] @ reference.transpose(-1, -2),
        rtol=1e-4,
        atol=1e-4,
    )
    weights = torch.softmax(torch.randn(2, 2, 5, snap.length), dim=-1)
    torch.testing.assert_close(
        snap.weighted_sum(weights), weights @ reference, rtol=1e-4, atol=1e-5
    )


def test_snapshots_survive_appends_evictions_and_compaction():
    tier, states = _tier(HeadCodec(64, 4))
    before = tier.snapshot()
    decoded = before.decode()
    tier.append(torch.randn(2, 2, 500, 64))  # grows: new buffers
    tier.evict(keep=0, count=700)  # compaction: new buffers again
    assert tier.length == 100
    torch.testing.assert_close(before.decode(), decoded)
    torch.testing.assert_close(tier.snapshot().decode(), tier.snapshot().decode())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 90)),
            st.tuples(st.just("evict"), st.integers(0, 20), st.integers(0, 60)),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_live_tokens_follow_a_list_model(operations):
    """Appends and evictions keep exactly the tokens a plain list would, in order, and the
    buffers never hold more than 64 dead rows beyond the live ones."""
    codec = HeadCodec(8, 8)
    tier, model, counter = ColdTier(codec), [], 0
    for op in operations:
        if op[0] == "append":
            # token i is encoded as a vector whose first channel is i + 1 (8-bit: recoverable)
            states = torch.zeros(1, 1, op[1], 8)
            states[..., 0] = torch.arange(counter + 1, counter + op[1] + 1, dtype=torch.float32)
            tier.append(states)
            model.extend(range(counter + 1, counter + op[1] + 1))
            counter += op[1]
        else:
            keep, count = op[1], op[2]
            count = min(count, max(0, len(model) - keep))
            tier.evict(keep, count)
            del model[keep : keep + count]
        assert tier.length == len(model)
        if model:
            decoded = tier.snapshot().decode()[0, 0]
            ratios = decoded[:, 0] / torch.tensor(model, dtype=torch.float32)
            assert ((ratios - 1).abs() < 0.05).all()
        assert tier._rows <= 2 * tier.length + 64


def test_evicting_more_than_held_is_refused():
    tier, _ = _tier(HeadCodec(64, 4), tokens=10)
    with pytest.raises(ValueError, match="evict"):
        tier.evict(keep=5, count=6)


def test_nbytes_counts_capacity():
    tier, _ = _tier(HeadCodec(64, 4), tokens=70, batch=1, heads=3)
    assert tier.nbytes == 3 * 74 * (32 + 2)  # 70 tokens -> capacity 70 + 70 // 16 rows


@pytest.mark.parametrize("variant", _native.variants())
def test_readers_on_every_variant_and_thread_count_agree(monkeypatch, variant):
    """The native readers give the same result on every kernel variant, on one thread or
    split over the pool."""
    tier, _ = _tier(HeadCodec(64, 3), tokens=2000, batch=1, heads=3)
    snap = tier.snapshot()
    queries = snap.codec.query_domains(torch.randn(1, 3, 2, 64))
    weights = torch.rand(1, 3, 2, snap.length)
    expected = (snap.scores(queries), snap.weighted_sum(weights), snap.decode())
    with _native.using_variant(variant):
        for threads in (1, 2):
            monkeypatch.setattr(cold_module, "READER_THREADS", threads)
            got = (snap.scores(queries), snap.weighted_sum(weights), snap.decode())
            for a, b in zip(got, expected, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
