"""The K-fold loop: OOF coverage, no leakage, determinism, outputs, params errors."""
import json

import numpy as np
import pandas as pd
import pytest
from conftest import toy_spectra, write_prepared

from spectraforge.crossval import ModelSpec, TrainParams, build_classifier, run_kfold
from spectraforge.data import fold_rows, make_folds
from spectraforge.labels import LABELS
from spectraforge.metrics import macro_f1
from spectraforge.params import ParamsError

N_PIX = 128
CNN = {"n_pix": N_PIX, "channels": [4, 8], "dense_units": 8, "dropout": 0.1}
FIT = {"batch_size": 32, "seed": 3, "deterministic": True,
       "phase1": {"epochs": 2, "steps": 4, "lr": 0.01, "loss": "crossentropy"},
       "phase2": {"epochs": 1, "steps": 2, "lr": 0.001, "loss": "macro_f1"}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared dataset on disk as the prepare stage writes it, with revisited objects."""
    X, y = toy_spectra(240, N_PIX, seed=1)
    Xt, _ = toy_spectra(30, N_PIX, seed=2)
    return write_prepared(tmp_path_factory.mktemp("prep"), X, y, Xt, k=3)


def params_for(root, **variants) -> TrainParams:
    return TrainParams(models=list(variants), threads=2, prepared_dir=str(root / "prepared"),
                       folds=str(root / "folds.csv"), variants=variants)


def run(root, name, spec, tag):
    out = root / tag
    metrics = run_kfold(name, params_for(root, **{name: spec}), models_dir=out / "models",
                        predictions_dir=out / "pred", reports_dir=out / "reports")
    return metrics, pd.read_parquet(out / "pred" / name / "oof.parquet"), out


@pytest.fixture(scope="module")
def lgbm_run(prepared):
    spec = ModelSpec(kind="lgbm", config={"n_pca": 4, "n_windows": 8, "n_estimators": 30, "seed": 5})
    return run(prepared, "lgbm", spec, "a"), run(prepared, "lgbm", spec, "b")


@pytest.fixture(scope="module")
def cnn_run(prepared):
    spec = ModelSpec(kind="cnn", config={"network": CNN, "fit": FIT})
    return run(prepared, "cnn", spec, "a"), run(prepared, "cnn", spec, "b")


@pytest.mark.parametrize("which", ["lgbm_run", "cnn_run"])
def test_oof_covers_every_id_once_from_its_own_fold(which, prepared, request):
    (metrics, oof, out), _ = request.getfixturevalue(which)
    folds = pd.read_csv(prepared / "folds.csv")
    assert oof["id"].is_unique and len(oof) == len(folds)
    assert dict(zip(oof["id"], oof["fold"])) == dict(zip(folds["id"], folds["fold"]))
    p = oof[[f"p_{c}" for c in LABELS]].to_numpy()
    assert np.allclose(p.sum(axis=1), 1, atol=1e-5)
    name = "lgbm" if which == "lgbm_run" else "cnn"
    saved = json.loads((out / "reports" / "metrics" / f"{name}.json").read_text())
    assert saved["macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert sum(v for k, v in saved.items() if k.startswith("confusion_")) == len(folds)
    assert saved["macro_f1_ci_low"] <= saved["macro_f1"] <= saved["macro_f1_ci_high"]
    test = pd.read_parquet(out / "pred" / name / "test.parquet")
    assert len(test) == 30 and np.allclose(test.filter(like="p_").sum(axis=1), 1, atol=1e-5)
    manifest = json.loads((out / "models" / name / "manifest.json").read_text())
    assert len(manifest["folds"]) == 3 and manifest["labels"] == list(LABELS)


@pytest.mark.parametrize("which", ["lgbm_run", "cnn_run"])
def test_same_seed_same_oof(which, request):
    (_, a, _), (_, b, _) = request.getfixturevalue(which)
    cols = [f"p_{c}" for c in LABELS]
    assert np.array_equal(a[cols].to_numpy(), b[cols].to_numpy())


def test_lgbm_beats_the_majority_guess(lgbm_run):
    # the toy's classes differ by line spacing at random positions, which window statistics
    # capture only partly; always guessing the majority class scores about 0.18
    (metrics, _, _), _ = lgbm_run
    assert metrics["macro_f1"] > 0.3


def test_revisits_never_straddle_folds(prepared):
    folds = pd.read_csv(prepared / "folds.csv")
    assert (folds.groupby("object_id")["fold"].nunique() == 1).all()


def test_fold_rows_rejects_unknown_ids(prepared):
    meta = pd.read_parquet(prepared / "prepared" / "meta.parquet")
    folds = pd.read_csv(prepared / "folds.csv").iloc[1:]
    with pytest.raises(ValueError, match="have no fold"):
        fold_rows(meta[meta.split == "train"], folds)


@pytest.mark.parametrize("spec, match", [
    (ModelSpec(kind="svm"), r"train\.variants\.x\.kind: 'svm' is not one of: cnn, lgbm"),
    (ModelSpec(kind="cnn", config={"network": {"chanels": [4]}}), r"train\.variants\.x\.config\.network\.chanels: unknown key"),
    (ModelSpec(kind="cnn", config={"netwrk": {}}), r"train\.variants\.x\.config\.netwrk: unknown key"),
    (ModelSpec(kind="cnn", config={"fit": {"batch_size": "160"}}), r"train\.variants\.x\.config\.fit\.batch_size: expected an integer"),
    (ModelSpec(kind="cnn", config={"fit": {"phase1": {"epochs": 1, "steps": 1, "lr": 0.1, "loss": "hinge"}}}),
     r"train\.variants\.x\.config\.fit\.phase1\.loss: 'hinge' is not one of"),
    (ModelSpec(kind="lgbm", config={"learning_rate": 5}), r"train\.variants\.x\.config\.learning_rate"),
    (ModelSpec(kind="lgbm", config={"n_pca": 2.5}), r"train\.variants\.x\.config\.n_pca: expected an integer, got 2\.5"),
])
def test_bad_variant_params_name_the_key(spec, match):
    with pytest.raises(ParamsError, match=match):
        build_classifier(spec, "x", wave=np.arange(N_PIX, dtype=float), threads=1)


def test_labels_are_decided_by_weights_tuned_on_the_other_folds_only(lgbm_run, prepared, monkeypatch):
    """The nested decision rule: fold k's OOF labels come from weights tuned on the other
    folds' rows; the OOF table keeps the raw probabilities and adds the decided `type`."""
    import spectraforge.decision as decision
    from spectraforge.crossval import DecisionParams, decide_labels

    (metrics, oof, out), _ = lgbm_run
    assert set(oof["type"]) <= set(LABELS) and "argmax_macro_f1" in metrics
    assert metrics["macro_f1"] == pytest.approx(
        macro_f1(oof["label"].map(LABELS.index).to_numpy(), oof["type"].map(LABELS.index).to_numpy()))
    rng = np.random.default_rng(0)
    fold = np.repeat(np.arange(3), 50)
    y = rng.integers(0, len(LABELS), fold.size)
    P = rng.dirichlet(np.ones(len(LABELS)), fold.size)
    seen = []
    real = decision.bagged_decision_weights

    def spy(P_fit, y_fit, *a, **kw):
        seen.append({tuple(r) for r in np.round(P_fit, 12)})
        return real(P_fit, y_fit, *a, **kw)

    monkeypatch.setattr(decision, "bagged_decision_weights", spy)
    pred, _, w = decide_labels(P, P[:5], y, fold, DecisionParams(resamples=2))
    rows = [{tuple(r) for r in np.round(P[fold == k], 12)} for k in range(3)]
    assert len(seen) == 4  # one tuning per fold, then one on all rows for the test set
    for k in range(3):
        assert not (seen[k] & rows[k]) and seen[k] == rows[(k + 1) % 3] | rows[(k + 2) % 3]
    assert pred.shape == y.shape and w.shape == (len(LABELS),)
    plain, _, ones = decide_labels(P, P[:5], y, fold, DecisionParams(weights=False))
    np.testing.assert_array_equal(plain, P.argmax(axis=1))
    np.testing.assert_array_equal(ones, np.ones(len(LABELS)))


def test_one_compiled_training_step_serves_every_fold_and_both_phases(prepared):
    """The CNN's training step and predict are traced on the first fold only (TensorFlow traces
    a function that creates variables twice on its first call); the other folds, both phases
    and a second run of the stage in this process reuse them: no trace, no XLA compile."""
    from spectraforge.training import get_trainer

    fit = {**FIT, "eval_batch_size": 37}  # a trainer of its own for this test
    spec = ModelSpec(kind="cnn", config={"network": CNN, "fit": fit})
    settings = build_classifier(spec, "cnn", wave=np.arange(N_PIX, dtype=float), threads=2).config
    trainer = get_trainer(settings.network, settings.fit)
    calls = []
    real_fit = type(trainer.model).fit

    def counting_fit(self, *a, **kw):
        calls.append((trainer.traces, trainer.predict_traces))
        return real_fit(self, *a, **kw)

    import unittest.mock as mock

    with mock.patch.object(type(trainer.model), "fit", counting_fit):
        run(prepared, "cnn", spec, "traces1")
        run(prepared, "cnn", spec, "traces2")
    assert len(calls) == 2 * 3 * 2  # two runs x three folds x two phases
    first = calls[1]  # after the first fit (phase 1 of fold 0) has run
    assert 1 <= first[0] <= 2 and first[1] == 1
    assert calls[1:] == [first] * (len(calls) - 1)
    assert (trainer.traces, trainer.predict_traces) == first


def test_the_cnn_prints_what_tensorflow_runs_on_and_a_line_per_epoch(prepared, capfd):
    spec = ModelSpec(kind="cnn", config={"network": CNN, "fit": FIT})
    run(prepared, "cnn", spec, "progress")
    out = capfd.readouterr()
    assert "cnn: TensorFlow" in out.out and "on the CPU" in out.out
    lines = [ln for ln in out.out.splitlines() if ln.startswith("cnn fold ")]
    assert len(lines) == 3 * 3  # 3 folds x (2 + 1) epochs
    assert lines[0].startswith("cnn fold 0 phase 1 epoch 1/2: loss ") and "val macro-F1" in lines[0]
    for notice in ("oneDNN custom operations", "cuInit", "Could not find cuda drivers"):
        assert notice not in out.err
