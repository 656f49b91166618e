"""Atomic outputs and fold checkpoints: a failed or killed stage leaves no half-written output,
and a rerun resumes at the first unfinished fold with the result of an uninterrupted run."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import toy_table, write_prepared
from spectraforge.crossval import ModelSpec, TrainParams, run_kfold
from spectraforge.models.lgbm import SpectrumLGBM
from spectraforge.outputs import FoldCheckpoints, atomic_write_text, staged_dir


def test_staged_dir_replaces_only_on_success(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_dir(final) as stage:
            (stage / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in final.iterdir()] == ["old.txt"]  # untouched
    assert not (tmp_path / ".out.partial").exists()
    (tmp_path / ".out.partial").mkdir()  # as a SIGKILLed run would leave it
    (tmp_path / ".out.partial" / "stale.txt").write_text("stale")
    with staged_dir(final) as stage:
        assert list(stage.iterdir()) == []  # the stale partial folder was cleared
        (stage / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert not (tmp_path / ".out.partial").exists()


def test_atomic_write_leaves_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "a" / "m.json", "{}")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["m.json"]


def test_checkpoints_round_trip_and_key_on_everything(tmp_path):
    ck = FoldCheckpoints("train-x", {"config": 1}, root=tmp_path)
    assert ck.load(0) is None
    files = ck.files_dir(0)
    (files / "model.bin").write_bytes(b"m")
    ck.save(0, {"model": "model.bin"}, val=np.arange(3.0))
    got = ck.load(0)
    np.testing.assert_array_equal(got["val"], [0, 1, 2])
    assert got["record"] == {"model": "model.bin"} and (got["files"] / "model.bin").read_bytes() == b"m"
    assert FoldCheckpoints("train-x", {"config": 2}, root=tmp_path).load(0) is None  # other settings
    ck.clear()
    assert ck.load(0) is None and not (tmp_path / "train-x").exists()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    X, y = toy_table(150, seed=0)
    return write_prepared(tmp_path_factory.mktemp("ckpt"), X, y, X[:10], k=3)


FIT = SpectrumLGBM.fit


class Killed(Exception):
    """Stands in for a kill in the middle of a fold."""


def _run(root, out, monkeypatch, fail_at=None):
    """run_kfold of a small LightGBM; raises at fold ``fail_at`` (after the earlier folds finished)."""
    monkeypatch.setenv("SPECTRAFORGE_CHECKPOINTS", str(root / "ckpt"))
    trained = []

    def fit(self, X, y, *, val, resume_dir=None, **kwargs):
        k = int(resume_dir.name.removeprefix("fold").split(".")[0])  # the fold's own folder, fold<k>.epochs
        if k == fail_at:
            raise Killed(f"fold {k}")
        trained.append(k)
        return FIT(self, X, y, val=val, resume_dir=resume_dir, **kwargs)

    monkeypatch.setattr(SpectrumLGBM, "fit", fit)
    params = TrainParams(models=[], prepared_dir=str(root / "prepared"), folds=str(root / "folds.csv"), threads=1)
    spec = ModelSpec(kind="lgbm", config={"n_estimators": 10, "n_pca": 4, "n_windows": 4})
    run_kfold("lgbm", params, models_dir=out / "models", predictions_dir=out / "pred", reports_dir=out / "rep",
              spec=spec)
    return trained


def test_killed_kfold_leaves_nothing_and_resumes_to_the_same_result(prepared, tmp_path, monkeypatch):
    with pytest.raises(Killed):
        _run(prepared, tmp_path / "a", monkeypatch, fail_at=2)
    for rel in ("models/lgbm", "pred/lgbm", "rep/metrics/lgbm.json"):
        assert not (tmp_path / "a" / rel).exists(), rel  # nothing half-written
    assert _run(prepared, tmp_path / "a", monkeypatch) == [2]  # folds 0 and 1 restored
    assert not (prepared / "ckpt" / "train-lgbm").exists()  # checkpoints cleared on completion
    assert _run(prepared, tmp_path / "b", monkeypatch) == [0, 1, 2]  # an uninterrupted run
    a, b = (pd.read_parquet(tmp_path / d / "pred/lgbm/oof.parquet") for d in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)
    ma, mb = (json.loads((tmp_path / d / "rep/metrics/lgbm.json").read_text()) for d in ("a", "b"))
    assert {k: v for k, v in ma.items() if k != "seconds"} == {k: v for k, v in mb.items() if k != "seconds"}
    assert sorted(p.name for p in (tmp_path / "a/models/lgbm").iterdir()) == [
        "fold0.npz", "fold1.npz", "fold2.npz", "manifest.json"]
