"""KVConfig: frozen, checked at construction, one dict form for every path that takes options
(TurboQuantCache, from_dict / cache_config, eval-kv), and the 0.1 positional spelling."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rotaquant.kv
from rotaquant.codec.codes import CodecConfig
from rotaquant.kv import KVConfig, TurboQuantCache
from rotaquant.kv.config import head_config

from .test_cache import _config

WIDTHS = st.sampled_from([1, 2, 2.5, 3, 3.25, 3.5, 4, 5, 6, 8])


@settings(max_examples=60, deadline=None)
@given(
    key_bits=WIDTHS,
    value_bits=WIDTHS,
    residual_length=st.integers(0, 512),
    sink_tokens=st.integers(0, 8),
    boundary=st.one_of(WIDTHS, st.tuples(WIDTHS, WIDTHS)),
    key_scale=st.floats(0, 1),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
def test_round_trips_through_dict(
    key_bits, value_bits, residual_length, sink_tokens, boundary, key_scale, flags
):
    config = KVConfig(
        key_bits=key_bits,
        value_bits=value_bits,
        residual_length=residual_length,
        sink_tokens=sink_tokens,
        boundary_layers=1,
        boundary_bits=boundary,
        key_scale=key_scale,
        outliers=flags[0],
        center_keys=flags[1],
        center_values=flags[2],
        hot_float16=flags[3],
    )
    assert KVConfig.from_dict(config.to_dict()) == config
    assert set(config.to_dict()) == {f.name for f in dataclasses.fields(KVConfig)}


def test_frozen_and_normalized():
    config = KVConfig(key_bits=4.0, boundary_bits=[6, 4])
    assert config.key_bits == 4 and isinstance(config.key_bits, int)
    assert config.boundary_bits == (6, 4)
    assert KVConfig(boundary_bits=5).boundary_bits == (5, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.key_bits = 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key_bits": 0}, "key_bits"),
        ({"value_bits": 9}, "value_bits"),
        ({"key_bits": True}, "key_bits"),
        ({"boundary_bits": (4, 3, 2)}, "boundary_bits"),
        ({"key_mode": "fast"}, "key_mode"),
        ({"key_mode": "prod", "key_bits": 1.5}, "prod"),
        ({"residual_length": -1}, "residual_length"),
        ({"sink_tokens": 1.5}, "sink_tokens"),
        ({"max_tokens": 4, "sink_tokens": 4}, "max_tokens"),
        ({"attention": "flash"}, "attention"),
        ({"key_scale": 2}, "key_scale"),
        ({"key_scale": "0.5"}, "key_scale"),
        ({"outliers": 1}, "outliers"),
        ({"key_bits": 3.01}, "key_bits=3.01 cannot be realised at any head_dim"),
    ],
)
def test_refuses_bad_options_naming_them(options, message):
    with pytest.raises(ValueError, match=message):
        KVConfig(**options)
    with pytest.raises(ValueError, match=message):
        TurboQuantCache(**options)
    with pytest.raises(ValueError, match=message):
        TurboQuantCache.from_dict(options)


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(ValueError, match="unknown TurboQuantCache option.*accepted: key_bits"):
        KVConfig.from_dict({"nbits": 4})
    with pytest.raises(ValueError, match="unknown TurboQuantCache option"):
        TurboQuantCache(nbits=4)


def test_a_width_realisable_only_at_other_head_dims_fails_at_the_model_naming_it():
    KVConfig(key_bits=3.3)  # 3.3 is realisable at head_dim 80
    with pytest.raises(ValueError, match="key_bits=3.3"):
        TurboQuantCache(key_bits=3.3, config=_config())  # head_dim 16


@pytest.mark.parametrize(("head_dim", "bits"), [(64, 3.3), (64, 3.3125), (128, 2.7), (256, 3.01)])
def test_suggested_widths_are_exact_and_accepted(head_dim, bits):
    """The widths an error suggests, pasted back as printed, are accepted by what raised it:
    the codec at any dim, the KV cache at its head_dim (whole bytes per token)."""
    with pytest.raises(ValueError, match="nearest: ") as refused:
        head_config(head_dim, bits)
    suggested = refused.value.args[0].split("nearest: ")[1].rstrip(")").split(", ")
    assert suggested
    for text in suggested:
        head_config(head_dim, float(text))
    with pytest.raises(ValueError, match="e.g.") as refused:
        assert CodecConfig(head_dim - 1, bits).groups
    for text in refused.value.args[0].split("(e.g. ")[1].rstrip(")").split(" or "):
        assert CodecConfig(head_dim - 1, float(text)).groups


def test_the_cache_holds_its_config_and_reads_fields_from_it():
    kv = KVConfig(key_bits=3.5, value_bits=2.5, residual_length=8, attention="decoded")
    cache = TurboQuantCache(kv)
    assert cache.kv_config == kv
    assert (cache.key_bits, cache.value_bits, cache.residual_length) == (3.5, 2.5, 8)
    changed = TurboQuantCache(kv, residual_length=4)  # keywords replace fields
    assert changed.kv_config == kv.replace(residual_length=4)
    with pytest.raises(AttributeError):
        _ = cache.no_such_option


def test_positional_arguments_of_0_1_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="pass key_bits, value_bits, residual_length"):
        cache = TurboQuantCache(3, 2, 16)
    assert (cache.key_bits, cache.value_bits, cache.residual_length) == (3, 2, 16)
    with pytest.raises(TypeError, match="multiple values"):
        TurboQuantCache(3, key_bits=4)


def test_importing_the_config_needs_no_torch():
    """The command line checks KV options before torch loads (and without it)."""
    code = (
        "import sys; from rotaquant.kv import KVConfig; KVConfig(key_bits=3.5); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


KV_MODULES_NEEDING_TORCH = sorted(
    path.stem
    for path in (Path(rotaquant.kv.__file__).parent).glob("*.py")
    if re.search(r"^(import|from) (torch|transformers)\b", path.read_text(), re.M)
)


@pytest.mark.parametrize("blocked", ["torch", "transformers"])
def test_every_kv_module_names_the_extra_when_torch_or_transformers_is_missing(blocked):
    """``import rotaquant.kv.cache`` without torch says what to install, not a bare
    ModuleNotFoundError from inside the package; so do the package-level names."""
    assert {"cache", "switch", "codec", "attention"} <= set(KV_MODULES_NEEDING_TORCH)
    imports = [f"import rotaquant.kv.{m}" for m in KV_MODULES_NEEDING_TORCH]
    imports += ["from rotaquant.kv import TurboQuantCache", "from rotaquant.kv import enable"]
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "for line in " + repr(imports) + ":\n"
        "    try:\n"
        "        exec(line)\n"
        "    except ModuleNotFoundError as error:\n"
        "        print(line, '|', error.name, '|', error)\n"
        "    else:\n"
        "        print(line, '| imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(imports)
    for line in lines:
        assert line.endswith(
            f"| {blocked} | rotaquant.kv needs {blocked}: pip install 'rotaquant[kv]'"
        ), line
