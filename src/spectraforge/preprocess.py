"""Per-spectrum preprocessing: the common grid, flux-conserving resampling, masking, normalisation.

Everything here is a pure function of one spectrum's arrays, so the ``prepare`` stage can
run it in worker processes and tests can check it on hand-made inputs.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse

from spectraforge.params import NORMALISERS, GridParams


class PreprocessError(ValueError):
    """A spectrum cannot be put on the grid (the reason goes to the quarantine list)."""


def make_grid(grid: GridParams | None = None) -> np.ndarray:
    """Pixel centres of the common grid in Å (default: 2600 log-spaced pixels, 3690–9100 Å).

    The default is the Tianchi 2018 grid, so contest txt files pass straight through.
    """
    grid = grid or GridParams()
    if grid.spacing == "log":
        return np.logspace(np.log10(grid.wave_min), np.log10(grid.wave_max), grid.n_pix)
    return np.linspace(grid.wave_min, grid.wave_max, grid.n_pix)


def pixel_edges(wave: np.ndarray) -> np.ndarray:
    """Edges of pixels centred on ``wave``: geometric midpoints (exact for log-linear grids)."""
    wave = np.asarray(wave, dtype=np.float64)
    mid = np.sqrt(wave[1:] * wave[:-1])
    first = wave[0] ** 2 / mid[0]
    last = wave[-1] ** 2 / mid[-1]
    return np.concatenate([[first], mid, [last]])


def _fill_bad(values: np.ndarray, bad: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation over bad pixels from the good ones (constant beyond the ends)."""
    if not bad.any():
        return values
    good = ~bad
    out = values.copy()
    out[bad] = np.interp(x[bad], x[good], values[good])
    return out


def rebin_matrix(wave_in: np.ndarray, wave_out: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Sparse R with R[j, i] = |pixel_out j ∩ pixel_in i| / |pixel_out j|, and coverage = Σ_i R[j, i].

    Rebinning is then one sparse product; the matrix depends only on the two grids, so it is
    built once per input grid (every LAMOST spectrum of a plate shares one) and cached.
    """
    e_in, e_out = pixel_edges(wave_in), pixel_edges(wave_out)
    lo, hi = max(e_in[0], e_out[0]), min(e_in[-1], e_out[-1])
    cuts = np.union1d(e_in, e_out)
    cuts = cuts[(cuts >= lo) & (cuts <= hi)]
    if len(cuts) < 2:
        return sparse.csr_matrix((len(wave_out), len(wave_in))), np.zeros(len(wave_out))
    mid = 0.5 * (cuts[1:] + cuts[:-1])
    i = np.searchsorted(e_in, mid) - 1
    j = np.searchsorted(e_out, mid) - 1
    width = np.diff(e_out)
    weight = np.diff(cuts) / width[j]
    matrix = sparse.coo_matrix((weight, (j, i)), shape=(len(wave_out), len(wave_in))).tocsr()
    return matrix, np.asarray(matrix.sum(axis=1)).ravel()


@lru_cache(maxsize=64)
def _cached_matrix(wave_in_bytes: bytes, wave_out_bytes: bytes):
    return rebin_matrix(np.frombuffer(wave_in_bytes), np.frombuffer(wave_out_bytes))


def rebin(wave_in, values, wave_out) -> tuple[np.ndarray, np.ndarray]:
    """Flux-conserving rebinning of a density sampled on ``wave_in`` onto ``wave_out``.

    Each output pixel gets the mean of the input density over the part of it the input covers
    (∫ f dλ / Δλ with f piecewise constant per input pixel), so a line's integrated flux and
    its centroid are preserved. ``values`` may be (n_in,) or (n_in, k) for k spectra sharing
    the grid. Returns (values_out, coverage), coverage being the fraction of each output
    pixel inside the input range (output is 0 where coverage is 0).
    """
    wave_in = np.ascontiguousarray(wave_in, dtype=np.float64)
    wave_out = np.ascontiguousarray(wave_out, dtype=np.float64)
    matrix, coverage = _cached_matrix(wave_in.tobytes(), wave_out.tobytes())
    summed = matrix @ np.asarray(values, np.float64)
    scale = np.where(coverage > 0, 1.0 / np.where(coverage > 0, coverage, 1.0), 0.0)
    out = summed * (scale[:, None] if summed.ndim == 2 else scale)
    return out, coverage


def to_grid(wave, flux, mask, grid_wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put one spectrum on ``grid_wave``: returns (flux, bad) with bad pixels filled.

    Bad input pixels (mask or non-finite) are bridged by linear interpolation before
    rebinning; an output pixel is bad when more than half of it comes from bad input or
    lies outside the input's coverage. Bad output pixels are then filled by linear
    interpolation from their good neighbours (the nearest good value beyond the ends),
    so models never see NaN or a hole of zeros.
    """
    wave = np.asarray(wave, np.float64)
    flux = np.asarray(flux, np.float64)
    bad_in = np.asarray(mask, bool) | ~np.isfinite(flux)
    if bad_in.all():
        raise PreprocessError("no valid pixels")
    filled = _fill_bad(flux, bad_in, wave)
    if len(wave) == len(grid_wave) and np.allclose(wave, grid_wave, rtol=1e-7, atol=0):
        out, bad = filled, bad_in  # already on the grid: pass straight through
    else:
        both, coverage = rebin(wave, np.stack([filled, bad_in.astype(np.float64)], axis=1), grid_wave)
        out, bad_frac = both[:, 0], both[:, 1] * coverage
        bad = (coverage < 0.5) | (bad_frac > 0.5 * np.maximum(coverage, 1e-12))
        if bad.all():
            raise PreprocessError(
                f"no overlap with the grid {grid_wave[0]:.0f}–{grid_wave[-1]:.0f} Å "
                f"(spectrum covers {wave[0]:.0f}–{wave[-1]:.0f} Å)"
            )
        out = _fill_bad(out, bad, grid_wave)
    return out, bad


def normalise(flux: np.ndarray, bad: np.ndarray, method: str) -> np.ndarray:
    """Scale one spectrum; statistics use good pixels only.

    median: f / median(|f|)  (|f| so that artefact spectra with negative flux keep their sign)
    zscore: (f − mean) / std
    l2:     f / ‖f‖₂
    none:   f
    """
    if method not in NORMALISERS:
        raise ValueError(f"normalise: '{method}' is not one of {', '.join(NORMALISERS)}")
    if method == "none":
        return flux
    good = flux[~bad] if (~bad).any() else flux
    if method == "median":
        scale = np.median(np.abs(good))
        shift = 0.0
    elif method == "zscore":
        shift = good.mean()
        scale = good.std()
    else:
        shift = 0.0
        scale = np.sqrt(np.sum(good**2))
    if not np.isfinite(scale) or scale <= 0:
        raise PreprocessError(f"cannot normalise ({method}): flux is constant or zero on all good pixels")
    return (flux - shift) / scale


def estimate_snr(flux, ivar, mask) -> float | None:
    """Median per-pixel S/N over good pixels, the survey's usual definition."""
    good = ~np.asarray(mask, bool) & (np.asarray(ivar) > 0) & np.isfinite(flux)
    if not good.any():
        return None
    return float(np.median(np.asarray(flux)[good] * np.sqrt(np.asarray(ivar)[good])))


def preprocess(wave, flux, mask, grid_wave, method: str, max_bad_fraction: float = 0.9):
    """The whole per-spectrum recipe: grid, fill, normalise. Returns (float32 flux, bad fraction)."""
    out, bad = to_grid(wave, flux, mask, grid_wave)
    frac = float(bad.mean())
    if frac > max_bad_fraction:
        raise PreprocessError(f"{frac:.0%} of the grid pixels are bad (limit {max_bad_fraction:.0%})")
    out = normalise(out, bad, method)
    if not np.all(np.isfinite(out)):  # pragma: no cover - guarded by the steps above
        raise PreprocessError("non-finite values after normalisation")
    return out.astype(np.float32), frac
