"""The survey's ``unknown`` class: spectra the pipeline could not classify.

A mixture, as in LAMOST (where 'Unknown' is mostly low-S/N data and instrumental failures):

lowsnr     a star, galaxy or quasar observed at S/N ≈ 0.3-5 (the largest part): below S/N ≈ 5
           the survey's class and 'Unknown' overlap, as in LAMOST, whose 'Unknown' spectra are
           mostly ordinary objects too faint for the pipeline's template fit (Luo et al. 2015,
           RAA 15, 1095)
badfibre   (almost) no source light: sky residuals, scattered light and noise
deadarm    one spectrograph arm dead (flux ≈ 0, sometimes flagged), the other normal
partial    large masked chunks (partial coverage)
skyresid   sky subtraction failed: strong [O I], Na D, OH residuals, P-Cygni shapes,
           over/under-subtracted sky continuum
cosmic     many uncleaned cosmic-ray hits
calfail    flux-calibration failure: steep tilts, humps, scattered light
flatneg    flat featureless or negative flux (sky over-subtraction)

Every entry has a real source spectrum underneath (drawn from the other classes), so the
unknown class overlaps the others the way it does in the survey. ``z`` is None (undefined);
the source's label and redshift are kept as ``source_label`` / ``source_z``.
"""
from __future__ import annotations

import numpy as np

from .instrument import NPIX, SKY_GROUPS, ObsPlan

MIX = {"lowsnr": 0.55, "badfibre": 0.06, "deadarm": 0.05, "partial": 0.05, "skyresid": 0.10,
       "cosmic": 0.04, "calfail": 0.09, "flatneg": 0.06}
SOURCE_MIX = {"star": 0.72, "galaxy": 0.18, "qso": 0.10}


def draw_kinds(n: int, rng: np.random.Generator, mix: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(failure kind, source label) for n unknown spectra."""
    mix = mix or MIX
    names = list(mix)
    p = np.array([mix[k] for k in names], float)
    kinds = np.array(names)[rng.choice(len(names), n, p=p / p.sum())]
    sn = list(SOURCE_MIX)
    ps = np.array([SOURCE_MIX[k] for k in sn])
    src = np.array(sn)[rng.choice(len(sn), n, p=ps / ps.sum())]
    return kinds, src


def target_snr(kinds: np.ndarray, rng: np.random.Generator, snr_lo: float = 1.0) -> np.ndarray:
    """Target r-band S/N of the underlying source, per failure kind."""
    n = len(kinds)
    lo = max(snr_lo, 0.3)
    logu = lambda a, b: np.exp(rng.uniform(np.log(a), np.log(b), n))     # noqa: E731
    snr = np.select(
        [kinds == "lowsnr", kinds == "badfibre", kinds == "deadarm", kinds == "partial", kinds == "skyresid",
         kinds == "cosmic", kinds == "calfail", kinds == "flatneg"],
        [logu(0.3 * lo, 5.0 * lo), logu(0.05, 0.6), logu(2.0, 20.0), logu(2.0, 20.0), logu(1.5 * lo, 8.0),
         logu(2.0, 15.0), logu(1.5, 15.0), logu(0.8 * lo, 5.0)], 1.0)
    return snr


def modify(intrinsic: np.ndarray, rows: np.ndarray, kinds: np.ndarray, plan: ObsPlan,
           rng: np.random.Generator) -> None:
    """Apply each unknown's failure to its intrinsic spectrum and observing plan (in place).

    rows: positions of the unknown spectra in the chunk; kinds: their failure kinds.
    """
    for r, k in zip(rows, kinds):
        if k == "badfibre":
            # (the low target S/N already puts the source far below the sky)
            plan.sky_resid[r] = rng.normal(0.0, 1.0, SKY_GROUPS) * rng.uniform(0.02, 0.12)
            plan.sky_cont_resid[r] = rng.normal(0.0, 0.01)
            plan.scatter_bump[r] = rng.uniform(0.0, 0.3)
            if rng.random() < 0.3:
                intrinsic[r] = 1.0                     # whatever light there is, featureless
        elif k == "deadarm":
            plan.dead_arm[r] = 1 if rng.random() < 0.5 else 2
            plan.dead_arm_masked[r] = rng.random() < 0.3
        elif k == "partial":
            plan.mask_frac[r] = rng.uniform(0.15, 0.6)
        elif k == "skyresid":
            plan.sky_resid[r] = rng.normal(0.0, 1.0, SKY_GROUPS) * rng.uniform(0.1, 0.5)
            plan.sky_resid[r, 4] = abs(plan.sky_resid[r, 4]) * rng.choice([-1.0, 1.0])
            plan.sky_shift[r] = rng.normal(0.0, 0.6)
            plan.sky_cont_resid[r] = rng.normal(0.0, 0.25)
        elif k == "cosmic":
            plan.n_cosmic[r] = rng.integers(12, 80)
        elif k == "calfail":
            plan.cal_fail[r] = rng.uniform(0.4, 1.6)
            plan.scatter_bump[r] = rng.uniform(0.0, 0.6)
            plan.red_droop[r] = rng.uniform(0.0, 0.9) if rng.random() < 0.4 else 0.0
        elif k == "flatneg":
            if rng.random() < 0.5:
                intrinsic[r] = 1.0 + 0.05 * np.sin(np.linspace(0, rng.uniform(1, 4) * np.pi, NPIX))
            plan.additive[r] = -rng.uniform(0.05, 0.4)
            plan.sky_ratio[r] *= rng.uniform(1.0, 3.0)
        # 'lowsnr' only lowers the S/N (target_snr)
