"""One classifier interface and registry: a new kind is one class plus one registry entry, and
every consumer (the K-fold engine, `spectraforge predict`, the augment stage's confidence
filter, the ensemble's inputs) takes it as it is. Models are stored without pickle, and a
models folder cannot run code or reach outside itself unless the user opts in."""
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from conftest import toy_table, write_prepared
from spectraforge.crossval import ModelSpec, TrainParams, run_kfold
from spectraforge.labels import LABELS, PROBA_COLUMNS
from spectraforge.models.base import Classifier
from spectraforge.models.lgbm import LGBMConfig, SpectrumLGBM
from spectraforge.models.registry import CLASSIFIERS
from spectraforge.params import ParamsError, require
from spectraforge.predict import FoldEnsemble
from spectraforge.safeload import ModelFileError


# ------------------------------------------------------------------ a third kind, as a user adds one


@dataclass
class CentroidConfig:
    temperature: float = 1.0

    def validate(self, key: str) -> None:
        require(self.temperature > 0, f"{key}.temperature", f"must be > 0, got {self.temperature}")


class NearestCentroid(Classifier):
    """Softmax of minus the distance to each class's mean spectrum."""

    kind, Config, suffix = "centroid", CentroidConfig, ".npz"

    def fit(self, X, y, *, val, extra=None, resume_dir=None, logger=None, label=None):
        X, y = np.asarray(X, np.float64), np.asarray(y)
        self.centres = np.stack([X[y == c].mean(axis=0) if (y == c).any() else np.full(X.shape[1], np.inf)
                                 for c in range(len(LABELS))])
        return self

    def predict_proba(self, X):
        d = -np.sqrt(((np.asarray(X, np.float64)[:, None, :] - self.centres[None]) ** 2).sum(axis=2))
        d = np.nan_to_num(d / self.config.temperature, nan=-np.inf, neginf=-1e300)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def save(self, stem):
        np.savez(Path(stem).with_suffix(".npz"), centres=self.centres, temperature=self.config.temperature)
        return Path(stem).with_suffix(".npz").name

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as z:
            self = cls(CentroidConfig(float(z["temperature"])), wave=np.zeros(0))
            self.centres = z["centres"]
        return self


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    X, y = toy_table(150, seed=3, p=(0.5, 0.2, 0.15, 0.15))
    return write_prepared(tmp_path_factory.mktemp("clf"), X, y, X[:20] + 0.01, k=3)


def _kfold(root, out, name, spec):
    params = TrainParams(models=[], prepared_dir=str(root / "prepared"), folds=str(root / "folds.csv"), threads=1)
    return run_kfold(name, params, models_dir=out / "models", predictions_dir=out / "pred",
                     reports_dir=out / "rep", spec=spec, prepare_params={"normalise": "median"})


def test_a_registered_classifier_runs_through_every_consumer(prepared, tmp_path, monkeypatch):
    monkeypatch.setitem(CLASSIFIERS, "centroid", NearestCentroid)  # the one registry line
    monkeypatch.setenv("SPECTRAFORGE_CHECKPOINTS", str(tmp_path / "ckpt"))
    metrics = _kfold(prepared, tmp_path, "near", ModelSpec(kind="centroid", config={"temperature": 0.5}))
    assert metrics["macro_f1"] > 0.5  # the toy is separable by its class patterns
    manifest = json.loads((tmp_path / "models/near/manifest.json").read_text())
    assert manifest["kind"] == "centroid" and manifest["folds"] == ["fold0.npz", "fold1.npz", "fold2.npz"]
    assert manifest["config"] == {"temperature": 0.5}
    # predict: the fold models from the manifest, averaged, equal the stage's test predictions
    X_test = np.load(prepared / "prepared/test.npy")
    test = pd.read_parquet(tmp_path / "pred/near/test.parquet")
    np.testing.assert_allclose(FoldEnsemble(tmp_path / "models").per_variant(X_test)["near"],
                               test[PROBA_COLUMNS].to_numpy(), rtol=1e-12)
    # augment's confidence filter: fold k's baseline model by the registry
    from spectraforge.augment import baseline_proba

    assert baseline_proba(tmp_path / "models/near", 1, X_test).shape == (len(X_test), len(LABELS))
    # the ensemble reads its OOF/test tables like any variant's
    from spectraforge.ensemble import load_level1

    assert load_level1(["near"], tmp_path / "pred").oof.shape == (1, 150, len(LABELS))
    # its config is checked like the built-in kinds' (unknown key, type, range; the key named)
    for config, match in (({"temprature": 1}, r"config\.temprature: unknown key"),
                          ({"temperature": "hot"}, r"config\.temperature: expected a number"),
                          ({"temperature": 0}, r"config\.temperature: must be > 0")):
        with pytest.raises(ParamsError, match=rf"train\.variants\.near\.{match}"):
            _kfold(prepared, tmp_path / "bad", "near", ModelSpec(kind="centroid", config=config))


def test_unknown_kinds_name_the_registered_ones(tmp_path, repo_root):
    import yaml

    from spectraforge.crossval import load_train_params

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["train"]["variants"]["lgbm"]["kind"] = "svm"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"train\.variants\.lgbm\.kind: 'svm' is not one of: cnn, lgbm"):
        load_train_params(tmp_path / "params.yaml")


# ------------------------------------------------------------------ LightGBM stored without pickle


@pytest.mark.parametrize("n_pca", [0, 4])
def test_lgbm_roundtrip_is_pickle_free_and_exact(prepared, tmp_path, n_pca):
    X = np.load(prepared / "prepared/train.npy")
    y = np.array([LABELS.index(c) for c in pd.read_parquet(prepared / "prepared/meta.parquet").query(
        "split == 'train'").sort_values("row")["label"]])
    clf = SpectrumLGBM(LGBMConfig(n_pca=n_pca, n_windows=4, n_estimators=15), wave=np.arange(X.shape[1]),
                       threads=1).fit(X[:100], y[:100], val=(X[100:], y[100:]))
    name = clf.save(tmp_path / "fold0")
    with np.load(tmp_path / name, allow_pickle=False) as z:
        assert all(z[n].dtype != object for n in z.files)
    loaded = SpectrumLGBM.load(tmp_path / name)
    np.testing.assert_array_equal(loaded.predict_proba(X[100:]), clf.predict_proba(X[100:]))


# ------------------------------------------------------------------ hostile models folders


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    spec = ModelSpec(kind="lgbm", config={"n_estimators": 5, "n_pca": 2, "n_windows": 4})
    _kfold(prepared, out, "lgbm", spec)
    return out / "models"


class Payload:
    """What a hostile pickle carries: code that runs on load (here it only creates a file)."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return (Path.touch, (self.flag,))


def _copy(trained, tmp_path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(trained, models)
    return models / "lgbm"


def _manifest(variant: Path, **changes):
    info = json.loads((variant / "manifest.json").read_text())
    (variant / "manifest.json").write_text(json.dumps({**info, **changes}))


@pytest.mark.parametrize("name", ["fold0.joblib", "fold0.pkl", "fold0.pickle", "fold0.npz", "fold0.keras"])
def test_a_pickle_in_the_models_folder_never_runs_without_the_opt_in(trained, tmp_path, name):
    variant = _copy(trained, tmp_path)
    flag = tmp_path / "payload-ran"
    joblib.dump(Payload(flag), variant / name)
    _manifest(variant, folds=[name, "fold1.npz", "fold2.npz"], kind="cnn" if name.endswith(".keras") else "lgbm")
    with pytest.raises(ModelFileError, match=rf"{name}"):
        FoldEnsemble(tmp_path / "models")
    assert not flag.exists()
    if name.endswith((".joblib", ".pkl", ".pickle")):  # the explicit opt-in, loudly
        with pytest.warns(UserWarning, match="UNPICKLING"), pytest.raises(ModelFileError, match="not a classifier"):
            FoldEnsemble(tmp_path / "models", allow_pickle=True)
        assert flag.exists()


@pytest.mark.parametrize("entry", ["../../outside.npz", "../lgbm2/fold0.npz", "/tmp/outside.npz", "sub/fold0.npz",
                                   "..", "", "link.npz"])
def test_manifest_entries_cannot_reach_outside_the_models_folder(trained, tmp_path, entry):
    variant = _copy(trained, tmp_path)
    outside = tmp_path / "outside.npz"
    shutil.copy(variant / "fold0.npz", outside)
    (variant / "sub").mkdir()
    shutil.copy(variant / "fold0.npz", variant / "sub" / "fold0.npz")
    (variant / "link.npz").symlink_to(outside)
    _manifest(variant, folds=[entry, "fold1.npz"])
    with pytest.raises(ModelFileError, match="refused"):
        FoldEnsemble(tmp_path / "models")


@pytest.mark.parametrize("change, match", [
    ({"folds": []}, r"manifest\.json: 'folds' must list"),
    ({"folds": None}, r"manifest\.json: 'folds' must list"),
    ({"folds": [3]}, r"manifest\.json: 'folds' must list"),
    ({"kind": "svm"}, r"manifest\.json: kind 'svm' is not one of"),
    ({"folds": ["fold0.npz", "fold9.npz"]}, r"fold9\.npz: fold model listed in the manifest is missing"),
    ({"labels": ["qso", "star", "galaxy", "unknown"]}, r"manifest\.json: label order"),
])
def test_a_bad_manifest_names_itself(trained, tmp_path, change, match):
    variant = _copy(trained, tmp_path)
    _manifest(variant, **change)
    with pytest.raises(ModelFileError, match=match):
        FoldEnsemble(tmp_path / "models")


@pytest.mark.parametrize("kind, name, keep", [("lgbm", "fold0.npz", 0.5), ("lgbm", "fold0.npz", 0.0),
                                              ("cnn", "fold0.keras", 0.5)])
def test_a_truncated_model_file_names_itself(trained, tmp_path, kind, name, keep):
    variant = _copy(trained, tmp_path)
    data = (variant / "fold0.npz").read_bytes()
    (variant / name).write_bytes(data[: int(len(data) * keep)])
    _manifest(variant, kind=kind, folds=[name])
    with pytest.raises(ModelFileError, match=rf"{name}: cannot load the {kind} fold model"):
        FoldEnsemble(tmp_path / "models")
    (variant / "manifest.json").write_text("{ truncated")
    with pytest.raises(ModelFileError, match=r"manifest\.json: not a readable manifest"):
        FoldEnsemble(tmp_path / "models")


def test_predict_command_refuses_a_hostile_folder_with_the_file_named(trained, tmp_path, capsys):
    from spectraforge.cli import main

    variant = _copy(trained, tmp_path)
    _manifest(variant, folds=["../../../etc/passwd"])
    assert main(["predict", str(tmp_path), "--models", str(tmp_path / "models"), "--ensemble", "none",
                 "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "etc/passwd" in err and "refused" in err and "Traceback" not in err


def test_an_older_pickled_lgbm_fold_still_predicts_with_the_opt_in(prepared, tmp_path):
    """Models folders of earlier versions hold SpectrumLGBM pickles (attributes cfg, n_threads,
    the sklearn estimator); with --allow-pickle they load, warn, and predict as they did."""
    X = np.load(prepared / "prepared/train.npy")
    y = np.arange(len(X)) % len(LABELS)
    clf = SpectrumLGBM(LGBMConfig(n_pca=2, n_windows=4, n_estimators=5), wave=np.arange(X.shape[1]),
                       threads=1).fit(X, y, val=None)
    old = SpectrumLGBM.__new__(SpectrumLGBM)
    old.__dict__ = {"cfg": clf.config, "wave": clf.wave, "n_threads": 1, "pca": clf.pca, "model": clf.model,
                    "curve_": [], "feature_names_": clf.feature_names_}
    variant = tmp_path / "models" / "old"
    variant.mkdir(parents=True)
    joblib.dump(old, variant / "fold0.joblib")
    (variant / "manifest.json").write_text(json.dumps({"name": "old", "kind": "lgbm", "folds": ["fold0.joblib"],
                                                       "labels": list(LABELS), "wave": clf.wave.tolist()}))
    with pytest.raises(ModelFileError, match="--allow-pickle"):
        FoldEnsemble(tmp_path / "models")
    with pytest.warns(UserWarning, match="UNPICKLING"):
        ensemble = FoldEnsemble(tmp_path / "models", allow_pickle=True)
    np.testing.assert_array_equal(ensemble.per_variant(X[:10])["old"], clf.predict_proba(X[:10]))
