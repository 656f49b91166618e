"""The K-fold loop for any level-1 model, with out-of-fold bookkeeping and the stage's outputs.

For each fold k the model is fitted on the other folds' spectra only, predicts fold k
(out-of-fold, OOF) and the test set; test probabilities are averaged over folds. Every
level-1 model (the Conv1D network, LightGBM on features, later the augmented variants)
goes through the same loop, so their OOF tables line up row for row for the ensemble.

Outputs for a variant NAME:
  models/NAME/fold<k>.<suffix>        the fold's classifier (Classifier.save: .keras, .npz; no pickle), and
                                      any companion file save wrote beside it (a CNN's fold<k>.net.npz)
  models/NAME/manifest.json           what `predict` needs: kind, fold files, labels, grid, config
  data/predictions/NAME/oof.parquet   id, fold, label, p_star, p_galaxy, p_qso, p_unknown
  data/predictions/NAME/test.parquet  id, p_* (mean over folds)
  reports/metrics/NAME.json           macro_f1 (OOF), f1_<class>, fold<k>_macro_f1, confusion
  reports/plots/NAME/confusion.csv    actual, predicted (dvc plots confusion template)
  reports/live/NAME/fold<k>/          learning curves (dvclive)

The classifier is whatever ``train.variants.NAME.kind`` names in the registry
(:data:`spectraforge.models.registry.CLASSIFIERS`); the prediction tables and scores are
written by :mod:`spectraforge.predictions`, as the ensemble's are.

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

import numpy as np
import pandas as pd

from spectraforge.compute import dispatches_folds, run_jobs
from spectraforge.data import fold_rows, label_index, load_prepared
from spectraforge.labels import LABELS
from spectraforge.metrics import macro_f1, scores
from spectraforge.models.base import Classifier
from spectraforge.models.registry import classifier_class
from spectraforge.outputs import FoldCheckpoints, atomic_write_json, file_fingerprint, staged_dir, tree_fingerprint
from spectraforge.params import load_with_variants, require, require_variants
from spectraforge.predictions import write_predictions, write_scores


@dataclass
class ModelSpec:
    """One level-1 variant of the ``train`` stage: a registered classifier kind and its config
    (the mapping the kind's ``Config`` is built from: cnn ``{network, fit}``, lgbm the
    LightGBM settings)."""

    kind: str
    config: dict = field(default_factory=dict)

    def validate(self, key: str) -> None:
        classifier_class(self.kind, f"{key}.kind")


@dataclass
class DecisionParams:
    """How a variant's OOF and test labels are decided from its probabilities (decision.py).

    weights: argmax(w · p) with per-class weights tuned for macro-F1 by nested CV over the
    folds (a network trained on balanced batches estimates equal-prior posteriors; the survey
    is 80 % stars); false: plain argmax. The probabilities written are never changed.
    """

    weights: bool = True
    resamples: int = 20
    grid: list[float] = field(default_factory=lambda: [-2.0, 2.0, 41])
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
    return load_with_variants("train", TrainParams, ModelSpec, path)


def build_classifier(spec: ModelSpec, name: str, *, wave, threads: int) -> Classifier:
    """An unfitted classifier of variant ``name``, its config built and validated (errors
    name the params key, e.g. ``train.variants.cnn.config.network.channels``)."""
    key = f"train.variants.{name}"
    cls = classifier_class(spec.kind, f"{key}.kind")
    return cls(cls.build_config(spec.config, f"{key}.config"), wave=wave, threads=threads)


def _live(live_dir: Path, k: int):
    """A dvclive logger for fold k's learning curve (the plots are declared once in dvc.yaml)."""
    from dvclive import Live

    return Live(str(live_dir / f"fold{k}"), dvcyaml=None, save_dvc_exp=False, report=None)


def decide_labels(oof: np.ndarray, test: np.ndarray, y: np.ndarray, fold: np.ndarray,
                  params: DecisionParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(OOF labels, test labels, weights): argmax, or per-class weights by nested CV (decision.py)."""
    if not params.weights:
        return oof.argmax(axis=1), test.argmax(axis=1), np.ones(len(LABELS))
    from spectraforge.decision import decide, nested_decision

    pred, w = nested_decision(oof, y, fold, params.resamples, params.grid, params.seed)
    return pred, decide(test, w) if len(test) else np.zeros(0, np.int64), w


def _predict_test(clf: Classifier, X_test, batch: int = 4096) -> np.ndarray:
    if len(X_test) == 0:
        return np.zeros((0, len(LABELS)))
    return np.concatenate([clf.predict_proba(np.asarray(X_test[i : i + batch])) for i in range(0, len(X_test), batch)])


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
    learner: Classifier  # not yet fitted
    prepared_dir: str
    y: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    k: int
    extra: tuple | None
    ckpt: FoldCheckpoints
    live_root: Path
    threads: int  # a fresh worker process sets itself up (Classifier.configure_process)


def run_fold_job(job: FoldJob, data=None) -> int:
    """Fit fold ``job.k``, predict its validation part and the test set, and save all of it
    (model file, learning curve, probabilities) as the fold's checkpoint. ``data``: the
    prepared arrays when running in the stage's own process; a worker memory-maps its own."""
    clf = job.learner
    if data is None:
        type(clf).configure_process(job.threads)
        data = load_prepared(job.prepared_dir)
    ckpt, k = job.ckpt, job.k
    if (ckpt.epochs_dir(k) / "state.npz").exists():
        print(f"{job.name}: fold {k} resumes after its last finished epoch ({ckpt.epochs_dir(k)})")
    X_val = np.asarray(data.train[job.val_rows])
    live = _live(job.live_root, k)
    try:
        clf.fit(data.train[job.train_rows], job.y[job.train_rows], val=(X_val, job.y[job.val_rows]),
                extra=job.extra, resume_dir=ckpt.epochs_dir(k), logger=live, label=f"{job.name} fold {k}")
    finally:
        live.end()
    val_proba = clf.val_proba_ if clf.val_proba_ is not None else clf.predict_proba(X_val)
    files = ckpt.files_dir(k)
    model_file = clf.save(files / f"fold{k}")
    if (job.live_root / f"fold{k}").exists():
        shutil.copytree(job.live_root / f"fold{k}", files / "live")
    ckpt.save(k, {"model": model_file, "history": [{"fold": int(k), **h} for h in clf.history_]},
              val_proba=val_proba, test_proba=_predict_test(clf, data.test))
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
    data = load_prepared(params.prepared_dir)
    learner = build_classifier(spec, name, wave=data.wave, threads=params.threads)
    train_meta, test_meta = data.train_meta, data.test_meta
    fold = fold_rows(train_meta, pd.read_csv(params.folds, dtype={"id": str}))
    y = label_index(train_meta["label"])
    type(learner).configure_process(params.threads)
    runtime = type(learner).runtime()
    if runtime:
        print(f"{name}: {runtime}", flush=True)
    t0 = time.perf_counter()
    ids = train_meta["id"].astype(str).to_numpy()
    config = asdict(learner.config)
    ckpt = FoldCheckpoints(f"train-{name}", {
        "kind": spec.kind, "config": config, "threads": params.threads,
        "prepared": tree_fingerprint(params.prepared_dir), "folds": file_fingerprint(params.folds),
        "extras": extras.fingerprint() if extras is not None else None})
    live_root = Path(reports_dir) / "live" / name
    ks = sorted(np.unique(fold))
    splits = {k: (np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in ks}
    # extras are drawn (and counted) for every fold, in fold order, even when a fold is restored
    extra = {k: extras(k, ids[splits[k][1]]) if extras is not None else None for k in ks}
    restored = [k for k in ks if ckpt.done(k)]
    for k in restored:
        print(f"{name}: fold {k} restored from {ckpt.dir}")
    jobs = [FoldJob(name, learner, params.prepared_dir, y, *splits[k], int(k), extra[k], ckpt, live_root,
                    params.threads) for k in ks if k not in restored]
    on_cluster = dispatches_folds(compute)
    run_jobs(compute, run_fold_job if on_cluster else partial(run_fold_job, data=data), jobs, f"train-{name}")

    oof = np.full((len(y), len(LABELS)), np.nan)
    test = np.zeros((len(test_meta), len(LABELS)))
    fold_files, fold_scores, history = [], {}, []
    with staged_dir(Path(models_dir) / name) as out_models:
        for k in ks:
            val_rows = splits[k][1]
            saved = ckpt.load(k)
            if (saved["files"] / "live").exists():
                shutil.copytree(saved["files"] / "live", live_root / f"fold{k}", dirs_exist_ok=True)
            oof[val_rows] = saved["val_proba"]
            test += saved["test_proba"] / len(ks)
            history += saved["record"]["history"]
            fold_files.append(saved["record"]["model"])
            shutil.copy(saved["files"] / fold_files[-1], out_models / fold_files[-1])
            for companion in sorted(saved["files"].glob(f"fold{k}.*")):  # e.g. a CNN fold's layer export
                if companion.name != fold_files[-1] and companion.is_file():
                    shutil.copy(companion, out_models / companion.name)
        assert not np.isnan(oof).any(), "every training spectrum gets exactly one OOF prediction"
        pred, test_pred, weights = decide_labels(oof, test, y, fold, params.decision)
        for k in ks:
            fold_scores[f"fold{k}_macro_f1"] = macro_f1(y[fold == k], pred[fold == k])
        manifest = {
            "name": name, "kind": spec.kind, "folds": fold_files, "labels": list(LABELS),
            "wave": data.wave.tolist(), "prepare": prepare_params or {}, "config": config,
            "decision_weights": weights.tolist(),
        }
        atomic_write_json(out_models / "manifest.json", manifest, indent=1)

    with staged_dir(Path(predictions_dir) / name) as pred_dir:
        # the decided labels as a `type` column (the report scores it); the probabilities as they are
        write_predictions(pred_dir, ids, fold, train_meta["label"].to_numpy(), oof,
                          test_meta["id"].astype(str).to_numpy(), test,
                          oof_type=[LABELS[i] for i in pred], test_type=[LABELS[i] for i in test_pred])
    metrics = {**scores(y, pred), **fold_scores, "argmax_macro_f1": macro_f1(y, oof.argmax(axis=1)),
               **{f"decision_weight_{c}": float(w) for c, w in zip(LABELS, weights)},
               **(extras.summary() if extras is not None else {})}
    write_scores(reports_dir, name, y, pred, metrics, len(test_meta), history, seconds=time.perf_counter() - t0)
    ckpt.clear()
    return metrics
