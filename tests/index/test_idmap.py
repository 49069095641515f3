"""IdMap against a Python dict, under random batches of inserts, deletes and moves."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rotaquant.index.idmap import IdMap


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["insert", "delete", "move"]), st.integers(1, 40)), max_size=30
    ),
    st.integers(0, 2**32),
)
def test_matches_dict(ops, seed):
    rng = np.random.default_rng(seed)
    ids = np.empty(0, np.int64)  # row -> id, as the index keeps it
    idmap = IdMap(lambda rows: ids[rows])
    model: dict[int, int] = {}
    for op, count in ops:
        if op == "insert":
            keys = rng.choice(2**63 - 1, count, replace=False).astype(np.int64)
            keys = keys[~np.isin(keys, ids)]
            rows = np.arange(ids.size, ids.size + keys.size)
            ids = np.concatenate((ids, keys))
            idmap.insert(keys, rows)
            model.update(zip(keys.tolist(), rows.tolist(), strict=True))
        elif model and op == "delete":
            keys = rng.choice(np.array(sorted(model)), min(count, len(model)), replace=False)
            idmap.delete(keys)
            for key in keys.tolist():
                del model[key]
        elif model and op == "move":  # as swap-remove does: the id's row changes, and
            key = int(rng.choice(np.array(sorted(model))))  # the old row still holds the id
            ids = np.concatenate((ids, [key]))
            idmap.move(np.array([key]), np.array([ids.size - 1]))
            model[key] = ids.size - 1
        assert len(idmap) == len(model)
    keys = np.array(sorted(model), np.int64)
    if keys.size:
        np.testing.assert_array_equal(idmap.find(keys), [model[k] for k in keys.tolist()])
    absent = np.array([-5, 2**62 + 7, 123456789], np.int64)
    absent = absent[~np.isin(absent, keys)]
    assert (idmap.find(absent) == -1).all()
    assert idmap.nbytes >= 8 * len(model)  # 4-byte slots at load <= 1/2


def test_reset_maps_rows_to_ids():
    ids = np.arange(1000, dtype=np.int64) * 3
    idmap = IdMap(lambda rows: ids[rows])
    idmap.reset(1000)
    np.testing.assert_array_equal(idmap.find(ids[::7]), np.arange(0, 1000, 7))
    assert idmap.find(np.array([1]))[0] == -1
