"""The baseline every generator must beat: one Gaussian per class in feature space.

Mean and covariance per class, the covariance shrunk towards a scaled identity by the
Ledoit–Wolf estimate (sklearn), which stays well conditioned when a rare class has fewer
spectra than dimensions. In PCA space this is the "Gaussian in PCA" baseline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spectraforge.generative.base import FeatureModel, by_class
from spectraforge.params import require


@dataclass
class GaussianConfig:
    shrinkage: str = "ledoit_wolf"  # ledoit_wolf | none

    def validate(self, key: str) -> None:
        require(self.shrinkage in ("ledoit_wolf", "none"), f"{key}.shrinkage",
                f"'{self.shrinkage}' is not one of: ledoit_wolf, none")


class GaussianModel(FeatureModel):
    def __init__(self, cfg: GaussianConfig | None = None):
        self.cfg = cfg or GaussianConfig()

    def fit(self, Z, y, seed: int = 0):
        from sklearn.covariance import LedoitWolf

        Z = np.asarray(Z, np.float64)
        y = np.asarray(y, np.int64)
        self.params = {}
        for c in np.unique(y):
            rows = Z[y == c]
            if len(rows) < 2:
                continue  # no covariance from one row; sample/log_prob for it raise, naming the class
            mean = rows.mean(axis=0)
            if self.cfg.shrinkage == "ledoit_wolf":
                cov = LedoitWolf().fit(rows).covariance_
            else:
                cov = np.cov(rows, rowvar=False) + 1e-6 * np.eye(Z.shape[1])
            self.params[int(c)] = (mean, np.linalg.cholesky(cov))
        self.dim = Z.shape[1]
        return self

    def _get(self, c):
        if c not in self.params:
            raise ValueError(f"no Gaussian was fitted for class {c} (fitted: {sorted(self.params)})")
        return self.params[c]

    def log_prob(self, Z, y):
        Z = np.asarray(Z, np.float64)
        y = np.asarray(y, np.int64)
        out = np.zeros(len(y))
        for c, rows in by_class(y):
            mean, chol = self._get(c)
            w = np.linalg.solve(chol, (Z[rows] - mean).T)  # L⁻¹ (z − μ)
            out[rows] = (-0.5 * (w * w).sum(axis=0) - np.log(np.diag(chol)).sum()
                         - 0.5 * self.dim * math.log(2 * math.pi))
        return out

    def sample(self, y, seed: int = 0, temperature: float = 1.0):
        y = np.asarray(y, np.int64)
        out = np.zeros((len(y), self.dim), np.float32)
        for c, rows in by_class(y):
            mean, chol = self._get(c)
            eps = np.random.default_rng([seed, c]).standard_normal((len(rows), self.dim))
            out[rows] = mean + temperature * eps @ chol.T
        return out
