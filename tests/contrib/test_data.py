"""The packaged real data sets of rotaquant.contrib.data that the benchmarks read."""

import os
import subprocess
import sys

import numpy as np
import pytest

from rotaquant.contrib import data

from ..conftest import packaged


def test_wordnet_texts_are_distinct_real_texts_in_a_stable_order():
    texts = packaged(data.wordnet_texts)
    glosses = data.wordnet_glosses()
    assert len(texts) > 250_000  # glosses + examples + synonym lists
    assert len(set(texts)) == len(texts)
    assert texts[: len(glosses)] == glosses  # glosses first, in file order
    rest = texts[len(glosses) :]
    assert all(texts) and min(len(t) for t in rest) >= 1
    assert texts[:1000] == data.wordnet_texts(1000)


def test_mpnet_embeddings_are_unit_768_d_and_cached():
    texts = ["a small brown dog", "a little brown puppy", "the stock market fell sharply"]
    vectors = packaged(data.mpnet_embeddings, texts)
    assert vectors.shape == (3, 768) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3  # real sentence embeddings, not noise
    assert list(data.cache_dir().glob("mpnet-3-*.npy"))
    np.testing.assert_array_equal(data.mpnet_embeddings(texts), vectors)  # from the cache


@pytest.mark.slow
def test_the_first_model_conversion_says_so_once_and_logs_no_progress_bars(tmp_path):
    """A fresh cache directory, two processes loading the model at once, stderr redirected
    (not a terminal): one converts while the other waits, one line says what the one-time step
    is, and no carriage-return progress bars reach the log."""
    pytest.importorskip("transformers")
    packaged(data.smollm2)  # skips unless the model package is installed
    script = "from rotaquant.contrib import data; data.smollm2(); data.smollm2()"
    env = {**os.environ, "ROTAQUANT_CACHE": str(tmp_path)}
    both = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    stderr = ""
    for process in both:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        stderr += err
    assert "\r" not in stderr, stderr[-500:]
    assert stderr.count("converting the packaged") == 1
    assert (tmp_path / "smollm2-135m-instruct-f32" / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.tmp"))  # no staging folder left behind


_BUILD = """
import sys, time
from pathlib import Path
from rotaquant.contrib import data

target, log = Path(sys.argv[1]), Path(sys.argv[2])

def build(staging):
    with log.open("a") as f:
        f.write("built\\n")
    time.sleep(0.5)
    (staging / "out").mkdir()
    (staging / "out" / "done").write_text(sys.argv[3])
    return staging / "out"

data._build_once(target, lambda: (target / "done").exists(), build)
print((target / "done").read_text())
"""


def test_processes_building_one_cache_entry_build_it_once(tmp_path):
    """Three processes ask for the same missing entry at once: one builds it, the others wait
    for it and read the same folder (none deletes the folder another is reading)."""
    target, log = tmp_path / "entry", tmp_path / "log"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILD, str(target), str(log), str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    answers = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert log.read_text() == "built\n"
    assert len(answers) == 1 and answers <= {"0", "1", "2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry", "entry.lock", "log"]
