"""The K-fold loop for any level-1 model, with out-of-fold bookkeeping and the stage's outputs.

For each fold k the model is fitted on the other folds' spectra only, predicts fold k
(out-of-fold, OOF) and the test set; test probabilities are averaged over folds. Every
level-1 model (the Conv1D network, LightGBM on features, later the augmented variants)
goes through the same loop, so their OOF tables line up row for row for the ensemble.

Outputs for a variant NAME:
  models/NAME/fold<k>.(keras|joblib), models/NAME/manifest.json (what `predict` needs)
  data/predictions/NAME/oof.parquet   id, fold, label, p_star, p_galaxy, p_qso, p_unknown
  data/predictions/NAME/test.parquet  id, p_* (mean over folds)
  reports/metrics/NAME.json           macro_f1 (OOF), f1_<class>, fold<k>_macro_f1, confusion
  reports/plots/NAME/confusion.csv    actual, predicted (dvc plots confusion template)
  reports/live/NAME/fold<k>/          learning curves (dvclive)

Folders are filled in a staging folder and renamed into place, files written through a
temporary file (outputs.py), so a killed stage leaves no half-written output. Each finished
fold is checkpointed, and a CNN fold's state after each epoch too; a rerun after a kill
restores the finished folds and continues the unfinished one after its last finished epoch.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from spectraforge.compute import dispatches_folds, run_jobs
from spectraforge.data import label_index, load_prepared
from spectraforge.io.spectrum import LABELS
from spectraforge.metrics import confusion, macro_f1, scores
from spectraforge.outputs import FoldCheckpoints, atomic_write_json, file_fingerprint, staged_dir, tree_fingerprint
from spectraforge.params import ParamsError, build_dataclass, require, require_variants

PROBA_COLUMNS = [f"p_{c}" for c in LABELS]
KINDS = ("cnn", "lgbm")


@dataclass
class ModelSpec:
    """One level-1 variant of the ``train`` stage: its kind and that kind's settings."""

    kind: str
    network: dict = field(default_factory=dict)  # cnn: CNNConfig fields
    fit: dict = field(default_factory=dict)  # cnn: TrainConfig fields
    lgbm: dict = field(default_factory=dict)  # lgbm: LGBMConfig fields


@dataclass
class DecisionParams:
    """How a variant's OOF and test labels are decided from its probabilities (decision.py).

    weights: argmax(w · p) with per-class weights tuned for macro-F1 by nested CV over the
    folds (a network trained on balanced batches estimates equal-prior posteriors; the survey
    is 80 % stars); false: plain argmax. The probabilities written are never changed.
    """

    weights: bool = True
    resamples: int = 20
    grid: list = field(default_factory=lambda: [-2.0, 2.0, 41])
    seed: int = 2018

    def validate(self, key: str = "train.decision") -> None:
        require(self.resamples >= 1, f"{key}.resamples", f"must be >= 1, got {self.resamples}")
        require(len(self.grid) == 3 and self.grid[0] < self.grid[1] and int(self.grid[2]) >= 3, f"{key}.grid",
                f"must be [low, high, points] with low < high and points >= 3, got {self.grid}")


@dataclass
class TrainParams:
    """Stage ``train``: which variants run (a dvc foreach) and where they read from."""

    models: list = field(default_factory=lambda: ["cnn", "lgbm"])
    threads: int = 2
    prepared_dir: str = "data/prepared"
    folds: str = "data/folds.csv"
    decision: DecisionParams = field(default_factory=DecisionParams)
    variants: dict = field(default_factory=dict)

    def validate(self, key: str = "train") -> None:
        require(self.threads >= 1, f"{key}.threads", f"must be >= 1, got {self.threads}")
        self.decision.validate(f"{key}.decision")
        require_variants(self.models, self.variants, key, "models")


def load_train_params(path="params.yaml") -> TrainParams:
    from spectraforge.params import load_with_variants

    return load_with_variants("train", TrainParams, ModelSpec, path)


def model_configs(spec: ModelSpec, name: str):
    """The typed configs of a variant, validated (errors name the params key)."""
    key = f"train.variants.{name}"
    require(spec.kind in KINDS, f"{key}.kind", f"'{spec.kind}' is not one of: {', '.join(KINDS)}")
    try:
        if spec.kind == "cnn":
            from spectraforge.models.cnn import CNNConfig
            from spectraforge.training import TrainConfig

            cnn = build_dataclass(CNNConfig, spec.network, f"{key}.network")
            cnn.validate(f"{key}.network")
            fit = build_dataclass(TrainConfig, spec.fit, f"{key}.fit")
            fit.validate(f"{key}.fit")
            return cnn, fit
        from spectraforge.models.lgbm import LGBMConfig

        cfg = build_dataclass(LGBMConfig, spec.lgbm, f"{key}.lgbm")
        cfg.validate(f"{key}.lgbm")
        return (cfg,)
    except ValueError as exc:
        raise ParamsError(str(exc) if str(exc).startswith("params") else f"params: {exc}") from exc


def fold_rows(train_meta: pd.DataFrame, folds: pd.DataFrame) -> np.ndarray:
    """Fold number of every prepared training row (rows follow train_meta order)."""
    by_id = dict(zip(folds["id"].astype(str), folds["fold"].astype(int)))
    ids = train_meta["id"].astype(str)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"folds: {len(missing)} prepared ids have no fold (first: {missing[0]}); rerun `dvc repro folds`")
    return np.array([by_id[i] for i in ids], dtype=np.int64)


def _live(live_dir: Path, k: int):
    """A dvclive logger for fold k's learning curve (the plots are declared once in dvc.yaml)."""
    from dvclive import Live

    return Live(str(live_dir / f"fold{k}"), dvcyaml=None, save_dvc_exp=False, report=None)


class _CNN:
    def __init__(self, cnn_cfg, fit_cfg, live_dir: Path):
        self.cnn_cfg, self.fit_cfg, self.live_dir = cnn_cfg, fit_cfg, live_dir

    def fit_predict(self, X, y, train_rows, val_rows, k: int, extra=None, resume_dir=None):
        """(validation probabilities, predict function, history rows) of fold k; ``resume_dir``
        keeps the fold's state after every epoch, so a killed fold continues where it stopped."""
        from spectraforge.training import train_fold

        live = _live(self.live_dir, k)
        try:
            self.result = train_fold(X, y, train_rows, val_rows, self.cnn_cfg, self.fit_cfg, extra=extra,
                                     logger=live, resume_dir=resume_dir, label=f"{self.live_dir.name} fold {k}")
        finally:
            live.end()
        history = [{"fold": int(k), **h} for h in self.result.history]
        return self.result.val_proba, self.result.predict, history

    def save(self, path: Path) -> str:
        self.result.model.save(path.with_suffix(".keras"))
        return path.with_suffix(".keras").name


class _LGBM:
    def __init__(self, cfg, wave, threads, live_dir: Path):
        self.cfg, self.wave, self.threads, self.live_dir = cfg, wave, threads, live_dir

    def fit_predict(self, X, y, train_rows, val_rows, k: int, extra=None, resume_dir=None):
        """LightGBM folds take seconds: they restart rather than resume (``resume_dir`` unused)."""
        from spectraforge.models.lgbm import SpectrumLGBM

        rows = np.sort(train_rows)
        X_val = np.asarray(X[val_rows])
        X_fit, y_fit = np.asarray(X[rows], np.float32), y[rows]
        if extra is not None and len(extra[1]):
            X_fit, y_fit = np.concatenate([X_fit, extra[0]]), np.concatenate([y_fit, extra[1]])
        self.model = SpectrumLGBM(self.cfg, self.wave, self.threads).fit(X_fit, y_fit, eval_set=(X_val, y[val_rows]))
        live = _live(self.live_dir, k)
        for loss in self.model.curve_:  # one step per boosting iteration
            live.log_metric("val_multi_logloss", float(loss))
            live.next_step()
        live.end()
        return self.model.predict_proba(X_val), self.model.predict_proba, []

    def save(self, path: Path) -> str:
        joblib.dump(self.model, path.with_suffix(".joblib"))
        return path.with_suffix(".joblib").name


def decide_labels(oof: np.ndarray, test: np.ndarray, y: np.ndarray, fold: np.ndarray,
                  params: DecisionParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(OOF labels, test labels, weights): argmax, or per-class weights by nested CV (decision.py)."""
    if not params.weights:
        return oof.argmax(axis=1), test.argmax(axis=1), np.ones(len(LABELS))
    from spectraforge.decision import decide, nested_decision

    pred, w = nested_decision(oof, y, fold, params.resamples, params.grid, params.seed)
    return pred, decide(test, w) if len(test) else np.zeros(0, np.int64), w


def _predict_test(predict, X_test, batch: int = 4096) -> np.ndarray:
    if len(X_test) == 0:
        return np.zeros((0, len(LABELS)))
    return np.concatenate([predict(np.asarray(X_test[i : i + batch])) for i in range(0, len(X_test), batch)])


def score_line(name: str, metrics: dict) -> str:
    """One printable line: OOF macro-F1 with its interval, per-class F1, extra spectra used."""
    line = (f"{name}: OOF macro-F1 {metrics['macro_f1']:.4f} [{metrics['macro_f1_ci_low']:.4f}, "
            f"{metrics['macro_f1_ci_high']:.4f}]  "
            + "  ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.startswith("f1_")))
    used = [f"{k.removeprefix('extra_used_')} {v}" for k, v in metrics.items() if k.startswith("extra_used_")]
    return line + (f"  extra spectra used: {', '.join(used)}" if used else "")


@dataclass
class FoldJob:
    """Everything one fold needs, to train here or on a cluster worker (see compute.run_jobs)."""

    name: str
    learner: object  # _CNN or _LGBM, not yet fitted
    prepared_dir: str
    y: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    k: int
    extra: tuple | None
    ckpt: FoldCheckpoints
    live_root: Path
    threads: int | None  # a CNN fold sizes TensorFlow's pools in a fresh worker process


def run_fold_job(job: FoldJob, data=None) -> int:
    """Fit fold ``job.k``, predict its validation part and the test set, and save all of it
    (model file, learning curve, probabilities) as the fold's checkpoint. ``data``: the
    prepared arrays when running in the stage's own process; a worker memory-maps its own."""
    if data is None:
        if job.threads is not None:
            from spectraforge.training import configure_threads

            configure_threads(job.threads)
        data = load_prepared(job.prepared_dir)
    ckpt, k = job.ckpt, job.k
    if (ckpt.epochs_dir(k) / "state.npz").exists():
        print(f"{job.name}: fold {k} resumes after its last finished epoch ({ckpt.epochs_dir(k)})")
    val_proba, predict, fold_history = job.learner.fit_predict(
        data.train, job.y, job.train_rows, job.val_rows, k, job.extra, resume_dir=ckpt.epochs_dir(k))
    files = ckpt.files_dir(k)
    model_file = job.learner.save(files / f"fold{k}")
    if (job.live_root / f"fold{k}").exists():
        shutil.copytree(job.live_root / f"fold{k}", files / "live")
    ckpt.save(k, {"model": model_file, "history": fold_history},
              val_proba=val_proba, test_proba=_predict_test(predict, data.test))
    shutil.rmtree(ckpt.epochs_dir(k), ignore_errors=True)
    return k


def run_kfold(name: str, params: TrainParams, models_dir="models", predictions_dir="data/predictions",
              reports_dir="reports", prepare_params: dict | None = None, spec: ModelSpec | None = None,
              extras=None, compute=None) -> dict:
    """Train variant ``name`` on every fold; write models, OOF/test predictions and metrics.

    ``spec`` defaults to ``params.variants[name]``; ``extras(k, val_ids) -> (flux, labels)``
    gives fold k's extra training spectra (augment.FoldExtras), with ``extras.summary()``
    merged into the metrics. ``compute`` (compute.ComputeParams) may send the folds to a
    Dask cluster, one task per unfinished fold.
    """
    spec = spec if spec is not None else params.variants[name]
    configs = model_configs(spec, name)
    data = load_prepared(params.prepared_dir)
    train_meta, test_meta = data.train_meta, data.test_meta
    fold = fold_rows(train_meta, pd.read_csv(params.folds, dtype={"id": str}))
    y = label_index(train_meta["label"])
    reports = Path(reports_dir)
    if spec.kind == "cnn":
        from spectraforge.training import configure_threads

        from spectraforge.tfquiet import runtime_line

        configure_threads(params.threads)
        print(f"{name}: {runtime_line()}", flush=True)
        learner = _CNN(*configs, reports / "live" / name)
    else:
        learner = _LGBM(configs[0], data.wave, params.threads, reports / "live" / name)

    oof = np.full((len(y), len(LABELS)), np.nan)
    test = np.zeros((len(test_meta), len(LABELS)))
    fold_files, fold_scores, history, t0 = [], {}, [], time.perf_counter()
    ids = train_meta["id"].astype(str).to_numpy()
    ckpt = FoldCheckpoints(f"train-{name}", {
        "kind": spec.kind, "configs": [asdict(c) for c in configs], "threads": params.threads,
        "prepared": tree_fingerprint(params.prepared_dir), "folds": file_fingerprint(params.folds),
        "extras": extras.fingerprint() if extras is not None else None})
    live_root = reports / "live" / name
    ks = sorted(np.unique(fold))
    splits = {k: (np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in ks}
    # extras are drawn (and counted) for every fold, in fold order, even when a fold is restored
    extra = {k: extras(k, ids[splits[k][1]]) if extras is not None else None for k in ks}
    restored = [k for k in ks if ckpt.done(k)]
    for k in restored:
        print(f"{name}: fold {k} restored from {ckpt.dir}")
    jobs = [FoldJob(name, learner, params.prepared_dir, y, *splits[k], int(k), extra[k], ckpt, live_root,
                    params.threads if spec.kind == "cnn" else None) for k in ks if k not in restored]
    on_cluster = dispatches_folds(compute)
    run_jobs(compute, run_fold_job if on_cluster else partial(run_fold_job, data=data), jobs, f"train-{name}")
    with staged_dir(Path(models_dir) / name) as out_models:
        for k in ks:
            train_rows, val_rows = splits[k]
            saved = ckpt.load(k)
            if (saved["files"] / "live").exists():
                shutil.copytree(saved["files"] / "live", live_root / f"fold{k}", dirs_exist_ok=True)
            oof[val_rows] = saved["val_proba"]
            test += saved["test_proba"] / len(ks)
            history += saved["record"]["history"]
            fold_files.append(saved["record"]["model"])
            shutil.copy(saved["files"] / fold_files[-1], out_models / fold_files[-1])
        assert not np.isnan(oof).any(), "every training spectrum gets exactly one OOF prediction"
        pred, test_pred, weights = decide_labels(oof, test, y, fold, params.decision)
        for k in ks:
            fold_scores[f"fold{k}_macro_f1"] = macro_f1(y[fold == k], pred[fold == k])
        manifest = {
            "name": name, "kind": spec.kind, "folds": fold_files, "labels": list(LABELS),
            "wave": data.wave.tolist(), "prepare": prepare_params or {},
            "config": [asdict(c) for c in configs], "decision_weights": weights.tolist(),
        }
        atomic_write_json(out_models / "manifest.json", manifest, indent=1)

    with staged_dir(Path(predictions_dir) / name) as pred_dir:
        oof_df = pd.DataFrame(oof, columns=PROBA_COLUMNS)
        oof_df.insert(0, "label", train_meta["label"].to_numpy())
        oof_df.insert(0, "fold", fold)
        oof_df.insert(0, "id", ids)
        oof_df["type"] = [LABELS[i] for i in pred]  # the decided label (the report scores it)
        oof_df.to_parquet(pred_dir / "oof.parquet", index=False)
        test_df = pd.DataFrame(test, columns=PROBA_COLUMNS)
        test_df.insert(0, "id", test_meta["id"].astype(str).to_numpy())
        test_df["type"] = [LABELS[i] for i in test_pred]
        test_df.to_parquet(pred_dir / "test.parquet", index=False)

    metrics = {**scores(y, pred), **fold_scores, "argmax_macro_f1": macro_f1(y, oof.argmax(axis=1))}
    metrics.update({f"decision_weight_{c}": float(w) for c, w in zip(LABELS, weights)})
    if extras is not None:
        metrics.update(extras.summary())
    cm = confusion(y, pred)
    metrics.update({f"confusion_{a}_{b}": int(cm[i, j]) for i, a in enumerate(LABELS) for j, b in enumerate(LABELS)})
    metrics.update({"n_train": int(len(y)), "n_test": int(len(test_meta)), "seconds": time.perf_counter() - t0})
    with staged_dir(reports / "plots" / name) as plots:
        pd.DataFrame({"actual": [LABELS[i] for i in y], "predicted": [LABELS[i] for i in pred]}).to_csv(
            plots / "confusion.csv", index=False)
        if history:
            pd.DataFrame(history).to_csv(plots / "history.csv", index=False)
    atomic_write_json(reports / "metrics" / f"{name}.json", metrics)
    ckpt.clear()
    return metrics
