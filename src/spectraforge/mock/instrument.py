"""The LAMOST low-resolution spectrograph, as the mock survey sees it.

Grid and resolution
    The native LAMOST grid is log-linear, ``10**(3.5682 + 1e-4 i)`` (vacuum Å). A Doppler shift
    is then a translation by ``log10(1+z)/1e-4`` pixels, so class models build spectra on a
    wider *rest* grid with the same spacing (:data:`REST_WAVE`) and :func:`shift_convolve`
    shifts and convolves them with the line-spread function in one pass. LSF: Gaussian with a
    constant FWHM in Å per spectrograph arm (≈3.4 Å blue, ≈4.4 Å red, i.e. R ≈ 1100-2050,
    ≈1500-1800 at 5000-7000 Å, as measured on sky lines in real LAMOST variance spectra),
    varying by ~7 % from fibre to fibre.

Observation (:func:`observe`)
    flux calibration (smooth low-order multiplicative distortion, blue/red arm mismatch near
    5900 Å, occasional red-end droop), telluric O2/H2O absorption and the pipeline's correction
    of it (the real LAMOST and SDSS files in ../shared/real show no A or B band: the median
    depth of the O2 A band in 55 LAMOST stars is 1.00, quartiles 0.996-1.013, so the bands are
    divided out with a residual of a few per cent; the noise of the absorbed photons stays), sky (continuum + Hg/Na
    lamps + [O I] + OH forest) whose Poisson noise enters the variance and whose imperfect
    subtraction leaves residuals, scattered light near the dichroic, throughput that collapses
    below 4000 Å (so the blue end is noisy), read noise, cosmic rays, bad columns, dead
    segments, and Gaussian noise whose variance is exactly the returned ``1/ivar``.

The per-spectrum S/N is set on purpose: the variance shape (source + sky Poisson + read
noise, each divided by the throughput) is scaled so that the median S/N per pixel of the
noiseless flux in the r band (:data:`R_BAND`) equals the target.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy.special import ndtr

from .lines import SKY_GROUPS, SKY_LINES, TELLURIC_BANDS

# --- grids ---------------------------------------------------------------------------------
LOG0 = 3.5682
DLOG = 1e-4
NPIX = 3909
LAMOST_WAVE: np.ndarray = 10.0 ** (LOG0 + DLOG * np.arange(NPIX))
LAMOST_WAVE.setflags(write=False)
LN10 = np.log(10.0)
C_KMS = 299792.458
PIX_KMS = C_KMS * LN10 * DLOG            # 69.05 km/s per pixel

# wide rest-frame grid, same spacing, aligned with the LAMOST grid: rest pixel j has
# log λ = LOG0 + DLOG (j - REST_J0). It covers 2000-9260 Å (galaxies up to z≈0.55, quasar hosts).
REST_J0 = int(np.ceil((LOG0 - np.log10(2000.0)) / DLOG))
REST_N = REST_J0 + int(np.ceil((np.log10(9260.0) - LOG0) / DLOG)) + 1
REST_WAVE: np.ndarray = 10.0 ** (LOG0 + DLOG * (np.arange(REST_N) - REST_J0))
REST_WAVE.setflags(write=False)

R_BAND = (6000.0, 6900.0)                # where meta['snr'] is measured (SDSS r, clear of the arm join)
R_MASK = (LAMOST_WAVE >= R_BAND[0]) & (LAMOST_WAVE <= R_BAND[1])
ARM_JOIN = 5900.0

# andmask bits (LAMOST-like)
BADCCD, BADPROFILE, NOSKY, BRIGHTSKY, BADCENTER, NODATA = 1, 2, 4, 8, 16, 32

INTRINSIC_SIGMA_PIX = 0.7                # minimum intrinsic width of model lines (pixels)


# LSF: constant FWHM in Å within each arm (grating spectrograph), measured from the widths of
# Hg and OH sky lines in the variance spectra of real LAMOST files: ≈3.4 Å in the blue arm
# (R ≈ 1100-1700) and ≈4.4 Å in the red arm (R ≈ 1350-2050); fibre-to-fibre scatter ~7 %.
FWHM_BLUE = 3.4
FWHM_RED = 4.4


def lsf_fwhm(wave, scale=1.0):
    """LSF FWHM in Å at observed wavelength(s), smoothly switching arms at ARM_JOIN."""
    wave = np.asarray(wave, float)
    red = 1.0 / (1.0 + np.exp(-(wave - ARM_JOIN) / 25.0))
    return (FWHM_BLUE + (FWHM_RED - FWHM_BLUE) * red) * scale


def lsf_sigma_pix(wave, scale=1.0):
    """Gaussian σ of the LSF in pixels (1e-4 dex) at observed wavelength(s)."""
    wave = np.asarray(wave, float)
    return lsf_fwhm(wave, scale) / (2.0 * np.sqrt(2.0 * np.log(2.0)) * wave * LN10 * DLOG)


SIG0 = lsf_sigma_pix(LAMOST_WAVE)                  # σ(λ) for a nominal fibre
SIG_A, SIG_B = float(SIG0.min()), float(SIG0.max())
W_LSF = (SIG0 ** 2 - SIG_A ** 2) / (SIG_B ** 2 - SIG_A ** 2)   # blend weight of the broad kernel


def resolution_at(wave, scale=1.0):
    return np.asarray(wave, float) / lsf_fwhm(wave, scale)


def velocity_to_pix(v_kms):
    return np.asarray(v_kms, float) / PIX_KMS


def wave_to_pix(wave):
    """Fractional LAMOST pixel index of wavelength(s) in Å."""
    return (np.log10(np.asarray(wave, float)) - LOG0) / DLOG


# --- shifting and convolving --------------------------------------------------------------
def shift_convolve(rest: np.ndarray, z, lsf_scale=1.0, extra_sigma=0.0, rest_j0: int = REST_J0,
                   intrinsic: float = INTRINSIC_SIGMA_PIX) -> np.ndarray:
    """Redshift rows of ``rest`` onto LAMOST_WAVE and convolve them with the LSF.

    rest: (n, R) spectra on a rest grid aligned like REST_WAVE (pixel j at
    log λ = LOG0 + DLOG (j - rest_j0)); z: (n,) redshifts; lsf_scale: (n,) fibre LSF width
    factors; extra_sigma: (n,) extra Gaussian broadening in pixels (rotation, velocity
    dispersion); ``intrinsic`` (pixels) is already present in the input and is subtracted
    in quadrature. The LSF width varies with observed wavelength (two arms, constant FWHM in
    Å each): the output blends two convolutions, of the narrowest and the broadest LSF, with
    weights that reproduce σ(λ)² exactly. Shifts, including the sub-pixel part, are exact
    (Fourier shift theorem), so no interpolation smoothing is added.
    """
    rest = np.asarray(rest)
    n, R = rest.shape
    z = np.broadcast_to(np.asarray(z, float), (n,))
    sc = np.broadcast_to(np.asarray(lsf_scale, float), (n,))
    ex2 = np.broadcast_to(np.asarray(extra_sigma, float), (n,)) ** 2
    s = rest_j0 - np.log10(1.0 + z) / DLOG      # rest position of observed pixel 0
    sa2 = np.maximum((sc * SIG_A) ** 2 - intrinsic ** 2, 0.04) + ex2
    sb2 = np.maximum((sc * SIG_B) ** 2 - intrinsic ** 2, 0.04) + ex2
    J = int(np.ceil(5.0 * np.sqrt(sb2.max()))) + 2
    if (s - J).min() < 0 or (s + J + NPIX).max() > R:
        raise ValueError("rest grid too short for the requested shifts")
    Rf = sp_fft.next_fast_len(R + J, real=True)
    F = sp_fft.rfft(rest.astype(np.float32, copy=False), n=Rf, axis=1)
    f64 = sp_fft.rfftfreq(Rf)
    f2 = ((2.0 * np.pi ** 2) * f64 ** 2).astype(np.float32)
    # the whole shift (integer and fraction) as a phase ramp: out[j] = rest[j + s]
    theta = ((f64[None, :] * s[:, None]) % 1.0).astype(np.float32)
    theta *= np.float32(2.0 * np.pi)
    Fv = F.view(np.float32).reshape(n, -1, 2)
    c, si = np.cos(theta), np.sin(theta)
    re = Fv[..., 0] * c - Fv[..., 1] * si
    im = Fv[..., 0] * si + Fv[..., 1] * c
    Fv[..., 0] = re
    Fv[..., 1] = im
    out = None
    for k, sig2 in enumerate((sa2, sb2)):
        g = np.exp(-f2[None, :] * sig2[:, None].astype(np.float32))
        G = np.empty_like(F)
        Gv = G.view(np.float32).reshape(n, -1, 2)
        Gv[..., 0] = re * g
        Gv[..., 1] = im * g
        o = sp_fft.irfft(G, n=Rf, axis=1)[:, :NPIX]
        if out is None:
            out = np.array(o, dtype=np.float32)
        else:
            out += W_LSF.astype(np.float32)[None, :] * (o - out)
    return out


def convolve_rows(flux: np.ndarray, sigma_pix) -> np.ndarray:
    """Gaussian convolution of each row (edges: nearest value), σ per row in pixels."""
    n, P = flux.shape
    sig = np.broadcast_to(np.maximum(np.asarray(sigma_pix, float), 0.2), (n,))
    J = int(np.ceil(5.0 * sig.max())) + 2
    padded = np.concatenate([np.repeat(flux[:, :1], J, 1), flux, np.repeat(flux[:, -1:], J, 1)], axis=1)
    Rf = sp_fft.next_fast_len(padded.shape[1], real=True)
    F = sp_fft.rfft(padded, n=Rf, axis=1)
    f = sp_fft.rfftfreq(Rf)
    F *= np.exp(-2.0 * np.pi ** 2 * f[None, :] ** 2 * sig[:, None] ** 2)
    return sp_fft.irfft(F, n=Rf, axis=1)[:, J:J + P]


_PADE = 800   # padding (pixels) of the scratch buffer used by add_gaussians


def add_gaussians(flux: np.ndarray, center_pix, sigma_pix, area) -> None:
    """Add Gaussian lines in place: ``area`` is the integral over pixels (flux × pixels).

    center_pix, sigma_pix, area: (n,) or (n, L) per row and line. Profiles are integrated over
    each pixel (error-function differences), evaluated only within ±5σ of each centre.
    """
    n, P = flux.shape
    c = np.asarray(center_pix, float).reshape(n, -1)
    s = np.broadcast_to(np.asarray(sigma_pix, float).reshape(n, -1), c.shape)
    a = np.broadcast_to(np.asarray(area, float).reshape(n, -1), c.shape)
    buf = np.zeros((n, P + 2 * _PADE))
    rows = np.arange(n)[:, None]
    for li in range(c.shape[1]):
        cc, ss, aa = c[:, li], np.maximum(s[:, li], 0.3), a[:, li]
        live = (aa != 0) & (cc > -5 * ss) & (cc < P - 1 + 5 * ss) & np.isfinite(cc)
        if not live.any():
            continue
        W = int(min(np.ceil(5.0 * ss[live].max()) + 1, _PADE - 1))
        off = np.arange(-W, W + 1)
        cen = np.clip(np.round(cc), -_PADE + W, P + _PADE - 1 - W).astype(np.int64)
        idx = cen[:, None] + off[None, :]                       # pixel indices
        x = idx - cc[:, None]
        prof = ndtr((x + 0.5) / ss[:, None]) - ndtr((x - 0.5) / ss[:, None])
        prof *= np.where(live, aa, 0.0)[:, None]
        buf[rows, idx + _PADE] += prof
    flux += buf[:, _PADE:_PADE + P]


# --- instrument ingredients ---------------------------------------------------------------
_LW = LAMOST_WAVE
_X = (np.log10(_LW) - np.log10(_LW[0])) / (np.log10(_LW[-1]) - np.log10(_LW[0])) * 2.0 - 1.0   # [-1, 1]

# Relative throughput (r band = 1), from the blue collapse of LAMOST error spectra
_T_KNOTS = np.array([
    (3690, 0.010), (3750, 0.018), (3800, 0.027), (3850, 0.040), (3900, 0.055), (4000, 0.095),
    (4100, 0.13), (4200, 0.17), (4400, 0.25), (4600, 0.32), (5000, 0.40), (5400, 0.43),
    (5550, 0.40), (5650, 0.33), (5720, 0.24), (5800, 0.27), (5880, 0.36), (5950, 0.50),
    (6050, 0.70), (6500, 1.00), (7000, 1.30), (7500, 1.38), (8000, 1.35), (8500, 1.15),
    (8800, 0.85), (9000, 0.65), (9110, 0.50)])
THROUGHPUT = np.exp(np.interp(_LW, _T_KNOTS[:, 0], np.log(_T_KNOTS[:, 1])))
_BLUE = _LW < ARM_JOIN


def _sky_line_templates():
    """(SKY_GROUPS, P) sky line spectra at LAMOST resolution, in sky-continuum units at 6500 Å,
    and their pixel derivatives (for wavelength-misregistration residuals)."""
    lines = np.zeros((SKY_GROUPS, 1, NPIX))
    for g in range(SKY_GROUPS):
        sel = [(w, f) for w, f, gg in SKY_LINES if gg == g]
        if not sel:
            continue
        w = np.array([s[0] for s in sel])
        f = np.array([s[1] for s in sel])
        cpix = wave_to_pix(w)
        area = f / (w * LN10 * DLOG)     # Å-flux -> pixel-flux
        tmp = np.zeros((1, NPIX))
        add_gaussians(tmp, cpix[None, :], lsf_sigma_pix(w)[None, :], area[None, :])
        lines[g] = tmp
    # weak OH quasi-continuum forest (unresolved faint lines), deterministic
    rs = np.random.default_rng(1729)
    nf = 400
    wf = rs.uniform(6200.0, 9200.0, nf)
    ff = rs.lognormal(0.0, 0.8, nf) * 0.6 * ((wf - 6000.0) / 3000.0).clip(0.05, None)
    tmp = np.zeros((1, NPIX))
    add_gaussians(tmp, wave_to_pix(wf)[None, :], lsf_sigma_pix(wf)[None, :], (ff / (wf * LN10 * DLOG))[None, :])
    lines[4] += tmp
    lines = lines[:, 0, :]
    deriv = np.gradient(lines, axis=1)
    return lines, deriv


SKY_LINE_SPEC, SKY_LINE_DERIV = _sky_line_templates()
SKY_CONT = (_LW / 6500.0) ** 0.6 * (1.0 + 0.25 * np.exp(-0.5 * ((_LW - 5900.0) / 400.0) ** 2))
SKY_TOTAL = SKY_CONT + SKY_LINE_SPEC.sum(axis=0)


def _telluric_tau():
    o2 = np.zeros(NPIX)
    h2o = np.zeros(NPIX)
    rs = np.random.default_rng(7)
    for lo, hi, tau, kind in TELLURIC_BANDS:
        m = (_LW >= lo - 20) & (_LW <= hi + 20)
        x = (_LW[m] - lo) / (hi - lo)
        if kind == "o2":
            # sharp head on the blue side, decaying to the red, with rotational structure
            shape = np.where(x >= 0, np.exp(-3.0 * np.clip(x, 0, None)), np.exp(x * (hi - lo) / 1.5))
            shape *= 1.0 + 0.35 * np.cos(2 * np.pi * (_LW[m] - lo) / 7.5)
            o2[m] += tau * np.clip(shape, 0, None)
        else:
            shape = np.exp(-0.5 * ((x - 0.5) / 0.3) ** 2) * (1.0 + 0.6 * rs.standard_normal(m.sum()))
            h2o[m] += tau * np.clip(shape, 0, None)
    both = convolve_rows(np.stack([o2, h2o]), np.full(2, float(np.median(SIG0))))
    return both[0], both[1]


TELL_O2, TELL_H2O = _telluric_tau()


@dataclass
class ObsPlan:
    """Per-spectrum instrument settings; defaults are drawn by :func:`draw_plan`, and the
    unknown-class model overrides some of them (strong sky residuals, dead arms, …)."""
    snr: np.ndarray                      # target median S/N per pixel in R_BAND
    flux_level: np.ndarray               # output median r-band flux (1e-17 erg/s/cm²/Å units)
    sky_ratio: np.ndarray                # sky continuum / source in the r band
    rn_frac: np.ndarray                  # read-noise variance / sky variance in the r band
    blue_gamma: np.ndarray               # exponent on the blue-arm throughput
    calib: np.ndarray                    # (n, 6) Legendre coefficients of ln(calibration)
    arm_ratio: np.ndarray                # red/blue arm scale mismatch
    join: np.ndarray                     # wavelength of the arm splice
    red_droop: np.ndarray                # 0..1 depth of a red-end flux-calibration droop
    airmass: np.ndarray
    pwv: np.ndarray                      # water-vapour scale
    tell_resid: np.ndarray               # fraction of the telluric optical depth the correction leaves
    sky_resid: np.ndarray                # (n, SKY_GROUPS) fractional sky-line residual
    sky_shift: np.ndarray                # (n,) misregistration (pixels) of the sky model
    sky_var_frac: np.ndarray             # (n,) sky-model error (fraction of the sky-line flux) in the variance
    sky_cont_resid: np.ndarray           # fraction of sky continuum left (+) / oversubtracted (-)
    scatter_bump: np.ndarray             # additive scattered-light bump near the dichroic (sky units)
    n_cosmic: np.ndarray
    p_badcol: np.ndarray                 # number of bad-column groups
    gap_mask: np.ndarray                 # bool: arm-join region masked (flux 0)
    dead_segments: np.ndarray            # number of extra dead segments (flux 0, masked)
    dead_arm: np.ndarray                 # 0 none, 1 blue dead, 2 red dead (flux ~ 0, unmasked noise)
    dead_arm_masked: np.ndarray          # bool: the dead arm is flagged NODATA
    mask_frac: np.ndarray                # fraction of pixels in big masked chunks (partial coverage)
    additive: np.ndarray                 # (n,) constant additive offset (sky units; negative = oversubtraction)
    cal_fail: np.ndarray                 # (n,) strength of a flux-calibration failure (0 = none)


def draw_plan(rng: np.random.Generator, snr: np.ndarray) -> ObsPlan:
    """Typical LAMOST observing conditions for spectra with target S/N ``snr``."""
    n = len(snr)
    snr = np.asarray(snr, float)
    # output flux scale ~ real LAMOST files: median r flux ≈ 1.07 snr^1.4 with 0.35 dex scatter
    flux_level = 1.07 * np.maximum(snr, 0.3) ** 1.4 * 10 ** rng.normal(0.0, 0.35, n)
    # source brightness relative to a 3.3" fibre of Xinglong sky: sky/source ≈ (snr/6)^-1.3
    sky_ratio = np.minimum((np.maximum(snr, 0.1) / 6.0) ** -1.3 * 10 ** rng.normal(0.0, 0.3, n), 300.0)
    rn_frac = 10 ** rng.normal(-0.7, 0.3, n)
    blue_gamma = np.exp(rng.normal(0.05, 0.28, n))
    # relative flux calibration: a tilt of typically ±15 % across the range plus low-order wiggles
    # (the LAMOST response is calibrated with a few standard stars per spectrograph)
    calib = rng.normal(0.0, 1.0, (n, 6)) * np.array([0.0, 0.15, 0.06, 0.03, 0.02, 0.012])
    # blue/red arm mismatch: a few per cent usually; for faint targets the (scattered-light / sky)
    # level of one arm can be off by tens of per cent or a factor of 2-3
    faint = snr < 6
    big = rng.random(n) < np.where(faint, 0.18, 0.05)
    arm_ratio = np.exp(rng.normal(0.0, 0.03, n) + big * rng.normal(0.0, np.where(faint, 0.45, 0.15), n))
    join = rng.uniform(5780.0, 5920.0, n)
    # the red end above ~8700 Å falls in most real LAMOST files (median of the 55 real stars: −15 %
    # at 9080 Å against the mock's continuum), by a few to tens of per cent
    red_droop = np.where(rng.random(n) < 0.6, rng.uniform(0.05, 0.5, n), 0.0)
    airmass = 1.0 + rng.gamma(2.0, 0.12, n)
    pwv = np.exp(rng.normal(0.0, 0.5, n))
    # telluric correction: a few per cent of the optical depth left (or over-corrected), worse in
    # one spectrum in twenty (a standard star observed at another airmass)
    tell_resid = rng.normal(0.0, 0.04, n) + (rng.random(n) < 0.05) * rng.normal(0.0, 0.25, n)
    # sky-subtraction residuals: a few per cent typically, sometimes tens of per cent
    sky_resid = rng.normal(0.0, 1.0, (n, SKY_GROUPS)) * 10 ** rng.normal(-1.6, 0.35, (n, 1))
    bad_sub = rng.random(n) < 0.08
    sky_resid[bad_sub] *= rng.uniform(2.0, 5.0, (bad_sub.sum(), 1))
    sky_resid[:, 0] += np.abs(rng.normal(0.0, 0.05, n)) * (rng.random(n) < 0.4)   # 5577 under-subtracted
    sky_shift = rng.normal(0.0, 0.08, n)
    # the pipeline's sky-model error, added to the variance in proportion to the sky lines
    sky_var_frac = 10 ** rng.normal(-1.3, 0.3, n)
    sky_cont_resid = rng.normal(0.0, 0.02, n)
    scatter_bump = np.where(rng.random(n) < 0.35, rng.uniform(0.02, 0.15, n), 0.0)
    n_cosmic = rng.poisson(0.4, n)
    p_badcol = rng.poisson(1.2, n)
    gap_mask = rng.random(n) < 0.06
    dead_segments = rng.poisson(0.03, n)
    z = np.zeros(n)
    return ObsPlan(snr=snr, flux_level=flux_level, sky_ratio=sky_ratio, rn_frac=rn_frac,
                   blue_gamma=blue_gamma, calib=calib, arm_ratio=arm_ratio, join=join,
                   red_droop=red_droop, airmass=airmass, pwv=pwv,
                   tell_resid=tell_resid, sky_resid=sky_resid,
                   sky_shift=sky_shift, sky_var_frac=sky_var_frac, sky_cont_resid=sky_cont_resid,
                   scatter_bump=scatter_bump,
                   n_cosmic=n_cosmic, p_badcol=p_badcol, gap_mask=gap_mask,
                   dead_segments=dead_segments, dead_arm=np.zeros(n, np.int8),
                   dead_arm_masked=np.zeros(n, bool), mask_frac=z.copy(), additive=z.copy(),
                   cal_fail=z.copy())


def _legendre_basis(deg: int = 5) -> np.ndarray:
    return np.polynomial.legendre.legvander(_X, deg).T      # (deg+1, P)


_LEG = _legendre_basis(5).astype(np.float32)
_J0, _J1 = int(wave_to_pix(5650.0)), int(wave_to_pix(6100.0))     # where the arm splice can be
_JR = int(wave_to_pix(8700.0))                                     # where a red droop can start
_LNT = np.log(THROUGHPUT).astype(np.float32)
_NB = int(_BLUE.sum())
_INVT_RED = np.exp(-_LNT[_NB:])


def calibration_curve(plan: ObsPlan, rng: np.random.Generator) -> np.ndarray:
    """ln of the multiplicative flux-calibration distortion (n, P) float32: smooth wiggles,
    blue/red arm mismatch at the splice, red-end droop, and (unknowns) outright failures."""
    lnc = plan.calib.astype(np.float32) @ _LEG
    # arm splice: red arm scaled by arm_ratio, blended over ~15 Å around the join
    la = np.log(plan.arm_ratio).astype(np.float32)
    blend = 1.0 / (1.0 + np.exp(-(_LW[None, _J0:_J1] - plan.join[:, None]) / 6.0))
    lnc[:, _J0:_J1] += la[:, None] * blend.astype(np.float32)
    lnc[:, _J1:] += la[:, None]
    d = np.nonzero(plan.red_droop > 0)[0]
    if len(d):
        sig = 1.0 / (1.0 + np.exp(-(_LW[None, _JR:] - 9040.0) / 20.0))
        lnc[d, _JR:] += np.log1p(-plan.red_droop[d, None] * 0.999 * sig).astype(np.float32)
    k = np.nonzero(plan.cal_fail > 0)[0]
    if len(k):
        a = plan.cal_fail[k]
        tilt = rng.normal(0.0, 0.8, len(k))
        hump_c = rng.uniform(4200.0, 8500.0, len(k))
        hump_w = rng.uniform(300.0, 1200.0, len(k))
        hump_a = rng.normal(0.0, 1.0, len(k))
        wig = rng.normal(0, 0.4, (len(k), 1))
        fail = a[:, None] * (tilt[:, None] * _X[None, :]
                             + hump_a[:, None] * np.exp(-0.5 * ((_LW[None, :] - hump_c[:, None]) / hump_w[:, None]) ** 2)
                             + wig * _LEG[3][None, :])
        lnc[k] += np.clip(fail, -3.0, 3.0).astype(np.float32)       # at most a factor ~20 either way
    return lnc


_TELL_COLS = np.nonzero((TELL_O2 + TELL_H2O) > 1e-4)[0]
_TELL_O2 = TELL_O2[_TELL_COLS].astype(np.float32)
_TELL_H2O = TELL_H2O[_TELL_COLS].astype(np.float32)


def telluric_ln(plan: ObsPlan) -> np.ndarray:
    """ln transmission of the atmosphere on the telluric columns (n, len(_TELL_COLS))."""
    return -(plan.airmass[:, None].astype(np.float32) * _TELL_O2[None, :]
             + (plan.airmass * plan.pwv)[:, None].astype(np.float32) * _TELL_H2O[None, :])


@dataclass
class Observed:
    flux: np.ndarray
    ivar: np.ndarray
    andmask: np.ndarray
    noiseless: np.ndarray
    snr: np.ndarray


_SKY_TOTAL32 = SKY_TOTAL.astype(np.float32)
_SKY_CONT32 = SKY_CONT.astype(np.float32)
_SKY_LINES32 = SKY_LINE_SPEC.astype(np.float32)
_SKY_DERIV32 = SKY_LINE_DERIV.sum(0).astype(np.float32)
_SKY_LINES_TOT32 = SKY_LINE_SPEC.sum(0).astype(np.float32)
_BUMP32 = (0.3 * np.exp(-0.5 * ((_LW - 5790.0) / 70.0) ** 2) / THROUGHPUT).astype(np.float32)
_B4300 = int(wave_to_pix(4300.0))


def _masked_row_median(values: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Median of each row over its ``good`` entries (0 where a row has none), vectorised."""
    v = np.where(good, values, np.inf)
    v.sort(axis=1)
    k = good.sum(axis=1)
    lo = np.clip((k - 1) // 2, 0, None)
    hi = np.clip(k // 2, 0, None)
    r = np.arange(len(v))
    med = 0.5 * (v[r, lo] + v[r, np.minimum(hi, v.shape[1] - 1)])
    return np.where(k > 0, med, 0.0)


def observe(intrinsic: np.ndarray, plan: ObsPlan, rng: np.random.Generator, out=None) -> Observed:
    """Turn intrinsic spectra at LAMOST resolution (any normalisation) into observed ones.

    The intrinsic spectra are first normalised to unit median in R_BAND (rows with a
    non-positive median are left as they are, e.g. empty fibres). Everything is float32.
    ``out``: optional (flux, ivar, andmask) float32/float32/int32 arrays to write into.
    """
    n = intrinsic.shape[0]
    f32 = np.float32
    F = np.array(intrinsic, dtype=f32, copy=True)
    med = np.median(F[:, R_MASK], axis=1)
    ok = med > 0
    F[ok] /= med[ok, None]

    # atmosphere and flux calibration act multiplicatively on the source
    # (the telluric bands are divided out by the pipeline up to plan.tell_resid of their depth)
    lnm = calibration_curve(plan, rng)
    ln_tell = telluric_ln(plan)
    lnm[:, _TELL_COLS] += plan.tell_resid.astype(f32)[:, None] * ln_tell
    F *= np.exp(lnm)
    del lnm

    # throughput per spectrum: the blue arm's collapse varies from fibre to fibre
    invT = np.empty((n, NPIX), f32)
    invT[:, :_NB] = np.exp(-plan.blue_gamma[:, None].astype(f32) * _LNT[None, :_NB])
    invT[:, _NB:] = _INVT_RED[None, :]
    # the photons the atmosphere absorbed are gone, so the corrected bands are noisier
    invT[:, _TELL_COLS] *= np.exp(-ln_tell)
    del ln_tell
    np.minimum(invT, f32(1e4), out=invT)

    sr = plan.sky_ratio.astype(f32)[:, None]
    # systematic (noiseless) additive terms: sky residuals, scattered light, offsets
    resid = plan.sky_resid.astype(f32) @ _SKY_LINES32
    resid += plan.sky_shift.astype(f32)[:, None] * _SKY_DERIV32[None, :]
    resid += (plan.sky_cont_resid + plan.additive).astype(f32)[:, None] * _SKY_CONT32[None, :]
    b = np.nonzero(plan.scatter_bump > 0)[0]
    if len(b):
        resid[b] += plan.scatter_bump[b].astype(f32)[:, None] * _BUMP32[None, :]
    # blue-end scattered light / bias residual, amplified by the throughput collapse
    resid[:, :_B4300] += rng.normal(0.0, 0.002, n).astype(f32)[:, None] * invT[:, :_B4300]
    resid *= sr

    # dead arm: the source (and sky) is gone from one arm; only noise and residuals stay
    alive = None
    dead = np.nonzero(plan.dead_arm > 0)[0]
    F_src = F
    if len(dead):
        F_src = F.copy()
        armw = 1.0 / (1.0 + np.exp(-(_LW[None, :] - plan.join[dead, None]) / 8.0))   # 0 blue, 1 red
        alive = np.where((plan.dead_arm[dead] == 1)[:, None], armw, 1.0 - armw).astype(f32)
        F_src[dead] *= alive

    noiseless = F_src + resid
    del resid
    # cosmic rays (not in the variance: they are artefacts on top of the signal)
    for r in np.nonzero(plan.n_cosmic > 0)[0]:
        k = int(plan.n_cosmic[r])
        pos = rng.integers(0, NPIX, k)
        amp = rng.uniform(0.5, 6.0, k) * (1.0 + plan.sky_ratio[r]) * rng.uniform(0.5, 1.5)
        noiseless[r, pos] += amp
        side = np.clip(pos + rng.choice([-1, 1], k), 0, NPIX - 1)
        noiseless[r, side] += amp * rng.uniform(0.0, 0.5, k)

    # variance shape (source units): source and sky Poisson / T, read noise / T^2
    var = np.maximum(F_src, 0.0)
    skyc = sr * _SKY_TOTAL32[None, :]
    if alive is not None:
        skyc = np.broadcast_to(skyc, (n, NPIX)).copy()
        skyc[dead] *= 0.15 + 0.85 * alive
    var += skyc
    del skyc
    var *= invT
    invT *= invT
    invT *= (plan.rn_frac * plan.sky_ratio).astype(f32)[:, None]
    var += invT
    del invT
    # scale to hit the target S/N: median over R_BAND of source / sigma
    # (the target S/N refers to the source as it would be seen without fibre failures)
    vr = var[:, R_MASK]
    sn_unit = np.median(np.abs(F[:, R_MASK]) / np.sqrt(vr), axis=1)
    nz = sn_unit <= 0
    if nz.any():
        sn_unit[nz] = np.median(1.0 / np.sqrt(vr[nz]), axis=1)
    target = np.maximum(plan.snr, 1e-3)
    kk = (sn_unit / target).astype(f32)   # sigma = kk * sqrt(var)
    # sky-subtraction error of the pipeline: systematic, in proportion to the sky-line flux;
    # the statistical part is rescaled (two fixed-point steps) so the total still gives the target S/N
    sys2 = ((plan.sky_var_frac * plan.sky_ratio).astype(f32)[:, None] * _SKY_LINES_TOT32[None, :]) ** 2
    fr = np.abs(F[:, R_MASK])
    for _ in range(2):
        got = np.median(fr / np.sqrt((kk * kk)[:, None] * vr + sys2[:, R_MASK]), axis=1)
        kk = (kk * np.clip(got / target, 0.2, 1.0)).astype(f32)
    # output flux units
    scale = plan.flux_level.astype(f32)
    var *= (kk * kk)[:, None]
    var += sys2
    del sys2
    sigma = np.sqrt(var)
    del var
    sigma *= scale[:, None]
    noiseless *= scale[:, None]
    if out is None:
        flux = np.empty((n, NPIX), f32)
        ivar = np.empty((n, NPIX), f32)
        andmask = np.zeros((n, NPIX), dtype=np.int32)
    else:
        flux, ivar, andmask = out
        andmask[...] = 0
    rng.standard_normal(out=flux, dtype=f32)
    flux *= sigma
    flux += noiseless
    np.square(sigma, out=ivar)
    np.reciprocal(ivar, out=ivar)
    del sigma

    _apply_masks(flux, ivar, andmask, noiseless, plan, rng)

    ivr = ivar[:, R_MASK]
    snr_meas = _masked_row_median(noiseless[:, R_MASK] * np.sqrt(ivr), ivr > 0).astype(np.float64)
    return Observed(flux=flux, ivar=ivar, andmask=andmask, noiseless=noiseless, snr=snr_meas)


def _apply_masks(flux, ivar, andmask, noiseless, plan: ObsPlan, rng) -> None:
    n = flux.shape[0]

    def kill(r, lo, hi, bit, zero=True):
        lo, hi = max(0, int(lo)), min(NPIX, int(hi))
        if hi <= lo:
            return
        andmask[r, lo:hi] |= bit
        ivar[r, lo:hi] = 0.0
        if zero:
            flux[r, lo:hi] = 0.0
            noiseless[r, lo:hi] = 0.0

    # bad CCD columns / cosmic-ray-cleaned groups: a few groups of ~5-12 pixels
    for r in np.nonzero(plan.p_badcol > 0)[0]:
        for _ in range(int(plan.p_badcol[r])):
            c = rng.integers(0, NPIX)
            kill(r, c, c + rng.integers(4, 13), BADCCD, zero=rng.random() < 0.3)
    # pipeline-dependent masks seen in real files: the O2 A band, the blue end, the red end,
    # Ca II H&K cores of bright stars
    pa = wave_to_pix(np.array([7580.0, 7680.0])).astype(int)
    for r in np.nonzero(rng.random(n) < 0.10)[0]:
        kill(r, pa[0], pa[1], BADPROFILE, zero=rng.random() < 0.3)
    for r in np.nonzero(rng.random(n) < 0.12)[0]:
        kill(r, 0, int(wave_to_pix(rng.uniform(3720.0, 4010.0))), NOSKY, zero=rng.random() < 0.3)
    for r in np.nonzero(rng.random(n) < 0.2)[0]:
        kill(r, int(wave_to_pix(rng.uniform(8990.0, 9095.0))), NPIX, NODATA, zero=rng.random() < 0.5)
    hk = wave_to_pix(np.array([3929.0, 3940.0, 3964.0, 3974.0])).astype(int)
    for r in np.nonzero((plan.snr > 40) & (rng.random(n) < 0.3))[0]:
        kill(r, hk[0], hk[1], BADPROFILE, zero=False)
        kill(r, hk[2], hk[3], BADPROFILE, zero=False)
    # saturated 5577 in bright-sky spectra
    bright = np.nonzero((plan.sky_ratio > 3.0) & (rng.random(n) < 0.3))[0]
    c5577 = int(round(float(wave_to_pix(5578.9))))
    for r in bright:
        kill(r, c5577 - 2, c5577 + 3, BRIGHTSKY, zero=False)
    for r in np.nonzero(plan.gap_mask)[0]:
        lo = int(wave_to_pix(rng.uniform(5500.0, 5720.0)))
        kill(r, lo, int(wave_to_pix(plan.join[r])) + rng.integers(5, 60), NODATA, zero=rng.random() < 0.7)
    for r in np.nonzero(plan.dead_segments > 0)[0]:
        for _ in range(int(plan.dead_segments[r])):
            length = rng.integers(100, 700)
            lo = rng.integers(0, NPIX - length)
            kill(r, lo, lo + length, NODATA)
    for r in np.nonzero(plan.mask_frac > 0)[0]:
        todo = int(plan.mask_frac[r] * NPIX)
        while todo > 20:
            length = int(min(todo, rng.integers(150, 1500)))
            lo = rng.integers(0, NPIX - length)
            kill(r, lo, lo + length, NODATA | BADPROFILE)
            todo -= length
    for r in np.nonzero(plan.dead_arm_masked & (plan.dead_arm > 0))[0]:
        jp = int(wave_to_pix(plan.join[r]))
        if plan.dead_arm[r] == 1:
            kill(r, 0, jp, NODATA)
        else:
            kill(r, jp, NPIX, NODATA)
    # the last few pixels are often undefined in real files
    short = np.nonzero(rng.random(n) < 0.15)[0]
    for r in short:
        kill(r, NPIX - rng.integers(1, 25), NPIX, NODATA)
