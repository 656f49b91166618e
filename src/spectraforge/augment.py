"""Stage ``augment@MODEL+SOURCE``: a level-1 classifier retrained per fold with that fold's
extra spectra, the honest way to ask whether a generator helps.

For fold k the classifier ``MODEL`` (a ``train.variants`` entry, its settings unchanged) is
fitted on fold k's training part plus ``data/synthetic/SOURCE/fold<k>.npz`` — spectra that
the ``generate@SOURCE`` stage drew from a model fitted on that same training part only — and
scored on fold k. SOURCE is any ``generate.generators`` entry: a flow, a GAN, or one of the
classical baselines (``oversample``, ``noise``), so every row of the ablation goes through
the same code.

Before fold k's extras are used, the fold's validation ids are checked against the ids the
generator was fitted on and the parents the samples came from; a leak raises. Optional
filters, each counted in the metrics (nothing is dropped silently):
  per_class   at most this many extra spectra of a class (the first ones drawn)
  confidence  keep an extra spectrum only if fold k's baseline ``MODEL`` (from ``train@MODEL``,
              fitted on the same training part) assigns it to its intended class with
              probability >= this

Outputs are those of ``train@NAME`` (crossval.py) under the variant name ``MODEL+SOURCE``, so
the ensemble and the report read every variant alike; the metrics JSON also holds, per class,
the extra spectra drawn, capped, filtered and used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spectraforge.labels import LABELS
from spectraforge.params import load_params, load_with_variants, require


@dataclass
class AugmentSpec:
    """One augmented variant: which classifier, which source of extra spectra, which filters."""

    model: str
    source: str
    per_class: dict[str, int] = field(default_factory=dict)  # {class: max extra spectra}; absent class = all
    confidence: float = 0.0  # 0 = off

    def validate(self, key: str) -> None:
        require(0.0 <= self.confidence < 1.0, f"{key}.confidence", f"must be in [0, 1), got {self.confidence}")
        for label, n in (self.per_class or {}).items():
            require(label in LABELS, f"{key}.per_class.{label}", f"unknown label; valid labels: {', '.join(LABELS)}")
            require(int(n) >= 0, f"{key}.per_class.{label}", f"must be >= 0, got {n}")


@dataclass
class AugmentParams:
    """Stage ``augment``: its variants (the dvc foreach, names MODEL+SOURCE) and inputs."""

    synthetic_dir: str = "data/synthetic"
    models_dir: str = "models"
    variants: dict = field(default_factory=dict)
    OUTPUTS = ("models_dir",)  # params.check_outputs: the variants' models go under it

    def validate(self, key: str = "augment") -> None:
        require(isinstance(self.variants, dict), f"{key}.variants", "must map names to variants")


def load_augment_params(path="params.yaml") -> AugmentParams:
    """The ``augment`` section, each variant checked against the train and generate sections."""
    from spectraforge.crossval import load_train_params

    params = load_with_variants("augment", AugmentParams, AugmentSpec, path)
    train = load_train_params(path)
    # only the names of the generate variants (their settings are the generate stage's to check)
    generated = dict((load_params(path).get("generate") or {}).get("variants") or {})
    for name, spec in params.variants.items():
        key = f"augment.variants.{name}"
        require(spec.model in train.variants, f"{key}.model",
                f"'{spec.model}' is not a train variant; valid: {', '.join(train.variants)}")
        require(spec.source in generated, f"{key}.source",
                f"'{spec.source}' is not a generate variant; valid: {', '.join(generated)}")
        require(name == f"{spec.model}+{spec.source}", f"{key}",
                f"the name must be MODEL+SOURCE, i.e. '{spec.model}+{spec.source}'")
    return params


class FoldExtras:
    """Fold k's extra spectra for one augmented variant, checked and filtered; ``counts``
    records, per fold and class, how many were drawn, capped, filtered and used."""

    def __init__(self, name: str, spec: AugmentSpec, synthetic_dir, models_dir):
        self.name, self.spec = name, spec
        self.source_dir = Path(synthetic_dir) / spec.source
        self.baseline_dir = Path(models_dir) / spec.model
        self.counts: list[dict] = []

    def __call__(self, k: int, val_ids) -> tuple[np.ndarray, np.ndarray]:
        from spectraforge.data import check_no_leak

        path = self.source_dir / f"fold{k}.npz"
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no extra spectra for fold {k}; run `dvc repro generate@{self.spec.source}`")
        with np.load(path) as z:
            flux, labels = z["flux"].astype(np.float32), z["label"].astype(str)
            check_no_leak(val_ids, z["fit_ids"], z["parent"], f"augment@{self.name}: {path}")
        y = np.array([LABELS.index(c) for c in labels], dtype=np.int64)
        keep = np.ones(len(y), bool)
        row = {"fold": int(k)}
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            cap = self.spec.per_class.get(LABELS[c])
            row[f"drawn_{LABELS[c]}"] = int(rows.size)
            if cap is not None and rows.size > int(cap):
                keep[rows[int(cap):]] = False
            row[f"capped_{LABELS[c]}"] = int(rows.size - keep[rows].sum())
        filtered = np.zeros(len(y), bool)
        if self.spec.confidence > 0 and keep.any():
            proba = baseline_proba(self.baseline_dir, k, flux[keep])
            idx = np.flatnonzero(keep)
            ok = (proba.argmax(axis=1) == y[idx]) & (proba[np.arange(idx.size), y[idx]] >= self.spec.confidence)
            filtered[idx[~ok]] = True
            keep[idx[~ok]] = False
        for c in np.unique(y):
            row[f"filtered_{LABELS[c]}"] = int(filtered[y == c].sum())
            row[f"used_{LABELS[c]}"] = int(keep[y == c].sum())
        self.counts.append(row)
        return flux[keep], y[keep]

    def fingerprint(self) -> dict:
        """What fold k's extras depend on: the settings and the source's (and baseline's) files."""
        from dataclasses import asdict

        from spectraforge.outputs import tree_fingerprint

        source = tree_fingerprint(self.source_dir) if self.source_dir.exists() else None
        out = {"spec": asdict(self.spec), "source": source}
        if self.spec.confidence > 0 and self.baseline_dir.exists():
            out["baseline"] = tree_fingerprint(self.baseline_dir)
        return out

    def summary(self) -> dict:
        """Totals over folds: extra_<what>_<class> for drawn, capped, filtered, used."""
        out: dict = {}
        for row in self.counts:
            for key, value in row.items():
                if key != "fold":
                    out[f"extra_{key}"] = out.get(f"extra_{key}", 0) + value
        return out


def baseline_proba(model_dir: Path, k: int, flux: np.ndarray) -> np.ndarray:
    """Class probabilities of fold k's model from ``train@<model>`` (fitted on fold k's training part)."""
    from spectraforge.models.registry import load_fold, read_manifest

    manifest = model_dir / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(
            f"{manifest}: the confidence filter needs fold models; run `dvc repro train@{model_dir.name}`")
    info = read_manifest(manifest)
    files = [f for f in info["folds"] if Path(f).stem == f"fold{k}"]
    if not files:
        raise FileNotFoundError(f"{model_dir}: no model for fold {k} (have {', '.join(info['folds'])})")
    return np.asarray(load_fold(model_dir, files[0], info["kind"]).predict_proba(flux), np.float64)
