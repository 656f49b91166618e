"""Hand-made spectral features for tabular level-1 models (what a competitor feeds LightGBM).

All features are computed from the prepared (normalised, gridded) flux, so they work for
every input format, including Tianchi txt files that carry no S/N or redshift:

- window statistics: mean, standard deviation and slope of the flux in equal windows;
- line indices: flux in a band around a feature relative to the mean of two side bands,
  in the observed frame (stars are at z≈0; for galaxies and quasars the windows and the
  PCA carry the redshifted lines), plus the 4000 Å break;
- noise: a robust S/N estimate from the median absolute first difference;
- PCA of the flux, fitted on the fold's training rows only (the fitted PCA is part of the model).
"""
from __future__ import annotations

import numpy as np

# (name, band, blue side band, red side band) in Å, vacuum, observed frame
LINE_INDICES = (
    ("CaII_K", (3925, 3945), (3900, 3920), (3950, 3960)),
    ("CaII_H", (3960, 3980), (3950, 3960), (3990, 4010)),
    ("Hdelta", (4092, 4112), (4060, 4080), (4125, 4145)),
    ("Gband", (4290, 4320), (4260, 4280), (4330, 4350)),
    ("Hgamma", (4330, 4350), (4300, 4320), (4360, 4380)),
    ("Hbeta", (4850, 4875), (4820, 4840), (4885, 4905)),
    ("OIII_5008", (4998, 5018), (4975, 4990), (5030, 5045)),
    ("Mgb", (5160, 5195), (5140, 5155), (5200, 5220)),
    ("NaD", (5885, 5900), (5860, 5875), (5910, 5925)),
    ("TiO_6159", (6160, 6200), (6120, 6150), (6250, 6270)),
    ("Halpha", (6555, 6575), (6520, 6540), (6590, 6610)),
    ("TiO_7054", (7060, 7120), (7010, 7040), (7140, 7170)),
    ("CaII_8542", (8530, 8555), (8500, 8520), (8570, 8590)),
)
D4000 = ((3850, 3950), (4000, 4100))  # Balogh et al. 1999 narrow definition, blue and red


def _band_mean(flux: np.ndarray, wave: np.ndarray, band) -> np.ndarray:
    sel = (wave >= band[0]) & (wave <= band[1])
    if not sel.any():
        return np.full(len(flux), np.nan, np.float32)
    return flux[:, sel].mean(axis=1)


def window_stats(flux: np.ndarray, n_windows: int) -> np.ndarray:
    """(n, 3·n_windows): mean, std and least-squares slope of each equal-width window."""
    n, p = flux.shape
    width = p // n_windows
    w = flux[:, : width * n_windows].reshape(n, n_windows, width)
    x = np.arange(width, dtype=np.float32) - (width - 1) / 2
    slope = (w * x).sum(axis=2) / (x**2).sum()
    return np.concatenate([w.mean(axis=2), w.std(axis=2), slope], axis=1)


def line_indices(flux: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """(n, len(LINE_INDICES) + 1): band / side-band continuum for each feature, and D4000."""
    cols = []
    for _, band, blue, red in LINE_INDICES:
        cont = 0.5 * (_band_mean(flux, wave, blue) + _band_mean(flux, wave, red))
        cols.append(_band_mean(flux, wave, band) / np.where(np.abs(cont) > 1e-6, cont, 1e-6))
    blue, red = (_band_mean(flux, wave, b) for b in D4000)
    cols.append(red / np.where(np.abs(blue) > 1e-6, blue, 1e-6))
    return np.clip(np.stack(cols, axis=1), -50, 50)


def noise_snr(flux: np.ndarray) -> np.ndarray:
    """(n, 2): robust S/N (median |f| / noise) with noise from first differences, and log of it."""
    noise = 1.4826 * np.median(np.abs(np.diff(flux, axis=1)), axis=1) / np.sqrt(2)
    snr = np.median(np.abs(flux), axis=1) / np.maximum(noise, 1e-6)
    return np.stack([snr, np.log10(np.maximum(snr, 1e-3))], axis=1)


def feature_names(n_windows: int, n_pca: int) -> list[str]:
    names = [f"win{i}_{s}" for s in ("mean", "std", "slope") for i in range(n_windows)]
    names += [f"idx_{n}" for n, *_ in LINE_INDICES] + ["D4000", "snr", "log_snr"]
    return names + [f"pca{i}" for i in range(n_pca)]


def handmade_features(flux: np.ndarray, wave: np.ndarray, n_windows: int = 26) -> np.ndarray:
    """Every feature but the PCA, float32 (n, 3·n_windows + len(LINE_INDICES) + 3)."""
    flux = np.asarray(flux, np.float32)
    return np.concatenate(
        [window_stats(flux, n_windows), line_indices(flux, wave), noise_snr(flux)], axis=1
    ).astype(np.float32)
