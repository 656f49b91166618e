"""Galaxy spectra: passive to star-forming, z ≈ 0-0.5 (mostly 0.02-0.3).

Stellar continuum
    Three population spectra built from the star library on the wide rest grid (2000-9260 Å),
    each a light-weighted mix of stars:
    - old (≈10 Gyr): K giants, G/K dwarfs, turn-off F/G stars, some M giants and horizontal
      branch → red continuum, strong 4000 Å break (D4000 ≈ 1.9), Ca II H&K, G band, Mg b, Na D;
    - intermediate (≈1 Gyr): A and F dwarfs → strong Balmer absorption (E+A galaxies);
    - young (< 100 Myr): O/B stars and red supergiants → blue continuum, weak break.
    A continuous star-formation parameter ``sf`` ∈ [0, 1] sets their light fractions at 5500 Å;
    Calzetti (2000) attenuation grows with ``sf``; the stellar velocity dispersion (100-300 km/s,
    lower in star-forming galaxies) broadens the lines.

Nebular emission (star-forming galaxies, plus Seyfert 2 / LINER nuclei)
    Hα equivalent width of the disk rises steeply with ``sf`` (≈ 5-400 Å); in the fibre it is
    diluted by the bulge light, and falls where the WHAN diagram puts each kind (Cid Fernandes
    et al. 2011, MNRAS 413, 1687): star-forming above 3 Å, retired (passive, LINER-like) below. Line ratios follow the BPT
    star-forming sequence (log [O III]/Hβ = 0.61/(log [N II]/Hα − 0.05) + 1.1), with
    Seyfert 2 and LINER regions for AGN; Balmer decrement from case B (Hα/Hβ = 2.86) plus gas
    attenuation E(B−V)_gas = E(B−V)_stars / 0.44; fixed atomic ratios ([O III] 5008/4960 = 2.98,
    [N II] 6585/6550 = 3.05, [O I] 6302/6365 = 3.1); density-sensitive [S II] and [O II]
    doublet ratios. Lines are Gaussians with the gas velocity dispersion convolved with the LSF.

The fibre's aperture
    A LAMOST fibre is 3.3" across (Cui et al. 2012, RAA 12, 1197), so it sees a galaxy's centre:
    1.3 kpc at z = 0.02, 6 kpc at z = 0.1. Each galaxy has a bulge (de Vaucouleurs, old stars,
    effective radius ≈ 1.5 kpc) and a disk (exponential, scale length ≈ 3 kpc; sizes after
    Shen et al. 2003, MNRAS 343, 978) with a bulge-to-total ratio by type; the light inside the
    fibre radius (Sérsic enclosed light γ(2n, b_n (R/R_e)^(1/n)), b_4 = 7.669: Graham & Driver
    2005, PASA 22, 118) sets the in-fibre bulge share. The disk carries the star formation and the
    nebular lines, so nearby spiral galaxies look older and have weaker lines in the fibre than
    the same galaxies farther away: the aperture bias of Kewley, Jansen & Geller (2005, PASP 117,
    227).

Target selection
    Redshifts of a magnitude-limited galaxy sample like SDSS's main sample (r < 17.77, median
    z ≈ 0.10: Strauss et al. 2002, AJ 124, 1810), which LAMOST's galaxy targets resemble
    (r ≲ 18), with a tail of very nearby dwarfs. The type mix (30 % passive, 55 % star-forming,
    6 % starburst, 4 % post-starburst, 5 % Seyfert 2) is that of such samples classified on the
    BPT diagram (Kauffmann et al. 2003, MNRAS 346, 1055; Brinchmann et al. 2004, MNRAS 351, 1151).
"""
from __future__ import annotations

import numpy as np

from .instrument import (DLOG, LAMOST_WAVE, LN10, PIX_KMS, REST_WAVE, add_gaussians, lsf_sigma_pix,
                         shift_convolve, wave_to_pix)
from .lines import GALAXY_EMISSION as GE
from . import stars

# (Teff, logg, [Fe/H], light fraction at 5500 Å)
_POP = {
    "old": [(4800, 2.5, 0.1, 0.30), (4300, 2.0, 0.1, 0.10), (3800, 1.5, 0.1, 0.07), (5400, 4.5, 0.1, 0.12),
            (5000, 4.6, 0.1, 0.08), (4400, 4.7, 0.1, 0.05), (3500, 4.8, 0.1, 0.03), (5800, 4.3, 0.1, 0.12),
            (6200, 4.2, 0.0, 0.07), (8000, 3.0, -1.0, 0.03), (5100, 3.0, 0.1, 0.03)],
    "intermediate": [(9300, 4.2, 0.0, 0.35), (8100, 4.2, 0.0, 0.20), (7200, 4.3, 0.0, 0.15),
                     (6500, 4.3, 0.0, 0.10), (4700, 2.5, 0.0, 0.12), (5600, 4.5, 0.0, 0.08)],
    "young": [(20000, 4.0, 0.0, 0.35), (15000, 4.0, 0.0, 0.20), (12000, 4.1, 0.0, 0.15), (9700, 4.2, 0.0, 0.10),
              (33000, 4.0, 0.0, 0.10), (4000, 0.5, 0.0, 0.10)],
}
POPS = ("old", "intermediate", "young")
_BASIS = None
_N5500 = (REST_WAVE > 5400) & (REST_WAVE < 5600)


def basis() -> np.ndarray:
    """(3, REST_N) float32 population spectra (old, intermediate, young), unit median at 5400-5600 Å."""
    global _BASIS
    if _BASIS is None:
        out = []
        for pop in POPS:
            comp = _POP[pop]
            n = len(comp)
            par = {"kind": np.array(["G"] * n), "teff": np.array([c[0] for c in comp], float),
                   "logg": np.array([c[1] for c in comp], float), "feh": np.array([c[2] for c in comp], float),
                   "h_scale": np.ones(n), "mol_scale": np.ones(n)}
            spec = stars.rest_spectra(par["teff"], stars.coefficients(par)).astype(np.float64)
            spec /= np.median(spec[:, _N5500], axis=1, keepdims=True)
            w = np.array([c[3] for c in comp])
            s = (w[:, None] * spec).sum(axis=0)
            out.append(s / np.median(s[_N5500]))
        _BASIS = np.array(out, dtype=np.float32)
    return _BASIS


def calzetti_k(wave) -> np.ndarray:
    """Calzetti et al. (2000) k(λ) (λ in Å), R_V = 4.05, extrapolated linearly below 1200 Å."""
    lam = np.asarray(wave, float) / 1e4
    k = np.where(lam >= 0.63, 2.659 * (-1.857 + 1.040 / lam) + 4.05,
                 2.659 * (-2.156 + 1.509 / lam - 0.198 / lam ** 2 + 0.011 / lam ** 3) + 4.05)
    return np.maximum(k, 0.0)


_K_REST = calzetti_k(REST_WAVE).astype(np.float32)

# emission lines used and their keys
_EM = ["OII_3727", "OII_3730", "NeIII_3870", "Hepsilon", "Hdelta", "Hgamma", "OIII_4364", "Hbeta", "OIII_4960",
       "OIII_5008", "HeI_5877", "OI_6302", "OI_6365", "NII_6550", "Halpha", "NII_6585", "SII_6718", "SII_6733",
       "ArIII_7138"]
_EM_LAM = np.array([GE[k] for k in _EM])
_K_EM = calzetti_k(_EM_LAM)


def draw_params(n: int, rng: np.random.Generator) -> dict:
    u = rng.random(n)
    kind = np.where(u < 0.30, "passive", np.where(u < 0.85, "starforming", np.where(u < 0.91, "starburst",
                    np.where(u < 0.95, "poststarburst", "agn"))))
    sf = np.select([kind == "passive", kind == "starforming", kind == "starburst", kind == "poststarburst"],
                   [rng.uniform(0.0, 0.18, n), rng.uniform(0.18, 0.8, n), rng.uniform(0.8, 1.0, n), rng.uniform(0.0, 0.1, n)],
                   rng.uniform(0.05, 0.5, n))
    z = np.where(rng.random(n) < 0.9, 0.02 + rng.gamma(2.0, 0.045, n), rng.uniform(0.002, 0.05, n))
    z = np.clip(z, 0.002, 0.55)
    vdisp = np.where(sf < 0.2, rng.uniform(130, 320, n), rng.uniform(60, 180, n))
    ebv = np.clip(sf * rng.uniform(0.0, 0.4, n) + rng.exponential(0.02, n), 0, 0.8)
    bt = np.where(sf < 0.18, rng.uniform(0.4, 0.9, n), rng.uniform(0.0, 0.45, n))
    re_kpc = 10.0 ** rng.normal(np.log10(1.5), 0.2, n)
    rd_kpc = 10.0 ** rng.normal(np.log10(3.0), 0.2, n)
    return dict(kind=kind, sf=sf, z=z, vdisp=vdisp, ebv=ebv, bt=bt, re_kpc=re_kpc, rd_kpc=rd_kpc)


FIBRE_RADIUS_ARCSEC = 1.65
_ARCSEC = np.pi / (180.0 * 3600.0)
_B4 = 7.669


def fibre_radius_kpc(z) -> np.ndarray:
    """Physical radius (kpc) the fibre covers at redshift z (angular-diameter distance, flat ΛCDM)."""
    from .quasars import MPC_CM, luminosity_distance_cm
    z = np.asarray(z, float)
    d_a_kpc = luminosity_distance_cm(z) / (1.0 + z) ** 2 / MPC_CM * 1e3
    return FIBRE_RADIUS_ARCSEC * _ARCSEC * d_a_kpc


def fibre_bulge_share(par) -> np.ndarray:
    """Bulge share of the light inside the fibre, from the galaxy's B/T and sizes (0 without them)."""
    from scipy.special import gammainc
    if "bt" not in par:
        return np.zeros(len(par["z"]))
    r = fibre_radius_kpc(par["z"])
    f_bulge = gammainc(8.0, _B4 * (r / par["re_kpc"]) ** 0.25)
    x = r / par["rd_kpc"]
    f_disk = 1.0 - (1.0 + x) * np.exp(-x)
    b = par["bt"] * f_bulge
    d = (1.0 - par["bt"]) * f_disk
    return b / np.maximum(b + d, 1e-12)


def _light_fractions(par, rng, bf):
    n = len(par["sf"])
    sf = par["sf"]
    cy = 0.65 * sf ** 1.5 * rng.uniform(0.6, 1.0, n)
    ci = 0.35 * sf * rng.uniform(0.4, 1.0, n)
    psb = par["kind"] == "poststarburst"
    ci[psb] = rng.uniform(0.3, 0.65, psb.sum())
    cy[psb] = 0.0
    co = np.clip(1.0 - cy - ci, 0.05, None)
    c = np.stack([co, ci, cy], axis=1)
    c /= c.sum(axis=1, keepdims=True)
    # the disk's populations, diluted by the (old) bulge light inside the fibre (share bf)
    c = (1.0 - bf)[:, None] * c
    c[:, 0] += bf
    return c


def _line_fluxes(par, cont_ha, rng, bf=None):
    """Emission-line fluxes (n, len(_EM)) in continuum·Å units and gas σ (km/s)."""
    n = len(par["sf"])
    sf, kind = par["sf"], par["kind"]
    log_ew = np.where(sf >= 0.18, 0.65 + 2.0 * sf + rng.normal(0, 0.2, n), -np.inf)   # the disk's EW
    liner = (kind == "passive") & (rng.random(n) < 0.35)
    log_ew = np.where(liner, rng.uniform(-0.3, 0.5, n), log_ew)
    agn = kind == "agn"
    log_ew = np.where(agn, rng.uniform(0.6, 1.8, n), log_ew)
    log_ew = np.where(kind == "poststarburst", -np.inf, log_ew)
    ew_ha = np.where(np.isfinite(log_ew), 10.0 ** log_ew, 0.0)
    # star formation lives in the disk: dilute by the bulge light in the fibre
    bf = fibre_bulge_share(par) if bf is None else bf
    ew_ha = np.where(agn | liner, ew_ha, ew_ha * (1.0 - bf))
    x = np.clip(-0.4 - 0.7 * sf + rng.normal(0, 0.12, n), -1.4, -0.25)          # log [N II]/Hα
    # log [O III]/Hβ: the star-forming sequence 0.2 dex below the Kauffmann et al. (2003) line,
    # 0.1 dex scatter, kept below that line (which defines star-forming galaxies)
    y = np.minimum(0.61 / (x - 0.05) + 1.1 + rng.normal(0, 0.1, n), 0.61 / (x - 0.05) + 1.28)
    y = np.minimum(y, 0.9)
    # AGN: Seyfert 2 (high [O III]/Hβ) or LINER (low) regions
    sey = agn & (rng.random(n) < 0.6)
    x = np.where(agn, rng.uniform(-0.25, 0.3, n), x)
    y = np.where(sey, rng.uniform(0.5, 1.05, n), np.where(agn | liner, rng.uniform(-0.3, 0.3, n), y))
    x = np.where(liner, rng.uniform(-0.1, 0.35, n), x)
    ebv_gas = par["ebv"] / 0.44
    # intrinsic (dereddened) fluxes relative to Hα = 1
    hb = np.full(n, 1.0 / 2.86)
    f = {}
    f["Halpha"] = np.ones(n)
    f["Hbeta"] = hb
    f["Hgamma"] = 0.468 * hb
    f["Hdelta"] = 0.259 * hb
    f["Hepsilon"] = 0.159 * hb
    f["NII_6585"] = 10.0 ** x
    f["NII_6550"] = f["NII_6585"] / 3.05
    f["OIII_5008"] = hb * 10.0 ** y
    f["OIII_4960"] = f["OIII_5008"] / 2.98
    f["OIII_4364"] = f["OIII_5008"] * np.where(agn, 0.02, 0.005)
    s2 = 10.0 ** (-0.55 + rng.normal(0, 0.1, n) + 0.25 * (agn | liner))
    r_s2 = rng.uniform(1.05, 1.45, n)
    f["SII_6718"] = s2 * r_s2 / (1 + r_s2)
    f["SII_6733"] = s2 / (1 + r_s2)
    o2 = hb * 10.0 ** (0.35 + 0.3 * y + rng.normal(0, 0.15, n) + 0.3 * liner)
    r_o2 = rng.uniform(1.0, 1.5, n)
    f["OII_3730"] = o2 * r_o2 / (1 + r_o2)
    f["OII_3727"] = o2 / (1 + r_o2)
    f["NeIII_3870"] = 0.07 * f["OIII_5008"] + 0.02 * o2
    f["HeI_5877"] = 0.11 * hb
    f["OI_6302"] = 10.0 ** (-1.4 + rng.normal(0, 0.15, n) + 0.5 * (agn | liner))
    f["OI_6365"] = f["OI_6302"] / 3.1
    f["ArIII_7138"] = 0.03 + 0.05 * sf
    F = np.stack([f[k] for k in _EM], axis=1)
    # attenuation by dust (relative to Hα), then scale so that EW(Hα) = ew_ha
    F *= 10.0 ** (-0.4 * ebv_gas[:, None] * (_K_EM[None, :] - calzetti_k(6564.61)))
    F *= (ew_ha * cont_ha)[:, None]
    sig_gas = np.where(agn, rng.uniform(150, 350, n), rng.uniform(40, 130, n))
    return F, sig_gas, ew_ha, x, y


def generate(n: int, rng: np.random.Generator, lsf_scale, params: dict | None = None):
    """n galaxy spectra on LAMOST_WAVE (noise-free, median ≈ 1 in the r band) and meta dicts."""
    par = params if params is not None else draw_params(n, rng)
    lsf_scale = np.broadcast_to(np.asarray(lsf_scale, float), (n,))
    B = basis()
    bf = fibre_bulge_share(par)
    c = _light_fractions(par, rng, bf)
    rest = (c.astype(np.float32) @ B)
    rest *= np.exp(np.float32(-0.4 * LN10) * par["ebv"][:, None].astype(np.float32) * _K_REST[None, :])
    # continuum level under Hα (median of a window clear of the line)
    win = (REST_WAVE > 6480) & (REST_WAVE < 6640) & (np.abs(REST_WAVE - 6564.6) > 25)
    cont_ha = np.median(rest[:, win], axis=1).astype(np.float64)
    flux = shift_convolve(rest, par["z"], lsf_scale, par["vdisp"] / PIX_KMS).astype(np.float64)
    F, sig_gas, ew_ha, x, y = _line_fluxes(par, cont_ha, rng, bf)
    lobs = _EM_LAM[None, :] * (1.0 + par["z"][:, None])
    sig = np.sqrt(lsf_sigma_pix(lobs, lsf_scale[:, None]) ** 2 + (sig_gas[:, None] / PIX_KMS) ** 2)
    add_gaussians(flux, wave_to_pix(lobs), sig, F / (_EM_LAM[None, :] * LN10 * DLOG))
    med = np.median(flux[:, (LAMOST_WAVE > 6000) & (LAMOST_WAVE < 6900)], axis=1)
    flux /= np.maximum(med, 1e-30)[:, None]
    meta = []
    for i in range(n):
        meta.append({"label": "galaxy", "subclass": str(par["kind"][i]), "z": float(par["z"][i]),
                     "sf_param": float(par["sf"][i]), "vdisp_kms": float(par["vdisp"][i]),
                     "ebv": float(par["ebv"][i]), "ew_halpha": float(ew_ha[i]),
                     "log_n2ha": float(x[i]), "log_o3hb": float(y[i]),
                     "f_old": float(c[i, 0]), "f_int": float(c[i, 1]), "f_young": float(c[i, 2]),
                     "bulge_in_fibre": float(bf[i])})
    return flux, meta
