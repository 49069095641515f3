"""IndexConfig: every index option checked at construction (also without a dim yet), one dict
form, and the configuration a VectorIndex reports and reloads with."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rotaquant as rq
from rotaquant.index import IndexConfig


@settings(max_examples=50, deadline=None)
@given(
    dim=st.sampled_from([None, 8, 16, 50, 384]),
    bits=st.sampled_from([1, 2, 2.5, 3, 4, 8]),
    metric=st.sampled_from(["ip", "cosine", "l2"]),
    mode=st.sampled_from(["mse", "prod"]),
    rotation=st.sampled_from(["hadamard", "haar"]),
    seed=st.integers(0, 2**31),
    norm_dtype=st.sampled_from(["float16", "float32"]),
    keep_vectors=st.booleans(),
)
def test_round_trips_through_dict(
    dim, bits, metric, mode, rotation, seed, norm_dtype, keep_vectors
):
    if mode == "prod" and bits < 2:
        bits = 2
    config = IndexConfig(
        dim=dim,
        bits=bits,
        metric=metric,
        mode=mode,
        rotation=rotation,
        seed=seed,
        norm_dtype=norm_dtype,
        keep_vectors=keep_vectors,
    )
    assert IndexConfig.from_dict(config.to_dict()) == config
    if dim is not None:
        assert config.codec.norm_correction  # an index always stores corrected scales
    if dim is not None and (rotation == "hadamard" or dim <= 50):  # dense Haar: slow to build
        assert rq.VectorIndex.from_config(config).config == config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metric": "dot"}, "metric"),
        ({"mode": "fast"}, "mode"),
        ({"rotation": "dct"}, "rotation"),
        ({"seed": -1}, "seed"),
        ({"norm_dtype": "int8"}, "norm_dtype"),
        ({"bits": 0}, "bits"),
        ({"bits": True}, "bits"),
        ({"keep_vectors": 1}, "keep_vectors"),
    ],
)
@pytest.mark.parametrize("dim", [None, 64])
def test_refuses_bad_options_with_or_without_a_dim(options, message, dim):
    with pytest.raises(ValueError, match=message):
        IndexConfig(dim=dim, **options)


def test_a_width_is_checked_once_the_dim_is_known():
    config = IndexConfig(dim=None, bits=2.1)  # realisable at dim 10, 20, ...
    assert config.with_dim(20).codec.groups[0].channels == 2
    with pytest.raises(ValueError, match="cannot be realised exactly at dim=16"):
        config.with_dim(16)
    with pytest.raises(ValueError, match="no dim"):
        _ = config.codec


def test_unknown_options_name_the_accepted_ones():
    with pytest.raises(ValueError, match="accepted: dim, bits, metric"):
        IndexConfig.from_dict({"bits": 4, "nprobe": 8})


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        IndexConfig(dim=8).bits = 2


def test_the_index_reports_and_reloads_its_config(tmp_path):
    index = rq.VectorIndex(24, 3.5, metric="l2", seed=4, keep_vectors=True)
    index.add(np.random.default_rng(0).standard_normal((40, 24), dtype=np.float32))
    assert index.config == IndexConfig(dim=24, bits=3.5, metric="l2", seed=4, keep_vectors=True)
    assert index.codec_config == index.config.codec
    index.save(tmp_path / "x.rq")
    assert rq.VectorIndex.load(tmp_path / "x.rq").config == index.config
