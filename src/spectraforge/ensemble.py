"""Stage ``ensemble``: one prediction from the out-of-fold (OOF) and test probabilities of
every trained level-1 variant (``train@*`` and ``augment@*``).

Combiners, each scored honestly by nested cross-validation on the level-1 folds — for fold k
the combiner is fitted on the OOF rows of the other folds only and predicts fold k, so no
weight is ever fitted on the predictions it is scored on:

- ``average``: p = Σ_m w_m p_m with w on the simplex (w = softmax θ), fitted by minimising
  the OOF log-loss (L-BFGS with the analytic gradient).
- ``stack``: a multinomial logistic regression (or LightGBM) on log p of every variant;
  its inputs are OOF probabilities only, never test predictions.

Then per-class decision weights: the label is argmax_c(w_c · p_c), with w tuned for macro-F1
by coordinate ascent over a grid of log-weights, on ``resamples`` bootstrap resamples of the
rows, and averaged (geometric mean) over them so a rare class's weight does not chase a
handful of spectra. They too are tuned inside the nested loop for the OOF score.

For the test set, each combiner is refitted on all OOF rows and applied to the fold-averaged
test probabilities of the variants; the decision weights are retuned on all (honest) OOF rows.

Outputs: data/ensemble/{oof,test}.parquet (p_* of the chosen combiner, ``type`` the final
label), data/ensemble/combiner.json + combiner.npz (what ``spectraforge predict`` applies;
no pickle: the combiner's arrays and settings only),
reports/metrics/ensemble.json, reports/plots/ensemble/confusion.csv.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spectraforge.decision import bagged_decision_weights, decide, nested_decision, tune_decision_weights  # noqa: F401
from spectraforge.labels import LABELS, PROBA_COLUMNS
from spectraforge.metrics import macro_f1, scores
from spectraforge.outputs import atomic_write_json, staged_dir
from spectraforge.params import require
from spectraforge.predictions import write_predictions, write_scores
from spectraforge.safeload import PICKLE_SUFFIXES, ModelFileError, unpickle

K = len(LABELS)
PROBA = PROBA_COLUMNS
METHODS = ("average", "stack")
EPS = 1e-6


@dataclass
class EnsembleParams:
    inputs: list = field(default_factory=list)  # variant names under predictions_dir
    predictions_dir: str = "data/predictions"
    method: str = "stack"  # average | stack: the combiner behind the submission
    stacker: str = "logistic"  # logistic | lgbm
    C: float = 1.0  # logistic stacker: inverse L2 strength
    decision_weights: bool = True
    resamples: int = 20  # bootstrap resamples the decision weights are averaged over
    grid: list = field(default_factory=lambda: [-2.0, 2.0, 41])  # log-weight grid: low, high, points
    seed: int = 2018

    def validate(self, key: str = "ensemble") -> None:
        require(isinstance(self.inputs, list) and self.inputs, f"{key}.inputs", "must list at least one variant")
        require(len(set(self.inputs)) == len(self.inputs), f"{key}.inputs", "lists a variant twice")
        require(self.method in METHODS, f"{key}.method", f"'{self.method}' is not one of: {', '.join(METHODS)}")
        require(self.stacker in ("logistic", "lgbm"), f"{key}.stacker",
                f"'{self.stacker}' is not one of: logistic, lgbm")
        require(self.C > 0, f"{key}.C", f"must be > 0, got {self.C}")
        require(self.resamples >= 1, f"{key}.resamples", f"must be >= 1, got {self.resamples}")
        require(len(self.grid) == 3 and self.grid[0] < self.grid[1] and int(self.grid[2]) >= 3, f"{key}.grid",
                f"must be [low, high, points] with low < high and points >= 3, got {self.grid}")


def load_ensemble_params(path="params.yaml") -> EnsembleParams:
    from spectraforge.params import load_section

    return load_section("ensemble", path, EnsembleParams)


# ------------------------------------------------------------------------ inputs


@dataclass
class Level1:
    """Aligned OOF and test probabilities of M variants: oof (M, n, K), test (M, n_test, K)."""

    names: list
    ids: np.ndarray
    fold: np.ndarray
    y: np.ndarray
    oof: np.ndarray
    test_ids: np.ndarray
    test: np.ndarray


def load_level1(names, predictions_dir) -> Level1:
    """Read every variant's OOF and test tables; they must cover the same ids, folds and labels."""
    oofs, tests, ref, ref_test = [], [], None, None
    for name in names:
        d = Path(predictions_dir) / name
        for f in ("oof.parquet", "test.parquet"):
            if not (d / f).exists():
                raise FileNotFoundError(f"{d / f}: no predictions for ensemble input '{name}'; run its stage first")
        oof = pd.read_parquet(d / "oof.parquet").sort_values("id", kind="stable").reset_index(drop=True)
        test = pd.read_parquet(d / "test.parquet").sort_values("id", kind="stable").reset_index(drop=True)
        if ref is None:
            ref, ref_test = oof, test
        elif not (np.array_equal(oof["id"], ref["id"]) and np.array_equal(oof["fold"], ref["fold"])
                  and np.array_equal(oof["label"], ref["label"])):
            raise ValueError(f"{d / 'oof.parquet'}: ids, folds or labels differ from '{names[0]}'; "
                             "every input must be trained on the same prepared data and folds")
        elif not np.array_equal(test["id"], ref_test["id"]):
            raise ValueError(f"{d / 'test.parquet'}: test ids differ from '{names[0]}'")
        for tab, f in ((oof, "oof.parquet"), (test, "test.parquet")):
            p = tab[PROBA].to_numpy(np.float64)
            if not np.isfinite(p).all():
                raise ValueError(f"{d / f}: non-finite probabilities")
        oofs.append(oof[PROBA].to_numpy(np.float64))
        tests.append(test[PROBA].to_numpy(np.float64))
    y = np.array([LABELS.index(c) for c in ref["label"]], dtype=np.int64)
    return Level1(list(names), ref["id"].astype(str).to_numpy(), ref["fold"].to_numpy(np.int64), y,
                  np.stack(oofs), ref_test["id"].astype(str).to_numpy(), np.stack(tests))


# ------------------------------------------------------------------------ combiners


class WeightedAverage:
    """p = Σ_m w_m p_m, w = softmax(θ) fitted by minimising the log-loss."""

    def fit(self, P: np.ndarray, y: np.ndarray) -> "WeightedAverage":
        from scipy.optimize import minimize

        M = P.shape[0]
        py = P[:, np.arange(y.size), y]  # (M, n): each variant's probability of the true class

        def loss(theta):
            w = np.exp(theta - theta.max())
            w /= w.sum()
            p = np.clip(w @ py, EPS, None)
            g_w = -(py / p).mean(axis=1)  # ∂L/∂w
            return -np.log(p).mean(), w * (g_w - w @ g_w)  # chain rule through the softmax

        res = minimize(loss, np.zeros(M), jac=True, method="L-BFGS-B")
        w = np.exp(res.x - res.x.max())
        self.weights = w / w.sum()
        return self

    def predict(self, P: np.ndarray) -> np.ndarray:
        return np.tensordot(self.weights, P, axes=1)

    def state(self) -> tuple[dict, dict]:
        """(JSON settings, arrays) that :func:`combiner_from_state` rebuilds it from."""
        return {"method": "average"}, {"weights": self.weights}


def _stack_features(P: np.ndarray) -> np.ndarray:
    """(M, n, K) probabilities → (n, M·K) log-probabilities."""
    return np.log(np.clip(P, EPS, 1.0)).transpose(1, 0, 2).reshape(P.shape[1], -1)


class Stacker:
    """A level-2 classifier on the level-1 log-probabilities."""

    def __init__(self, kind: str = "logistic", C: float = 1.0, seed: int = 0, threads: int = 2):
        self.kind, self.C, self.seed, self.threads = kind, C, seed, threads

    def _new_model(self) -> None:
        if self.kind == "logistic":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            self.model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        else:
            import lightgbm as lgb

            self.model = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=7, min_child_samples=10,
                                            random_state=self.seed, n_jobs=self.threads, verbose=-1)

    def fit(self, P: np.ndarray, y: np.ndarray) -> "Stacker":
        X = _stack_features(P)
        self._new_model()
        self.model.fit(X, y)
        self.classes_ = np.asarray(self.model.classes_)
        return self

    def predict(self, P: np.ndarray) -> np.ndarray:
        out = np.zeros((P.shape[1], K))
        out[:, self.classes_] = self.model.predict_proba(_stack_features(P))
        return out

    def state(self) -> tuple[dict, dict]:
        """(JSON settings, arrays) that :func:`combiner_from_state` rebuilds it from: the fitted
        scaler's and logistic regression's arrays, or the LightGBM booster's text."""
        meta = {"method": "stack", "kind": self.kind, "C": self.C, "seed": self.seed, "threads": self.threads}
        arrays = {"classes": self.classes_}
        if self.kind == "logistic":
            scaler, logistic = self.model.steps[0][1], self.model.steps[-1][1]
            arrays.update({f"scaler_{n}": getattr(scaler, f"{n}_") for n in _SCALER})
            arrays.update({f"logistic_{n}": getattr(logistic, f"{n}_") for n in _LOGISTIC})
        else:
            arrays["booster"] = np.frombuffer(self.model.booster_.model_to_string().encode(), np.uint8)
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict) -> "Stacker":
        self = cls(meta["kind"], meta["C"], meta["seed"], meta["threads"])
        self.classes_ = arrays["classes"]
        if self.kind == "logistic":  # fitted sklearn estimators again, so predict runs the same code
            self._new_model()
            scaler, logistic = self.model.steps[0][1], self.model.steps[-1][1]
            for n in _SCALER:
                setattr(scaler, f"{n}_", arrays[f"scaler_{n}"])
            for n in _LOGISTIC:
                setattr(logistic, f"{n}_", arrays[f"logistic_{n}"])
            scaler.n_features_in_ = logistic.n_features_in_ = int(arrays["scaler_mean"].size)
        else:
            import lightgbm as lgb

            self.model = _BoosterProba(lgb.Booster(model_str=arrays["booster"].tobytes().decode()))
        return self


_SCALER = ("mean", "scale", "var", "n_samples_seen")
_LOGISTIC = ("coef", "intercept", "classes", "n_iter")


class _BoosterProba:
    """A loaded LightGBM stacker: predict_proba over the classes it was fitted on."""

    def __init__(self, booster):
        self.booster = booster

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        proba = self.booster.predict(X)
        return np.vstack((1.0 - proba, proba)).T if proba.ndim == 1 else proba


def combiner_from_state(meta: dict, arrays: dict):
    if meta["method"] == "average":
        combiner = WeightedAverage()
        combiner.weights = arrays["weights"]
        return combiner
    return Stacker.from_state(meta, arrays)


@dataclass
class FittedEnsemble:
    """What ``spectraforge predict`` needs to apply the ensemble to new spectra: the input
    variants in order, the combiner refitted on all OOF rows, the decision weights."""

    inputs: list
    combiner: object
    weights: np.ndarray

    def predict(self, per_variant: dict) -> tuple[np.ndarray, np.ndarray]:
        """{variant: (n, K) fold-averaged probabilities} → (probabilities, label codes)."""
        missing = [n for n in self.inputs if n not in per_variant]
        if missing:
            raise ValueError(f"the ensemble needs the models of {', '.join(missing)}")
        P = self.combiner.predict(np.stack([per_variant[n] for n in self.inputs]))
        return P, decide(P, self.weights)

    def save(self, folder: Path) -> None:
        """``combiner.json`` (inputs, labels, the combiner's settings) and ``combiner.npz``
        (decision weights and the combiner's arrays): nothing a load would execute."""
        meta, arrays = self.combiner.state()
        atomic_write_json(Path(folder) / "combiner.json",
                          {"inputs": list(self.inputs), "labels": list(LABELS), "combiner": meta})
        with open(Path(folder) / "combiner.npz", "wb") as fh:
            np.savez(fh, decision_weights=self.weights, **arrays)

    @classmethod
    def load(cls, path) -> "FittedEnsemble":
        """From ``combiner.json`` (its arrays in ``combiner.npz`` beside it)."""
        path = Path(path)
        try:
            info = json.loads(path.read_text())
            with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
                arrays = {n: z[n] for n in z.files}
            if info["labels"] != list(LABELS):
                raise ValueError(f"label order {info['labels']} differs from {list(LABELS)}")
            return cls(list(info["inputs"]), combiner_from_state(info["combiner"], arrays), arrays["decision_weights"])
        except Exception as exc:
            raise ModelFileError(f"{path}: cannot load the ensemble's combiner ({type(exc).__name__}: {exc})") from exc


def load_combiner(path, allow_pickle: bool = False) -> FittedEnsemble:
    """The ensemble stage's fitted combiner: ``combiner.json``, or an older ``combiner.joblib``
    pickle only with ``allow_pickle`` (loading a pickle can run code)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return unpickle(path, allow_pickle)
    return FittedEnsemble.load(path)


def make_combiner(params: EnsembleParams, method: str):
    return WeightedAverage() if method == "average" else Stacker(params.stacker, params.C, params.seed)


def nested_oof(make, P: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Honest OOF predictions of a combiner: fold k's rows are predicted by a combiner
    fitted on the other folds' rows only. ``make()`` returns a fresh combiner."""
    out = np.full((P.shape[1], K), np.nan)
    for k in np.unique(fold):
        fit, score = fold != k, fold == k
        out[score] = make().fit(P[:, fit], y[fit]).predict(P[:, score])
    return out


# ------------------------------------------------------------------------ the stage


def run_ensemble(params: EnsembleParams, out_dir="data/ensemble", reports_dir="reports") -> dict:
    lv = load_level1(params.inputs, params.predictions_dir)
    y, fold = lv.y, lv.fold
    metrics: dict = {"method": params.method, "n_inputs": len(lv.names)}
    for m, name in enumerate(lv.names):  # the inputs, for reference
        metrics[f"input_{name}_macro_f1"] = macro_f1(y, lv.oof[m].argmax(axis=1))
    honest, test_proba, finals = {}, {}, {}
    for method in METHODS:
        honest[method] = nested_oof(lambda: make_combiner(params, method), lv.oof, y, fold)
        final = finals[method] = make_combiner(params, method).fit(lv.oof, y)
        test_proba[method] = final.predict(lv.test)
        metrics.update(scores(y, honest[method].argmax(axis=1), prefix=f"{method}_", seed=params.seed))
        if method == "average":
            metrics.update({f"weight_{n}": float(w) for n, w in zip(lv.names, final.weights)})
    P_oof, P_test = honest[params.method], test_proba[params.method]
    if params.decision_weights:  # tuned on the other folds, applied to fold k
        oof_pred, w = nested_decision(P_oof, y, fold, params.resamples, params.grid, params.seed)
        test_pred = decide(P_test, w)
        metrics.update({f"decision_weight_{c}": float(v) for c, v in zip(LABELS, w)})
    else:
        w = np.ones(K)
        oof_pred, test_pred = P_oof.argmax(axis=1), P_test.argmax(axis=1)
    metrics.update(scores(y, oof_pred, seed=params.seed))
    with staged_dir(out_dir) as out:
        write_predictions(out, lv.ids, fold, [LABELS[i] for i in y], P_oof, lv.test_ids, P_test,
                          oof_type=[LABELS[i] for i in oof_pred], test_type=[LABELS[i] for i in test_pred])
        FittedEnsemble(lv.names, finals[params.method], w).save(out)
    write_scores(reports_dir, "ensemble", y, oof_pred, metrics, len(lv.test_ids))
    return metrics
