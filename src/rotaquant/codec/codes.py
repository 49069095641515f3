"""What the codec stores: the configuration, the channel layout, and the ``Codes`` container.

A ``Codes`` object holds n compressed vectors as flat arrays:

* one packed bit stream per channel group (``streams``): group g holds ``n · channels_g``
  codes of ``bits_g`` bits, row-major, so rows ``[i, j)`` with ``i`` a multiple of 8 start on
  a byte boundary;
* ``norms`` (n,), float16 or float32: the scale each decoded unit vector is multiplied by;
* for ``mode="prod"``: ``qjl_signs``, a 1-bit stream of n · dim residual sketch signs, and
  ``residual_norms`` (n,).

``nbytes`` is the sum of these buffers: every bit the vectors cost, nothing else.

Serialized form (``to_bytes``): ``b"RQCODES\\0"``, uint32 format version, uint32 header
length, a JSON header (configuration, n, array table), the arrays, and a CRC-32 of everything
before it. ``from_bytes`` refuses anything that does not check out.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .._arrays import MALFORMED, Origin, json_field, json_kind
from .codebook import MAX_BITS
from .packing import packed_nbytes
from .rotation import ROTATIONS

MAX_DIM = 1 << 16  # vectors longer than this are not embeddings (and a header claiming
# more, e.g. in a crafted file, must not make the rotation allocate gigabytes)
MODES = ("mse", "prod")
NORM_DTYPES = ("float16", "float32")
_MAGIC = b"RQCODES\0"
_VERSION = 1
_PREFIX = struct.Struct("<8sII")
_CRC = struct.Struct("<I")


def plain_bits(bits: float) -> int | float:
    """A width as a plain Python number: int when whole, so configs compare and serialize
    predictably."""
    return int(bits) if float(bits).is_integer() else float(bits)


def exact_width(bits: float) -> str:
    """``bits`` as text that reads back as the same width (a suggestion pasted back works):
    ``3.296875``, not a rounded ``3.29688``."""
    return repr(plain_bits(round(float(bits), 10)))


@dataclass(frozen=True)
class ChannelGroup:
    """Channels ``[start, stop)`` of the rotated vector, coded with ``bits`` bits each."""

    start: int
    stop: int
    bits: int

    @property
    def channels(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class CodecConfig:
    """Everything needed to decode: two codecs with equal configs are interchangeable."""

    dim: int
    bits: float
    mode: str = "mse"
    rotation: str = "hadamard"
    seed: int = 0
    norm_dtype: str = "float16"
    norm_correction: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.dim, (int, np.integer)) or not 2 <= self.dim <= MAX_DIM:
            raise ValueError(f"dim must be an integer in [2, {MAX_DIM}], got {self.dim!r}")
        self.check_options(
            self.bits, self.mode, self.rotation, self.seed, self.norm_dtype, self.norm_correction
        )
        # plain Python numbers, so that configs compare, hash and serialize predictably
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "bits", plain_bits(self.bits))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "norm_correction", bool(self.norm_correction))
        self.groups  # noqa: B018 - validates that the width is realisable at this dim

    @staticmethod
    def check_options(
        bits: float,
        mode: str = "mse",
        rotation: str = "hadamard",
        seed: int = 0,
        norm_dtype: str = "float16",
        norm_correction: bool = False,
    ) -> None:
        """Everything a config checks but the dimension (whether ``bits`` is realisable at
        a dimension is checked once it is known); ValueError naming the argument."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if norm_dtype not in NORM_DTYPES:
            raise ValueError(f"norm_dtype must be one of {NORM_DTYPES}, got {norm_dtype!r}")
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not isinstance(norm_correction, (bool, np.bool_)):
            raise ValueError(f"norm_correction must be True or False, got {norm_correction!r}")
        if isinstance(bits, bool) or not isinstance(bits, (int, float, np.integer, np.floating)):
            raise ValueError(f"bits must be a number in [1, {MAX_BITS}], got {bits!r}")
        if not (1 <= bits <= MAX_BITS and math.isfinite(bits)):  # no float() of a huge int
            raise ValueError(f"bits must be in [1, {MAX_BITS}], got {bits}")

    @classmethod
    def from_dict(cls, options: Any) -> CodecConfig:
        """A config from its ``to_dict`` form (a file's header): every field present, no
        other; ValueError saying which field is missing, unknown or wrong."""
        if not isinstance(options, dict):
            raise ValueError(f"the codec config must be an object, got {json_kind(options)}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(
                f"unknown config field {', '.join(map(repr, unknown))} (known: {', '.join(names)})"
            )
        for name in names:
            json_field(options, name, "config")
        return cls(**options)

    @property
    def mse_bits(self) -> float:
        """Bits per value of the Lloyd–Max stage ((b − 1) in prod mode: 1 bit goes to QJL)."""
        return self.bits - 1 if self.mode == "prod" else self.bits

    @property
    def groups(self) -> tuple[ChannelGroup, ...]:
        """The channel split realising ``mse_bits`` exactly (0-bit groups are omitted).

        An integer width is one group. A fractional width ``b`` uses ``ceil(b)`` bits on the
        first ``(b − floor(b)) · dim`` channels and ``floor(b)`` on the rest; that count must be
        a whole number, otherwise the width cannot be stored honestly at this dim.
        """
        low = math.floor(self.mse_bits)
        high_channels = (self.mse_bits - low) * self.dim
        if abs(high_channels - round(high_channels)) > 1e-6:
            step = 1 / self.dim
            near = (low + step * math.floor(high_channels), low + step * math.ceil(high_channels))
            raise ValueError(
                f"bits={exact_width(self.bits)} cannot be realised exactly at dim={self.dim}: "
                f"widths must be multiples of 1/dim (e.g. {exact_width(near[0])} or "
                f"{exact_width(near[1])})"
            )
        split = round(high_channels)
        groups = [ChannelGroup(0, split, low + 1), ChannelGroup(split, self.dim, low)]
        return tuple(g for g in groups if g.channels > 0 and g.bits > 0)

    def norm_nbytes(self) -> int:
        return np.dtype(self.norm_dtype).itemsize

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Codes:
    """n compressed vectors (see module docstring). Build with ``TurboQuantizer.encode``."""

    config: CodecConfig
    n: int
    streams: tuple[np.ndarray, ...]
    norms: np.ndarray
    qjl_signs: np.ndarray | None = None
    residual_norms: np.ndarray | None = None
    # Library of the encoded input (decode answers in it); not stored, not compared.
    origin: Origin = field(default=Origin("numpy"), repr=False, compare=False)

    def __post_init__(self) -> None:
        expected = _expected_layout(self.config, self.n)
        actual = self._arrays()
        if [name for name, _ in actual] != [name for name, _ in expected]:
            raise ValueError("codes do not match their configuration (wrong set of arrays)")
        for (name, arr), (_, (dtype, size)) in zip(actual, expected, strict=True):
            if arr.dtype != dtype or arr.ndim != 1 or arr.size != size:
                raise ValueError(
                    f"codes array {name!r} should hold {size} values of {dtype}, "
                    f"got {arr.size} of {arr.dtype}"
                )

    def __len__(self) -> int:
        return self.n

    def _arrays(self) -> list[tuple[str, np.ndarray]]:
        arrays = [(f"stream{i}", s) for i, s in enumerate(self.streams)]
        arrays.append(("norms", self.norms))
        if self.qjl_signs is not None:
            arrays.append(("qjl_signs", self.qjl_signs))
        if self.residual_norms is not None:
            arrays.append(("residual_norms", self.residual_norms))
        return arrays

    @property
    def nbytes(self) -> int:
        """Bytes held: packed codes, norms and QJL sketches (the container's fields only)."""
        return int(sum(arr.nbytes for _, arr in self._arrays()))

    @property
    def bits_per_value(self) -> float:
        """``nbytes · 8 / (n · dim)``: the true storage rate, norms included (0 when empty)."""
        values = self.n * self.config.dim
        return self.nbytes * 8 / values if values else 0.0

    def to_bytes(self) -> bytes:
        """Serialize to a self-describing, checksummed blob (no pickle)."""
        table, payload, offset = [], [], 0
        for name, arr in self._arrays():
            table.append({"name": name, "dtype": arr.dtype.str, "offset": offset, "size": arr.size})
            payload.append(np.ascontiguousarray(arr).tobytes())
            offset += arr.nbytes
        header = json.dumps(
            {"config": self.config.to_dict(), "n": self.n, "arrays": table},
            sort_keys=True,
        ).encode()
        body = b"".join([_PREFIX.pack(_MAGIC, _VERSION, len(header)), header, *payload])
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, blob: bytes | bytearray | memoryview) -> Codes:
        """Inverse of ``to_bytes``. Raises ValueError on a truncated, corrupted or foreign blob."""
        view = memoryview(blob).cast("B")
        if len(view) < _PREFIX.size + _CRC.size:
            raise ValueError(f"not rotaquant codes: blob too short ({len(view)} bytes)")
        magic, version, header_len = _PREFIX.unpack_from(view)
        if magic != _MAGIC:
            raise ValueError("not rotaquant codes: bad magic bytes")
        if version != _VERSION:
            raise ValueError(f"unsupported codes format version {version} (this is {_VERSION})")
        (stored_crc,) = _CRC.unpack_from(view, len(view) - _CRC.size)
        if zlib.crc32(view[: len(view) - _CRC.size]) != stored_crc:
            raise ValueError("codes blob is corrupted or truncated (checksum mismatch)")
        start = _PREFIX.size
        if start + header_len > len(view) - _CRC.size:
            raise ValueError("codes blob is truncated (header runs past the end)")
        payload = view[start + header_len : len(view) - _CRC.size]
        try:
            return cls._parse(bytes(view[start : start + header_len]), payload)
        except MALFORMED as exc:  # whatever a crafted header trips, one error type
            raise ValueError(f"codes blob has an invalid header: {exc!r}") from exc

    @classmethod
    def _parse(cls, header_bytes: bytes, payload: memoryview) -> Codes:
        header = json.loads(header_bytes)
        config = CodecConfig(**header["config"])
        n = header["n"]
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"row count {n!r} is not a non-negative integer")
        arrays = {}
        for entry in header["arrays"]:
            dtype = np.dtype(entry["dtype"])
            begin, size = entry["offset"], entry["size"]
            if not (isinstance(begin, int) and isinstance(size, int) and begin >= 0 <= size):
                raise ValueError(f"array {entry['name']!r} has a bad offset or size")
            end = begin + size * dtype.itemsize
            if dtype.hasobject or end > len(payload):
                raise ValueError(f"codes blob is truncated (array {entry['name']!r})")
            arrays[str(entry["name"])] = np.frombuffer(payload[begin:end], dtype=dtype).copy()
        streams = tuple(arrays.pop(f"stream{i}") for i in range(len(config.groups)))
        return cls(config, n, streams, arrays.pop("norms"), **arrays)


def _expected_layout(config: CodecConfig, n: int) -> list[tuple[str, tuple[np.dtype, int]]]:
    norm = np.dtype(config.norm_dtype)
    layout = [
        (f"stream{i}", (np.dtype(np.uint8), packed_nbytes(n * g.channels, g.bits)))
        for i, g in enumerate(config.groups)
    ]
    layout.append(("norms", (norm, n)))
    if config.mode == "prod":
        layout.append(("qjl_signs", (np.dtype(np.uint8), packed_nbytes(n * config.dim, 1))))
        layout.append(("residual_norms", (norm, n)))
    return layout
