"""Can a classifier tell the mock's stars from real LAMOST stars? A two-sample test.

Real: the LAMOST spectra classed STAR in ../shared/real/lamost/index.csv (55 files of about
50 objects: a few objects appear in two releases, and they are kept in one cross-validation
group). Mock: stars of the embedded survey, drawn at the S/N of the real ones (for each real
spectrum the ``--k`` mock stars nearest to its r-band S/N, from ``--pool`` simulated). Both go
through prepare's reading and preprocessing (the default grid, median normalisation).

Two classifiers, each scored by its out-of-fold ROC AUC (grouped stratified 5-fold, repeated
``--repeats`` times; the interval is a bootstrap over objects of the first repeat):
- logistic regression on the flux averaged into 130 bins (shape: continuum, lines);
- LightGBM on the hand-made features the lgbm model uses (line indices, window statistics).
AUC 0.5: the classifier cannot tell them apart; 1.0: it always can. In the same run, two
controls size the test: mock stars against other mock stars at the same S/N (the null: what
0.5 looks like with this few real spectra) and real stars against mock galaxies (power: a
difference the test must see). The bins the logistic model leans on most say where the mock
differs. The real stars are a few dozen F/G/K/A stars from public repositories, not a survey's
mix, so the comparison is made twice: mock stars matched on S/N alone, and on S/N and spectral
type (the index's subclass against the mock's). Also writes
benchmarks/results/mock_realism_stars.png (the median real and matched mock star, and their ratio).

    python benchmarks/mock_realism.py [--pool 3000] [--k 5] [--repeats 5]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from _results import publish, stamp

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real" / "lamost"
OUT = ROOT / "benchmarks" / "results"
N_BINS = 130


TYPES = "OBAFGKM"


def type_number(subclass) -> float:
    """MK spectral type as a number (A0 = 20, F5 = 35, ...; NaN if unreadable)."""
    m = re.search(r"([OBAFGKM])(\d(?:\.\d)?)?", str(subclass or ""))
    return float("nan") if m is None else 10 * TYPES.index(m[1]) + float(m[2] or 5)


def real_stars(wave):
    """(flux (n, P), r-band S/N, object group, spectral type number) of the real LAMOST stars."""
    from spectraforge.io import read_spectrum
    from spectraforge.preprocess import preprocess

    index = pd.read_csv(REAL / "index.csv")
    index = index[index["class"] == "STAR"]
    rows, snr, group, kind = [], [], [], []
    for _, r in index.iterrows():
        spec = read_spectrum(REAL / r["file"])
        rows.append(preprocess(spec.wave, spec.flux, spec.mask, wave, "median", 1.0)[0])
        snr.append(float(r["snrr"]))
        group.append(r["file"].split("__")[0])  # the same plate-fibre in two releases: one group
        kind.append(type_number(r["subclass"]))
    return np.asarray(rows), np.asarray(snr), np.asarray(group), np.asarray(kind)


def mock_spectra(label: str, n: int, seed: int, wave):
    """(flux (n, P), S/N, spectral type number) of ``n`` mock spectra of ``label``, preprocessed as
    prepare does."""
    from spectraforge.mock.simulate import simulate
    from spectraforge.preprocess import preprocess

    batch = simulate([label] * n, seed=seed)
    X = np.stack([preprocess(batch.wave, batch.flux[i], batch.andmask[i] != 0, wave, "median", 1.0)[0]
                  for i in range(n)])
    return X, np.array([m["snr"] for m in batch.meta], float), np.array([type_number(m.get("subclass")) for m in batch.meta])


def matched(snr_target: np.ndarray, snr_pool: np.ndarray, k: int, taken: np.ndarray,
            type_target=None, type_pool=None) -> np.ndarray:
    """For each target, the k unused pool rows nearest in log S/N (marked used); with types, in
    |Δ ln S/N| + |Δ type| / 2 (one subclass counts as a factor 1.6 in S/N)."""
    out = []
    for i, s in enumerate(snr_target):
        d = np.abs(np.log(snr_pool) - np.log(s))
        if type_target is not None and np.isfinite(type_target[i]):
            d = d + np.nan_to_num(np.abs(type_pool - type_target[i]) / 2, nan=1e3)
        d[taken] = np.inf
        pick = np.argsort(d)[:k]
        taken[pick] = True
        out.append(pick)
    return np.concatenate(out)


def binned(X: np.ndarray) -> np.ndarray:
    n = X.shape[1] // N_BINS * N_BINS
    return X[:, :n].reshape(len(X), N_BINS, -1).mean(axis=2)


def oof_auc(X: np.ndarray, y: np.ndarray, groups: np.ndarray, model: str, seed: int):
    """Out-of-fold scores and AUC of one grouped stratified 5-fold pass."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros(len(y))
    for tr, va in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(X, y, groups):
        if model == "logistic":
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
        else:
            import lightgbm as lgb

            clf = lgb.LGBMClassifier(n_estimators=200, num_leaves=7, learning_rate=0.05, min_child_samples=5,
                                     subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=seed,
                                     n_jobs=1, verbose=-1)
        clf.fit(X[tr], y[tr])
        scores[va] = clf.predict_proba(X[va])[:, 1]
    return scores, roc_auc_score(y, scores)


def bootstrap_auc(y, scores, groups, n: int = 1000, seed: int = 0):
    """95 % interval of the AUC, resampling objects (groups) with replacement."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in uniq}
    out = []
    for _ in range(n):
        rows = np.concatenate([members[g] for g in rng.choice(uniq, len(uniq))])
        if len(np.unique(y[rows])) == 2:
            out.append(roc_auc_score(y[rows], scores[rows]))
    return np.percentile(out, [2.5, 97.5])


def two_sample(A, B, groups_a, groups_b, wave, repeats: int):
    """{model: (mean AUC over repeats, interval, per-repeat AUCs, first-repeat scores)} for A (1) vs B (0)."""
    from spectraforge.features import handmade_features

    X = np.concatenate([A, B])
    y = np.r_[np.ones(len(A), int), np.zeros(len(B), int)]
    groups = np.r_[groups_a, groups_b]
    feats = {"logistic": binned(X), "lgbm": handmade_features(X.astype(np.float32), wave, 26)}
    out = {}
    for model in feats:
        aucs, first = [], None
        for r in range(repeats):
            scores, auc = oof_auc(feats[model], y, groups, model, seed=r)
            aucs.append(auc)
            first = scores if first is None else first
        out[model] = (float(np.mean(aucs)), bootstrap_auc(y, first, groups), aucs)
    return out


def top_bins(A, B, wave, n: int = 5) -> list[str]:
    """The bins a logistic model fitted on all of A vs B weights most, as wavelength ranges."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X = binned(np.concatenate([A, B]))
    y = np.r_[np.ones(len(A)), np.zeros(len(B))]
    coef = LogisticRegression(C=0.05, max_iter=2000).fit(StandardScaler().fit_transform(X), y).coef_[0]
    width = len(wave) // N_BINS
    out = []
    for i in np.argsort(-np.abs(coef))[:n]:
        lo, hi = wave[i * width], wave[min((i + 1) * width, len(wave)) - 1]
        diff = np.median(binned(A)[:, i]) - np.median(binned(B)[:, i])
        out.append(f"{lo:.0f}–{hi:.0f} Å (real − mock median flux {diff:+.3f})")
    return out


def plot(wave, real, mock, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    mr, mm = np.median(real, axis=0), np.median(mock, axis=0)
    ax[0].plot(wave, mr, lw=0.7, label=f"real LAMOST stars, median of {len(real)}")
    ax[0].plot(wave, mm, lw=0.7, label=f"mock stars at the same S/N and spectral type, median of {len(mock)}")
    ax[0].set_ylabel("median-normalised flux")
    ax[0].legend(loc="upper right", fontsize=8)
    ax[1].plot(wave, mr / np.where(mm == 0, np.nan, mm), lw=0.6, color="k")
    ax[1].axhline(1, color="grey", lw=0.5)
    ax[1].set_ylim(0.7, 1.3)
    ax[1].set_ylabel("real / mock")
    ax[1].set_xlabel("wavelength (Å)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pool", type=int, default=3000, help="mock stars simulated to match from")
    ap.add_argument("--k", type=int, default=5, help="mock stars per real star")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not REAL.is_dir():
        sys.exit(f"{REAL} is not there: this benchmark needs the real LAMOST files")
    from spectraforge.preprocess import make_grid

    wave = make_grid()
    real, snr, groups, kinds = real_stars(wave)
    pool, pool_snr, pool_kind = mock_spectra("star", args.pool, args.seed, wave)
    taken = np.zeros(len(pool), bool)
    mock = pool[matched(snr, pool_snr, args.k, taken)]
    null_a = pool[matched(snr, pool_snr, 1, taken)]  # other mock stars at the same S/N, as many as the real ones
    taken[:] = False
    typed = matched(snr, pool_snr, args.k, taken, kinds, pool_kind)
    mock_typed = pool[typed]
    galaxies, _, _ = mock_spectra("galaxy", len(mock), args.seed + 1, wave)
    mock_groups = np.array([f"m{i}" for i in range(len(mock))])
    results = {
        "real stars vs mock stars at their S/N": two_sample(real, mock, groups, mock_groups, wave, args.repeats),
        "real stars vs mock stars at their S/N and spectral type": two_sample(
            real, mock_typed, groups, mock_groups, wave, args.repeats),
        "null: mock stars vs other mock stars": two_sample(null_a, mock, np.array([f"n{i}" for i in range(len(null_a))]),
                                                           mock_groups, wave, args.repeats),
        "power: real stars vs mock galaxies": two_sample(real, galaxies, groups, mock_groups, wave, args.repeats),
    }
    type_gap = np.nanmedian(np.abs(np.repeat(kinds, args.k) - pool_kind[typed]))
    where = top_bins(real, mock_typed, wave)
    plot(wave, real, mock_typed, OUT / "mock_realism_stars.png")
    rows = []
    for name, res in results.items():
        for model, (auc, ci, aucs) in res.items():
            rows.append(f"| {name} | {model} | {auc:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
                        f"{min(aucs):.3f}–{max(aucs):.3f} |")
    models = {"logistic": "logistic regression on 130 flux bins", "lgbm": "LightGBM on the hand-made features"}
    lines = [
        "## Mock realism: real LAMOST stars against the mock's stars (two-sample test)",
        "",
        f"Run {stamp()}.",
        f"Command: `python benchmarks/mock_realism.py --pool {args.pool} --k {args.k} --repeats {args.repeats}`. "
        f"{len(real)} real LAMOST spectra classed STAR ({len(np.unique(groups))} objects; S/N_r "
        f"{np.min(snr):.0f}–{np.max(snr):.0f}, median {np.median(snr):.0f}) against {len(mock)} mock stars, the "
        f"{args.k} nearest to each real spectrum's S/N among {args.pool} simulated; both through prepare's reading "
        "and preprocessing. Out-of-fold ROC AUC of grouped stratified 5-fold cross-validation, mean over "
        f"{args.repeats} repeats, with a 95 % bootstrap interval over objects (first repeat) and the range over "
        f"repeats. Models: {models['logistic']}; {models['lgbm']}. 0.5: indistinguishable.",
        "",
        "| comparison | model | AUC [95 % interval] | range over repeats |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Type matching: the median |Δ type| between a real star and its matched mock stars is {type_gap:.1f} "
        "subclasses (types from the index's subclass and the mock's own).",
        "",
        "Where a logistic model fitted on all real stars and their type-matched mock stars leans most (largest "
        "|coefficient|): " + "; ".join(where) + ".",
        "",
        "Picture: benchmarks/results/mock_realism_stars.png (median real star and median type- and S/N-matched "
        "mock star, and their ratio).",
    ]
    publish("mock-realism-stars", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
