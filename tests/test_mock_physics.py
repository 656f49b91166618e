"""Physics of the embedded mock survey (spectraforge.mock): fast checks (< 20 s)."""
import numpy as np
import pytest

from spectraforge.mock import LAMOST_WAVE, SimBatch, simulate
from spectraforge.mock import galaxies, instrument, quasars, stars
from spectraforge.mock.instrument import C_KMS, R_MASK

LABELS = ["star"] * 40 + ["galaxy"] * 10 + ["qso"] * 10 + ["unknown"] * 20


@pytest.fixture(scope="module")
def batch() -> SimBatch:
    return simulate(LABELS, 123, return_noiseless=True)


def _centroid(wave, depth, lo, hi):
    m = (wave > lo) & (wave < hi)
    w = np.clip(depth[m], 0, None)
    return float((wave[m] * w).sum() / w.sum())


def _line_profile(wave, flux, center, half=30.0, cont_half=60.0):
    """Continuum-subtracted profile around ``center``: (wave, flux - linear continuum)."""
    win = (wave > center - cont_half) & (wave < center + cont_half)
    side = win & (np.abs(wave - center) > half)
    c = np.polyfit(wave[side], flux[side], 1)
    return wave, flux - np.polyval(c, wave)


def test_grid():
    assert LAMOST_WAVE.dtype == np.float64 and LAMOST_WAVE.shape == (3909,)
    np.testing.assert_allclose(LAMOST_WAVE, 10 ** (3.5682 + 1e-4 * np.arange(3909)))
    assert 3690 < LAMOST_WAVE[0] < 3710 and 9090 < LAMOST_WAVE[-1] < 9110


def test_shapes_dtypes_and_labels(batch):
    n = len(LABELS)
    assert batch.flux.shape == batch.ivar.shape == batch.andmask.shape == (n, 3909)
    assert batch.flux.dtype == np.float32 and batch.ivar.dtype == np.float32 and batch.andmask.dtype == np.int32
    np.testing.assert_array_equal(batch.wave, LAMOST_WAVE)
    assert [m["label"] for m in batch.meta] == LABELS
    assert np.isfinite(batch.flux).all() and np.isfinite(batch.ivar).all() and (batch.ivar >= 0).all()
    # bad pixels: flagged and zero weight
    assert (batch.ivar[batch.andmask != 0] == 0).all()
    for m in batch.meta:
        assert {"label", "subclass", "z", "snr"} <= set(m)
        if m["label"] == "unknown":
            assert m["z"] is None
        else:
            assert isinstance(m["z"], float)
    star_z = np.array([m["z"] for m in batch.meta if m["label"] == "star"])
    assert np.all(np.abs(star_z) <= 300.0 / C_KMS + 1e-12)
    gz = np.array([m["z"] for m in batch.meta if m["label"] == "galaxy"])
    qz = np.array([m["z"] for m in batch.meta if m["label"] == "qso"])
    assert gz.min() >= 0 and gz.max() <= 0.55 and qz.min() >= 0.05 and qz.max() <= 4.0


def test_flux_levels_like_lamost(batch):
    med = np.array([np.median(batch.noiseless[i][R_MASK]) for i, m in enumerate(batch.meta) if m["label"] == "star"])
    assert np.median(med) > 10 and np.percentile(med, 90) > 100


def test_determinism():
    a = simulate(["star", "galaxy", "qso", "unknown"] * 3, 7)
    b = simulate(["star", "galaxy", "qso", "unknown"] * 3, 7)
    c = simulate(["star", "galaxy", "qso", "unknown"] * 3, 8)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.ivar, b.ivar)
    np.testing.assert_array_equal(a.andmask, b.andmask)
    assert a.meta == b.meta
    assert not np.array_equal(a.flux, c.flux)
    g = simulate(["star"] * 3, np.random.default_rng(5))
    h = simulate(["star"] * 3, np.random.default_rng(5))
    np.testing.assert_array_equal(g.flux, h.flux)


def test_ivar_matches_added_noise(batch):
    good = batch.ivar > 0
    chi = ((batch.flux - batch.noiseless) * np.sqrt(batch.ivar))[good]
    assert abs(chi.std() - 1.0) < 0.03
    assert abs(chi.mean()) < 0.02
    # ivar varies with the flux (Poisson) and the throughput: the blue end is noisier
    s = [i for i, m in enumerate(batch.meta) if m["label"] == "star"]
    blue = np.median(batch.ivar[s][:, LAMOST_WAVE < 3900], axis=1)
    red = np.median(batch.ivar[s][:, R_MASK], axis=1)
    assert np.median(blue / red) < 0.2


def test_snr_matches_meta(batch):
    for i, m in enumerate(batch.meta):
        if m["label"] == "unknown" or m["snr"] < 3:
            continue
        good = batch.ivar[i][R_MASK] > 0
        measured = np.median((batch.flux[i] * np.sqrt(batch.ivar[i]))[R_MASK][good])
        assert abs(measured - m["snr"]) < 0.12 * m["snr"] + 0.3, (m, measured)
        if m["snr_target"] > 5:   # fainter: the sky left by the subtraction (± a few % of a sky 2-5× the source) moves it
            assert abs(m["snr"] - m["snr_target"]) < 0.08 * m["snr_target"] + 0.1


def test_snr_distribution_spans_survey_range():
    from spectraforge.mock.calibrate import TIANCHI_MIX, draw_labels
    b = simulate(draw_labels(600, TIANCHI_MIX, 1), 1)
    snr = np.array([m["snr"] for m in b.meta])
    star = np.array([m["snr"] for m in b.meta if m["label"] == "star"])
    gal = np.array([m["snr"] for m in b.meta if m["label"] in ("galaxy", "qso")])
    unk = np.array([m["snr"] for m in b.meta if m["label"] == "unknown"])
    assert (snr < 2).any() and (snr > 50).any()
    assert np.median(star) > np.median(gal) > np.median(unk)
    assert np.median(unk) < 3


def _star_params(teff, rv, kind):
    p = stars.draw_params(1, np.random.default_rng(0), kinds=[kind])
    p.update(teff=np.array([float(teff)]), rv=np.array([float(rv)]), ebv=np.zeros(1), feh=np.zeros(1),
             logg=np.array([4.3]), vsini=np.zeros(1), dme=np.zeros(1, bool))
    return p


def _core_minimum(wave, flux, guess, half=6.0):
    """Wavelength of a line core: parabola through the lowest pixel and its neighbours."""
    m = np.nonzero((wave > guess - half) & (wave < guess + half))[0]
    k = m[np.argmin(flux[m])]
    y0, y1, y2 = flux[k - 1], flux[k], flux[k + 1]
    dx = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return float(np.interp(k + dx, np.arange(len(wave)), wave))


@pytest.mark.parametrize("rv", [-180.0, 95.0, 260.0])
def test_star_halpha_at_rv(rv):
    gen = lambda v: stars.generate(1, np.random.default_rng(1), np.ones(1), params=_star_params(7500, v, "A"))  # noqa: E731
    flux, meta = gen(rv)
    flux0, _ = gen(0.0)
    expect = 6564.61 * (1 + rv / C_KMS)
    # the line core sits at the Doppler-shifted vacuum wavelength
    assert abs(_core_minimum(LAMOST_WAVE, flux[0], expect) - expect) < 0.25        # ≈ 11 km/s
    # and the whole profile moves by the Doppler shift
    w, p = _line_profile(LAMOST_WAVE, flux[0], expect, half=40, cont_half=80)
    w0, p0 = _line_profile(LAMOST_WAVE, flux0[0], 6564.61, half=40, cont_half=80)
    shift = _centroid(w, -p, expect - 25, expect + 25) - _centroid(w0, -p0, 6564.61 - 25, 6564.61 + 25)
    assert abs(shift - 6564.61 * rv / C_KMS) < 0.08, shift
    assert abs(meta[0]["z"] - rv / C_KMS) < 1e-12 and meta[0]["rv_kms"] == rv


def test_star_halpha_in_simulated_observation(batch):
    # full pipeline: the Hα absorption of warm, bright stars sits at the meta redshift
    checked = 0
    for i, m in enumerate(batch.meta):
        if m["label"] != "star" or m["snr"] < 20 or not 5800 < m["teff"] < 11000:
            continue
        expect = 6564.61 * (1 + m["z"])
        got = _core_minimum(LAMOST_WAVE, batch.noiseless[i].astype(float), expect)
        assert abs(got - expect) < 0.6, (m, got, expect)
        checked += 1
    assert checked >= 3


def test_spectral_sequence_balmer_and_calcium():
    """Balmer lines peak in A stars; Ca II K grows towards G/K."""
    def ew(flux, lo, hi, c1, c2):
        w = LAMOST_WAVE
        cont = np.interp(w, [np.mean(c1), np.mean(c2)],
                         [np.median(flux[(w > c1[0]) & (w < c1[1])]), np.median(flux[(w > c2[0]) & (w < c2[1])])])
        m = (w > lo) & (w < hi)
        return float(np.sum((1 - flux[m] / cont[m]) * np.gradient(w)[m]))
    out = {}
    for kind, teff in (("A", 9300), ("G", 5800), ("K", 4500)):
        f, _ = stars.generate(1, np.random.default_rng(2), np.ones(1), params=_star_params(teff, 0, kind))
        out[kind] = (ew(f[0], 4840, 4885, (4800, 4830), (4890, 4920)), ew(f[0], 3925, 3945, (3900, 3915), (3950, 3960)))
    assert out["A"][0] > 2 * out["G"][0] > 2 * out["K"][0] * 0.9
    assert out["K"][1] > out["A"][1] + 3 and out["G"][1] > out["A"][1] + 3


def test_m_star_tio_band_heads():
    w = LAMOST_WAVE
    fm, _ = stars.generate(1, np.random.default_rng(3), np.ones(1), params=_star_params(3200, 0, "M"))
    fg, _ = stars.generate(1, np.random.default_rng(3), np.ones(1), params=_star_params(5800, 0, "G"))
    for head in (4955.0, 5167.0, 6159.0, 7054.0):
        head_v = float(instrument_air_to_vac(head))
        blue = (w > head_v - 18) & (w < head_v - 4)
        red = (w > head_v + 4) & (w < head_v + 18)
        r_m = np.median(fm[0][red]) / np.median(fm[0][blue])
        r_g = np.median(fg[0][red]) / np.median(fg[0][blue])
        assert r_m < 0.85, (head, r_m)           # sharp drop at the band head
        assert r_m < r_g - 0.1, (head, r_m, r_g)


def instrument_air_to_vac(x):
    from spectraforge.mock.lines import air_to_vac
    return air_to_vac(x)


def test_galaxy_emission_lines_at_redshift():
    rng = np.random.default_rng(4)
    par = galaxies.draw_params(3, rng)
    par.update(kind=np.array(["starforming"] * 3), sf=np.array([0.7, 0.7, 0.7]), z=np.array([0.05, 0.12, 0.3]),
               ebv=np.zeros(3))
    flux, meta = galaxies.generate(3, rng, np.ones(3), params=par)
    for i, z in enumerate(par["z"]):
        assert meta[i]["z"] == z
        for lam in (6564.61, 5008.24, 4862.68):
            expect = lam * (1 + z)
            if expect > 9000:
                continue
            w, prof = _line_profile(LAMOST_WAVE, flux[i], expect, half=12, cont_half=40)
            got = _centroid(w, prof, expect - 6, expect + 6)
            assert abs(got - expect) < 0.5, (z, lam, got, expect)
            assert prof[np.argmin(np.abs(w - expect))] > 0.1


def test_passive_galaxy_has_4000_break():
    rng = np.random.default_rng(5)
    par = galaxies.draw_params(1, rng)
    par.update(kind=np.array(["passive"]), sf=np.array([0.02]), z=np.array([0.1]), ebv=np.zeros(1))
    f, _ = galaxies.generate(1, rng, np.ones(1), params=par)
    w = LAMOST_WAVE / 1.1
    fnu = f[0] * LAMOST_WAVE ** 2
    d4000 = fnu[(w > 4000) & (w < 4100)].mean() / fnu[(w > 3850) & (w < 3950)].mean()
    assert 1.6 < d4000 < 2.4


@pytest.mark.parametrize("z,lines", [(0.3, (4862.68,)), (1.5, (2799.49,)), (2.4, (1549.06,))])
def test_quasar_broad_lines_at_redshift(z, lines):
    rng = np.random.default_rng(6)
    par = quasars.draw_params(1, rng)
    par.update(z=np.array([z]), civ_shift=np.zeros(1), bal=np.zeros(1, bool), dla=np.zeros(1, bool),
               lls=np.zeros(1, bool), host=np.zeros(1), ebv=np.zeros(1), fwhm=np.array([4000.0]), lum=np.zeros(1))
    par["ew_scatter"][:] = 0.0
    par["nl_scatter"][:] = 0.0
    flux, meta = quasars.generate(1, rng, np.ones(1), params=par)
    for lam in lines:
        expect = lam * (1 + z)
        w, prof = _line_profile(LAMOST_WAVE, flux[0], expect, half=70, cont_half=140)
        got = _centroid(w, prof, expect - 50, expect + 50)
        assert abs(got - expect) < 3.0, (lam, got, expect)
        sel = (w > expect - 50) & (w < expect + 50)
        fwhm_kms = C_KMS * (np.sum(prof[sel] > prof[sel].max() / 2) * (w[1] - w[0]) * expect / w[0]) / expect
        assert 2500 < fwhm_kms < 8000           # broad, not narrow


def test_quasar_lyman_alpha_forest():
    rng = np.random.default_rng(7)
    par = quasars.draw_params(1, rng)
    par.update(z=np.array([3.0]), bal=np.zeros(1, bool), dla=np.zeros(1, bool), lls=np.zeros(1, bool))
    flux, _ = quasars.generate(1, rng, np.ones(1), params=par)
    w = LAMOST_WAVE / 4.0
    blue = flux[0][(w > 1080) & (w < 1180)]
    red = flux[0][(w > 1280) & (w < 1350)]
    assert np.median(blue) < 0.9 * np.median(red)            # forest absorption (τ_eff ≈ 0.3-0.45)
    assert np.std(np.diff(blue)) > 3 * np.std(np.diff(red))  # and its small-scale structure


def test_unknown_class_is_low_snr_or_broken(batch):
    unk = [m for m in batch.meta if m["label"] == "unknown"]
    assert {"source_label", "source_z", "subclass"} <= set(unk[0])
    assert np.median([m["snr"] for m in unk]) < 4


def test_shift_convolve_preserves_position_and_flux():
    rest = np.zeros((2, instrument.REST_N), np.float32)
    lam0 = 5000.0
    j = int(round((np.log10(lam0) - instrument.LOG0) / instrument.DLOG)) + instrument.REST_J0
    rest[:, j] = 1.0
    lam0 = instrument.REST_WAVE[j]
    out = instrument.shift_convolve(rest, np.array([0.0, 0.2]), np.ones(2), intrinsic=0.0)
    for k, z in enumerate((0.0, 0.2)):
        c = (LAMOST_WAVE * out[k]).sum() / out[k].sum()
        assert abs(c - lam0 * (1 + z)) < 0.05
        assert abs(out[k].sum() - 1.0) < 1e-3
        pk = np.argmax(out[k])
        win = out[k][pk - 12:pk + 13]
        sig_pix = np.sqrt(((np.arange(-12, 13) ** 2) * win).sum() / win.sum())
        assert abs(sig_pix - instrument.lsf_sigma_pix(lam0 * (1 + z))) < 0.15


def test_throughput_and_arm_join(batch):
    # noise is elevated around the dichroic (5700-5900 Å) relative to both sides
    s = [i for i, m in enumerate(batch.meta) if m["label"] == "star"]
    iv = batch.ivar[s]
    join = np.median(iv[:, (LAMOST_WAVE > 5700) & (LAMOST_WAVE < 5800)], axis=1)
    red = np.median(iv[:, (LAMOST_WAVE > 6100) & (LAMOST_WAVE < 6300)], axis=1)
    assert np.median(join / red) < 0.7


def test_gallery_writes_png(tmp_path):
    from spectraforge.mock.gallery import plot_gallery
    b = simulate(["star", "galaxy"], 3)
    p = plot_gallery({"star": [(b.wave, b.flux[0], "s")], "galaxy": [(b.wave, b.flux[1], "g", (6000, 7000))]},
                     tmp_path / "g.png")
    assert p.exists() and p.stat().st_size > 1000


# --- populations against published values ------------------------------------------------------
# (each distribution's source is cited where it is drawn: galaxies.py, quasars.py, unknown.py)

def _depth(wave, flux, band, sides):
    m = (wave > band[0]) & (wave < band[1])
    c = np.zeros_like(m)
    for lo, hi in sides:
        c |= (wave > lo) & (wave < hi)
    return np.median(flux[..., m], axis=-1) / np.median(flux[..., c], axis=-1)


def test_telluric_bands_are_corrected_but_stay_noisy():
    # real LAMOST/SDSS files show no O2 A band (median depth 1.00 in 55 LAMOST stars); the photons
    # the atmosphere took are still missing, so the band is noisier than its surroundings
    b = simulate(["star"] * 200, 11, return_noiseless=True)
    w = b.wave
    band, sides = (7594, 7625), [(7540, 7590), (7700, 7750)]
    ok = (b.ivar[:, (w > band[0]) & (w < band[1])] > 0).all(axis=1)
    depth = _depth(w, b.noiseless[ok], band, sides)
    assert 0.98 < np.median(depth) < 1.02
    assert np.mean(np.abs(depth - 1) < 0.05) > 0.9
    m = (w > band[0]) & (w < band[1])
    c = (w > sides[0][0]) & (w < sides[0][1])
    err_ratio = np.median(b.ivar[ok][:, c], axis=1) / np.median(b.ivar[ok][:, m], axis=1)
    assert np.median(err_ratio) > 1.3        # variance in the band up by 1/T (T ≈ 0.75 at airmass 1.2)


def _kauffmann03(x):
    return 0.61 / (x - 0.05) + 1.30


def _kewley01(x):
    return 0.61 / (x - 0.47) + 1.19


@pytest.fixture(scope="module")
def galaxy_sample():
    rng = np.random.default_rng(21)
    par = galaxies.draw_params(1500, rng)
    flux, meta = galaxies.generate(1500, rng, np.ones(1500), params=par)
    return par, flux, meta


def test_galaxy_bpt_branches(galaxy_sample):
    # star-forming galaxies below the Kauffmann et al. (2003) line, Seyfert 2s above the maximum
    # starburst line of Kewley et al. (2001)
    _, _, meta = galaxy_sample
    x = np.array([m["log_n2ha"] for m in meta])
    y = np.array([m["log_o3hb"] for m in meta])
    kind = np.array([m["subclass"] for m in meta])
    sf = np.isin(kind, ["starforming", "starburst"])
    assert (y[sf] < _kauffmann03(x[sf])).mean() > 0.99
    sey = (kind == "agn") & (y > 0.5)
    assert sey.sum() > 10 and (y[sey] > np.where(x[sey] < 0.47, _kewley01(x[sey]), -np.inf)).all()


def test_galaxy_halpha_ew_follows_the_whan_classes(galaxy_sample):
    # Cid Fernandes et al. (2011): star-forming galaxies have EW(Hα) > 3 Å, retired ones below
    _, _, meta = galaxy_sample
    ew = np.array([m["ew_halpha"] for m in meta])
    kind = np.array([m["subclass"] for m in meta])
    sf = np.isin(kind, ["starforming", "starburst"])
    assert (ew[sf] > 3.0).mean() > 0.9
    assert (ew[kind == "passive"] < 3.2).all() and (ew[kind == "poststarburst"] == 0).all()
    assert 5 < np.median(ew[kind == "starforming"]) < 60


def test_galaxy_balmer_decrement_is_case_b_plus_dust():
    # observed Hα/Hβ = 2.86 · 10^(0.4 E(B-V)_gas (k(Hβ) - k(Hα))), Calzetti (2000) k, E_gas = E_stars / 0.44
    rng = np.random.default_rng(22)
    par = galaxies.draw_params(200, rng)
    par["kind"][:] = "starforming"
    par["sf"][:] = 0.5
    F, *_ = galaxies._line_fluxes(par, np.ones(200), rng)
    ia, ib = galaxies._EM.index("Halpha"), galaxies._EM.index("Hbeta")
    expect = 2.86 * 10 ** (0.4 * par["ebv"] / 0.44 * (galaxies.calzetti_k(4862.68) - galaxies.calzetti_k(6564.61)))
    np.testing.assert_allclose(F[:, ia] / F[:, ib], expect, rtol=1e-10)
    assert (F[:, ia] / F[:, ib] >= 2.86 - 1e-9).all()
    i1, i2 = galaxies._EM.index("OIII_5008"), galaxies._EM.index("OIII_4960")
    np.testing.assert_allclose(F[:, i1] / F[:, i2], 2.98 * 10 ** (0.4 * par["ebv"] / 0.44 * (
        galaxies.calzetti_k(4960.30) - galaxies.calzetti_k(5008.24))), rtol=1e-10)


def test_fibre_aperture_sees_the_bulge_of_nearby_galaxies():
    par = {"z": np.array([0.01, 0.05, 0.1, 0.3]), "bt": np.full(4, 0.3), "re_kpc": np.full(4, 1.5),
           "rd_kpc": np.full(4, 3.0)}
    # 3.3" fibre: 3.0 kpc radius at z = 0.1 (flat ΛCDM, H0 = 70)
    assert abs(galaxies.fibre_radius_kpc(0.1) - 3.01) < 0.05
    bf = galaxies.fibre_bulge_share(par)
    assert (np.diff(bf) < 0).all() and bf[0] > 0.6 and 0.3 < bf[-1] < 0.45   # → B/T at large radius
    # the same star-forming galaxy nearby: older light and weaker lines in the fibre
    rng = np.random.default_rng(23)
    p = galaxies.draw_params(2, rng)
    p.update(kind=np.array(["starforming"] * 2), sf=np.full(2, 0.6), z=np.array([0.02, 0.2]), ebv=np.zeros(2),
             bt=np.full(2, 0.3), re_kpc=np.full(2, 1.5), rd_kpc=np.full(2, 3.0))
    _, meta = galaxies.generate(2, np.random.default_rng(1), np.ones(2), params=p)
    assert meta[0]["f_old"] > meta[1]["f_old"] and meta[0]["bulge_in_fibre"] > meta[1]["bulge_in_fibre"]


def test_galaxy_redshifts_like_a_magnitude_limited_sample(galaxy_sample):
    par, _, _ = galaxy_sample
    assert 0.07 < np.median(par["z"]) < 0.12           # SDSS main sample: median z ≈ 0.10
    assert np.mean(par["z"] > 0.3) < 0.05


def test_quasar_host_fraction_follows_shen_2011():
    from astropy.cosmology import FlatLambdaCDM
    # eq. 1 of Shen et al. (2011) at x = log L5100 - 44
    np.testing.assert_allclose(quasars.host_to_agn_ratio([44.0, 44.5, 45.2]),
                               [0.8052, 0.8052 - 0.7751 + 0.228025 - 0.0197125, 0.0])
    # luminosity from an i magnitude: 4π D_L² ν f_ν with astropy's distance
    d = FlatLambdaCDM(H0=70, Om0=0.3).luminosity_distance(0.5).to("cm").value
    f_nu = 3631e-23 * 10 ** (-0.4 * 18.0) * (5100 * 1.5 / 7480.0) ** 0.5
    expect = np.log10(4 * np.pi * d ** 2 * 2.99792458e18 / (5100 * 1.5) * f_nu)
    assert abs(quasars.log_l5100(18.0, 0.5, -0.5) - expect) < 1e-3
    par = quasars.draw_params(4000, np.random.default_rng(24))
    lowz = par["z"] < 0.15
    assert lowz.sum() > 50 and np.median(par["host"][lowz]) > 0.5      # a z ≈ 0.1 quasar is half galaxy
    assert np.median(par["host"][(par["z"] > 0.3) & (par["z"] < 0.5)]) < 0.4
    assert (par["host"][par["z"] > 0.8] == 0).all()


def test_low_redshift_quasar_is_a_galaxy_plus_broad_balmer_lines():
    rng = np.random.default_rng(25)
    par = quasars.draw_params(2, rng)
    par.update(z=np.full(2, 0.1), host=np.array([0.0, 0.6]), bal=np.zeros(2, bool), lobal=np.zeros(2, bool),
               ebv=np.zeros(2), fwhm=np.full(2, 4000.0), alpha=np.full(2, -0.5))
    par["host_mix"][:] = [0.8, 0.15, 0.05]
    par["ew_scatter"][:] = 0.0
    par["nl_scatter"][:] = 0.0
    flux, meta = quasars.generate(2, rng, np.ones(2), params=par)
    w = LAMOST_WAVE / 1.1
    fnu = flux * LAMOST_WAVE ** 2
    d4000 = fnu[:, (w > 4000) & (w < 4100)].mean(1) / fnu[:, (w > 3850) & (w < 3950)].mean(1)
    assert d4000[1] > d4000[0] + 0.1                                   # the host's 4000 Å break
    mgb = _depth(w, flux, (5160, 5190), [(5120, 5150), (5220, 5250)])
    assert mgb[1] < mgb[0] - 0.01                                      # and its Mg b absorption
    ha = _depth(w, flux, (6540, 6590), [(6300, 6400), (6750, 6850)])
    assert (ha > 1.5).all()                                            # broad Hα in both


def test_quasar_bal_fraction_and_line_widths():
    par = quasars.draw_params(6000, np.random.default_rng(26))
    hi = par["z"] > 1.6
    assert 0.11 < par["bal"][hi & ~par["lobal"]].mean() < 0.16      # Gibson et al. (2009): 13.3 %
    assert 0.005 < par["lobal"].mean() < 0.025                      # Trump et al. (2006): 1.3 %
    assert 3600 < np.median(par["fwhm"]) < 4400                     # Shen et al. (2011)
    assert 0.15 < np.mean(par["z"] < 0.7) < 0.3 and 1.1 < np.median(par["z"]) < 1.7


def test_lyman_alpha_forest_mean_transmission():
    # Faucher-Giguère et al. (2008): τ_eff = 0.0018 (1+z)^3.92; the mean of the drawn forest matches
    rng = np.random.default_rng(27)
    n = 300
    z = np.full(n, 3.2)
    par = {"lls": np.zeros(n, bool), "dla": np.zeros(n, bool)}
    lam_rest = LAMOST_WAVE[None, :] / (1 + z[:, None])
    T = quasars._forest(n, rng, lam_rest, LAMOST_WAVE, z, par, np.ones(n))
    sel = (lam_rest[0] > 1080) & (lam_rest[0] < 1180)
    za = LAMOST_WAVE[sel] / 1215.67 - 1
    expect = np.exp(-0.0018 * (1 + za) ** 3.92).mean()
    assert abs(T[:, sel].mean() - expect) < 0.03
    np.testing.assert_allclose(T[:, lam_rest[0] > 1230], 1.0, atol=1e-4)   # no forest redward of Lyα


def test_unknowns_are_mostly_faint_ordinary_objects():
    from spectraforge.mock import unknown
    rng = np.random.default_rng(28)
    kinds, src = unknown.draw_kinds(4000, rng)
    snr = unknown.target_snr(kinds, rng, 1.0)
    assert np.mean(kinds == "lowsnr") > 0.5 and np.mean(src == "star") > 0.6
    assert np.mean(snr < 5) > 0.7 and snr[kinds == "lowsnr"].max() <= 5.0


def test_sun_has_the_solar_colours():
    # solar spectral irradiance (ASTM E-490), 10 nm means: about 2.02, 1.94 and 1.70 W m^-2 nm^-1
    # at 450, 500 and 620 nm; the mock's G2V star at the Sun's parameters within 5 %
    T = np.array([5772.0])
    p = dict(kind=np.array(["G"]), teff=T, logg=np.array([4.44]), feh=np.zeros(1), h_scale=np.ones(1),
             mol_scale=np.ones(1))
    f = stars.rest_spectra(T, stars.coefficients(p))[0]
    w = instrument.REST_WAVE

    def mean(a, b):
        return f[(w > a) & (w < b)].mean()

    assert abs(mean(4450, 4550) / mean(6150, 6250) / (2.02 / 1.70) - 1) < 0.05
    assert abs(mean(4950, 5050) / mean(6150, 6250) / (1.94 / 1.70) - 1) < 0.05


def test_galaxy_and_quasar_snr_have_the_counts_power_law_tail():
    # sky-limited faint sources from dN/dm ∝ 10^(0.6 m): P(S/N > x) ∝ x^-1.5 above the limit, so
    # bright galaxies are rare but not absent (a log-normal of 0.28 dex had 2 % above S/N 15)
    b = simulate(["galaxy"] * 1500 + ["qso"] * 600, 4)
    g = np.array([m["snr_target"] for m in b.meta if m["label"] == "galaxy"])
    q = np.array([m["snr_target"] for m in b.meta if m["label"] == "qso"])
    assert 4.5 < np.median(g) < 7 and 0.06 < np.mean(g > 15) < 0.2
    ratio = np.mean(g > 20) / np.mean(g > 10)
    assert 0.25 < ratio < 0.5                                  # 2^-1.5 = 0.35, blurred by the scatter
    assert 4 < np.median(q) < 8 and (g >= 1).all() and (g <= 80).all()
    # a quasar's S/N follows its magnitude
    imag = np.array([m["imag"] for m in b.meta if m["label"] == "qso"])
    assert np.corrcoef(imag, np.log(q))[0, 1] < -0.8
