"""``simulate``: the embedded mock LAMOST survey as arrays.

    batch = simulate(["star", "galaxy", "qso", "unknown", ...], seed=2018)

Spectra are made in chunks (bounded memory), each chunk with its own generator seeded from the
master seed, so results depend only on (labels, seed, snr_range, chunk_size). Per chunk: draw fibre LSF
widths, generate the noise-free spectra of each class at LAMOST resolution, draw target S/N
(log-normal per class: stars brighter than galaxies and quasars; unknowns mostly S/N < 3),
draw observing conditions, apply the unknown-class failures, observe (instrument.observe).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from . import galaxies, instrument, quasars, stars, unknown
from .instrument import LAMOST_WAVE, NPIX, draw_plan, observe

LABELS = ("star", "galaxy", "qso", "unknown")

# target S/N per class, truncated to snr_range. Stars: log-normal (median, sigma in dex).
# Galaxies and quasars, faint and sky-limited (S/N ∝ flux): S/N = s_lim 10^(0.4 (m_lim − m)) with
# m from the number counts of a magnitude-limited sample, dN/dm ∝ 10^(slope m), so the bright
# ones form a power-law tail (P(S/N > x) ∝ x^(−slope/0.4)), not a log-normal's thin one:
# galaxies slope 0.6 (Euclidean counts of nearby galaxies, as in the SDSS main sample: Yasuda et
# al. 2001, AJ 122, 1104), quasars their i magnitudes (quasars.py, slope 0.3). s_lim puts the
# median near 5.5 (galaxies) and 6 (quasars) as before; 0.2 dex scatter for observing conditions.
SNR_DIST = {"star": (16.0, 0.45)}
SNR_COUNTS = {"galaxy": dict(s_lim=3.5, slope=0.6, range_mag=5.0), "qso": dict(s_lim=2.6, m_lim=19.8)}
SNR_SCATTER_DEX = 0.2
CHUNK = 512


@dataclass
class SimBatch:
    wave: np.ndarray        # (P,) = LAMOST_WAVE
    flux: np.ndarray        # (n, P) float32, observed flux (1e-17 erg/s/cm²/Å-like units)
    ivar: np.ndarray        # (n, P) float32, inverse variance of the added noise; 0 on bad pixels
    andmask: np.ndarray     # (n, P) int32, nonzero on bad pixels
    meta: list[dict]        # per spectrum: label, subclass, z, snr, physical parameters
    noiseless: np.ndarray | None = field(default=None, repr=False)   # (n, P) float32 if requested

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def labels(self) -> list[str]:
        return [m["label"] for m in self.meta]


def _truncated_lognormal(rng, n, median, sigma_dex, lo, hi):
    """Log-normal draws restricted to [lo, hi] by inverse-CDF sampling (no pile-ups at the edges)."""
    from scipy.special import ndtr, ndtri
    mu = np.log10(median)
    a = ndtr((np.log10(lo) - mu) / sigma_dex)
    b = ndtr((np.log10(hi) - mu) / sigma_dex)
    u = rng.uniform(a, b, n) if b > a else np.full(n, 0.5 * (a + b))
    u = np.clip(u, 1e-12, 1 - 1e-12)
    return 10.0 ** (mu + sigma_dex * ndtri(u))


def _target_snr(label: str, metas: list[dict], rng, lo: float, hi: float) -> np.ndarray:
    """Target r-band S/N of classified spectra of one class (see SNR_DIST / SNR_COUNTS)."""
    n = len(metas)
    if label in SNR_DIST:
        med, sd = SNR_DIST[label]
        return _truncated_lognormal(rng, n, med, sd, lo, hi)
    c = SNR_COUNTS[label]
    if label == "qso":
        dm = c["m_lim"] - np.array([m["imag"] for m in metas])
    else:   # magnitudes below the limit from dN/dm ∝ 10^(slope m) over range_mag, by inverse CDF
        a = 10.0 ** (-c["slope"] * c["range_mag"])
        dm = -np.log10(a + (1.0 - a) * rng.random(n)) / c["slope"]
    snr = c["s_lim"] * 10.0 ** (0.4 * dm + rng.normal(0.0, SNR_SCATTER_DEX, n))
    # inside snr_range: out-of-range draws are redrawn from the in-range ones (no pile-up at the edges)
    bad = (snr < lo) | (snr > hi)
    good = np.nonzero(~bad)[0]
    if bad.any():
        snr[bad] = snr[rng.choice(good, bad.sum())] if len(good) else np.clip(snr[bad], lo, hi)
    return snr


def _simulate_chunk(labels: np.ndarray, rng: np.random.Generator, snr_range, out):
    n = len(labels)
    lo, hi = float(snr_range[0]), float(snr_range[1])
    lsf_scale = np.exp(rng.normal(0.0, 0.07, n))
    intrinsic = np.zeros((n, NPIX))
    meta: list[dict | None] = [None] * n
    snr = np.zeros(n)

    def put(rows, flux, metas):
        intrinsic[rows] = flux
        for r, m in zip(rows, metas):
            meta[r] = m

    for lab, gen in (("star", stars.generate), ("galaxy", galaxies.generate), ("qso", quasars.generate)):
        rows = np.nonzero(labels == lab)[0]
        if len(rows):
            f, m = gen(len(rows), rng, lsf_scale[rows])
            put(rows, f, m)
            snr[rows] = _target_snr(lab, m, rng, lo, hi)

    urows = np.nonzero(labels == "unknown")[0]
    ukinds = None
    if len(urows):
        ukinds, src = unknown.draw_kinds(len(urows), rng)
        for lab, gen in (("star", stars.generate), ("galaxy", galaxies.generate), ("qso", quasars.generate)):
            sel = np.nonzero(src == lab)[0]
            if len(sel):
                f, m = gen(len(sel), rng, lsf_scale[urows[sel]])
                for j, mm in zip(sel, m):
                    meta[urows[j]] = {"label": "unknown", "subclass": str(ukinds[j]), "z": None,
                                      "source_label": mm["label"], "source_subclass": mm["subclass"],
                                      "source_z": mm["z"]}
                intrinsic[urows[sel]] = f
        snr[urows] = np.minimum(unknown.target_snr(ukinds, rng, lo), hi)

    plan = draw_plan(rng, snr)
    if len(urows):
        unknown.modify(intrinsic, urows, ukinds, plan, rng)
    obs = observe(intrinsic, plan, rng, out=out)
    for i in range(n):
        meta[i]["snr"] = float(obs.snr[i])
        meta[i]["snr_target"] = float(snr[i])
        meta[i]["resolution"] = float(6500.0 / (instrument.FWHM_RED * lsf_scale[i]))   # R at 6500 Å
    return obs.noiseless, meta


def simulate(labels: Sequence[str], seed: int | np.random.Generator, snr_range=(1.0, 80.0),
             return_noiseless: bool = False, chunk_size: int = CHUNK) -> SimBatch:
    """Simulate LAMOST-like spectra with the given labels (star, galaxy, qso, unknown).

    Deterministic for a given (labels, seed, snr_range). ``snr_range`` bounds the target
    median r-band S/N of classified spectra (unknowns go lower by design). With
    ``return_noiseless`` the batch also carries the noise-free observed flux (same units), so
    that (flux - noiseless)·sqrt(ivar) is standard normal on good pixels.
    """
    labels = np.asarray([str(x).lower() for x in labels])
    bad = set(labels.tolist()) - set(LABELS)
    if bad:
        raise ValueError(f"unknown labels {sorted(bad)}; expected {LABELS}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = len(labels)
    if n == 0:
        z = np.zeros((0, NPIX), np.float32)
        return SimBatch(wave=LAMOST_WAVE.copy(), flux=z, ivar=z.copy(), andmask=np.zeros((0, NPIX), np.int32),
                        meta=[], noiseless=z.copy() if return_noiseless else None)
    n_chunks = max(1, -(-n // chunk_size))
    chunk_seeds = rng.integers(0, 2 ** 63 - 1, n_chunks)
    flux = np.empty((n, NPIX), np.float32)
    ivar = np.empty((n, NPIX), np.float32)
    andmask = np.empty((n, NPIX), np.int32)
    noiseless = np.empty((n, NPIX), np.float32) if return_noiseless else None
    meta: list[dict] = []
    # the small matrix products here are slower with threaded BLAS (and callers parallelise
    # over chunks or processes anyway)
    with threadpool_limits(limits=1, user_api="blas"):
        for c in range(n_chunks):
            sl = slice(c * chunk_size, min(n, (c + 1) * chunk_size))
            nl, m = _simulate_chunk(labels[sl], np.random.default_rng(int(chunk_seeds[c])), snr_range,
                                    (flux[sl], ivar[sl], andmask[sl]))
            if return_noiseless:
                noiseless[sl] = nl
            meta.extend(m)
    return SimBatch(wave=LAMOST_WAVE.copy(), flux=flux, ivar=ivar, andmask=andmask, meta=meta,
                    noiseless=noiseless)
