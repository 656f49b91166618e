"""The ensemble stage: combiners are never fitted on the rows they score, the stacker sees only
OOF inputs, decision weights do what they claim, and inputs that do not line up are named."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectraforge import decision
from spectraforge import ensemble as ens
from spectraforge.ensemble import (EnsembleParams, Stacker, WeightedAverage, bagged_decision_weights, decide,
                                   load_level1, nested_oof, run_ensemble, tune_decision_weights)
from spectraforge.io.spectrum import LABELS
from spectraforge.metrics import macro_f1
from spectraforge.params import ParamsError

K = len(LABELS)
PROBA = [f"p_{c}" for c in LABELS]


def _softmax(z):
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _problem(n=600, seed=0, k=3):
    rng = np.random.default_rng(seed)
    y = rng.choice(K, n, p=[0.6, 0.15, 0.1, 0.15])
    fold = rng.integers(0, k, n)
    return y, fold, rng


def _model(y, rng, skill):
    """Probabilities whose logits lean to the true class by ``skill``."""
    logits = rng.normal(0, 1, (len(y), K))
    logits[np.arange(len(y)), y] += skill
    return _softmax(logits)


def _write_variant(root, name, ids, fold, y, P, test_ids, P_test):
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    oof = pd.DataFrame(P, columns=PROBA)
    oof.insert(0, "label", [LABELS[c] for c in y])
    oof.insert(0, "fold", fold)
    oof.insert(0, "id", ids)
    oof.to_parquet(d / "oof.parquet", index=False)
    test = pd.DataFrame(P_test, columns=PROBA)
    test.insert(0, "id", test_ids)
    test.to_parquet(d / "test.parquet", index=False)


@pytest.fixture
def run_dir(tmp_path):
    y, fold, rng = _problem()
    ids = np.array([f"t{i:04d}" for i in range(len(y))])
    test_ids = np.array([f"x{i:03d}" for i in range(50)])
    for name, skill in (("good", 3.0), ("weak", 1.0), ("noise", 0.0)):
        _write_variant(tmp_path / "pred", name, ids, fold, y, _model(y, rng, skill), test_ids,
                       _softmax(rng.normal(0, 1, (50, K))))
    return tmp_path


def _params(root, **kw):
    return EnsembleParams(inputs=["good", "weak", "noise"], predictions_dir=str(root / "pred"), resamples=3, **kw)


def test_weighted_average_gradient_is_exact_and_weights_find_the_good_model():
    y, _, rng = _problem(400)
    P = np.stack([_model(y, rng, 3.0), _model(y, rng, 0.0), _model(y, rng, 0.5)])
    wa = WeightedAverage().fit(P, y)
    assert wa.weights.sum() == pytest.approx(1.0) and (wa.weights >= 0).all()
    assert wa.weights[0] > 0.8
    # the analytic gradient of the objective against central differences
    py = P[:, np.arange(y.size), y]

    def loss(theta):
        w = _softmax(theta)
        return -np.log(w @ py).mean()

    theta = np.array([0.3, -0.2, 0.1])
    from scipy.optimize import check_grad

    def grad(theta):
        w = _softmax(theta)
        g_w = -(py / (w @ py)).mean(axis=1)
        return w * (g_w - w @ g_w)

    assert check_grad(loss, grad, theta) < 1e-6


def test_nested_oof_never_fits_on_the_rows_it_scores():
    y, fold, rng = _problem()
    P = np.stack([_model(y, rng, 2.0), _model(y, rng, 1.0)])
    seen = []

    class Spy:
        def fit(self, P_fit, y_fit):
            self.rows = {tuple(np.round(r, 12)) for r in P_fit[0]}
            return self

        def predict(self, P_score):
            scored = {tuple(np.round(r, 12)) for r in P_score[0]}
            seen.append(len(self.rows & scored))
            return P_score.mean(axis=0)

    out = nested_oof(Spy, P, y, fold)
    assert seen == [0, 0, 0]  # three folds, no overlap between fitted and scored rows
    assert not np.isnan(out).any()  # every row predicted exactly once
    np.testing.assert_allclose(out, P.mean(axis=0))


def test_stacker_learns_from_oof_and_beats_the_noise():
    y, _, rng = _problem(800)
    P = np.stack([_model(y, rng, 2.5), _model(y, rng, 0.0)])
    st = Stacker("logistic").fit(P, y)
    assert macro_f1(y, st.predict(P).argmax(axis=1)) > 0.8
    st_lgbm = Stacker("lgbm", threads=1).fit(P, y)
    assert st_lgbm.predict(P).shape == (len(y), K)


def test_decision_weights_recover_an_under_predicted_rare_class():
    y, _, rng = _problem(2000, seed=3)
    P = _model(y, rng, 2.5)
    P[:, 2] *= 0.05  # qso systematically under-confident: argmax rarely says qso
    P /= P.sum(axis=1, keepdims=True)
    before = macro_f1(y, P.argmax(axis=1))
    w = tune_decision_weights(P, y)
    assert w[0] == 1.0 and w[2] > 5.0
    assert macro_f1(y, decide(P, w)) > before + 0.05
    wb = bagged_decision_weights(P, y, resamples=5, grid=(-4.0, 4.0, 41), seed=0)
    assert wb[2] > 5.0


def test_decision_weights_stay_at_one_when_argmax_is_already_perfect():
    y = np.repeat(np.arange(K), 30)
    P = np.full((y.size, K), 0.1)
    P[np.arange(y.size), y] = 0.7
    np.testing.assert_array_equal(tune_decision_weights(P, y), np.ones(K))


def test_run_ensemble_writes_honest_outputs(run_dir):
    m = run_ensemble(_params(run_dir), out_dir=run_dir / "ens", reports_dir=run_dir / "rep")
    saved = json.loads((run_dir / "rep/metrics/ensemble.json").read_text())
    assert saved["macro_f1"] == pytest.approx(m["macro_f1"])
    oof = pd.read_parquet(run_dir / "ens/oof.parquet")
    y = np.array([LABELS.index(c) for c in oof["label"]])
    assert macro_f1(y, [LABELS.index(c) for c in oof["type"]]) == pytest.approx(m["macro_f1"])
    assert m["weight_good"] > m["weight_noise"]
    assert m["stack_macro_f1"] > m["input_noise_macro_f1"]
    test = pd.read_parquet(run_dir / "ens/test.parquet")
    assert len(test) == 50 and set(test["type"]) <= set(LABELS)
    np.testing.assert_allclose(test[PROBA].sum(axis=1), 1.0, atol=1e-6)
    assert (run_dir / "rep/plots/ensemble/confusion.csv").exists()
    lv = load_level1(["good", "weak", "noise"], run_dir / "pred")
    with pytest.raises(ValueError, match="noise"):  # the saved ensemble needs all its inputs
        ens.FittedEnsemble.load(run_dir / "ens/combiner.json").predict({"good": lv.test[0], "weak": lv.test[1]})


@pytest.mark.parametrize("method, stacker", [("average", "logistic"), ("stack", "logistic"), ("stack", "lgbm")])
def test_the_saved_combiner_is_pickle_free_and_reproduces_the_test_outputs(run_dir, method, stacker):
    out = run_dir / f"saved-{method}-{stacker}"
    run_ensemble(_params(run_dir, method=method, stacker=stacker), out_dir=out, reports_dir=out / "rep")
    assert not list(out.glob("*.joblib")) and not list(out.glob("*.pkl"))
    with np.load(out / "combiner.npz", allow_pickle=False) as z:  # plain arrays only
        assert all(z[n].dtype != object for n in z.files)
    fitted = ens.load_combiner(out / "combiner.json")
    test = pd.read_parquet(out / "test.parquet").set_index("id")
    lv = load_level1(["good", "weak", "noise"], run_dir / "pred")
    P, codes = fitted.predict({n: lv.test[i] for i, n in enumerate(lv.names)})
    np.testing.assert_array_equal(P, test.loc[lv.test_ids, PROBA].to_numpy())
    assert [LABELS[c] for c in codes] == list(test.loc[lv.test_ids, "type"])


def test_a_pickled_combiner_is_refused_without_the_opt_in(run_dir, tmp_path):
    import joblib

    from spectraforge.safeload import ModelFileError

    class Payload:  # what a hostile combiner.joblib would carry
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    for name in ("combiner.joblib", "combiner.pkl"):
        joblib.dump(Payload(), tmp_path / name)
        with pytest.raises(ModelFileError, match=rf"{name}: a pickle file.*--allow-pickle"):
            ens.load_combiner(tmp_path / name)
        assert not (tmp_path / "ran").exists()
        with pytest.warns(UserWarning, match="UNPICKLING"):
            ens.load_combiner(tmp_path / name, allow_pickle=True)
        assert (tmp_path / "ran").exists()  # only with the opt-in does the payload run
        (tmp_path / "ran").unlink()


@pytest.mark.parametrize("damage", ["truncated json", "missing npz", "truncated npz", "other labels"])
def test_a_damaged_combiner_names_its_file(run_dir, tmp_path, damage):
    import shutil

    from spectraforge.safeload import ModelFileError

    run_ensemble(_params(run_dir), out_dir=run_dir / "ens", reports_dir=run_dir / "rep")
    for f in ("combiner.json", "combiner.npz"):
        shutil.copy(run_dir / "ens" / f, tmp_path / f)
    if damage == "truncated json":
        (tmp_path / "combiner.json").write_text((tmp_path / "combiner.json").read_text()[:20])
    elif damage == "missing npz":
        (tmp_path / "combiner.npz").unlink()
    elif damage == "truncated npz":
        (tmp_path / "combiner.npz").write_bytes((tmp_path / "combiner.npz").read_bytes()[:100])
    else:
        info = json.loads((tmp_path / "combiner.json").read_text())
        (tmp_path / "combiner.json").write_text(json.dumps({**info, "labels": info["labels"][::-1]}))
    with pytest.raises(ModelFileError, match=r"combiner\.json: cannot load"):
        ens.load_combiner(tmp_path / "combiner.json")


def test_test_predictions_never_reach_the_fitting(run_dir):
    """Garbage test predictions change the test outputs and nothing fitted on OOF."""
    a = run_ensemble(_params(run_dir), out_dir=run_dir / "a", reports_dir=run_dir / "ra")
    for name in ("good", "weak", "noise"):
        path = run_dir / "pred" / name / "test.parquet"
        t = pd.read_parquet(path)
        t[PROBA] = _softmax(np.random.default_rng(9).normal(0, 5, (len(t), K)))
        t.to_parquet(path, index=False)
    b = run_ensemble(_params(run_dir), out_dir=run_dir / "b", reports_dir=run_dir / "rb")
    assert {k: v for k, v in a.items()} == {k: v for k, v in b.items()}  # weights, OOF scores
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "a/oof.parquet"), pd.read_parquet(run_dir / "b/oof.parquet"))
    assert not pd.read_parquet(run_dir / "a/test.parquet").equals(pd.read_parquet(run_dir / "b/test.parquet"))


def test_stacker_and_decision_weights_see_only_other_folds(run_dir, monkeypatch):
    lv = load_level1(["good", "weak", "noise"], run_dir / "pred")
    fits, tunes = [], []
    real_fit, real_bag = Stacker.fit, decision.bagged_decision_weights

    def spy_fit(self, P, y):
        fits.append(P)
        return real_fit(self, P, y)

    def spy_bag(P, y, *a, **kw):
        tunes.append(len(y))
        return real_bag(P, y, *a, **kw)

    monkeypatch.setattr(Stacker, "fit", spy_fit)
    monkeypatch.setattr(decision, "bagged_decision_weights", spy_bag)
    run_ensemble(_params(run_dir), out_dir=run_dir / "ens", reports_dir=run_dir / "rep")
    ks = np.unique(lv.fold)
    # nested fits on the other folds' OOF rows, then one final fit on all OOF rows; never test rows
    expected = [lv.oof[:, lv.fold != k] for k in ks] + [lv.oof]
    assert len(fits) == len(expected)
    for got, want in zip(fits, expected):
        np.testing.assert_array_equal(got, want)
    assert tunes == [int((lv.fold != k).sum()) for k in ks] + [len(lv.y)]


def test_inputs_that_do_not_line_up_are_named(run_dir):
    oof = pd.read_parquet(run_dir / "pred/weak/oof.parquet")
    oof.loc[0, "fold"] = (oof.loc[0, "fold"] + 1) % 3
    oof.to_parquet(run_dir / "pred/weak/oof.parquet", index=False)
    with pytest.raises(ValueError, match=r"weak/oof\.parquet.*folds"):
        load_level1(["good", "weak"], run_dir / "pred")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_level1(["good", "missing"], run_dir / "pred")


def test_params_are_strict():
    with pytest.raises(ParamsError, match=r"ensemble\.method.*average, stack"):
        EnsembleParams(inputs=["a"], method="vote").validate()
    with pytest.raises(ParamsError, match=r"ensemble\.inputs"):
        EnsembleParams(inputs=[]).validate()
    with pytest.raises(ParamsError, match=r"ensemble\.grid"):
        EnsembleParams(inputs=["a"], grid=[1, -1, 5]).validate()
