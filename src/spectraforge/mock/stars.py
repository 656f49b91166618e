"""Stellar spectra, O to M (plus a few DA white dwarfs and carbon stars).

Model
    F_λ = exp(lnC(Teff) − τ(λ)) where lnC is a Planck continuum with the Balmer and Paschen
    jumps, and τ is a sum of components, each tabulated on a grid of Teff nodes on the wide
    rest grid (:data:`instrument.REST_WAVE`) and interpolated linearly in log Teff:

    kblank   smooth blue/UV line-blanketing opacity (cool stars)
    h_dwarf / h_giant   hydrogen Balmer (+ Paschen) lines with pressure-broadened wings
    metal    neutral-metal lines: Ca II H&K, Ca I 4227, G band, Mg b, Na D, Ca II triplet, strong
             Fe I lines and a dense pseudo-random forest of weak lines (denser to the blue)
    ion      ionised lines (Sr II, Ba II, Fe II, Ti II, Mg II 4481, Si II, O I 7774), peaking in A–F
    mol      TiO and VO bands (M stars): sharp heads on the blue side, recovery to the red
    dwarf    gravity-sensitive features strong in dwarfs (MgH, CaH, Na D wings, Na I 8190, K I)
    giant    features strong in giants (CN 3883/4216, Sr II 4077, stronger Ca II triplet, O I)
    hot      He I (B stars) and He II (O stars)
    h_wd     very broad Balmer lines of DA white dwarfs
    carbon   C2 Swan and CN red bands of carbon stars

    Line strengths are set by equivalent widths that follow spectral type (e.g. Hβ peaks near
    14 Å at A0–A2; Ca II K ≈ 10 Å in G2 and 15+ Å in K) through a curve of growth, so
    per-star scalings (metallicity, gravity) saturate sensibly. Each star then gets a radial
    velocity, rotation, the instrumental LSF, interstellar reddening (CCM89, R_V = 3.1) and
    interstellar Na D / diffuse bands scaled with E(B−V).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from . import lines as L
from .instrument import (C_KMS, DLOG, INTRINSIC_SIGMA_PIX, LAMOST_WAVE, LN10, NPIX, PIX_KMS,
                         REST_J0, REST_N, REST_WAVE, add_gaussians, lsf_sigma_pix, shift_convolve,
                         wave_to_pix)

COMPONENTS = ("kblank", "h_dwarf", "h_giant", "metal", "ion", "mol", "dwarf", "giant", "hot", "h_wd", "carbon")
CI = {c: i for i, c in enumerate(COMPONENTS)}
NODES_T = np.geomspace(2300.0, 50000.0, 64)
_LT = np.log10(NODES_T)
_W = REST_WAVE
_DW = REST_WAVE * LN10 * DLOG            # pixel width in Å

# spectral type -> Teff (dwarf scale, Pecaut & Mamajek 2013)
SPT_TEFF = [("O5", 42000), ("O7", 37000), ("O9", 33000), ("B0", 31000), ("B1", 26000), ("B2", 20600),
            ("B3", 17000), ("B5", 15700), ("B6", 14500), ("B7", 13500), ("B8", 12500), ("B9", 10700),
            ("A0", 9700), ("A1", 9300), ("A2", 8800), ("A3", 8600), ("A5", 8100), ("A6", 7910), ("A7", 7650),
            ("A9", 7400), ("F0", 7220), ("F2", 6810), ("F3", 6640), ("F4", 6550), ("F5", 6510), ("F6", 6340),
            ("F7", 6240), ("F8", 6150), ("F9", 6040), ("G0", 5920), ("G1", 5880), ("G2", 5770),
            ("G3", 5720), ("G4", 5680), ("G5", 5660), ("G6", 5590), ("G7", 5530), ("G8", 5490),
            ("G9", 5340), ("K0", 5280), ("K1", 5170), ("K2", 5040), ("K3", 4830), ("K4", 4600),
            ("K5", 4450), ("K7", 4050), ("M0", 3850), ("M1", 3660), ("M2", 3560), ("M3", 3430),
            ("M4", 3210), ("M5", 3060), ("M6", 2810), ("M7", 2680), ("M8", 2570), ("M9", 2380)]
_SPT_LT = np.log10([t for _, t in SPT_TEFF])

# survey mix of spectral classes (LAMOST-like: dominated by F, G, K) and their Teff ranges
TYPE_MIX = {"O": 0.001, "B": 0.012, "A": 0.06, "F": 0.28, "G": 0.335, "K": 0.245, "M": 0.058,
            "WD": 0.006, "C": 0.003}
TYPE_TEFF = {"O": (30500, 45000), "B": (10300, 30500), "A": (7300, 10300), "F": (6000, 7300),
             "G": (5300, 6000), "K": (3900, 5300), "M": (2400, 3900), "WD": (7000, 30000), "C": (2700, 3600)}
GIANT_FRAC = {"O": 0.1, "B": 0.1, "A": 0.08, "F": 0.06, "G": 0.22, "K": 0.45, "M": 0.15}


def _knots(T, pairs):
    """Piecewise-linear interpolation in log Teff through (Teff, value) pairs."""
    p = np.asarray(pairs, float)
    return np.interp(np.log10(T), np.log10(p[:, 0]), p[:, 1])


# --- equivalent-width recipes (Å), dwarfs at solar metallicity ----------------------------
EW_HBETA = [(2300, 0.1), (3000, 0.2), (3500, 0.35), (4000, 0.6), (4500, 1.0), (5000, 1.5),
            (5500, 2.6), (5800, 3.3), (6200, 3.9), (6700, 4.4), (7200, 4.8), (8000, 5.8), (8800, 8.5),
            (9500, 12.5), (10500, 12.0), (12000, 10.5), (15000, 8.0), (20000, 5.5), (30000, 3.5), (50000, 2.0)]
GAMMA_BALMER = [(2300, 0.5), (5000, 0.7), (5800, 0.9), (6500, 1.4), (7500, 2.2), (9000, 2.7),
                (10000, 2.6), (15000, 2.0), (20000, 1.6), (50000, 1.1)]
EW_CAK = [(2300, 5), (3000, 7), (3500, 9), (4000, 11), (4500, 12), (5000, 12.5), (5500, 14), (5800, 13),
          (6000, 12), (6500, 9.5), (7200, 6.0), (8000, 3.5), (9000, 1.5), (10000, 0.6), (12000, 0.15),
          (15000, 0.05), (20000, 0.02), (50000, 0.0)]
EW_CAI = [(2300, 4), (3000, 4.5), (3500, 4), (4000, 3), (4500, 2.0), (5000, 1.4), (5800, 1.0), (6500, 0.5),
          (7500, 0.15), (9000, 0.02), (50000, 0)]
EW_GBAND = [(2300, 3), (3000, 4.5), (3500, 7), (4000, 10), (4500, 11), (5000, 10), (5500, 10), (5800, 9),
            (6200, 7), (7000, 3), (8000, 0.5), (9000, 0.0), (50000, 0)]
EW_MGB = [(2300, 5), (3000, 6.5), (3500, 8), (4000, 9), (4500, 8.5), (5000, 6.5), (5800, 4.8), (6500, 2.5),
          (7500, 1.0), (9000, 0.35), (12000, 0.1), (20000, 0.02), (50000, 0)]
EW_NAD = [(2300, 10), (3000, 10), (3500, 9), (4000, 7.5), (4500, 5.0), (5000, 3.4), (5800, 2.2),
          (6500, 1.8), (7500, 0.8), (9000, 0.2), (12000, 0.04), (50000, 0)]
EW_CAT = [(2300, 2.5), (3000, 3), (3500, 4.5), (4000, 7.5), (4500, 10), (5000, 10), (5800, 9.5), (6500, 8),
          (7500, 5.5), (8500, 2.5), (10000, 0.6), (15000, 0.1), (50000, 0)]
EW_FE = [(2300, 0.9), (3000, 1.1), (4000, 1.3), (4500, 1.2), (5000, 0.85), (5800, 0.5), (6500, 0.28), (7500, 0.1),
         (9000, 0.03), (12000, 0), (50000, 0)]
EW_ION = [(2300, 0.08), (3500, 0.15), (4500, 0.25), (5800, 0.28), (6500, 0.35), (7500, 0.35), (8500, 0.25),
          (10000, 0.12), (15000, 0.05), (50000, 0)]
EW_MGII = [(5000, 0.0), (6000, 0.2), (8000, 0.4), (10000, 0.45), (15000, 0.35), (20000, 0.2), (30000, 0.05), (50000, 0)]
EW_SIII = [(7000, 0.0), (8000, 0.2), (10000, 0.3), (15000, 0.3), (20000, 0.1), (30000, 0), (50000, 0)]
EW_OI = [(5000, 0.1), (6000, 0.3), (7000, 0.8), (8000, 1.0), (9500, 1.0), (12000, 0.6), (20000, 0.2), (50000, 0)]
EW_HEI = [(2300, 0), (10000, 0), (11000, 0.1), (15000, 0.6), (20000, 0.9), (25000, 0.8), (30000, 0.5),
          (40000, 0.2), (50000, 0.1)]
EW_HEII = [(2300, 0), (28000, 0), (32000, 0.3), (38000, 0.6), (50000, 0.8)]
EW_NA8190 = [(2300, 5), (3000, 4.5), (3500, 3), (4000, 1.5), (4500, 0.8), (5500, 0.4), (6500, 0.2), (8000, 0), (50000, 0)]
EW_KI = [(2300, 4.5), (3000, 4), (3500, 2.5), (4000, 1.2), (5000, 0.4), (6000, 0.15), (7500, 0), (50000, 0)]
EW_WD_HBETA = [(6000, 10), (7000, 20), (9000, 45), (12000, 65), (16000, 55), (20000, 40), (30000, 22), (50000, 12)]
# neutral / ionised forest strength relative to the Sun
F_NEUTRAL = [(2300, 1.3), (3000, 1.6), (3500, 1.9), (4000, 2.1), (4500, 1.9), (5000, 1.6), (5500, 1.2),
             (5800, 1.0), (6200, 0.75), (6700, 0.5), (7500, 0.22), (8500, 0.08), (10000, 0.02),
             (15000, 0.0), (50000, 0.0)]
F_ION = [(2300, 0.3), (3500, 0.5), (4500, 0.75), (5800, 1.0), (6500, 1.1), (7500, 1.0), (8500, 0.7),
         (10000, 0.35), (12000, 0.15), (20000, 0.02), (50000, 0)]
B_BLANKET = [(2300, 4.0), (3000, 3.8), (3500, 3.5), (4000, 3.2), (4500, 2.7), (5000, 2.0), (5800, 1.1),
             (6500, 0.6), (7500, 0.25), (9000, 0.03), (10000, 0), (50000, 0)]
# colour temperature / Teff of the optical continuum (bluer than a Planck curve at Teff for
# F-K stars, redder for M dwarfs), calibrated on LAMOST spectra
T_COLOUR = [(2300, 0.85), (3300, 0.87), (3700, 0.92), (4000, 1.0), (4500, 1.08), (5000, 1.12), (5800, 1.13),
            (6500, 1.08), (7500, 1.06), (8500, 1.05), (10000, 1.0), (50000, 1.0)]
# extra opacity blueward of 4000 Å (accumulated metal lines: the 4000 Å break of cool stars)
BREAK_4000 = [(2300, 0.5), (3500, 0.5), (4500, 0.45), (5000, 0.4), (5500, 0.25), (5800, 0.05), (6500, 0.0), (50000, 0.0)]
BALMER_JUMP = [(2300, 0.05), (5000, 0.12), (5800, 0.2), (6500, 0.4), (7500, 0.75), (9000, 1.0), (10000, 1.05),
               (12000, 0.9), (15000, 0.6), (20000, 0.35), (30000, 0.18), (50000, 0.1)]


# --- line profiles and the curve of growth -----------------------------------------------
def _wing(u):
    return 1.0 / (1.0 + np.abs(u) ** 2.5)


def _cog_table():
    u = np.concatenate([[0.0], np.geomspace(1e-4, 1e6, 4000)])
    A = np.geomspace(1e-5, 1e7, 400)
    p = _wing(u)
    E = np.array([2.0 * np.trapezoid(-np.expm1(-a * p), u) for a in A])
    return A, E


_COG_A, _COG_E = _cog_table()


def amp_for_ew(ew, gamma):
    """Peak optical depth A of τ = A/(1+|Δλ/γ|^2.5) giving equivalent width ``ew`` (Å)."""
    r = np.asarray(ew, float) / np.asarray(gamma, float)
    out = np.exp(np.interp(np.log(np.maximum(r, 1e-30)), np.log(_COG_E), np.log(_COG_A)))
    return np.where(r > 0, out, 0.0)


def _add_line(tau, lam0, ew, gamma, depth=0.9, cap=800.0):
    """Add a line of equivalent width ``ew`` (Å) to a rest-grid τ row (in place).

    Profile τ = A·wing((λ-λ0)/γ) (Gaussian-like core, pressure-broadened power-law wings), and
    the line's own absorption is limited to ``depth`` (the residual core intensity of strong
    lines is 1-depth, as the source function does not vanish): the row accumulates the
    effective optical depth -ln(1 - depth·(1 - e^{-τ})).
    """
    if ew <= 0:
        return
    A = float(amp_for_ew(ew / depth, gamma))
    half = min(gamma * (2000.0 * A) ** 0.4, cap)
    lo, hi = np.searchsorted(_W, [lam0 - half, lam0 + half])
    if hi <= lo:
        return
    t = A * _wing((_W[lo:hi] - lam0) / gamma)
    tau[lo:hi] -= np.log1p(-depth * -np.expm1(-t))


def _add_band(tau, head, depth, length, direction=+1, texture=None):
    """Molecular band: sharp edge at ``head``, exponential recovery over ``length`` Å towards
    the red (direction=+1) or the blue (direction=-1)."""
    if depth <= 0:
        return
    if direction > 0:
        lo, hi = np.searchsorted(_W, [head - 3.0, head + 6 * length])
        x = (_W[lo:hi] - head)
    else:
        lo, hi = np.searchsorted(_W, [head - 6 * length, head + 3.0])
        x = (head - _W[lo:hi])
    prof = np.where(x >= 0, np.exp(-np.clip(x, 0, None) / length), np.exp(np.clip(x, None, 0) / 0.8))
    if texture is not None:
        prof = prof * texture[lo:hi]
    tau[lo:hi] += depth * prof


def _forest():
    """Two fixed τ patterns (neutral, ionised) of weak metal lines: solar strength (Teff 5800)."""
    rs = np.random.default_rng(20180131)
    # blocking of the weak-line forest in the Sun: 0.1 (4000/λ)^4.5 for λ > 3500 Å, flatter in the
    # UV; with the strong lines and the blue blanketing on top, the mock Sun's blue-to-red flux
    # ratios match the solar spectral irradiance (f_λ(4500)/f_λ(6200) ≈ 1.19, f_λ(5000)/f_λ(6200)
    # ≈ 1.14; tests/test_mock_physics.py). At 0.3 the mock's G stars were 9 % too red at 4500 Å.
    lam = np.geomspace(2000.0, 9260.0, 20000)
    block = np.where(lam > 3500, 0.10 * (4000.0 / lam) ** 4.5, 0.10 * (4000.0 / 3500.0) ** 4.5 * (3500.0 / lam) ** 2)
    ew_lo, ew_hi = 0.004, 0.15
    mean_ew = (ew_hi - ew_lo) / np.log(ew_hi / ew_lo)
    dens = block / mean_ew                              # lines per Å
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(lam))])
    nlines = int(cdf[-1])
    wl = np.interp(rs.random(nlines) * cdf[-1], cdf, lam)
    ew = np.exp(rs.uniform(np.log(ew_lo), np.log(ew_hi), nlines))
    ion = rs.random(nlines) < 0.25
    pats = []
    for sel in (~ion, ion):
        pos = (np.log10(wl[sel]) - (np.log10(_W[0]))) / DLOG
        i0 = np.floor(pos).astype(int)
        f = pos - i0
        area = ew[sel] / np.interp(wl[sel], _W, _DW)      # τ·pixels
        tau = np.zeros(REST_N)
        ok = (i0 >= 0) & (i0 < REST_N - 1)
        np.add.at(tau, i0[ok], area[ok] * (1 - f[ok]))
        np.add.at(tau, i0[ok] + 1, area[ok] * f[ok])
        pats.append(tau)
    return pats[0], pats[1]


def _texture(seed, amp=0.35, smooth=1.5):
    rs = np.random.default_rng(seed)
    t = gaussian_filter1d(rs.standard_normal(REST_N), smooth)
    t /= t.std()
    return np.clip(1.0 + amp * t, 0.2, None)


def _planck_ln(T):
    x = 1.4387769e8 / (_W * T)
    return -5.0 * np.log(_W) - np.log(np.expm1(np.minimum(x, 700.0)))


def _build_library():
    K = len(NODES_T)
    C = len(COMPONENTS)
    comps = np.zeros((K, C, REST_N))
    lnc = np.zeros((K, REST_N))
    forest_n, forest_i = _forest()
    tex_mol = _texture(11, 0.25, 2.0)
    tex_c2 = _texture(12, 0.4, 1.2)
    ref = np.searchsorted(_W, 6500.0)
    uv = np.clip(4600.0 / np.maximum(_W, 3300.0) - 1.0, 0.0, None) ** 1.1
    brk = 1.0 / (1.0 + np.exp((_W - 3990.0) / 12.0))
    bj_step = 1.0 / (1.0 + np.exp((_W - 3665.0) / 10.0))
    pj_step = 1.0 / (1.0 + np.exp((_W - 8215.0) / 12.0))
    n_bal = np.arange(3, 36)
    lam_bal = L.balmer(n_bal)
    r_bal = np.array([1.1, 1.0, 0.95, 0.9, 0.85, 0.78, 0.7, 0.62, 0.55, 0.48, 0.42] + [0.42 * 0.85 ** k for k in range(1, 23)])
    n_pa = np.arange(9, 36)
    lam_pa = L.paschen(n_pa)
    r_pa = 0.2 * 0.93 ** (n_pa - 9)
    S = L.STAR_LINES
    for k, T in enumerate(NODES_T):
        lnc[k] = _planck_ln(T * _knots(T, T_COLOUR)) - _knots(T, BALMER_JUMP) * bj_step - 0.12 * _knots(T, BALMER_JUMP) * pj_step
        lnc[k] -= lnc[k][ref]
        comps[k, CI["kblank"]] = _knots(T, B_BLANKET) * uv + _knots(T, BREAK_4000) * brk
        # hydrogen
        ewb = _knots(T, EW_HBETA)
        gam = _knots(T, GAMMA_BALMER)
        for variant, gfac, efac, dmax in (("h_dwarf", 1.0, 1.0, 0.55), ("h_giant", 0.45, 0.72 if T > 6000 else 0.9, 0.65)):
            row = comps[k, CI[variant]]
            for lam0, r in zip(lam_bal, r_bal):
                g = gfac * gam * lam0 / 4862.0
                if lam0 > 6000:     # Hα relative to Hβ: weaker in A-F, stronger in G-K
                    r = float(np.interp(np.log10(T), [3.6, 3.76, 3.82, 4.0], [1.15, 1.1, 0.85, 0.8]))
                _add_line(row, lam0, ewb * efac * r, g, depth=dmax)
            for lam0, r in zip(lam_pa, r_pa):
                g = gfac * gam * lam0 / 4862.0
                _add_line(row, lam0, ewb * efac * r, g, depth=dmax)
        # white-dwarf Balmer lines: enormous pressure-broadened wings
        row = comps[k, CI["h_wd"]]
        ewd = _knots(T, EW_WD_HBETA)
        for lam0, r in zip(lam_bal[:14], [0.9, 1.0, 0.9, 0.75, 0.55, 0.4, 0.3, 0.22, 0.16, 0.12, 0.09, 0.07, 0.05, 0.04]):
            g = 9.0 * lam0 / 4862.0
            _add_line(row, lam0, ewd * r, g, depth=0.85, cap=1500.0)
        # neutral metals
        row = comps[k, CI["metal"]]
        row += _knots(T, F_NEUTRAL) * forest_n
        ewk = _knots(T, EW_CAK)
        _add_line(row, S["CaII_K"][0], ewk, 0.6, depth=0.92)
        _add_line(row, S["CaII_H"][0], 0.85 * ewk, 0.6, depth=0.92)
        _add_line(row, S["CaI_4227"][0], 0.6 * _knots(T, EW_CAI), 0.4)
        for nm, fr in (("MgI_5167", 0.27), ("MgI_5173", 0.33), ("MgI_5184", 0.40)):
            _add_line(row, S[nm][0], fr * _knots(T, EW_MGB), 0.35, depth=0.85)
        for nm, fr in (("NaI_D2", 0.55), ("NaI_D1", 0.45)):
            _add_line(row, S[nm][0], 0.7 * fr * _knots(T, EW_NAD), 0.4, depth=0.9)
        for nm, fr in (("CaII_8498", 0.2), ("CaII_8542", 0.45), ("CaII_8662", 0.35)):
            _add_line(row, S[nm][0], 0.85 * fr * _knots(T, EW_CAT), 2.0, depth=0.6)
        efe = _knots(T, EW_FE)
        for nm, (lam0, grp) in S.items():
            if grp == "fe_strong":
                boost = 1.5 if nm in ("FeI_4046", "FeI_4064", "FeI_4072", "FeI_4383", "FeI_4405", "FeI_5270", "FeI_5328") else 1.0
                _add_line(row, lam0, boost * efe * min(1.0, (lam0 / 5500.0) ** -4.5), 0.35, depth=0.7)
            elif grp == "cai_red":
                _add_line(row, lam0, 0.35 * efe, 0.3, depth=0.7)
            elif grp == "mgi_ir":
                _add_line(row, lam0, 0.7 * efe, 0.4)
            elif grp in ("na8190", "ki"):
                tab = EW_NA8190 if grp == "na8190" else EW_KI
                _add_line(row, lam0, 0.15 * _knots(T, tab), 0.4)
        # G band (CH): a ~22 Å blend
        egb = _knots(T, EW_GBAND)
        lo, hi = np.searchsorted(_W, [L.GBAND[0] - 15, L.GBAND[1] + 15])
        xw = _W[lo:hi]
        box = 0.5 * (np.tanh((xw - L.GBAND[0]) / 2.0) - np.tanh((xw - L.GBAND[1]) / 2.0))
        width = L.GBAND[1] - L.GBAND[0]
        depth = -np.log(np.clip(1.0 - egb / width, 0.05, 1.0))
        row[lo:hi] += depth * box * tex_mol[lo:hi]
        # ionised
        row = comps[k, CI["ion"]]
        row += _knots(T, F_ION) * forest_i
        eion = _knots(T, EW_ION)
        for nm, (lam0, grp) in S.items():
            if grp == "ion":
                _add_line(row, lam0, eion * (1.4 if nm.startswith("SrII") else 1.0), 0.3)
            elif grp == "mgii":
                _add_line(row, lam0, _knots(T, EW_MGII), 0.4)
            elif grp == "sii_a":
                _add_line(row, lam0, _knots(T, EW_SIII), 0.4)
            elif grp == "oi":
                _add_line(row, lam0, _knots(T, EW_OI) / 3.0, 0.4)
        # molecules: TiO from late K, VO in late M
        row = comps[k, CI["mol"]]
        s_tio = max(0.0, (4100.0 - T) / 600.0) ** 1.2
        for head, d, length in L.TIO_HEADS:
            _add_band(row, head, 0.8 * d * s_tio, 1.4 * length, +1, tex_mol)
        s_vo = max(0.0, (3150.0 - T) / 400.0) ** 1.3
        for head, d, length in L.VO_HEADS:
            _add_band(row, head, 0.6 * d * s_vo, length, +1, tex_mol)
        # dwarf-sensitive
        row = comps[k, CI["dwarf"]]
        s_mgh = max(0.0, (5000.0 - T) / 1200.0) ** 1.5
        lo, hi = np.searchsorted(_W, [L.MGH_BAND[0], L.MGH_BAND[1] + 20])
        row[lo:hi] += 0.5 * s_mgh * np.exp(-(L.MGH_BAND[1] - _W[lo:hi]).clip(0) / 250.0) * tex_mol[lo:hi]
        s_cah = max(0.0, (4000.0 - T) / 600.0) ** 1.3
        _add_band(row, L.CAH_BAND[0], 0.35 * s_cah, 18.0, +1, tex_mol)
        _add_band(row, L.air_to_vac(6750.0), 0.15 * s_cah, 80.0, +1, tex_mol)
        for nm, fr in (("NaI_D2", 0.55), ("NaI_D1", 0.45)):
            _add_line(row, S[nm][0], 0.6 * fr * _knots(T, EW_NAD), 0.6, depth=0.9)
        _add_line(row, S["CaI_4227"][0], 0.5 * _knots(T, EW_CAI), 0.5)
        for nm, (lam0, grp) in S.items():
            if grp in ("na8190", "ki"):
                tab = EW_NA8190 if grp == "na8190" else EW_KI
                _add_line(row, lam0, 0.5 * _knots(T, tab), 0.5)
        # giant-sensitive
        row = comps[k, CI["giant"]]
        s_cn = _knots(T, [(2300, 0.2), (3500, 0.35), (4000, 0.5), (4500, 0.6), (5000, 0.4), (5500, 0.15), (6000, 0), (50000, 0)])
        for head, d, length in L.CN_HEADS:
            _add_band(row, head, 2.0 * s_cn * d, length, -1, tex_c2)
        for nm, fr in (("CaII_8498", 0.2), ("CaII_8542", 0.45), ("CaII_8662", 0.35)):
            _add_line(row, S[nm][0], 0.35 * fr * _knots(T, EW_CAT), 2.0, depth=0.6)
        _add_line(row, S["SrII_4077"][0], 0.6 * eion, 0.3)
        for nm in ("OI_7772", "OI_7774", "OI_7775"):
            _add_line(row, S[nm][0], _knots(T, EW_OI) / 3.0, 0.4)
        # hot stars
        row = comps[k, CI["hot"]]
        ehe, ehe2 = _knots(T, EW_HEI), _knots(T, EW_HEII)
        rel = {"HeI_4026": 0.9, "HeI_4388": 0.5, "HeI_4471": 1.2, "HeI_4922": 0.6, "HeI_5876": 1.0,
               "HeI_6678": 0.6, "HeI_7065": 0.4, "HeII_4200": 0.6, "HeII_4542": 0.8, "HeII_4686": 1.0, "HeII_5411": 0.9}
        for nm, f in rel.items():
            e = ehe if nm.startswith("HeI_") else ehe2
            _add_line(row, S[nm][0], f * e, 0.8)
        # carbon stars
        row = comps[k, CI["carbon"]]
        for head, d, length in L.C2_HEADS:
            _add_band(row, head, 0.9 * d, length, -1, tex_c2)
        for head, d, length in L.CN_RED_HEADS:
            _add_band(row, head, 0.6 * d, length, +1, tex_c2)
    # intrinsic width floor (keeps narrow lines resolved on the pixel grid)
    comps = gaussian_filter1d(comps, INTRINSIC_SIGMA_PIX, axis=-1, mode="nearest")
    return lnc.astype(np.float32), comps.astype(np.float32)


_LIB = None


def library():
    """(lnC (K, REST_N), components (K, C, REST_N)), built once per process (~1 s)."""
    global _LIB
    if _LIB is None:
        _LIB = _build_library()
    return _LIB


def rest_spectra(teff, coefs, j_lo: int = 0, j_hi: int = REST_N) -> np.ndarray:
    """Rest-frame spectra (float32, arbitrary scale) on REST_WAVE[j_lo:j_hi].

    teff: (n,), coefs: (n, C) multipliers of the τ components.
    """
    lnc, comps = library()
    teff = np.asarray(teff, float)
    coefs = np.asarray(coefs, float)
    lt = np.clip(np.log10(teff), _LT[0], _LT[-1] - 1e-9)
    k0 = np.clip(np.searchsorted(_LT, lt) - 1, 0, len(_LT) - 2)
    w = (lt - _LT[k0]) / (_LT[k0 + 1] - _LT[k0])
    out = np.empty((len(teff), j_hi - j_lo), dtype=np.float32)
    for k in np.unique(k0):
        rows = np.nonzero(k0 == k)[0]
        ww = w[rows, None]
        active = np.nonzero(np.any(coefs[rows] != 0, axis=0))[0]
        cc = np.concatenate([(1 - ww) * coefs[rows][:, active], ww * coefs[rows][:, active]], axis=1).astype(np.float32)
        M = np.concatenate([comps[k][active, j_lo:j_hi], comps[k + 1][active, j_lo:j_hi]], axis=0)
        tau = cc @ M
        tau -= (1 - ww).astype(np.float32) * lnc[k][None, j_lo:j_hi]
        tau -= ww.astype(np.float32) * lnc[k + 1][None, j_lo:j_hi]
        np.negative(tau, out=tau)
        out[rows] = np.exp(tau)
    return out


# --- extinction ---------------------------------------------------------------------------
def ccm_alambda(wave, rv: float = 3.1) -> np.ndarray:
    """Cardelli, Clayton & Mathis (1989) A(λ)/A(V) for the optical/near-IR (λ in Å)."""
    x = 1e4 / np.asarray(wave, float)
    a = np.empty_like(x)
    b = np.empty_like(x)
    ir = x < 1.1
    a[ir] = 0.574 * x[ir] ** 1.61
    b[ir] = -0.527 * x[ir] ** 1.61
    op = ~ir & (x <= 3.3)
    y = x[op] - 1.82
    a[op] = np.polyval([0.32999, -0.77530, 0.01979, 0.72085, -0.02427, -0.50447, 0.17699, 1.0], y)
    b[op] = np.polyval([-2.09002, 5.30260, -0.62251, -5.38434, 1.07233, 2.28305, 1.41338, 0.0], y)
    uv = x > 3.3
    if uv.any():
        xu = x[uv]
        a[uv] = 1.752 - 0.316 * xu - 0.104 / ((xu - 4.67) ** 2 + 0.341)
        b[uv] = -3.090 + 1.825 * xu + 1.206 / ((xu - 4.62) ** 2 + 0.263)
    return a + b / rv


_A_LAMOST = ccm_alambda(LAMOST_WAVE)


def spectral_type(teff) -> list[str]:
    lt = np.log10(np.asarray(teff, float))
    idx = np.abs(lt[:, None] - _SPT_LT[None, :]).argmin(axis=1)
    return [SPT_TEFF[i][0] for i in idx]


# --- the generator ------------------------------------------------------------------------
_PAD = 48
_J_LO = REST_J0 - _PAD
_J_HI = REST_J0 + NPIX + _PAD


def draw_params(n: int, rng: np.random.Generator, kinds=None) -> dict:
    """Physical parameters of n stars drawn from the survey mix (or the given kinds)."""
    names = list(TYPE_MIX)
    p = np.array([TYPE_MIX[k] for k in names])
    if kinds is None:
        kinds = np.array(names)[rng.choice(len(names), n, p=p / p.sum())]
    kinds = np.asarray(kinds)
    lo = np.array([TYPE_TEFF[k][0] for k in kinds], float)
    hi = np.array([TYPE_TEFF[k][1] for k in kinds], float)
    teff = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    giant = np.array([rng.random() < GIANT_FRAC.get(k, 0.0) for k in kinds])
    giant[kinds == "C"] = rng.random((kinds == "C").sum()) < 0.9
    logg = np.where(giant, rng.uniform(1.0, 3.5, n), np.clip(rng.normal(4.45, 0.2, n) - 0.4 * (teff > 7500), 3.6, 5.2))
    logg[kinds == "WD"] = rng.normal(8.0, 0.25, (kinds == "WD").sum())
    halo = rng.random(n) < 0.07
    feh = np.where(halo, rng.normal(-1.4, 0.5, n), rng.normal(-0.2, 0.25, n)).clip(-2.5, 0.5)
    rv = np.where(rng.random(n) < 0.8, rng.normal(0, 35, n), rng.normal(0, 110, n))
    rv = np.where(halo, rng.normal(0, 150, n), rv).clip(-300, 300)
    vsini = np.where(teff > 7000, rng.uniform(20, 250, n), np.where(teff > 6200, rng.uniform(5, 60, n), rng.uniform(0, 10, n)))
    vsini[giant] *= 0.3
    ebv = rng.exponential(0.07, n) + (rng.random(n) < 0.1) * rng.exponential(0.3, n)
    ebv = np.minimum(ebv, 1.2)
    emission = (kinds == "M") & (teff < 3600) & ~giant & (rng.random(n) < 0.35)
    return dict(kind=kinds, teff=teff, logg=logg, feh=feh, rv=rv, vsini=vsini, ebv=ebv, giant=giant,
                dme=emission, h_scale=np.exp(rng.normal(0, 0.1, n)), mol_scale=np.exp(rng.normal(0, 0.15, n)))


def coefficients(par: dict) -> np.ndarray:
    n = len(par["teff"])
    c = np.zeros((n, len(COMPONENTS)))
    m = 10.0 ** par["feh"]
    d = np.clip((par["logg"] - 3.0) / 1.3, 0.0, 1.0)
    c[:, CI["kblank"]] = np.sqrt(m)
    c[:, CI["h_dwarf"]] = d * par["h_scale"]
    c[:, CI["h_giant"]] = (1 - d) * par["h_scale"]
    c[:, CI["metal"]] = m
    c[:, CI["ion"]] = m
    c[:, CI["mol"]] = np.sqrt(m) * par["mol_scale"]
    c[:, CI["dwarf"]] = d * m ** 0.7
    c[:, CI["giant"]] = (1 - d) * m
    c[:, CI["hot"]] = 1.0
    wd = par["kind"] == "WD"
    c[wd] = 0.0
    c[wd, CI["h_wd"]] = par["h_scale"][wd]
    cs = par["kind"] == "C"
    c[cs, CI["mol"]] = 0.0
    c[cs, CI["carbon"]] = par["mol_scale"][cs]
    return c


def generate(n: int, rng: np.random.Generator, lsf_scale, kinds=None, params: dict | None = None):
    """n star spectra on LAMOST_WAVE at LAMOST resolution (noise-free, median ≈ 1 in the r band).

    lsf_scale: (n,) fibre LSF width factors. Returns (flux (n, NPIX), list of meta dicts).
    """
    par = params if params is not None else draw_params(n, rng, kinds)
    lsf_scale = np.broadcast_to(np.asarray(lsf_scale, float), (n,))
    coefs = coefficients(par)
    rest = rest_spectra(par["teff"], coefs, _J_LO, _J_HI)
    z = par["rv"] / C_KMS
    sig_rot = 0.47 * par["vsini"] / PIX_KMS
    flux = shift_convolve(rest, z, lsf_scale, sig_rot, rest_j0=_PAD)
    # chromospheric emission in active M dwarfs (dMe): Hα, Hβ, Ca II H&K
    if par["dme"].any():
        rows = np.nonzero(par["dme"])[0]
        em = np.zeros((len(rows), NPIX))
        lam = np.array([6564.61, 4862.68, 3934.78, 3969.59])
        ew = rng.uniform(1.0, 10.0, len(rows))[:, None] * np.array([1.0, 0.6, 0.8, 0.7])[None, :]
        lobs = lam[None, :] * (1 + z[rows, None])
        cen = wave_to_pix(lobs)
        ci = np.clip(np.round(cen).astype(int), 0, NPIX - 1)
        cont = np.take_along_axis(flux[rows], ci, axis=1)
        add_gaussians(em, cen, lsf_sigma_pix(lobs, lsf_scale[rows, None]), ew * cont / (lam[None, :] * LN10 * DLOG))
        flux[rows] += em
    # interstellar medium: reddening + Na D + diffuse bands, at rest in the ISM (z ≈ 0)
    ebv = par["ebv"]
    flux *= 10.0 ** (-0.4 * 3.1 * ebv[:, None] * _A_LAMOST[None, :])
    ism = np.zeros_like(flux)
    ism_lines = np.array([5891.58, 5897.56, 5781.0, 6285.0, 4429.0])
    ew_na = 1.6 * np.minimum(ebv, 1.2) ** 0.6
    ew = np.stack([0.55 * ew_na, 0.45 * ew_na, 0.5 * ebv, 0.9 * ebv, 1.6 * ebv], axis=1)
    width = np.array([0.3, 0.3, 1.0, 2.0, 8.0])          # intrinsic σ in pixels (DIBs are broad)
    ism_rv = rng.normal(0, 10, n) / C_KMS
    lobs = ism_lines[None, :] * (1 + ism_rv[:, None])
    add_gaussians(ism, wave_to_pix(lobs), np.sqrt(lsf_sigma_pix(lobs, lsf_scale[:, None]) ** 2 + width[None, :] ** 2),
                  ew / (ism_lines[None, :] * LN10 * DLOG))
    flux *= np.clip(1.0 - ism, 0.0, None)
    # normalise
    med = np.median(flux[:, (LAMOST_WAVE > 6000) & (LAMOST_WAVE < 6900)], axis=1)
    flux /= np.maximum(med, 1e-30)[:, None]
    sub = spectral_type(par["teff"])
    meta = []
    for i in range(n):
        kind = par["kind"][i]
        subclass = "WD" if kind == "WD" else ("Carbon" if kind == "C" else sub[i])
        meta.append({"label": "star", "subclass": subclass, "z": float(z[i]), "teff": float(par["teff"][i]),
                     "logg": float(par["logg"][i]), "feh": float(par["feh"][i]), "rv_kms": float(par["rv"][i]),
                     "vsini_kms": float(par["vsini"][i]), "ebv": float(ebv[i]),
                     "lum_class": "III" if par["giant"][i] else ("WD" if kind == "WD" else "V")})
    return flux, meta
