"""Access to the prepared dataset and the cross-validation folds."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from spectraforge.labels import label_index  # noqa: F401  (re-exported: folds and stages use it from here)


@dataclass
class Prepared:
    """The ``prepare`` stage's outputs, flux arrays memory-mapped (nothing is loaded until used)."""

    wave: np.ndarray
    train: np.ndarray
    test: np.ndarray
    meta: pd.DataFrame

    @property
    def train_meta(self) -> pd.DataFrame:
        return self.meta[self.meta["split"] == "train"].sort_values("row").reset_index(drop=True)

    @property
    def test_meta(self) -> pd.DataFrame:
        return self.meta[self.meta["split"] == "test"].sort_values("row").reset_index(drop=True)


def load_prepared(out_dir: str | Path = "data/prepared") -> Prepared:
    out_dir = Path(out_dir)
    for name in ("wave.npy", "train.npy", "test.npy", "meta.parquet"):
        if not (out_dir / name).exists():
            raise FileNotFoundError(f"{out_dir / name}: missing; run `dvc repro prepare` first")
    return Prepared(
        wave=np.load(out_dir / "wave.npy"),
        train=np.load(out_dir / "train.npy", mmap_mode="r"),
        test=np.load(out_dir / "test.npy", mmap_mode="r"),
        meta=pd.read_parquet(out_dir / "meta.parquet"),
    )


def make_folds(train_meta: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Stratified K folds grouped by object: every observation of an object lands in one fold.

    Returns a frame ``id, object_id, label, fold`` in the order of ``train_meta``. A class
    with fewer objects than folds is still spread as evenly as it can be (sklearn warns).
    """
    if len(train_meta) < k:
        raise ValueError(f"folds: {len(train_meta)} training spectra cannot fill {k} folds")
    y = label_index(train_meta["label"])
    groups = pd.factorize(train_meta["object_id"].astype(str))[0]
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.full(len(train_meta), -1, dtype=np.int64)
    for f, (_, val_idx) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        fold[val_idx] = f
    assert (fold >= 0).all()
    return pd.DataFrame({
        "id": train_meta["id"].astype(str).to_numpy(),
        "object_id": train_meta["object_id"].astype(str).to_numpy(),
        "label": train_meta["label"].to_numpy(),
        "fold": fold,
    })


def fold_rows(train_meta: pd.DataFrame, folds: pd.DataFrame) -> np.ndarray:
    """Fold number of every prepared training row (rows follow train_meta order)."""
    by_id = dict(zip(folds["id"].astype(str), folds["fold"].astype(int)))
    ids = train_meta["id"].astype(str)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"folds: {len(missing)} prepared ids have no fold (first: {missing[0]}); rerun `dvc repro folds`")
    return np.array([by_id[i] for i in ids], dtype=np.int64)


def check_no_leak(val_ids, fit_ids, parents, where: str) -> None:
    """Raise if any validation id was fitted on or lent a synthetic spectrum its residual."""
    val = set(map(str, val_ids))
    leaked = val.intersection(map(str, fit_ids)) | val.intersection(map(str, parents))
    if leaked:
        raise AssertionError(f"{where}: validation spectra reached the generator: {sorted(leaked)[:3]}")
