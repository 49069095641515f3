import numpy as np
import pytest

from rotaquant.codec.qjl import QJLSketch


def _estimates(dim: int, query: np.ndarray, residual: np.ndarray, seeds: range) -> np.ndarray:
    out = []
    for seed in seeds:
        sketch = QJLSketch(dim, seed)
        packed = sketch.sketch(residual[None])
        norm = np.linalg.norm(residual, keepdims=True)
        out.append(sketch.estimate(sketch.project(query[None]), packed, norm)[0, 0])
    return np.array(out)


@pytest.mark.parametrize("dim", [16, 128])
def test_estimator_is_unbiased_with_variance_under_the_bound(dim):
    rng = np.random.default_rng(0)
    query = rng.standard_normal(dim).astype(np.float32)
    noise = rng.standard_normal(dim) / np.sqrt(dim)
    residual = (0.6 * query / np.linalg.norm(query) + noise).astype(np.float32)
    truth = float(query @ residual)
    est = _estimates(dim, query, residual, range(3000))
    stderr = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean() - truth) < 4 * stderr
    bound = np.pi / (2 * dim) * (query @ query) * (residual @ residual)
    assert est.var(ddof=1) <= 1.1 * bound


def test_sketch_costs_one_bit_per_coordinate():
    sketch = QJLSketch(50, 0)
    packed = sketch.sketch(np.ones((8, 50), np.float32))
    assert packed.nbytes == 8 * 50 // 8
    np.testing.assert_array_equal(np.abs(sketch.signs(packed, 8)), 1)
