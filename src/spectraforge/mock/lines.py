"""Line lists for the mock survey, all in VACUUM wavelengths (Å).

Where a line is best known by its air wavelength (stellar lines, night-sky lines) the list
holds the air value and converts it with :func:`air_to_vac` (the IAU / Morton 2000 formula,
the one SDSS and LAMOST use), so the source value stays readable next to the converted one.

Contents
- hydrogen series from the Rydberg formula (Balmer, Paschen) with the usual low-n values;
- stellar absorption features (atomic lines, molecular band heads) with the spectral types
  where they matter;
- galaxy nebular emission lines and quasar broad/narrow emission lines;
- night-sky emission lines (Xinglong: Hg and Na street lamps, [O I], OH forest) and telluric
  absorption bands.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "air_to_vac", "vac_to_air", "balmer", "paschen",
    "STAR_LINES", "TIO_HEADS", "VO_HEADS", "C2_HEADS", "CN_HEADS",
    "GALAXY_EMISSION", "QSO_LINES", "QSO_NARROW", "FE2_UV_BUMPS", "FE2_OPT_BUMPS",
    "SKY_LINES", "TELLURIC_BANDS", "LYA", "LYB", "LYMAN_LIMIT",
]


def air_to_vac(wave_air):
    """Air → vacuum wavelength (Å), IAU standard (Morton 2000 / Ciddor 1996), valid > 2000 Å."""
    w = np.asarray(wave_air, dtype=np.float64)
    s2 = (1e4 / w) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return w * n


def vac_to_air(wave_vac):
    """Vacuum → air wavelength (Å), the inverse used by SDSS (Morton 2000)."""
    w = np.asarray(wave_vac, dtype=np.float64)
    s2 = (1e4 / w) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return w / n


# --- hydrogen -------------------------------------------------------------------------------
RYDBERG_H = 109677.583  # cm^-1, hydrogen (reduced-mass) Rydberg constant, vacuum

# Measured vacuum values (fine-structure weighted) for the low members
_BALMER_LOW = {3: 6564.61, 4: 4862.68, 5: 4341.68, 6: 4102.89, 7: 3971.20, 8: 3890.16, 9: 3836.47, 10: 3798.98}


def balmer(n_upper) -> np.ndarray:
    """Vacuum wavelength of Balmer line n → 2 (n = 3 is Hα)."""
    n = np.atleast_1d(np.asarray(n_upper))
    out = 1e8 / (RYDBERG_H * (0.25 - 1.0 / n.astype(float) ** 2))
    for i, k in enumerate(n):
        if int(k) in _BALMER_LOW:
            out[i] = _BALMER_LOW[int(k)]
    return out


def paschen(n_upper) -> np.ndarray:
    """Vacuum wavelength of Paschen line n → 3 (n = 4 is Pα)."""
    n = np.atleast_1d(np.asarray(n_upper)).astype(float)
    return 1e8 / (RYDBERG_H * (1.0 / 9.0 - 1.0 / n ** 2))


BALMER_LIMIT = 1e8 / (RYDBERG_H / 4.0)     # 3647.05 Å vacuum
PASCHEN_LIMIT = 1e8 / (RYDBERG_H / 9.0)    # 8205.9 Å vacuum
LYA = 1215.67
LYB = 1025.72
LYMAN_LIMIT = 911.75

# --- stellar absorption lines ----------------------------------------------------------------
# name -> (vacuum wavelength, group). Groups decide how strengths scale with Teff / gravity
# (see stars.py). Air values are converted here.
_STAR_AIR = {
    # Ca II
    "CaII_K": (3933.663, "caii_hk"), "CaII_H": (3968.468, "caii_hk"),
    "CaII_8498": (8498.02, "cat"), "CaII_8542": (8542.09, "cat"), "CaII_8662": (8662.14, "cat"),
    # neutral metals, gravity-sensitive alkalis
    "CaI_4227": (4226.728, "cai"),
    "MgI_5167": (5167.321, "mgb"), "MgI_5173": (5172.684, "mgb"), "MgI_5184": (5183.604, "mgb"),
    "NaI_D2": (5889.951, "nad"), "NaI_D1": (5895.924, "nad"),
    "NaI_8183": (8183.256, "na8190"), "NaI_8195": (8194.824, "na8190"),
    "KI_7665": (7664.899, "ki"), "KI_7699": (7698.965, "ki"),
    "FeI_4046": (4045.813, "fe_strong"), "FeI_4064": (4063.594, "fe_strong"), "FeI_4072": (4071.738, "fe_strong"),
    "FeI_4325": (4325.762, "fe_strong"), "FeI_4383": (4383.545, "fe_strong"), "FeI_4405": (4404.750, "fe_strong"),
    "FeI_4957": (4957.597, "fe_strong"), "FeI_5270": (5269.537, "fe_strong"), "FeI_5328": (5328.039, "fe_strong"),
    "FeI_5406": (5405.775, "fe_strong"), "FeI_5430": (5429.697, "fe_strong"), "FeI_5447": (5446.917, "fe_strong"),
    "FeI_5615": (5615.644, "fe_strong"), "FeI_6495": (6494.980, "fe_strong"),
    "CaI_6122": (6122.217, "cai_red"), "CaI_6162": (6162.173, "cai_red"), "CaI_6439": (6439.075, "cai_red"),
    "MgI_8807": (8806.756, "mgi_ir"),
    "CrI_5206": (5206.04, "fe_strong"), "TiI_4982": (4981.73, "fe_strong"),
    "FeI_4132": (4132.058, "fe_strong"), "FeI_4144": (4143.868, "fe_strong"), "FeI_4202": (4202.029, "fe_strong"),
    "FeI_4260": (4260.474, "fe_strong"), "FeI_4272": (4271.760, "fe_strong"), "FeI_4308": (4307.902, "fe_strong"),
    "FeI_4529": (4528.614, "fe_strong"), "FeI_4891": (4891.492, "fe_strong"), "FeI_4920": (4920.502, "fe_strong"),
    "FeI_5233": (5232.940, "fe_strong"), "FeI_5371": (5371.489, "fe_strong"), "FeI_5397": (5397.128, "fe_strong"),
    "FeI_5456": (5455.609, "fe_strong"), "FeI_5587": (5586.756, "fe_strong"), "FeI_6137": (6137.0, "fe_strong"),
    "FeI_6231": (6230.722, "fe_strong"), "FeI_6253": (6252.555, "fe_strong"), "FeI_6394": (6393.600, "fe_strong"),
    "FeI_6400": (6400.000, "fe_strong"), "FeI_6546": (6546.238, "fe_strong"), "FeI_6593": (6592.913, "fe_strong"),
    "FeI_8327": (8327.053, "fe_strong"), "FeI_8388": (8387.772, "fe_strong"), "FeI_8468": (8468.406, "fe_strong"),
    "FeI_8514": (8514.071, "fe_strong"), "FeI_8689": (8688.621, "fe_strong"),
    "CaI_5262": (5261.704, "fe_strong"), "FeI_5266": (5266.555, "fe_strong"), "FeI_5282": (5281.790, "fe_strong"),
    "FeI_5284": (5283.621, "fe_strong"), "FeI_5324": (5324.179, "fe_strong"), "FeI_5341": (5341.024, "fe_strong"),
    # ionised, peaking in late A – F
    "SrII_4077": (4077.709, "ion"), "SrII_4215": (4215.519, "ion"),
    "BaII_4554": (4554.029, "ion"), "BaII_6497": (6496.897, "ion"),
    "FeII_4924": (4923.927, "ion"), "FeII_5018": (5018.440, "ion"), "FeII_5169": (5169.033, "ion"),
    "TiII_4444": (4443.794, "ion"), "TiII_4501": (4501.270, "ion"),
    "MgII_4481": (4481.13, "mgii"), "SiII_6347": (6347.10, "sii_a"), "SiII_6371": (6371.37, "sii_a"),
    "OI_7772": (7771.94, "oi"), "OI_7774": (7774.17, "oi"), "OI_7775": (7775.39, "oi"),
    # helium (B stars: He I; O stars: He II)
    "HeI_4026": (4026.19, "hei"), "HeI_4388": (4387.93, "hei"), "HeI_4471": (4471.48, "hei"),
    "HeI_4922": (4921.93, "hei"), "HeI_5876": (5875.62, "hei"), "HeI_6678": (6678.15, "hei"),
    "HeI_7065": (7065.19, "hei"),
    "HeII_4200": (4199.83, "heii"), "HeII_4542": (4541.59, "heii"), "HeII_4686": (4685.71, "heii"),
    "HeII_5411": (5411.52, "heii"),
}
STAR_LINES: dict[str, tuple[float, str]] = {k: (float(air_to_vac(v[0])), v[1]) for k, v in _STAR_AIR.items()}

# Molecular band heads, vacuum Å. TiO and VO bands in M stars are degraded to the red:
# sharp edge at the head (blue side), gradual recovery to the red. Relative strength, e-folding
# recovery length (Å).
_TIO_AIR = [  # (head air Å, relative depth, recovery length Å)
    (4761.0, 0.25, 120.0), (4954.6, 0.45, 140.0), (5166.7, 0.55, 160.0), (5448.0, 0.6, 140.0),
    (5597.0, 0.45, 110.0), (5847.0, 0.55, 150.0), (6158.0, 0.90, 180.0), (6651.0, 0.75, 140.0),
    (7053.0, 1.00, 190.0), (7589.0, 0.75, 160.0), (8432.0, 0.3, 150.0), (8859.0, 0.25, 140.0),
]
TIO_HEADS = [(float(air_to_vac(h)), d, L) for h, d, L in _TIO_AIR]
_VO_AIR = [(7334.0, 0.6, 120.0), (7851.0, 0.8, 200.0), (8521.0, 0.5, 150.0)]
VO_HEADS = [(float(air_to_vac(h)), d, L) for h, d, L in _VO_AIR]
# CaH (M dwarfs, narrow band) and MgH (K/M dwarfs, broad depression around Mg b)
CAH_BAND = (float(air_to_vac(6382.0)), float(air_to_vac(6410.0)))
MGH_BAND = (float(air_to_vac(4780.0)), float(air_to_vac(5200.0)))
# CH G band: a dense blend 4295-4318 Å (air)
GBAND = (float(air_to_vac(4296.0)), float(air_to_vac(4318.0)))
# CN violet band heads in G/K giants, degraded to the blue (sharp red edge)
CN_HEADS = [(float(air_to_vac(3883.0)), 1.0, 45.0), (float(air_to_vac(4216.0)), 0.6, 40.0)]
# C2 Swan bands in carbon stars, degraded to the blue
_C2_AIR = [(4737.0, 1.0, 170.0), (5165.0, 1.0, 190.0), (5635.5, 0.9, 200.0), (6191.0, 0.5, 160.0)]
C2_HEADS = [(float(air_to_vac(h)), d, L) for h, d, L in _C2_AIR]
# CN red system in carbon stars, degraded to the red
CN_RED_HEADS = [(float(air_to_vac(h)), d, L) for h, d, L in
                [(6926.0, 0.6, 180.0), (7088.0, 0.6, 200.0), (7876.0, 0.8, 220.0), (8067.0, 0.7, 220.0)]]

# --- galaxy nebular emission (vacuum) -----------------------------------------------------
GALAXY_EMISSION = {
    "OII_3727": 3727.092, "OII_3730": 3729.875, "NeIII_3870": 3869.86, "HeI_3889": 3889.75,
    "Hzeta": 3890.16, "Hepsilon": 3971.20, "Hdelta": 4102.89, "Hgamma": 4341.68, "OIII_4364": 4364.44,
    "HeII_4687": 4687.02, "Hbeta": 4862.68, "OIII_4960": 4960.30, "OIII_5008": 5008.24,
    "NI_5199": 5199.35, "HeI_5877": 5877.25, "OI_6302": 6302.05, "OI_6365": 6365.54,
    "NII_6550": 6549.86, "Halpha": 6564.61, "NII_6585": 6585.27, "HeI_6680": 6679.99,
    "SII_6718": 6718.29, "SII_6733": 6732.67, "ArIII_7138": 7137.77, "OII_7322": 7321.94,
    "SIII_9071": 9071.1,
}

# --- quasar emission (vacuum). name -> (λ, median rest EW Å, median FWHM factor, family)
# EWs after the SDSS composite (Vanden Berk et al. 2001); 'fw' multiplies the object's
# broad-line FWHM (high-ionisation lines are a bit broader).
QSO_LINES = {
    "OVI_1034": (1033.82, 12.0, 1.1, "hil"),
    "Lyb": (1025.72, 6.0, 1.0, "hil"),
    "Lya": (1215.67, 70.0, 0.9, "hil"),
    "NV_1240": (1240.14, 14.0, 0.9, "hil"),
    "SiII_1263": (1262.59, 1.5, 1.0, "lil"),
    "OI_1304": (1304.35, 2.0, 1.0, "lil"),
    "CII_1335": (1335.30, 0.8, 1.0, "lil"),
    "SiIV_1400": (1399.80, 8.5, 1.1, "hil"),
    "CIV_1549": (1549.06, 26.0, 1.1, "hil"),
    "HeII_1640": (1640.42, 1.5, 1.2, "hil"),
    "OIII_1663": (1663.48, 0.6, 1.0, "hil"),
    "AlIII_1857": (1857.40, 0.5, 1.0, "lil"),
    "SiIII_1892": (1892.03, 1.5, 1.0, "lil"),
    "CIII_1909": (1908.73, 19.0, 1.0, "lil"),
    "MgII_2799": (2799.49, 32.0, 0.9, "lil"),
    "Hdelta": (4102.89, 5.0, 0.9, "balmer"),
    "Hgamma": (4341.68, 12.0, 0.9, "balmer"),
    "HeII_4687": (4687.02, 1.0, 1.0, "hil"),
    "Hbeta": (4862.68, 55.0, 1.0, "balmer"),
    "HeI_5877": (5877.25, 6.0, 1.0, "balmer"),
    "Halpha": (6564.61, 250.0, 0.85, "balmer"),
}
# narrow lines: name -> (λ, median rest EW Å)
QSO_NARROW = {
    "NeV_3347": (3346.79, 0.5), "NeV_3427": (3426.85, 1.2), "OII_3728": (3728.48, 1.5),
    "NeIII_3870": (3869.86, 1.3), "OIII_4960": (4960.30, 4.5), "OIII_5008": (5008.24, 13.0),
    "NII_6585": (6585.27, 2.0), "SII_6725": (6725.5, 1.0),
}
# Fe II pseudo-continuum, approximated by broad bumps: (centre Å, sigma Å, relative amplitude)
FE2_UV_BUMPS = [(2150.0, 60.0, 0.3), (2370.0, 90.0, 0.9), (2470.0, 60.0, 0.6), (2600.0, 70.0, 1.0),
                (2700.0, 40.0, 0.5), (2950.0, 90.0, 0.9), (3100.0, 60.0, 0.4)]
FE2_OPT_BUMPS = [(4470.0, 40.0, 0.7), (4560.0, 45.0, 1.0), (4640.0, 30.0, 0.5),
                 (5190.0, 35.0, 0.6), (5275.0, 40.0, 0.8), (5330.0, 30.0, 0.5)]

# --- night sky (Xinglong, LAMOST site) -----------------------------------------------------
# (air λ, relative line flux in units of the sky continuum per Å at 6500 Å, residual group)
# Groups: 0 = [O I] 5577, 1 = Na D (lamps + airglow), 2 = [O I] 6300/6364, 3 = Hg lamps,
# 4 = OH forest.
_SKY_AIR = [
    (4046.56, 8, 3), (4358.34, 18, 3), (5460.74, 22, 3), (5769.60, 8, 3), (5790.66, 9, 3),
    (5577.34, 225, 0), (5889.95, 14, 1), (5895.92, 11, 1),
    (6300.30, 54.45, 2), (6363.78, 18.56, 2),
    # OH Meinel bands, brightest members (air), fluxes rising to the red
    (5915.30, 3, 4), (5932.86, 3, 4), (5953.42, 3, 4), (6257.96, 4.5, 4), (6287.43, 6, 4),
    (6306.87, 3.6, 4), (6498.73, 6, 4), (6533.04, 7.5, 4), (6553.62, 7.5, 4), (6577.28, 6, 4),
    (6596.64, 4.5, 4), (6834.0, 6, 4), (6841.95, 7.5, 4), (6863.96, 15, 4), (6870.99, 7.5, 4),
    (6889.29, 9, 4), (6900.83, 6, 4), (6912.62, 12, 4), (6923.22, 15, 4), (6939.52, 12, 4),
    (6969.93, 9, 4), (7003.86, 7.5, 4), (7244.91, 12, 4), (7276.41, 18, 4), (7284.44, 12, 4),
    (7316.28, 24, 4), (7329.15, 15, 4), (7340.89, 24, 4), (7358.66, 18, 4), (7369.25, 9, 4),
    (7401.7, 9, 4), (7571.75, 9, 4), (7750.64, 24, 4), (7759.99, 18, 4), (7794.11, 30, 4),
    (7808.47, 24, 4), (7821.50, 30, 4), (7841.27, 18, 4), (7853.0, 12, 4), (7913.71, 36, 4),
    (7949.20, 21, 4), (7964.65, 42, 4), (7993.33, 42, 4), (8014.06, 24, 4), (8025.8, 15, 4),
    (8052.02, 15, 4), (8062.2, 15, 4), (8288.0, 12, 4), (8310.72, 21, 4), (8344.60, 45, 4),
    (8382.39, 30, 4), (8399.17, 42, 4), (8415.23, 36, 4), (8430.17, 42, 4), (8452.25, 18, 4),
    (8465.3, 30, 4), (8493.39, 42, 4), (8504.8, 30, 4), (8548.0, 9, 4), (8761.31, 24, 4),
    (8767.91, 30, 4), (8778.33, 42, 4), (8791.19, 48, 4), (8827.10, 60, 4), (8836.0, 18, 4),
    (8867.6, 18, 4), (8885.85, 54, 4), (8903.11, 48, 4), (8919.6, 42, 4), (8943.40, 42, 4),
    (8958.1, 48, 4), (8988.37, 54, 4), (9001.35, 42, 4), (9038.05, 42, 4), (9049.5, 36, 4),
    (9093.0, 18, 4),
]
SKY_LINES = [(float(air_to_vac(w)), f, g) for w, f, g in _SKY_AIR]
SKY_GROUPS = 5

# Telluric absorption bands (vacuum): (start, end, central optical depth at airmass 1, kind)
# kind 'o2' scales with airmass; 'h2o' with airmass × precipitable water.
TELLURIC_BANDS = [
    (6278.0, 6320.0, 0.02, "o2"),            # O2 γ band
    (6470.0, 6580.0, 0.01, "h2o"),
    (6869.0, 6925.0, 0.12, "o2"),            # O2 B band (head at 6869 Å vacuum)
    (7165.0, 7345.0, 0.04, "h2o"),
    (7596.0, 7700.0, 0.35, "o2"),            # O2 A band (strongest near 7605 Å vacuum)
    (8130.0, 8350.0, 0.035, "h2o"),
    (8950.0, 9200.0, 0.10, "h2o"),
]
