"""Segments: the worked example of the block layout in segment.py, exactly."""

import numpy as np

from rotaquant.codec.codes import CodecConfig
from rotaquant.index.segment import Rows, Segment, stream_specs


def test_worked_example_dim5_4bit():
    config = CodecConfig(5, 4)
    (spec,) = stream_specs(config)
    assert spec.block_bytes == 80  # 32 rows x 5 channels x 4 bits
    segment = Segment.allocate(config, 64, keep_vectors=False, keep_l2_shift=False)
    codes = np.zeros((32, 5), np.uint8)
    codes[:, 0] = np.arange(32) % 16
    codes[:, 1:4] = (1, 2, 3)
    codes[:, 4] = np.arange(32) % 16
    rows = Rows((codes,), np.ones(32, np.float16), None, None, None)
    segment.write(0, rows, 0, 32)
    block = segment.streams[0][:80]
    # group 0: row r in bytes 2r, 2r+1 -> (r % 16) | 1 << 4, 2 | 3 << 4
    assert block[:4].tobytes().hex() == "10321132"
    # group 1: rows 2i, 2i+1 share byte i (row 2i in the low nibble)
    assert block[64:66].tobytes().hex() == "1032"
    assert block[79] == 0xFE  # rows 30 (14) and 31 (15)
    assert not segment.streams[0][80:].any()  # the second block is still empty
    np.testing.assert_array_equal(segment.codes(np.arange(32))[0], codes)


def test_slices_start_in_mid_block_are_repacked_from_row_zero():
    config = CodecConfig(6, 3)
    segment = Segment.allocate(config, 128, keep_vectors=False, keep_l2_shift=False)
    codes = np.random.default_rng(0).integers(0, 8, (100, 6), dtype=np.uint8)
    segment.write(0, Rows((codes,), np.ones(100, np.float16), None, None, None), 0, 100)
    segment.count = 100
    piece = segment.slice_arrays(40, 100)
    again = Segment.from_arrays(
        config, {**piece, "ids": np.arange(60)}, keep_vectors=False, keep_l2_shift=False
    )
    np.testing.assert_array_equal(again.codes(np.arange(60))[0], codes[40:])
