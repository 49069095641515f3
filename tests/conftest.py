from pathlib import Path

import numpy as np
import pytest

from rotaquant import data

FIXTURES = Path(__file__).parent / "fixtures"  # files written by earlier versions


def unit_gaussian(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 rows uniform on the unit sphere."""
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def minilm() -> np.ndarray:
    """Real 384-d sentence embeddings (unit norm) of Python's documentation sentences."""
    return data.minilm_embeddings(data.pydoc_sentences())


@pytest.fixture(scope="session")
def glove() -> np.ndarray:
    """Real 50-d GloVe word vectors: a fixed sample of 20k rows."""
    vectors = data.glove_50d()
    rows = np.random.default_rng(0).choice(vectors.shape[0], 20_000, replace=False)
    return np.asarray(vectors[np.sort(rows)], dtype=np.float32)


@pytest.fixture(scope="session")
def v1_expected() -> dict[str, np.ndarray]:
    """Results computed by the version that wrote the format-v1 fixtures (tests/fixtures)."""
    with np.load(FIXTURES / "v1_expected.npz") as f:
        return dict(f)
