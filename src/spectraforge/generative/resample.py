"""The classical augmentation baselines, behind the same fit/sample interface as the
generative models, so an honest ablation compares like with like.

- ``oversample``: copies of the class's training spectra drawn with replacement
  (random oversampling); each copy's parent is the spectrum it copies.
- ``noise``: a training spectrum plus Gaussian noise scaled to that spectrum's own
  spread, x' = x + k·std(x)·N(0, 1) per pixel (k = ``noise``); the parent is x.

Neither has a density, so the stage reports no NLL for them; their sample quality is
scored like any generator's, which puts the real-spectra floor and the oversampling
figures side by side.
"""
from __future__ import annotations

import numpy as np

from spectraforge.generative.base import Synthetic
from spectraforge.labels import LABELS

METHODS = ("oversample", "noise")


class ResampleGenerator:
    """Oversampling (``noise=0``) or noise augmentation of a fold's training spectra."""

    has_density = False
    model = None  # no feature model: nothing to train, no learning curve
    rejected = 0  # nothing is ever redrawn

    def __init__(self, noise: float = 0.0):
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = float(noise)

    def fit(self, X, y, ids, seed: int = 0) -> "ResampleGenerator":
        self._X = np.asarray(X, np.float32)
        self._y = np.asarray(y, np.int64)
        self.fit_ids = np.asarray(ids).astype(str)
        if not (len(self._X) == len(self._y) == len(self.fit_ids)):
            raise ValueError(f"fit: {len(self._X)} spectra, {len(self._y)} labels, {len(self.fit_ids)} ids")
        return self

    def sample(self, label: int, n: int, seed: int = 0) -> Synthetic:
        y = np.full(n, int(label), dtype=np.int64)
        pool = np.flatnonzero(self._y == label)
        if n and pool.size == 0:
            raise ValueError(f"no training spectrum of class {LABELS[label]} to resample")
        rng = np.random.default_rng([seed, 11])
        pick = rng.choice(pool, size=n) if n else np.zeros(0, np.int64)
        flux = self._X[pick].copy()
        if self.noise > 0 and n:
            scale = self.noise * flux.std(axis=1, keepdims=True)
            flux += (scale * rng.standard_normal(flux.shape)).astype(np.float32)
        return Synthetic(flux, y, self.fit_ids[pick].astype(str))
