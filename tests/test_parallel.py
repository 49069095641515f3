"""rotaquant._parallel: BLAS held to one thread while rotaquant's threads run, and the
original limit restored after, also when callers overlap on many threads."""

from __future__ import annotations

import threading

from threadpoolctl import threadpool_info

from rotaquant._parallel import single_threaded_blas


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_limits_inside_and_restores_after():
    before = _blas_threads()
    with single_threaded_blas():
        assert _blas_threads() <= {1}
    assert _blas_threads() == before


def test_overlapping_callers_restore_the_original_limit():
    # (whether the limit shows inside worker threads is up to the BLAS: OpenBLAS ignores a
    # limit set from another thread once the main thread has set one; it is a speed matter)
    before = _blas_threads()
    inside = threading.Barrier(4)
    holders: list[int] = []

    def hold() -> None:
        with single_threaded_blas():
            inside.wait()  # all four hold the limit at once, then leave in any order
            holders.append(1)

    workers = [threading.Thread(target=hold) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(holders) == 4
    assert _blas_threads() == before
