"""The one interface every generator implements, and the spaces generators work in.

A *feature model* (a flow, a GAN, the Gaussian baseline) learns the class-conditional
distribution of feature vectors ``Z`` (n, d) with integer labels ``y`` in LABELS order:

    model.fit(Z, y, seed)                 -> model
    model.sample(y, seed, temperature)    -> Z_new (len(y), d)   one row per requested label
    model.log_prob(Z, y)                  -> (n,) natural-log density (density models only)

A *space* maps spectra to features and back, after squashing the flux with asinh (see
:class:`Space`): :class:`PixelSpace` standardises each pixel,
:class:`PCASpace` keeps the leading principal components of the fold's training spectra
(whitened, so every feature has unit variance). Both are fitted on the training part of a
fold only. Log-densities are reported in the space's natural coordinates (standardised
squashed pixels or orthonormal PCA coordinates of the squashed spectra): the constant log-determinant of the whitening is
added back, so every model fitted in one space is scored on the same footing.

:class:`SpectrumGenerator` composes a space, a feature model and an optional residual so the
stage deals in spectra: ``fit(X, y, ids)``, ``sample(label, n)``. Every synthetic spectrum
records its *parent*: the training spectrum whose PCA residual it borrowed ("" when none),
and the generator records the ids it was fitted on, so the stage can prove that nothing of
a validation spectrum reached a synthetic one.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from spectraforge.labels import LABELS

K = len(LABELS)


def by_class(y):
    """(class code, row indices) for every class present in ``y``, in code order."""
    y = np.asarray(y)
    for c in np.unique(y):
        yield int(c), np.flatnonzero(y == c)


class ClassScaler:
    """Per-class standardisation of features: z' = (z − μ_y) / σ_y, fitted on training rows.

    An exact affine map per class, so a model of z' gives a model of z with
    log p(z | y) = log p(z' | y) − Σ log σ_y (:meth:`log_det`). Flows and GANs use it to
    learn the shape of each class, not its location and scale.
    """

    def fit(self, Z, y) -> "ClassScaler":
        Z = np.asarray(Z, np.float64)
        self.loc, self.scale = {}, {}
        for c, rows in by_class(y):
            self.loc[c] = Z[rows].mean(axis=0)
            self.scale[c] = Z[rows].std(axis=0) + 1e-3 if len(rows) > 1 else np.ones(Z.shape[1])
        return self

    def _check(self, c: int) -> None:
        if c not in self.loc:
            raise ValueError(f"class {c} was not trained (trained: {sorted(self.loc)})")

    def transform(self, Z, y) -> np.ndarray:
        out = np.empty(np.shape(Z), np.float32)
        for c, rows in by_class(y):
            self._check(c)
            out[rows] = (np.asarray(Z)[rows] - self.loc[c]) / self.scale[c]
        return out

    def inverse(self, U, y) -> np.ndarray:
        out = np.empty(np.shape(U), np.float32)
        for c, rows in by_class(y):
            self._check(c)
            out[rows] = np.asarray(U)[rows] * self.scale[c] + self.loc[c]
        return out

    def log_det(self, c: int) -> float:
        """log|det ∂z'/∂z| for class c."""
        self._check(c)
        return float(-np.log(self.scale[c]).sum())


class FeatureModel(ABC):
    """A class-conditional model of feature vectors (see module docstring)."""

    @abstractmethod
    def fit(self, Z: np.ndarray, y: np.ndarray, seed: int = 0) -> "FeatureModel":
        """Learn p(z | y) from float32 features (n, d) and integer labels (n,)."""

    @abstractmethod
    def sample(self, y: np.ndarray, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """One feature vector per entry of ``y``; the same seed gives the same rows."""

    def log_prob(self, Z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log p(z | y) in nats per row. Only density models (flows, Gaussian) have one."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable density")

    @property
    def has_density(self) -> bool:
        return type(self).log_prob is not FeatureModel.log_prob


SQUASHES = ("asinh", "none")


class Space(ABC):
    """A fitted map between spectra (n, n_pix) and features (n, d), via a squashed flux.

    ``squash="asinh"`` first maps each flux value f to asinh(f) (identity near 0, logarithmic
    beyond ±1): median-normalised low-S/N spectra have tails to ±10³, which would otherwise
    own the leading principal components and every distance computed from them. It is
    elementwise and invertible (sinh), so samples come back as fluxes.
    """

    def __init__(self, squash: str = "asinh"):
        if squash not in SQUASHES:
            raise ValueError(f"squash '{squash}' is not one of: {', '.join(SQUASHES)}")
        self.squash = squash

    def to_squashed(self, X) -> np.ndarray:
        X = np.asarray(X, np.float64)
        return np.arcsinh(X) if self.squash == "asinh" else X

    def from_squashed(self, S) -> np.ndarray:
        S = np.asarray(S, np.float64)
        return np.sinh(S) if self.squash == "asinh" else S

    def fit(self, X) -> "Space":
        return self.fit_squashed(self.to_squashed(X))

    def encode(self, X) -> np.ndarray:
        return self.encode_squashed(self.to_squashed(X))

    def decode(self, Z) -> np.ndarray:
        return self.from_squashed(self.decode_squashed(Z)).astype(np.float32)

    @abstractmethod
    def fit_squashed(self, S) -> "Space": ...

    @abstractmethod
    def encode_squashed(self, S) -> np.ndarray: ...

    @abstractmethod
    def decode_squashed(self, Z) -> np.ndarray: ...

    @property
    @abstractmethod
    def log_det(self) -> float:
        """log|det ∂z/∂u| of the whitening, u the space's natural coordinates (constant)."""

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    def n_pix(self) -> int:
        return int(self.mean_.size)


class PixelSpace(Space):
    """Each (squashed) pixel standardised by its training mean and standard deviation.

    Natural coordinates are the squashed pixels; the standardisation is the whitening.
    """

    def fit_squashed(self, S):
        self.mean_ = S.mean(axis=0)
        self.std_ = np.maximum(S.std(axis=0), 1e-6)
        return self

    def encode_squashed(self, S):
        return ((S - self.mean_) / self.std_).astype(np.float32)

    def decode_squashed(self, Z):
        return np.asarray(Z, np.float64) * self.std_ + self.mean_

    @property
    def log_det(self) -> float:
        return float(-np.log(self.std_).sum())

    @property
    def dim(self) -> int:
        return int(self.mean_.size)


class PCASpace(Space):
    """The leading ``n_components`` principal components of the squashed spectra, whitened.

    Natural coordinates u = (s − mean)·V (orthonormal projection); features z = u / σ.
    The components come from a randomised SVD (Halko et al. 2011, sklearn), exact to float
    precision for the leading components and ~15× faster than a full SVD at 4800 × 2600.
    """

    def __init__(self, n_components: int = 32, squash: str = "asinh", seed: int = 0):
        super().__init__(squash)
        self.n_components, self.seed = int(n_components), seed

    def fit_squashed(self, S):
        from sklearn.utils.extmath import randomized_svd

        n, d = S.shape
        if self.n_components > min(n, d):
            raise ValueError(f"PCA space: {self.n_components} components need at least that many "
                             f"spectra and pixels, got {n} spectra of {d} pixels")
        self.mean_ = S.mean(axis=0)
        _, s, vt = randomized_svd(S - self.mean_, self.n_components, n_iter=7, random_state=self.seed)
        self.components_ = vt
        self.sigma_ = np.maximum(s / math.sqrt(max(n - 1, 1)), 1e-8)
        return self

    def project(self, X) -> np.ndarray:
        """Natural (unwhitened) PCA coordinates of spectra."""
        return (self.to_squashed(X) - self.mean_) @ self.components_.T

    def encode_squashed(self, S):
        return (((S - self.mean_) @ self.components_.T) / self.sigma_).astype(np.float32)

    def decode_squashed(self, Z):
        return (np.asarray(Z, np.float64) * self.sigma_) @ self.components_ + self.mean_

    @property
    def log_det(self) -> float:
        return float(-np.log(self.sigma_).sum())

    @property
    def dim(self) -> int:
        return self.n_components


def make_space(kind: str, n_components: int, squash: str = "asinh") -> Space:
    if kind == "pixel":
        return PixelSpace(squash)
    if kind == "pca":
        return PCASpace(n_components, squash)
    raise ValueError(f"space '{kind}' is not one of: pixel, pca")


@dataclass
class Synthetic:
    """Synthetic spectra of one class with their provenance."""

    flux: np.ndarray  # (n, n_pix) float32
    labels: np.ndarray  # (n,) int codes
    parents: np.ndarray  # (n,) ids of the training spectra whose residual was added ("" if none)


class SpectrumGenerator:
    """Space + feature model (+ residual bootstrap): fit on spectra, sample spectra.

    ``residual="bootstrap"`` (PCA space only) adds to each decoded sample the PCA residual
    s − decode(encode(s)) (in squashed flux s) of a training spectrum of the same class drawn
    at random, so the samples carry real noise, sky residuals and fine structure the
    components do not hold.

    The envelope guard: a flow's inverse or a GAN can map a rare draw far outside the data
    (exp of a coupling scale compounding over layers). With m_j, s_j the class's training
    median and standard deviation of feature j, a row's reach is t = max_j |z_j − m_j| / s_j;
    R is the largest reach of a training row of the class. A sample with t > ``envelope``·R,
    or not finite, is redrawn (at most ``max_redraws`` rounds, then an error). One scalar per
    class, so the guard does not trim the tails of a well-fitted model in many dimensions. ``rejected`` counts them, and the stage
    reports the share, so a generator that needs the guard shows it. ``envelope=0`` turns
    the guard off.
    """

    def __init__(self, space: Space, model: FeatureModel, residual: str = "none", temperature: float = 1.0,
                 envelope: float = 1.5, max_redraws: int = 20):
        if envelope < 0 or (0 < envelope < 1):
            raise ValueError(f"envelope must be 0 (off) or >= 1, got {envelope}")
        self.envelope, self.max_redraws, self.rejected = float(envelope), int(max_redraws), 0
        if residual not in ("none", "bootstrap"):
            raise ValueError(f"residual '{residual}' is not one of: none, bootstrap")
        if residual == "bootstrap" and not isinstance(space, PCASpace):
            raise ValueError("residual 'bootstrap' needs the pca space (pixel space keeps everything)")
        self.space, self.model, self.residual, self.temperature = space, model, residual, float(temperature)

    def fit(self, X, y, ids, seed: int = 0) -> "SpectrumGenerator":
        X = np.asarray(X, np.float32)
        y = np.asarray(y, np.int64)
        self.fit_ids = np.asarray(ids).astype(str)
        if not (len(X) == len(y) == len(self.fit_ids)):
            raise ValueError(f"fit: {len(X)} spectra, {len(y)} labels, {len(self.fit_ids)} ids")
        S = self.space.to_squashed(X)
        self.space.fit_squashed(S)
        Z = self.space.encode_squashed(S)
        self.features_ = Z  # the training features, for baselines fitted in the same space
        self.model.fit(Z, y, seed=seed)
        self._y = y
        self._box = {}
        for c in np.unique(y):
            zc = Z[y == c].astype(np.float64)
            med, sd = np.median(zc, axis=0), zc.std(axis=0) + 1e-6
            self._box[int(c)] = (med, sd, float(np.abs((zc - med) / sd).max()))
        if self.residual == "bootstrap":
            self._residuals = (S - self.space.decode_squashed(Z)).astype(np.float32)
        return self

    @property
    def has_density(self) -> bool:
        return self.model.has_density

    def log_prob(self, X, y) -> np.ndarray:
        """log-density of spectra in the space's natural coordinates (nats per spectrum)."""
        Z = self.space.encode(np.asarray(X, np.float32))
        return self.model.log_prob(Z, np.asarray(y, np.int64)) + self.space.log_det

    def bits_per_dim(self, X, y) -> float:
        """Mean negative log-likelihood in bits per dimension: NLL / (d · ln 2)."""
        return float(-self.log_prob(X, y).mean() / (self.space.dim * math.log(2)))

    def sample(self, label: int, n: int, seed: int = 0) -> Synthetic:
        y = np.full(n, int(label), dtype=np.int64)
        if n == 0:
            return Synthetic(np.zeros((0, self.space.n_pix), np.float32), y, np.zeros(0, dtype=str))
        Z = self._guarded_sample(int(label), n, seed)
        squashed = self.space.decode_squashed(Z)
        parents = np.full(n, "", dtype=object)
        if self.residual == "bootstrap":
            pool = np.flatnonzero(self._y == label)
            if pool.size == 0:
                raise ValueError(f"no training spectrum of class {LABELS[label]} to borrow a residual from")
            pick = np.random.default_rng([seed, 7]).choice(pool, size=n)
            squashed = squashed + self._residuals[pick]
            parents = self.fit_ids[pick].astype(object)
        flux = self.space.from_squashed(squashed)
        return Synthetic(flux.astype(np.float32), y, parents.astype(str))

    def _guarded_sample(self, label: int, n: int, seed: int) -> np.ndarray:
        y = np.full(n, label, dtype=np.int64)
        Z = self.model.sample(y, seed=seed, temperature=self.temperature)
        if not self.envelope:
            return Z
        med, sd, reach = self._box[label]
        for attempt in range(1, self.max_redraws + 1):
            with np.errstate(invalid="ignore", over="ignore"):
                t = np.abs((Z - med) / sd).max(axis=1)
            bad = ~(np.isfinite(t) & (t <= self.envelope * reach))
            if not bad.any():
                return Z
            self.rejected += int(bad.sum())
            Z[bad] = self.model.sample(y[bad], seed=seed + 7919 * attempt, temperature=self.temperature)
        raise FloatingPointError(
            f"{type(self.model).__name__}: {int(bad.sum())} of {n} samples of {LABELS[label]} still outside "
            f"the training envelope after {self.max_redraws} redraws; the model is broken or undertrained")
