import numpy as np
import pytest

import rotaquant as rq
from rotaquant.cli import main

from .conftest import unit_gaussian


def test_demo_reports_distortion_bytes_and_recall(capsys):
    main(["demo", "--bits", "2", "4", "--queries", "40"])
    out = capsys.readouterr().out
    assert "399,960 database vectors" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:2] in ("2 ", "4 ")]
    assert [r[0] for r in rows] == ["2", "4"]
    for row in rows:
        mse, optimum, bits_per_value = float(row[1]), float(row[2]), float(row[4])
        assert mse == pytest.approx(optimum, rel=0.03)
        assert bits_per_value == pytest.approx(float(row[0]) + 16 / 50)
    recall = [float(r[-1]) for r in rows]
    assert 0.3 < recall[0] < recall[1] <= 1


def test_compress_decompress_round_trip(tmp_path, capsys):
    x = unit_gaussian(100, 40)
    np.save(tmp_path / "x.npy", x)
    main(["compress", str(tmp_path / "x.npy"), "-o", str(tmp_path / "x.rqc"), "--bits", "3"])
    main(["decompress", str(tmp_path / "x.rqc"), "-o", str(tmp_path / "y.npy")])
    codes = rq.Codes.from_bytes((tmp_path / "x.rqc").read_bytes())
    assert codes.n == 100 and codes.config.bits == 3
    y = np.load(tmp_path / "y.npy")
    assert np.mean(((x - y) ** 2).sum(1)) == pytest.approx(rq.lloyd_max(40, 3).mse, rel=0.15)
    assert "bits/value" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros(5, np.float32))
    with pytest.raises(SystemExit, match="expected"):
        main(["compress", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o")])
    np.save(tmp_path / "nan.npy", np.full((2, 8), np.nan, np.float32))
    with pytest.raises(SystemExit, match="NaN"):
        main(["compress", str(tmp_path / "nan.npy"), "-o", str(tmp_path / "o")])
    (tmp_path / "junk.rqc").write_bytes(b"junk" * 10)
    with pytest.raises(SystemExit, match="magic"):
        main(["decompress", str(tmp_path / "junk.rqc"), "-o", str(tmp_path / "o.npy")])
    with pytest.raises(SystemExit, match="not found"):
        main(["bench", "no_such_benchmark"])
