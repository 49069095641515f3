import json
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rotaquant as rq
from rotaquant.codec import codes as codes_format
from rotaquant.codec.codes import CodecConfig, Codes

from ..conftest import FIXTURES, mutated_json, unit_gaussian

CONFIGS = [
    dict(dim=50, bits=3),
    dict(dim=128, bits=3.5, mode="prod"),
    dict(dim=64, bits=2, norm_dtype="float32", rotation="haar"),
    dict(dim=64, bits=1, mode="prod"),
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_round_trip(kwargs):
    q = rq.TurboQuantizer(**kwargs)
    x = unit_gaussian(37, kwargs["dim"]) * 3
    codes = q.encode(x)
    again = Codes.from_bytes(codes.to_bytes())
    assert again.config == codes.config and again.n == codes.n
    assert again.nbytes == codes.nbytes
    np.testing.assert_array_equal(q.decode(again), q.decode(codes))
    np.testing.assert_array_equal(q.inner_product(x[:3], again), q.inner_product(x[:3], codes))


def test_empty_codes_round_trip():
    q = rq.TurboQuantizer(dim=32, bits=4)
    codes = Codes.from_bytes(q.encode(np.zeros((0, 32), np.float32)).to_bytes())
    assert codes.n == 0 and q.decode(codes).shape == (0, 32)


@pytest.fixture(scope="module")
def blob() -> bytes:
    q = rq.TurboQuantizer(dim=64, bits=3, mode="prod")
    return q.encode(unit_gaussian(20, 64)).to_bytes()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_flipped_bit_is_refused(blob, data):
    position = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    corrupted = bytearray(blob)
    corrupted[position] ^= 1 << bit
    with pytest.raises(ValueError):
        Codes.from_bytes(bytes(corrupted))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_truncation_is_refused(blob, data):
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(ValueError):
        Codes.from_bytes(blob[:cut])


def _recommitted(blob: bytes, header: object) -> bytes:
    """``blob`` with its JSON header replaced by ``header`` and the checksum recomputed."""
    prefix = codes_format._PREFIX
    _, version, length = prefix.unpack_from(blob)
    text = json.dumps(header).encode()
    body = prefix.pack(codes_format._MAGIC, version, len(text)) + text
    body += blob[prefix.size + length : -codes_format._CRC.size]
    return body + codes_format._CRC.pack(zlib.crc32(body))


def _fuzz_header(blob: bytes, data) -> None:
    """A header edited at random with a valid checksum: a usable Codes or ValueError."""
    prefix = codes_format._PREFIX
    length = prefix.unpack_from(blob)[2]
    header = json.loads(blob[prefix.size : prefix.size + length])
    crafted = _recommitted(blob, data.draw(mutated_json(header)))
    try:
        codes = Codes.from_bytes(crafted)
    except ValueError:
        return
    assert Codes.from_bytes(codes.to_bytes()).n == codes.n
    q = rq.TurboQuantizer.from_config(codes.config)
    assert q.decode(codes).shape == (codes.n, codes.config.dim)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_fuzzed_headers_decode_or_raise_value_error(blob, data):
    _fuzz_header(blob, data)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(data=st.data())
def test_fuzzed_headers_many(blob, data):
    _fuzz_header(blob, data)


def test_foreign_bytes_are_refused():
    with pytest.raises(ValueError, match="magic"):
        Codes.from_bytes(b"PK\x03\x04" + bytes(100))


def test_inconsistent_arrays_are_refused():
    config = CodecConfig(dim=16, bits=4)
    with pytest.raises(ValueError, match="stream0"):
        Codes(config, 4, (np.zeros(31, np.uint8),), np.zeros(4, np.float16))
    with pytest.raises(ValueError, match="norms"):
        Codes(config, 4, (np.zeros(32, np.uint8),), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="arrays"):
        Codes(config, 4, (np.zeros(32, np.uint8),), np.zeros(4, np.float16), np.zeros(8, np.uint8))


def test_codes_blob_v1_mse_decodes_as_before(v1_expected):
    codes = rq.Codes.from_bytes((FIXTURES / "codes_v1_mse.rqc").read_bytes())
    assert (codes.n, codes.config.dim, codes.config.bits, codes.config.seed) == (20, 48, 3.5, 5)
    decoded = rq.TurboQuantizer.from_config(codes.config).decode(codes)
    np.testing.assert_allclose(decoded, v1_expected["codes_mse_decoded"], rtol=1e-5, atol=1e-6)


def test_codes_blob_v1_prod_scores_as_before(v1_expected):
    codes = rq.Codes.from_bytes((FIXTURES / "codes_v1_prod.rqc").read_bytes())
    assert (codes.config.mode, codes.config.rotation, codes.config.norm_dtype) == (
        "prod",
        "haar",
        "float32",
    )
    scores = rq.TurboQuantizer.from_config(codes.config).inner_product(
        v1_expected["codes_prod_queries"], codes
    )
    np.testing.assert_allclose(scores, v1_expected["codes_prod_ip"], rtol=1e-5, atol=1e-5)
