"""Folds: stratified, grouped by object, deterministic under a seed."""
import numpy as np
import pandas as pd

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
