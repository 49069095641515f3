"""HeadCodec: the codec on torch head vectors."""

import pytest
import torch

import rotaquant as rq
from rotaquant.kv.codec import HeadCodec, fit_heads
from rotaquant.kv.config import FitOptions


@pytest.mark.parametrize("bits", [2, 3, 3.5, 4])
def test_distortion_near_lloyd_max_and_norm_kept(bits):
    x = torch.randn(4000, 64) * 3
    codec = HeadCodec(64, bits)
    streams, scales = codec.encode(x)
    y = codec.decode(streams, scales)
    mse = (((x - y) ** 2).sum(-1) / (x**2).sum(-1)).mean().item()
    optimum = rq.TurboQuantizer(64, bits, norm_correction=True).mse_optimum
    assert mse == pytest.approx(optimum, rel=0.05)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=2e-3, atol=1e-3)
    assert codec.bytes_per_vector() == int(64 * bits / 8) + 2
    rotated = codec.decode(streams, scales, rotated=True)
    torch.testing.assert_close(codec.unrotate(rotated), y)


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        HeadCodec(12, 4)
    with pytest.raises(ValueError):
        HeadCodec(64, 9)


def _heads(x: torch.Tensor) -> torch.Tensor:
    """(n, d) -> (1, 1, n, d): one head, n tokens."""
    return x[None, None]


def test_outlier_channels_get_the_higher_width_and_their_own_scale():
    """With per-head outliers, the chosen channels are rotated and coded apart at the higher
    width: vectors living only on them are coded like a 4-bit codec at their dimension."""
    torch.manual_seed(0)
    outliers = torch.arange(0, 64, 2)[None]  # the even channels
    codec = HeadCodec(64, 3.5, outliers=outliers)
    assert codec.scale_count == 2 and codec.bytes_per_vector() == 28 + 4
    matrix = codec.query_matrix[0]
    torch.testing.assert_close(matrix @ matrix.T, torch.eye(64), atol=1e-5, rtol=0)
    x = torch.zeros(4000, 64)
    x[:, 0::2] = torch.randn(4000, 32)
    packed, scales = codec.encode(_heads(x))
    y = codec.decode(packed, scales)[0, 0]
    mse = (((x - y) ** 2).sum(-1) / (x**2).sum(-1)).mean().item()
    optimum = rq.TurboQuantizer(32, 4, norm_correction=True).mse_optimum
    assert mse == pytest.approx(optimum, rel=0.08)
    assert (y[:, 1::2].abs() < 1e-6).all()  # nothing leaks into the other group
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=2e-3, atol=1e-3)


def test_outliers_cut_error_on_channel_skewed_vectors():
    """Keys have a few loud channels: giving exactly those the higher width beats a split made
    in the rotated domain, where every coordinate looks alike."""
    torch.manual_seed(1)
    loudness = torch.ones(64)
    loudness[torch.randperm(64)[:8]] = 12.0
    x = torch.randn(4000, 64) * loudness
    outliers = loudness.topk(32).indices.sort().values[None]

    def error(codec):
        packed, scales = codec.encode(_heads(x))
        return ((x - codec.decode(packed, scales)[0, 0]) ** 2).sum().item()

    assert error(HeadCodec(64, 2.5, outliers=outliers)) < 0.8 * error(HeadCodec(64, 2.5))


def test_prod_mode_inner_products_are_unbiased():
    """TurboQuant_prod: averaged over QJL projections (seeds), ⟨q, k̂⟩ converges to ⟨q, k⟩;
    MSE-only codes at the same width keep a bias of the same order as the spread."""
    torch.manual_seed(2)
    x = torch.randn(64, 64)
    q = torch.randn(64)
    exact = x @ q
    estimates = []
    for seed in range(300):
        codec = HeadCodec(64, 2, seed=seed, mode="prod")
        packed, scales = codec.encode(_heads(x))
        estimates.append(codec.decode(packed, scales)[0, 0] @ q)
    estimates = torch.stack(estimates)
    spread = estimates.std(dim=0) / 300**0.5
    assert ((estimates.mean(dim=0) - exact).abs() < 4.5 * spread).float().mean() > 0.97
    codec = HeadCodec(64, 2, mode="prod")
    assert codec.bytes_per_vector() == 8 + 8 + 2 + 2  # 1-bit codes, signs, scale, ‖r‖
    mse_biased = [
        HeadCodec(64, 2, seed=s).decode(*HeadCodec(64, 2, seed=s).encode(_heads(x)))[0, 0] @ q
        for s in range(50)
    ]
    assert (torch.stack(mse_biased).mean(0) - exact).abs().mean() > 0.5 * spread.mean()


def test_bad_modes_and_outlier_counts_are_refused():
    with pytest.raises(ValueError, match="mode"):
        HeadCodec(64, 4, mode="qjl")
    with pytest.raises(ValueError, match="outlier"):
        HeadCodec(64, 3.5, outliers=torch.arange(16)[None])


def test_each_head_uses_its_own_outlier_channels():
    """Heads with different loud channels (batch 3, 2 heads): every head's vectors, living
    only on its outlier channels, come back without leaking into the others."""
    torch.manual_seed(3)
    outliers = torch.stack([torch.arange(0, 64, 2), torch.arange(32, 64)])
    x = torch.zeros(3, 2, 50, 64)
    x[:, 0, :, 0::2] = torch.randn(3, 50, 32)
    x[:, 1, :, 32:] = torch.randn(3, 50, 32)
    codec = HeadCodec(64, 4.5, outliers=outliers)
    y = codec.decode(*codec.encode(x))
    assert (y[:, 0, :, 1::2].abs() < 1e-5).all() and (y[:, 1, :, :32].abs() < 1e-5).all()
    error = ((x - y) ** 2).sum() / (x**2).sum()
    assert error < 2 * rq.TurboQuantizer(32, 5, norm_correction=True).mse_optimum


def test_fitted_statistics_code_the_residual_and_are_counted():
    """Centering and channel scaling fitted to real-looking keys (a large shared offset and
    uneven channels): decoded vectors equal offset + decoded residual, the error falls, and
    the stored statistics are counted as float16 (outlier indices as int16)."""
    torch.manual_seed(0)
    spread = torch.linspace(0.2, 3.0, 64)
    x = torch.randn(1, 2, 200, 64) * spread + 4 * torch.randn(2, 1, 64)
    plain = HeadCodec(64, 4)
    fit = fit_heads(x, 3.5, "mse", FitOptions(center=True, scale_power=0.5))
    fitted = HeadCodec(64, 3.5, 0, "mse", fit.outliers, fit.offset, fit.channel_scale)
    errors = []
    for codec in (plain, fitted):
        packed, scales = codec.encode(x)
        y = codec.decode(packed, scales)
        errors.append(((y - x).square().sum() / x.square().sum()).item())
        q = torch.randn(1, 2, 3, 64)
        rotated = codec.decode(packed, scales, rotated=True)
        logits = codec.rotate(q) @ rotated.transpose(-1, -2)
        if codec.offset is not None:
            logits = logits + codec.offset_scores(q)[..., None]
        torch.testing.assert_close(logits, q @ y.transpose(-1, -2), rtol=1e-4, atol=1e-3)
    assert errors[1] < errors[0] / 2  # 3.5 fitted bits beat 4 plain ones here
    assert fitted.stats_nbytes == 2 * (2 * 64 + 2 * 64) + 2 * 2 * 32
    assert plain.stats_nbytes == 0
    assert torch.equal(fit.offset, fit.offset.half().float())  # float16-exact as stored
