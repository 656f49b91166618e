"""Sample quality of synthetic spectra against real held-out spectra, in a fixed embedding.

The embedding is a PCA of the asinh-squashed flux fitted on the fold's training spectra (all
classes), fixed before any generator is looked at, so every generator is judged in the same
coordinates (asinh keeps the ±10³ tails of low-S/N spectra from owning the components).

- Fréchet distance (Heusel et al. 2017, the FID formula without Inception):
  ‖μ_r − μ_s‖² + tr(Σ_r + Σ_s − 2 (Σ_r Σ_s)^{1/2}); 0 for identical Gaussians.
- Precision and recall (Kynkäänniemi et al. 2019): a sample is *covered* by a set when it
  falls within the k-th-nearest-neighbour radius of some member of that set. Precision =
  share of synthetic samples covered by the real manifold (fidelity); recall = share of
  real samples covered by the synthetic manifold (diversity).
- Classifier two-sample test (Lopez-Paz & Oquab 2017): cross-validated accuracy of a
  logistic regression told to separate real from synthetic on balanced sets; 0.5 means
  indistinguishable, 1.0 trivially separable.
"""
from __future__ import annotations

import numpy as np


class Embedding:
    """Leading principal components of the fold's training spectra (centred, not whitened)."""

    def __init__(self, n_components: int = 16):
        self.n_components = int(n_components)

    def fit(self, X):
        from spectraforge.generative.base import PCASpace

        self.pca = PCASpace(self.n_components, squash="asinh").fit(X)
        return self

    def __call__(self, X) -> np.ndarray:
        return self.pca.project(X)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and of ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Fréchet distance needs >= 2 rows on each side, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # tr (Σa Σb)^{1/2} = Σ √λ(Σa^{1/2} Σb Σa^{1/2}): a symmetric PSD eigenproblem, stable where
    # a general matrix square root of the product is not
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    tr_covmean = np.sqrt(np.clip(lam, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_covmean)


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(x) - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return dist[:, k]  # column 0 is the point itself


def _covered(points: np.ndarray, support: np.ndarray, radii: np.ndarray) -> np.ndarray:
    d = np.sqrt(((points[:, None, :] - support[None, :, :]) ** 2).sum(-1))
    return (d <= radii[None, :]).any(axis=1)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real`` with k-NN manifolds."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"precision/recall needs >= 2 rows on each side, got {len(real)} and {len(fake)}")
    precision = _covered(fake, real, _radii(real, k)).mean()
    recall = _covered(real, fake, _radii(fake, k)).mean()
    return float(precision), float(recall)


def two_sample_accuracy(real: np.ndarray, fake: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated accuracy of logistic regression separating real from fake (balanced)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    if n < folds:
        raise ValueError(f"two-sample test needs >= {folds} rows on each side, got {len(real)} and {len(fake)}")
    X = np.concatenate([real[rng.choice(len(real), n, replace=False)], fake[rng.choice(len(fake), n, replace=False)]])
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, X, y, cv=cv, scoring="accuracy").mean())


def quality(real: np.ndarray, fake: np.ndarray, k: int = 3, seed: int = 0) -> dict:
    """All three figures for one class: {fd, precision, recall, c2st}."""
    precision, recall = precision_recall(real, fake, k)
    return {"fd": frechet_distance(real, fake), "precision": precision, "recall": recall,
            "c2st": two_sample_accuracy(real, fake, seed=seed)}
