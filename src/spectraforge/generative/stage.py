"""Stage ``generate@NAME``: per fold, fit a generator on the fold's training part only and
sample the rare classes up to a target; score the fit and the samples against the fold's
validation spectra.

Outputs for generator NAME:
  data/synthetic/NAME/fold<k>.npz   flux (n, n_pix) float32, label (n,) class names, id (n,),
                                    parent (n,) id of the training spectrum whose residual a
                                    sample borrowed ("" if none), fit_ids: every id fitted on
  reports/metrics/generate_NAME.json  held-out NLL (bits/dim) of the generator and of the
                                    Gaussian baseline in the same space, sample quality per
                                    class (Fréchet distance, precision, recall, two-sample
                                    accuracy) with the same figures for real training spectra
                                    as the reference floor, counts, timings, the share of
                                    draws the envelope guard rejected, and skipped_<class>: the
                                    folds where a target class had < min_train training spectra
  reports/plots/generate_NAME/      <class>.png real vs synthetic (fold 0), history.csv

Honesty: the fold's validation ids are checked against ``fit_ids`` and ``parent`` before
anything is written; a generator that saw one would raise.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from spectraforge.data import check_no_leak, label_index, load_prepared  # check_no_leak: re-exported
from spectraforge.generative.base import SpectrumGenerator, make_space
from spectraforge.generative.resample import METHODS as RESAMPLE_KINDS
from spectraforge.generative.resample import ResampleGenerator
from spectraforge.labels import LABELS
from spectraforge.outputs import atomic_write_json, staged_dir
from spectraforge.params import build_dataclass, load_with_variants, require, require_variants

KINDS = ("gauss", "flow", "gan", "oversample", "noise")


@dataclass
class GeneratorSpec:
    """One generator variant: its kind, the space it works in, and the kind's settings."""

    kind: str
    space: str = "pca"  # pca | pixel
    n_components: int = 32  # pca space
    residual: str = "bootstrap"  # bootstrap (pca only) | none
    squash: str = "asinh"  # asinh | none: elementwise flux transform before the space
    temperature: float = 1.0
    envelope: float = 1.5  # redraw samples reaching beyond this × the class's farthest training row; 0 = off
    flow: dict = field(default_factory=dict)  # FlowConfig fields
    gan: dict = field(default_factory=dict)  # GANConfig fields
    gauss: dict = field(default_factory=dict)  # GaussianConfig fields
    noise: float = 0.1  # kind noise: x + noise·std(x)·N(0, 1)

    def validate(self, key: str) -> None:
        require(self.kind in KINDS, f"{key}.kind", f"'{self.kind}' is not one of: {', '.join(KINDS)}")
        require(self.space in ("pca", "pixel"), f"{key}.space", f"'{self.space}' is not one of: pca, pixel")
        require(self.n_components >= 2, f"{key}.n_components", f"must be >= 2, got {self.n_components}")
        require(self.residual in ("bootstrap", "none"), f"{key}.residual",
                f"'{self.residual}' is not one of: bootstrap, none")
        require(not (self.residual == "bootstrap" and self.space != "pca"), f"{key}.residual",
                "bootstrap adds PCA residuals, so it needs space: pca")
        require(self.squash in ("asinh", "none"), f"{key}.squash", f"'{self.squash}' is not one of: asinh, none")
        require(self.temperature > 0, f"{key}.temperature", f"must be > 0, got {self.temperature}")
        require(self.envelope == 0 or self.envelope >= 1, f"{key}.envelope",
                f"must be 0 (off) or >= 1, got {self.envelope}")
        require(self.noise >= 0, f"{key}.noise", f"must be >= 0, got {self.noise}")


@dataclass
class QualityParams:
    embedding: int = 16  # PCA components of the fixed embedding
    k: int = 3  # neighbours for precision / recall
    plot_fold: int = 0
    plot_examples: int = 4


@dataclass
class GenerateParams:
    generators: list = field(default_factory=lambda: ["gauss"])
    prepared_dir: str = "data/prepared"
    folds: str = "data/folds.csv"
    threads: int = 2
    seed: int = 2018
    target_mode: str = "ratio"  # ratio: × the fold's majority-class count | count: absolute
    target: dict[str, float] = field(default_factory=lambda: {"galaxy": 0.25, "qso": 0.25})
    min_train: int = 5  # a target class with fewer training spectra in a fold is skipped (and reported)
    quality: QualityParams = field(default_factory=QualityParams)
    variants: dict = field(default_factory=dict)

    def validate(self, key: str = "generate") -> None:
        require(self.threads >= 1, f"{key}.threads", f"must be >= 1, got {self.threads}")
        require(self.target_mode in ("ratio", "count"), f"{key}.target_mode",
                f"'{self.target_mode}' is not one of: ratio, count")
        require(self.min_train >= 2, f"{key}.min_train", f"must be >= 2, got {self.min_train}")
        require(isinstance(self.target, dict) and self.target, f"{key}.target", "must map classes to targets")
        for label, value in self.target.items():
            require(label in LABELS, f"{key}.target.{label}", f"unknown label; valid labels: {', '.join(LABELS)}")
            require(float(value) >= 0, f"{key}.target.{label}", f"must be >= 0, got {value}")
        require_variants(self.generators, self.variants, key, "generators")


def load_generate_params(path="params.yaml") -> GenerateParams:
    return load_with_variants("generate", GenerateParams, GeneratorSpec, path)


def feature_model(spec: GeneratorSpec, name: str):
    """The feature model a variant asks for, its config validated (errors name the key);
    None for the resampling baselines, which have none."""
    key = f"generate.variants.{name}"
    if spec.kind in RESAMPLE_KINDS:
        return None
    if spec.kind == "gauss":
        from spectraforge.generative.gaussian import GaussianConfig, GaussianModel

        cfg = build_dataclass(GaussianConfig, spec.gauss, f"{key}.gauss")
        cfg.validate(f"{key}.gauss")
        return GaussianModel(cfg)
    if spec.kind == "flow":
        from spectraforge.generative.flows.model import FlowConfig, FlowModel

        cfg = build_dataclass(FlowConfig, spec.flow, f"{key}.flow")
        cfg.validate(f"{key}.flow")
        return FlowModel(cfg)
    from spectraforge.generative.gan.model import GANConfig, GANModel

    cfg = build_dataclass(GANConfig, spec.gan, f"{key}.gan")
    cfg.validate(f"{key}.gan")
    return GANModel(cfg)


def sample_counts(y_train: np.ndarray, target: dict, mode: str, min_train: int = 2):
    """Synthetic spectra to draw per class, up to the target and never negative; and the
    target classes skipped because the fold's training part has fewer than ``min_train``.

    ratio: target × (training count of the fold's most common class); count: the target.
    Returns ({class code: n}, {class name: training count} of the skipped classes).
    """
    counts = np.bincount(y_train, minlength=len(LABELS))
    out, skipped = {}, {}
    for label, value in target.items():
        c = LABELS.index(label)
        if counts[c] < min_train:
            skipped[label] = int(counts[c])
            continue
        goal = int(round(float(value) * counts.max())) if mode == "ratio" else int(value)
        out[c] = max(0, goal - int(counts[c]))
    return out, skipped


def _ids(name: str, seed: int, c: int, n: int) -> np.ndarray:
    return np.array([f"syn-{name}-s{seed}-{LABELS[c]}-{i:06d}" for i in range(n)])


def run_generate(name: str, params: GenerateParams, out_root="data/synthetic", reports_dir="reports",
                 compute=None) -> dict:
    """Run generator ``name`` on every fold; ``compute`` (compute.ComputeParams) may send the
    folds to a Dask cluster, one task per fold (results do not depend on where folds run)."""
    spec = params.variants[name]
    feature_model(spec, name)  # fail on bad params before any work
    data = load_prepared(params.prepared_dir)
    train_meta = data.train_meta
    folds = pd.read_csv(params.folds, dtype={"id": str})
    from spectraforge.data import fold_rows

    fold = fold_rows(train_meta, folds)
    y = label_index(train_meta["label"])
    ids = train_meta["id"].astype(str).to_numpy()
    plots_dir = Path(reports_dir) / "plots" / f"generate_{name}"
    with staged_dir(Path(out_root) / name) as out_dir, staged_dir(plots_dir) as plots:
        per_fold = _run_folds(name, spec, params, data, fold, y, ids, out_dir, plots, compute)
    metrics = _summarise(name, spec, per_fold)
    atomic_write_json(Path(reports_dir) / "metrics" / f"generate_{name}.json", metrics)
    return metrics


@dataclass
class GenerateFoldJob:
    """One fold of generator ``name``: fit on ``tr``, draw ``counts``, score against ``va``."""

    name: str
    spec: GeneratorSpec
    params: GenerateParams
    k: int
    tr: np.ndarray
    va: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    counts: dict
    seed: int


def generate_fold_job(job: GenerateFoldJob, data=None) -> dict:
    """The fold's synthetic spectra, ids fitted on, training history and score row. ``data``:
    the prepared arrays in the stage's own process; on a cluster worker it memory-maps its own
    (and sizes TensorFlow's pools first)."""
    if data is None:
        from spectraforge.threads import configure_threads

        configure_threads(job.params.threads)
        data = load_prepared(job.params.prepared_dir)
    X_tr, y_tr = np.asarray(data.train[job.tr], np.float32), job.y[job.tr]
    X_va, y_va = np.asarray(data.train[job.va], np.float32), job.y[job.va]
    gen, syn, row = _generate_fold(job.name, job.spec, X_tr, y_tr, job.ids[job.tr], job.counts, job.seed)
    lab = np.array([LABELS.index(x) for x in syn["label"]], dtype=np.int64)
    row.update(fold_nll(gen, y_tr, X_va, y_va, list(job.counts)))
    row.update(_fold_quality(X_tr, y_tr, X_va, y_va, syn["flux"], lab, job.counts, job.params, job.seed))
    history = [{"fold": int(job.k), **h} for h in getattr(gen.model, "history", [])]
    return {"syn": syn, "fit_ids": gen.fit_ids, "history": history, "row": row, "lab": lab}


def _run_folds(name, spec, params, data, fold, y, ids, out_dir: Path, plots: Path, compute=None):
    from spectraforge.compute import dispatches_folds, run_jobs

    jobs, skipped_by_fold = [], {}
    for k in sorted(np.unique(fold)):
        tr, va = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        counts, skipped_by_fold[k] = sample_counts(y[tr], params.target, params.target_mode, params.min_train)
        jobs.append(GenerateFoldJob(name, spec, params, int(k), tr, va, y, ids, counts, params.seed + 1000 * int(k)))
    fn = generate_fold_job if dispatches_folds(compute) else partial(generate_fold_job, data=data)
    per_fold, history = [], []
    for job, out in zip(jobs, run_jobs(compute, fn, jobs, f"generate-{name}")):
        k, syn = job.k, out["syn"]
        check_no_leak(ids[job.va], out["fit_ids"], syn["parent"], f"generate@{name}: fold {k}")
        np.savez(out_dir / f"fold{k}.npz", **syn, fit_ids=out["fit_ids"])
        history += out["history"]
        row = out["row"]
        row.update({"fold": k, **{f"skipped_{label}": n for label, n in skipped_by_fold[k].items()}})
        per_fold.append(row)
        if k == params.quality.plot_fold:
            X_va, y_va = np.asarray(data.train[job.va], np.float32), y[job.va]
            for c in job.counts:
                _plot_class(plots / f"{LABELS[c]}.png", data.wave, X_va[y_va == c], syn["flux"][out["lab"] == c],
                            f"{name}: {LABELS[c]}, fold {k}", params.quality.plot_examples, job.seed)
    if history:
        pd.DataFrame(history).to_csv(plots / "history.csv", index=False)
    return per_fold


def make_generator(spec: GeneratorSpec, name: str, classes=None):
    """An unfitted generator for variant ``spec`` (``classes``: the ones per-class models fit)."""
    if spec.kind in RESAMPLE_KINDS:
        return ResampleGenerator(spec.noise if spec.kind == "noise" else 0.0)
    model = feature_model(spec, name)
    if classes is not None:
        model.classes = list(classes)
    return SpectrumGenerator(make_space(spec.space, spec.n_components, spec.squash), model, spec.residual,
                             spec.temperature, spec.envelope)


def _generate_fold(name, spec, X_tr, y_tr, ids_tr, counts, seed):
    """Fit variant ``spec`` on one fold's training part and draw ``counts`` per class."""
    gen = make_generator(spec, name, classes=sorted(counts))
    t0 = time.perf_counter()
    gen.fit(X_tr, y_tr, ids_tr, seed=seed)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = [gen.sample(c, n, seed=seed + c) for c, n in counts.items()]
    sample_s = time.perf_counter() - t0
    n_pix = X_tr.shape[1]
    syn = {
        "flux": np.concatenate([p.flux for p in parts]) if parts else np.zeros((0, n_pix), np.float32),
        "label": np.array([LABELS[c] for p in parts for c in p.labels], dtype=str),
        "id": np.concatenate([_ids(name, seed, c, n) for c, n in counts.items()]) if parts else np.zeros(0, str),
        "parent": np.concatenate([p.parents for p in parts]).astype(str) if parts else np.zeros(0, str),
    }
    if not np.isfinite(syn["flux"]).all():
        raise FloatingPointError(f"generate@{name}: non-finite synthetic flux")
    n = len(syn["flux"])
    row = {"fit_seconds": fit_s, "sample_seconds": sample_s, "n_synthetic": n,
           "rejected_fraction": gen.rejected / max(gen.rejected + n, 1)}
    return gen, syn, row


def fold_nll(gen, y_tr, X_va, y_va, classes) -> dict:
    """Held-out NLL (bits/dim) of a fitted generator and of the Gaussian baseline fitted on
    the generator's own training features (same space, same whitening); {} for a GAN."""
    held = np.isin(y_va, classes)
    if not (gen.has_density and held.any()):
        return {}
    from spectraforge.generative.gaussian import GaussianModel

    base = GaussianModel().fit(gen.features_, y_tr)
    lp = base.log_prob(gen.space.encode(X_va[held]), y_va[held]) + gen.space.log_det
    return {"nll_bpd": gen.bits_per_dim(X_va[held], y_va[held]),
            "nll_bpd_gauss": float(-lp.mean() / (gen.space.dim * math.log(2)))}


def _fold_quality(X_tr, y_tr, X_va, y_va, flux, lab, counts, params, seed) -> dict:
    """Per class: quality of the samples and, as the floor, of real training spectra."""
    from spectraforge.generative.quality import Embedding, quality

    emb = Embedding(params.quality.embedding).fit(X_tr)
    out = {}
    for c in counts:
        real = X_va[y_va == c]
        fake = flux[lab == c]
        name = LABELS[c]
        if len(real) < 5 or len(fake) < 5:
            continue  # too few on one side to say anything; the summary counts what was scored
        q = quality(emb(real), emb(fake), k=params.quality.k, seed=seed)
        out.update({f"{key}_{name}": v for key, v in q.items()})
        pool = np.flatnonzero(y_tr == c)
        ref = X_tr[np.random.default_rng(seed).choice(pool, min(len(pool), len(fake)), replace=False)]
        q_ref = quality(emb(real), emb(ref), k=params.quality.k, seed=seed)
        out.update({f"{key}_{name}_real": v for key, v in q_ref.items()})
    return out


def _summarise(name: str, spec: GeneratorSpec, per_fold: list) -> dict:
    df = pd.DataFrame(per_fold)
    metrics = {"generator": name, "kind": spec.kind, "space": spec.space}
    for col in df.columns:
        if col == "fold":
            continue
        if col == "n_synthetic" or col.startswith("skipped_"):
            metrics[col] = int(df[col].fillna(0).sum()) if col == "n_synthetic" else int(df[col].notna().sum())
        else:
            metrics[col] = float(df[col].mean())
    if "nll_bpd" in metrics and "nll_bpd_gauss" in metrics:
        metrics["nll_gain_bpd"] = metrics["nll_bpd_gauss"] - metrics["nll_bpd"]  # > 0: beats the baseline
        for _, r in df.iterrows():
            if np.isfinite(r["nll_bpd"]):
                metrics[f"fold{int(r['fold'])}_nll_bpd"] = float(r["nll_bpd"])
    metrics["samples_per_second"] = float(df["n_synthetic"].sum() / max(df["sample_seconds"].sum(), 1e-9))
    for key in ("fd", "precision", "recall", "c2st"):
        cols = [c for c in df.columns if c.startswith(f"{key}_") and not c.endswith("_real")]
        if cols:
            metrics[key] = float(np.nanmean([metrics[c] for c in cols]))
            for _, r in df.iterrows():  # per fold, averaged over the sampled classes
                metrics[f"fold{int(r['fold'])}_{key}"] = float(np.nanmean(r[cols].to_numpy(float)))
    return metrics


def _plot_class(path: Path, wave, real, fake, title: str, n_examples: int, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_band, ax_ex) = plt.subplots(1, 2, figsize=(13, 4.5))
    for arr, colour, label in ((real, "tab:blue", f"real held-out ({len(real)})"),
                               (fake, "tab:orange", f"synthetic ({len(fake)})")):
        if len(arr) == 0:
            continue
        lo, med, hi = np.percentile(arr, [16, 50, 84], axis=0)
        ax_band.fill_between(wave, lo, hi, color=colour, alpha=0.25, lw=0)
        ax_band.plot(wave, med, color=colour, lw=0.8, label=f"{label}: median, 16-84 %")
    both = np.concatenate([a for a in (real, fake) if len(a)]) if len(real) + len(fake) else np.zeros((1, 1))
    lo, hi = np.nanpercentile(both, [2, 98])
    ax_band.set_ylim(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo))
    ax_band.set(xlabel="wavelength [Å]", ylabel="normalised flux", title=title)
    ax_band.legend(loc="upper right", fontsize=8)
    rng = np.random.default_rng(seed)
    step, offset = 2.5, 0.0  # spectra are median-normalised: a median near 1, so a fixed step
    for arr, colour in ((real, "tab:blue"), (fake, "tab:orange")):
        pick = rng.choice(len(arr), min(n_examples, len(arr)), replace=False) if len(arr) else []
        for i in pick:
            ax_ex.plot(wave, arr[i] + offset, color=colour, lw=0.5)
            offset += step
    ax_ex.set_ylim(-1.5, offset + 1.0)
    ax_ex.set(xlabel="wavelength [Å]", title=f"examples: blue real, orange synthetic (offsets of {step})")
    ax_ex.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

