"""Quasar spectra, z ≈ 0.1-4 (mostly 0.5-2.5).

- Continuum: power law f_ν ∝ ν^α, α ~ N(−0.5, 0.3) (f_λ ∝ λ^(−2−α)), a Balmer pseudo-continuum
  below 3646 Å, Fe II pseudo-continuum bumps (UV 2200-3100 Å, optical 4400-5400 Å), and a host
  galaxy (old + young stellar populations) that matters at low z.
- Broad emission lines (Lyβ/O VI, Lyα, N V, Si IV+O IV], C IV, He II, C III], Mg II, Hδ, Hγ, Hβ,
  He I, Hα) with FWHM 2000-8000 km/s, profiles as two Gaussians (core + broad wings), rest
  equivalent widths scattered log-normally around the SDSS composite values with a Baldwin
  effect (EW ∝ L^−0.2 for high-ionisation lines), high-ionisation lines blueshifted; narrow
  [O III], [O II], [Ne V], [Ne III], [N II] with their own widths.
- Intergalactic absorption: Lyα forest blueward of Lyα (mean transmission exp(−τ_eff),
  τ_eff = 0.0018 (1+z)^3.92, lognormal fluctuations), Lyβ forest, occasional damped Lyα systems
  and Lyman-limit systems; broad absorption line (BAL) troughs in some quasars.

Populations (the distributions and their sources)
- Redshift: a spectroscopic survey's shape, the broad peak at z ≈ 1-2 of SDSS DR12Q/DR16Q
  (Pâris et al. 2017, A&A 597, A79; Lyke et al. 2020, ApJS 250, 8) with the larger share of
  low-redshift quasars of LAMOST's brighter limit (i ≲ 20; Ai et al. 2016, AJ 151, 24):
  20 % at z = 0.05-0.7, 66 % log-normal around z = 1.4, 14 % at z = 2.2-4.
- Brightness: i magnitudes from the steep bright end of the quasar number counts,
  dN/dm ∝ 10^(0.3 m) on 16.5-19.8 (Richards et al. 2006, AJ 131, 2766); with the redshift
  this gives L5100 (flat ΛCDM, H0 = 70, Ωm = 0.3), which sets the Baldwin effect and the host.
- Host galaxy light at 5100 Å rest: L_host/L_AGN = 0.8052 − 1.5502x + 0.9121x² − 0.1577x³,
  x = log(L5100,total / 10^44 erg/s), for x < 1.053 and none above (Shen et al. 2011,
  ApJS 194, 45, eq. 1, from the eigenspectrum decompositions of Vanden Berk et al. 2006),
  with 0.2 dex scatter: a z ≈ 0.1 quasar is about half galaxy (a galaxy spectrum plus broad
  Hα/Hβ), a z ≈ 0.5 one about a fifth. The host is an old-dominated stellar population with
  some young light (AGN hosts are massive, with younger stars than passive galaxies:
  Kauffmann et al. 2003, MNRAS 346, 1055), at σ = 120-260 km/s.
- Broad-line widths: log-normal FWHM around 4000 km/s with 0.17 dex scatter (the Hβ and
  Mg II FWHM distributions of Shen et al. 2011), 1000-15000 km/s, so narrow-line Seyfert 1s
  (FWHM < 2000 km/s) are a few per cent.
- BAL quasars: C IV troughs in 13 % of quasars at z > 1.6 (Gibson et al. 2009, ApJ 692, 758:
  13.3 % at 1.7 < z < 4.2), with Si IV, N V and Lyα troughs; low-ionisation BALs (Mg II and
  Al III troughs as well) in 1.3 % of all quasars at z > 0.35 (Trump et al. 2006, ApJS 165, 1).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .instrument import (DLOG, LAMOST_WAVE, LN10, NPIX, PIX_KMS, add_gaussians, convolve_rows,
                         lsf_sigma_pix, shift_convolve, wave_to_pix, SIG0)
from .lines import FE2_OPT_BUMPS, FE2_UV_BUMPS, LYA, LYB, LYMAN_LIMIT, QSO_LINES, QSO_NARROW, BALMER_LIMIT
from . import galaxies

_W = LAMOST_WAVE
_BL = list(QSO_LINES.items())
_BL_LAM = np.array([v[0] for _, v in _BL])
_BL_EW = np.array([v[1] for _, v in _BL])
_BL_FW = np.array([v[2] for _, v in _BL])
_BL_HIL = np.array([v[3] == "hil" for _, v in _BL])
_NL = list(QSO_NARROW.items())
_NL_LAM = np.array([v[0] for _, v in _NL])
_NL_EW = np.array([v[1] for _, v in _NL])
_FE_UV = np.array(FE2_UV_BUMPS)
_FE_OPT = np.array(FE2_OPT_BUMPS)


# flat ΛCDM, H0 = 70 km/s/Mpc, Ωm = 0.3: luminosity distance (cm) tabulated once
_Z_TAB = np.linspace(0.0, 5.0, 501)
_DL_TAB = None
MPC_CM = 3.0857e24


def luminosity_distance_cm(z) -> np.ndarray:
    global _DL_TAB
    if _DL_TAB is None:
        from astropy.cosmology import FlatLambdaCDM
        _DL_TAB = FlatLambdaCDM(H0=70.0, Om0=0.3).luminosity_distance(_Z_TAB).value * MPC_CM
    return np.interp(np.asarray(z, float), _Z_TAB, _DL_TAB)


def host_to_agn_ratio(log_l5100_total) -> np.ndarray:
    """L_host / L_AGN at 5100 Å rest against the total log L5100 (erg/s): Shen et al. (2011), eq. 1."""
    x = np.asarray(log_l5100_total, float) - 44.0
    r = 0.8052 - 1.5502 * x + 0.9121 * x ** 2 - 0.1577 * x ** 3
    return np.where(x < 1.053, np.maximum(r, 0.0), 0.0)


def log_l5100(imag, z, alpha_nu) -> np.ndarray:
    """log λL_λ at 5100 Å rest (erg/s) of a source with AB magnitude i (7480 Å) at redshift z,
    continuum f_ν ∝ ν^α between the two wavelengths."""
    f_nu = 3631e-23 * 10.0 ** (-0.4 * np.asarray(imag, float))          # erg/s/cm²/Hz at 7480 Å observed
    lam_obs = 5100.0 * (1.0 + z)
    f_nu_5100 = f_nu * (lam_obs / 7480.0) ** (-alpha_nu)
    nu_l_nu = 4.0 * np.pi * luminosity_distance_cm(z) ** 2 * (2.99792458e18 / lam_obs) * f_nu_5100
    return np.log10(nu_l_nu)


def draw_params(n: int, rng: np.random.Generator) -> dict:
    u = rng.random(n)
    z = np.where(u < 0.20, rng.uniform(0.05, 0.7, n),
                 np.where(u < 0.86, np.exp(rng.normal(np.log(1.4), 0.35, n)), rng.uniform(2.2, 4.0, n)))
    z = np.clip(z, 0.05, 4.0)
    alpha = rng.normal(-0.5, 0.3, n)
    # i magnitudes: dN/dm ∝ 10^(0.3 m) on [16.5, 19.8], by inverse CDF
    a, b = 10.0 ** (0.3 * 16.5), 10.0 ** (0.3 * 19.8)
    imag = np.log10(a + (b - a) * rng.random(n)) / 0.3
    log_l = log_l5100(imag, z, alpha)
    ratio = host_to_agn_ratio(log_l) * 10.0 ** rng.normal(0.0, 0.2, n)
    host = ratio / (1.0 + ratio)                                        # host share of the light at 5100 Å
    log_l_agn = log_l + np.log10(1.0 - host)
    bal = (z > 1.6) & (rng.random(n) < 0.133)
    lobal = (z > 0.35) & (rng.random(n) < 0.013)
    return dict(
        z=z,
        alpha=alpha,
        imag=imag,
        log_l5100=log_l,
        # Baldwin effect: log L_AGN relative to 10^45.7 erg/s, the median of these quasars at z > 0.8,
        # so that the median quasar has the composite's equivalent widths (Vanden Berk et al. 2001)
        lum=np.clip(log_l_agn - 45.7, -2.5, 1.5),
        fwhm=(10.0 ** rng.normal(np.log10(4000.0), 0.17, n)).clip(1000.0, 15000.0),
        civ_shift=np.abs(rng.normal(0.0, 700.0, n)),      # km/s blueshift of high-ionisation lines
        fe_uv=rng.uniform(0.0, 0.35, n),
        fe_opt=rng.uniform(0.0, 0.25, n),
        balmer_cont=rng.uniform(0.05, 0.3, n),
        host=np.where(z < 0.8, host, 0.0),                 # (the host basis starts at 2000 Å rest)
        host_mix=np.stack([rng.uniform(0.5, 0.9, n), rng.uniform(0.0, 0.3, n), rng.uniform(0.02, 0.2, n)], axis=1),
        host_sigma=rng.uniform(120.0, 260.0, n),
        ebv=np.clip(rng.exponential(0.03, n), 0, 0.3),     # SMC-like intrinsic reddening
        bal=bal | lobal,
        lobal=lobal,
        dla=(z > 2.2) & (rng.random(n) < 0.25),
        lls=(z > 2.8) & (rng.random(n) < 0.4),
        ew_scatter=rng.normal(0.0, 0.2, (n, len(_BL_LAM))),
        nl_scatter=rng.normal(0.0, 0.3, (n, len(_NL_LAM))),
    )


def _smc_k(lam_rest):
    """SMC bar extinction curve A(λ)/E(B−V) (Pei 1992 approximation of the UV rise), λ in Å."""
    x = 1e4 / np.asarray(lam_rest, float)
    return 1.39 * x ** 1.2 - 0.38


def _forest(n, rng, lam_rest, lam_obs, z, par, lsf_scale):
    """Transmission (n, NPIX) of the Lyα/Lyβ forest, DLAs and Lyman-limit absorption."""
    T = np.ones((n, NPIX))
    need = lam_rest[:, 0] < LYA
    if not need.any():
        return T
    rows = np.nonzero(need)[0]
    lr = lam_rest[rows]
    lo = lam_obs[None, :]
    g = gaussian_filter1d(rng.standard_normal((len(rows), NPIX)), 1.0, axis=1)
    g /= g.std(axis=1, keepdims=True)
    sigma_ln = 1.3
    tau = np.zeros((len(rows), NPIX))
    za = lo / LYA - 1.0                                          # absorber redshift for Lyα
    teff_a = 0.0018 * (1.0 + za) ** 3.92
    # lognormal optical depth with E[exp(-tau)] ≈ exp(-tau_eff): A from a lookup
    ina = lr < LYA * (1.0 + 1500.0 / 3e5)
    tau += np.where(ina, _lognorm_amp(teff_a) * np.exp(sigma_ln * g - 0.5 * sigma_ln ** 2), 0.0)
    inb = lr < LYB
    zb = lo / LYB - 1.0
    # Lyβ absorption by the same absorbers: τ_β = (f_β λ_β / f_α λ_α) τ_α ≈ 0.16 τ_α
    gb = np.exp(sigma_ln * np.roll(g, 37, axis=1) - 0.5 * sigma_ln ** 2)
    tau += np.where(inb, 0.16 * _lognorm_amp(0.0018 * (1.0 + zb) ** 3.92) * gb, 0.0)
    # Lyman continuum: bound-free opacity ∝ (λ/912 Å)^3 below the quasar's Lyman limit,
    # plus optional Lyman-limit systems at lower redshift
    ll = lr < LYMAN_LIMIT
    tau += np.where(ll, 1.0 * (lr / LYMAN_LIMIT) ** 3, 0.0)
    zlo = 3700.0 / LYMAN_LIMIT - 1.0
    for j, r in enumerate(rows):
        if par["lls"][r] and z[r] > zlo:
            zl = rng.uniform(zlo, z[r])
            edge = LYMAN_LIMIT * (1 + zl)
            tau[j] += np.where(lam_obs < edge, rng.uniform(2.0, 6.0) * (lam_obs / edge) ** 3, 0.0)
        if par["dla"][r]:
            zd = rng.uniform(max(2.0, 3750.0 / LYA - 1.0), z[r] - 0.05)
            if zd > 0:
                lc = LYA * (1 + zd)
                wrest = 7.3 * 10 ** (0.5 * (rng.uniform(20.3, 21.3) - 20.0))
                c = (wrest * (1 + zd) / (2.0 * np.sqrt(np.pi))) ** 2
                tau[j] += np.minimum(c / np.maximum((lam_obs - lc) ** 2, 1e-3), 50.0)
    trans = np.exp(-np.minimum(tau, 50.0))
    T[rows] = convolve_rows(trans, np.median(SIG0) * np.asarray(lsf_scale)[rows])
    return T


_LA_TAU = np.geomspace(1e-3, 8.0, 200)


def _lognorm_table(sigma_ln=1.3):
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    amps = np.geomspace(1e-4, 1e4, 800)
    mean_t = np.array([(w * np.exp(-a * np.exp(sigma_ln * x - 0.5 * sigma_ln ** 2))).sum() for a in amps])
    teff = -np.log(mean_t)
    return amps, teff


_AMPS, _TEFF = _lognorm_table()


def _lognorm_amp(tau_eff):
    return np.exp(np.interp(np.log(np.maximum(tau_eff, 1e-6)), np.log(_TEFF), np.log(_AMPS)))


def generate(n: int, rng: np.random.Generator, lsf_scale, params: dict | None = None):
    """n quasar spectra on LAMOST_WAVE (noise-free, median ≈ 1 in the r band) and meta dicts."""
    par = params if params is not None else draw_params(n, rng)
    lsf_scale = np.broadcast_to(np.asarray(lsf_scale, float), (n,))
    z = par["z"]
    lam_rest = _W[None, :] / (1.0 + z[:, None])
    # power-law continuum, normalised at 3000 Å rest (or the nearest covered wavelength)
    beta = -2.0 - par["alpha"]
    cont = (lam_rest / 3000.0) ** beta[:, None]
    # Balmer pseudo-continuum: optically thin-ish emission below the Balmer edge, smoothed
    bc = par["balmer_cont"][:, None] * (lam_rest / BALMER_LIMIT) ** 3 * np.exp(-(lam_rest / BALMER_LIMIT) ** 3 + 1.0)
    bc = np.where(lam_rest < BALMER_LIMIT, bc, par["balmer_cont"][:, None] * np.exp(-((lam_rest - BALMER_LIMIT) / 60.0) ** 2))

    def cont_at(lam):
        """Power-law continuum at rest wavelength(s) lam: (n, k)."""
        return (np.atleast_1d(np.asarray(lam, float))[None, :] / 3000.0) ** beta[:, None]

    fe = np.zeros((n, NPIX))
    for c0, s0, a0 in _FE_UV:
        fe += par["fe_uv"][:, None] * a0 * cont_at(c0) * np.exp(-0.5 * ((lam_rest - c0) / s0) ** 2)
    for c0, s0, a0 in _FE_OPT:
        fe += par["fe_opt"][:, None] * a0 * cont_at(c0) * np.exp(-0.5 * ((lam_rest - c0) / s0) ** 2)
    flux = cont + bc * (BALMER_LIMIT / 3000.0) ** beta[:, None] + fe

    # broad lines: log-normal EW scatter, Baldwin effect on high-ionisation lines
    ew = _BL_EW[None, :] * 10.0 ** (par["ew_scatter"] - 0.2 * par["lum"][:, None] * _BL_HIL[None, :])
    fwhm = par["fwhm"][:, None] * _BL_FW[None, :]
    shift = np.where(_BL_HIL[None, :], -par["civ_shift"][:, None], 0.0)
    lc = _BL_LAM[None, :] * (1.0 + z[:, None]) * (1.0 + shift / 3e5)
    area = ew * cont_at(_BL_LAM) / (_BL_LAM[None, :] * LN10 * DLOG)
    sig_v = fwhm / 2.3548 / PIX_KMS
    lsf = lsf_sigma_pix(lc, lsf_scale[:, None])
    cen = wave_to_pix(lc)
    add_gaussians(flux, cen, np.sqrt(sig_v ** 2 + lsf ** 2), 0.7 * area)
    add_gaussians(flux, cen + 0.15 * sig_v * np.where(_BL_HIL[None, :], -1.0, 0.3), np.sqrt((2.6 * sig_v) ** 2 + lsf ** 2), 0.3 * area)
    # narrow lines (weaker in luminous quasars)
    ewn = _NL_EW[None, :] * 10.0 ** (par["nl_scatter"] - 0.3 * par["lum"][:, None])
    lcn = _NL_LAM[None, :] * (1.0 + z[:, None])
    sig_n = rng.uniform(150.0, 300.0, n)[:, None] / PIX_KMS
    add_gaussians(flux, wave_to_pix(lcn), np.sqrt(sig_n ** 2 + lsf_sigma_pix(lcn, lsf_scale[:, None]) ** 2),
                  ewn * cont_at(_NL_LAM) / (_NL_LAM[None, :] * LN10 * DLOG))

    # intrinsic SMC-like reddening
    flux *= 10.0 ** (-0.4 * par["ebv"][:, None] * _smc_k(lam_rest))

    # BAL troughs on C IV, Si IV, N V (and Lyα); low-ionisation BALs on Mg II and Al III too
    hi_bal = ((1549.06, 1.0), (1399.8, 0.7), (1240.14, 0.8), (1215.67, 0.5))
    lo_bal = ((2799.49, 0.8), (1857.40, 0.6))
    lobal = par.get("lobal", np.zeros(n, bool))
    for r in np.nonzero(par["bal"])[0]:
        vmin = rng.uniform(1000.0, 8000.0)
        vmax = vmin + rng.uniform(2000.0, 15000.0)
        depth = rng.uniform(0.3, 0.95)
        for lam0, rel in hi_bal + (lo_bal if lobal[r] else ()):
            v = (lam0 - lam_rest[r]) / lam0 * 3e5
            prof = 0.5 * (np.tanh((v - vmin) / 600.0) - np.tanh((v - vmax) / 600.0))
            flux[r] *= 1.0 - depth * rel * prof

    # host galaxy (matters at low z): old + some young population, redshifted with the quasar
    hrows = np.nonzero((par["host"] > 0.02) & (z < 0.8))[0]     # the host basis starts at 2000 Å rest
    if len(hrows):
        B = galaxies.basis()
        mix = par["host_mix"][hrows]
        mix = (mix / mix.sum(axis=1, keepdims=True)).astype(np.float32)
        host = shift_convolve(mix @ B, z[hrows], lsf_scale[hrows], par["host_sigma"][hrows] / PIX_KMS).astype(np.float64)
        # host flux fraction at 5100 Å rest
        i51 = np.clip(np.round(wave_to_pix(5100.0 * (1 + z[hrows]))).astype(int), 0, NPIX - 1)
        ratio = par["host"][hrows] / (1 - par["host"][hrows])
        qso_at = np.take_along_axis(flux[hrows], i51[:, None], axis=1)[:, 0]
        host_at = np.take_along_axis(host, i51[:, None], axis=1)[:, 0]
        flux[hrows] += (ratio * qso_at / np.maximum(host_at, 1e-10))[:, None] * host

    flux *= _forest(n, rng, lam_rest, _W, z, par, lsf_scale)
    med = np.median(flux[:, (_W > 6000) & (_W < 6900)], axis=1)
    flux /= np.maximum(med, 1e-30)[:, None]
    meta = []
    for i in range(n):
        sub = "qso_lobal" if lobal[i] else "qso_bal" if par["bal"][i] else "qso"
        meta.append({"label": "qso", "subclass": sub, "z": float(z[i]), "alpha_nu": float(par["alpha"][i]),
                     "imag": float(par["imag"][i]), "log_l5100": float(par["log_l5100"][i]),
                     "fwhm_kms": float(par["fwhm"][i]), "host_frac": float(par["host"][i]),
                     "ebv": float(par["ebv"][i]), "ew_civ": float(ew[i, _BL_NAMES.index("CIV_1549")]),
                     "ew_mgii": float(ew[i, _BL_NAMES.index("MgII_2799")]), "dla": bool(par["dla"][i])})
    return flux, meta


_BL_NAMES = [k for k, _ in _BL]
