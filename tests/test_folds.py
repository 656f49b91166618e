"""Folds: stratified, grouped by object, deterministic under a seed."""
import numpy as np
import pandas as pd
import pytest

from spectraforge.data import make_folds


def toy_meta(n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["star", "galaxy", "qso", "unknown"], size=n, p=[0.7, 0.1, 0.05, 0.15])
    obj = [f"obj{i}" for i in range(n)]
    for i in range(0, n - 1, 10):  # every tenth object observed twice, same label
        obj[i + 1] = obj[i]
        labels[i + 1] = labels[i]
    return pd.DataFrame({"id": [f"s{i}" for i in range(n)], "label": labels, "object_id": obj})


def test_every_spectrum_in_exactly_one_fold():
    meta = toy_meta()
    f = make_folds(meta, 5, 1)
    assert len(f) == len(meta) and list(f["id"]) == list(meta["id"])
    assert set(f["fold"]) == set(range(5))


def test_repeat_observations_share_a_fold():
    f = make_folds(toy_meta(), 5, 1)
    assert (f.groupby("object_id")["fold"].nunique() == 1).all()


def test_stratified():
    meta = toy_meta(1000)
    f = make_folds(meta, 5, 3)
    share = f.groupby("fold")["label"].value_counts(normalize=True).unstack()
    overall = meta["label"].value_counts(normalize=True)
    assert (share.sub(overall, axis=1).abs() < 0.03).all().all()


def test_seed_determinism():
    meta = toy_meta()
    assert make_folds(meta, 5, 7)["fold"].equals(make_folds(meta, 5, 7)["fold"])
    assert not make_folds(meta, 5, 7)["fold"].equals(make_folds(meta, 5, 8)["fold"])


def test_reduced_training_parts_are_nested_seeded_and_leave_other_classes_whole():
    from spectraforge.subsets import reduce_per_class

    rng = np.random.default_rng(0)
    y = rng.choice(4, 2000, p=[0.7, 0.15, 0.05, 0.1])
    rows = np.flatnonzero(rng.random(2000) < 0.8)  # a fold's training part
    parts = {n: reduce_per_class(rows, y, {1: n, 2: n}, seed=11) for n in (25, 50, 100, 10_000)}
    for small, big in ((25, 50), (50, 100), (100, 10_000)):
        assert set(parts[small]) < set(parts[big])
    for n, part in parts.items():
        assert set(part) <= set(rows) and np.all(np.diff(part) > 0)
        for c in (1, 2):
            assert (y[part] == c).sum() == min(n, (y[rows] == c).sum())
        for c in (0, 3):  # uncapped classes keep every training row
            np.testing.assert_array_equal(part[y[part] == c], rows[y[rows] == c])
    np.testing.assert_array_equal(parts[50], reduce_per_class(rows[::-1], y, {1: 50, 2: 50}, seed=11))
    assert not np.array_equal(parts[50], reduce_per_class(rows, y, {1: 50, 2: 50}, seed=12))
    # one class's cap does not move the other's draw
    only_qso = reduce_per_class(rows, y, {2: 50}, seed=11)
    np.testing.assert_array_equal(only_qso[y[only_qso] == 2], parts[50][y[parts[50]] == 2])
    with pytest.raises(ValueError, match="cap"):
        reduce_per_class(rows, y, {1: -1}, seed=0)
