"""Augmented retraining: fold k's extra spectra come from fold k's training part only, the
filters count what they drop, and the K-fold loop trains on exactly those extras."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import write_prepared
from spectraforge.augment import AugmentSpec, FoldExtras, load_augment_params
from spectraforge.crossval import ModelSpec, TrainParams, run_kfold
from spectraforge.generative.stage import GenerateParams, GeneratorSpec, QualityParams, run_generate
from spectraforge.labels import LABELS
from spectraforge.models.base import Classifier
from spectraforge.models.registry import CLASSIFIERS
from spectraforge.params import ParamsError

N_PIX = 48


def _spectra(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(4, n, p=[0.55, 0.15, 0.15, 0.15])
    x = np.linspace(0, 1, N_PIX)
    line = np.exp(-0.5 * ((x - np.array([0.2, 0.4, 0.6, 0.8])[y][:, None]) / 0.04) ** 2)
    return (1 + 0.8 * line + rng.normal(0, 0.1, (n, N_PIX))).astype(np.float32), y


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A prepared dataset and the oversample / noise extras of the generate stage for it."""
    X, y = _spectra(240, seed=1)
    Xt, _ = _spectra(30, seed=2)
    root = write_prepared(tmp_path_factory.mktemp("aug"), X, y, Xt, k=3)
    gen = {"oversample": GeneratorSpec(kind="oversample"), "noise": GeneratorSpec(kind="noise", noise=0.2)}
    gp = GenerateParams(generators=list(gen), prepared_dir=str(root / "prepared"), folds=str(root / "folds.csv"),
                        target={"galaxy": 0.5, "qso": 0.5}, variants=gen, quality=QualityParams(embedding=4))
    for name in gen:
        run_generate(name, gp, out_root=root / "syn", reports_dir=root / "reports")
    return root


def _val_ids(root, k):
    folds = pd.read_csv(root / "folds.csv", dtype={"id": str})
    return folds.loc[folds.fold == k, "id"].to_numpy()


def test_extras_are_the_folds_own_and_a_leak_raises(world, tmp_path):
    extras = FoldExtras("lgbm+noise", AugmentSpec("lgbm", "noise"), world / "syn", world / "models")
    for k in range(3):
        flux, y = extras(k, _val_ids(world, k))
        z = np.load(world / "syn" / "noise" / f"fold{k}.npz")
        np.testing.assert_array_equal(flux, z["flux"])
        assert [LABELS[c] for c in y] == list(z["label"])
    assert extras.summary()["extra_used_galaxy"] == sum(r["used_galaxy"] for r in extras.counts)
    # fold 1's extras were fitted on fold 0's rows: used for fold 0, they must be refused
    (tmp_path / "noise").mkdir()
    z = dict(np.load(world / "syn" / "noise" / "fold1.npz"))
    np.savez(tmp_path / "noise" / "fold0.npz", **z)
    leaky = FoldExtras("lgbm+noise", AugmentSpec("lgbm", "noise"), tmp_path, world / "models")
    with pytest.raises(AssertionError, match=r"fold0\.npz.*validation spectra"):
        leaky(0, _val_ids(world, 0))


def test_missing_extras_name_the_file_and_the_stage(world):
    extras = FoldExtras("lgbm+glow", AugmentSpec("lgbm", "glow"), world / "syn", world / "models")
    with pytest.raises(FileNotFoundError, match=r"glow/fold0\.npz.*generate@glow"):
        extras(0, _val_ids(world, 0))


def test_per_class_cap_keeps_the_first_draws_and_counts_the_rest(world):
    extras = FoldExtras("x", AugmentSpec("lgbm", "oversample", per_class={"qso": 3}), world / "syn", world / "models")
    flux, y = extras(0, _val_ids(world, 0))
    row = extras.counts[0]
    assert (y == LABELS.index("qso")).sum() == 3 == row["used_qso"]
    assert row["capped_qso"] == row["drawn_qso"] - 3 and row["capped_galaxy"] == 0
    assert row["used_galaxy"] == row["drawn_galaxy"]


class _HalfRight(Classifier):
    """A stand-in fold model kind: confident in class 1 (galaxy) for every spectrum."""

    kind, suffix = "half", ".npz"

    def predict_proba(self, flux):
        p = np.full((len(flux), 4), 0.1)
        p[:, 1] = 0.7
        return p

    @classmethod
    def load(cls, path):
        return cls(None, wave=np.zeros(0))


def test_confidence_filter_keeps_what_the_baseline_assigns_to_its_class(world, tmp_path, monkeypatch):
    monkeypatch.setitem(CLASSIFIERS, "half", _HalfRight)
    models = tmp_path / "models" / "lgbm"
    models.mkdir(parents=True)
    np.savez(models / "fold0.npz", nothing=np.zeros(1))
    (models / "manifest.json").write_text(json.dumps({"kind": "half", "folds": ["fold0.npz"]}))
    spec = AugmentSpec("lgbm", "oversample", confidence=0.5)
    extras = FoldExtras("lgbm+oversample", spec, world / "syn", tmp_path / "models")
    flux, y = extras(0, _val_ids(world, 0))
    row = extras.counts[0]
    assert set(y) == {LABELS.index("galaxy")}  # every qso is assigned to galaxy: filtered
    assert row["filtered_qso"] == row["drawn_qso"] and row["used_qso"] == 0
    assert row["filtered_galaxy"] == 0 and row["used_galaxy"] == row["drawn_galaxy"]
    strict = FoldExtras("lgbm+oversample", AugmentSpec("lgbm", "oversample", confidence=0.8), world / "syn",
                        tmp_path / "models")
    assert len(strict(0, _val_ids(world, 0))[1]) == 0  # p = 0.7 < 0.8: nothing passes
    with pytest.raises(FileNotFoundError, match="fold 1"):
        extras(1, _val_ids(world, 1))


def test_kfold_trains_on_real_rows_plus_the_folds_extras(world, monkeypatch):
    from spectraforge.models.lgbm import SpectrumLGBM

    seen = []
    real_fit = SpectrumLGBM.fit

    def spy(self, X, y, *, val, extra=None, **kwargs):
        labels = np.concatenate([y, extra[1]]) if extra is not None else y
        seen.append((len(labels), np.bincount(labels, minlength=4)))
        return real_fit(self, X, y, val=val, extra=extra, **kwargs)

    monkeypatch.setattr(SpectrumLGBM, "fit", spy)
    spec = ModelSpec(kind="lgbm", config={"n_estimators": 10, "n_pca": 4, "n_windows": 4})
    params = TrainParams(models=[], prepared_dir=str(world / "prepared"), folds=str(world / "folds.csv"),
                         threads=1, variants={})
    extras = FoldExtras("lgbm+oversample", AugmentSpec("lgbm", "oversample"), world / "syn", world / "models")
    m = run_kfold("lgbm+oversample", params, models_dir=world / "m", predictions_dir=world / "p",
                  reports_dir=world / "r", spec=spec, extras=extras)
    folds = pd.read_csv(world / "folds.csv", dtype={"id": str})
    for k, (n, counts) in enumerate(seen):
        z = np.load(world / "syn" / "oversample" / f"fold{k}.npz")
        assert n == (folds.fold != k).sum() + len(z["flux"])
        real = folds[folds.fold != k]["label"].value_counts()
        assert counts[LABELS.index("qso")] == real["qso"] + (z["label"] == "qso").sum()
    oof = pd.read_parquet(world / "p" / "lgbm+oversample" / "oof.parquet")
    assert len(oof) == len(folds) and oof["id"].is_unique  # OOF rows are real spectra only
    assert m["extra_used_qso"] == sum((np.load(world / "syn/oversample" / f"fold{k}.npz")["label"] == "qso").sum()
                                      for k in range(3))


@pytest.mark.parametrize("source", ["oversample", "noise"])
def test_no_validation_spectrum_or_child_reaches_a_cnn_folds_sampler_pool(world, source, monkeypatch, tmp_path):
    """The pool the CNN's balanced sampler draws every training batch from, fold by fold: its
    real rows are none of the fold's validation spectra, and each extra spectrum is a child of a
    training spectrum (oversample: an exact copy, so byte equality would catch a leaked one)."""
    from spectraforge import training
    from spectraforge.data import load_prepared

    pools = []
    real_dataset = training.make_train_dataset

    def spy(X, labels_int, row_indices, sampler, steps_per_epoch, extra=None):
        pools.append({"real": np.asarray(X)[np.asarray(row_indices)], "extra": np.asarray(extra[0]),
                      "pool_labels": sampler.labels.copy()})
        return real_dataset(X, labels_int, row_indices, sampler, steps_per_epoch, extra)

    monkeypatch.setattr(training, "make_train_dataset", spy)
    monkeypatch.setenv("SPECTRAFORGE_CHECKPOINTS", str(tmp_path / "ckpt"))  # no fold restored from elsewhere
    fit = {"batch_size": 16, "seed": 1, "jit_compile": False, "patience": 5,
           "phase1": {"epochs": 1, "steps": 2, "lr": 0.01, "loss": "crossentropy"},
           "phase2": {"epochs": 0, "steps": 1, "lr": 0.001, "loss": "macro_f1"}}
    spec = ModelSpec(kind="cnn", config={"network": {"n_pix": N_PIX, "channels": [4], "dense_units": 4}, "fit": fit})
    params = TrainParams(models=[], prepared_dir=str(world / "prepared"), folds=str(world / "folds.csv"),
                         threads=2, variants={})  # the session's TensorFlow pools (conftest)
    name = f"cnn+{source}"
    extras = FoldExtras(name, AugmentSpec("cnn", source), world / "syn", world / "models")
    run_kfold(name, params, models_dir=world / "mc", predictions_dir=world / "pc", reports_dir=world / "rc",
              spec=spec, extras=extras)
    data = load_prepared(world / "prepared")
    folds = pd.read_csv(world / "folds.csv", dtype={"id": str})
    assert len(pools) == 3  # one phase with epochs per fold
    for k, pool in enumerate(pools):
        val = np.asarray(data.train)[(folds.fold == k).to_numpy()]
        train = np.asarray(data.train)[(folds.fold != k).to_numpy()]
        val_bytes = {row.tobytes() for row in val}
        assert not any(row.tobytes() in val_bytes for row in pool["real"])
        assert len(pool["real"]) == len(train)
        assert len(pool["pool_labels"]) == len(pool["real"]) + len(pool["extra"]) > len(train)
        z = np.load(world / "syn" / source / f"fold{k}.npz")
        np.testing.assert_array_equal(pool["extra"], z["flux"])  # the fold's own extras, in order
        assert not set(z["parent"]) & set(folds.id[folds.fold == k])
        assert set(z["parent"]) <= set(folds.id[folds.fold != k])
        if source == "oversample":
            assert not any(row.tobytes() in val_bytes for row in pool["extra"])
            train_bytes = {row.tobytes() for row in train}
            assert all(row.tobytes() in train_bytes for row in pool["extra"])


def test_params_name_the_bad_key(tmp_path, repo_root):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert load_augment_params(repo_root / "params.yaml").variants  # the repo's own params load
    for variant, match in (({"model": "svm", "source": "glow"}, r"augment\.variants\.svm\+glow\.model.*svm"),
                           ({"model": "lgbm", "source": "vae"}, r"\.source.*'vae' is not a generate variant"),
                           ({"model": "lgbm", "source": "glow", "confidence": 1.5}, r"confidence"),
                           ({"model": "lgbm", "source": "glow", "per_class": {"quasar": 3}}, r"per_class\.quasar")):
        name = f"{variant['model']}+{variant['source']}"
        params["augment"]["variants"] = {name: variant}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(ParamsError, match=match):
            load_augment_params(tmp_path / "params.yaml")
    params["augment"]["variants"] = {"boosted": {"model": "lgbm", "source": "glow"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"lgbm\+glow"):
        load_augment_params(tmp_path / "params.yaml")
