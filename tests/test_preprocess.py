"""Grid, resampling, masking and normalisation on hand-made spectra."""
import numpy as np
import pytest

from spectraforge.params import GridParams
from spectraforge.preprocess import (
    PreprocessError,
    make_grid,
    normalise,
    pixel_edges,
    preprocess,
    rebin,
    to_grid,
)

LAMOST = 10 ** (3.5682 + 1e-4 * np.arange(3909))  # native LAMOST log-linear grid (3700–9100 Å)
WIDE = 10 ** (3.55 + 1e-4 * np.arange(4200))  # covers the whole Tianchi grid


def gaussian_line(wave, centre, sigma, flux):
    return flux / (sigma * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)


def test_default_grid_is_tianchi():
    g = make_grid()
    assert len(g) == 2600 and g[0] == pytest.approx(3690) and g[-1] == pytest.approx(9100)
    assert np.allclose(np.diff(np.log10(g)), np.log10(9100 / 3690) / 2599)
    lin = make_grid(GridParams(spacing="linear", n_pix=100))
    assert np.allclose(np.diff(lin), np.diff(lin)[0])


def test_edges_bracket_centres():
    e = pixel_edges(LAMOST)
    assert np.all(e[:-1] < LAMOST) and np.all(LAMOST < e[1:])


def test_rebin_keeps_line_position_and_flux():
    grid = make_grid()
    line_flux, centre = 250.0, 6564.61
    f = 10.0 + gaussian_line(LAMOST, centre, 2.5, line_flux)
    out, coverage = rebin(LAMOST, f, grid)
    inside = np.isclose(coverage, 1)
    assert inside[100:-100].all()
    # integrated line flux over a window, continuum subtracted, on both grids
    def integral(w, y):
        sel = np.abs(w - centre) < 40
        e = pixel_edges(w)
        return np.sum((y[sel] - 10.0) * np.diff(e)[sel]), np.sum(w[sel] * (y[sel] - 10.0)) / np.sum(y[sel] - 10.0)
    flux_in, cen_in = integral(LAMOST, f)
    flux_out, cen_out = integral(grid, out)
    assert flux_out == pytest.approx(line_flux, rel=2e-3)
    assert flux_out == pytest.approx(flux_in, rel=2e-3)
    assert cen_out == pytest.approx(centre, abs=0.1)  # a tenth of an Å on 2.4 Å pixels


def test_constant_density_is_preserved():
    out, coverage = rebin(LAMOST, np.full(len(LAMOST), 3.0), make_grid())
    assert np.isclose(coverage, 1).sum() > 2550
    assert np.allclose(out[np.isclose(coverage, 1)], 3.0)
    assert np.all(out[coverage == 0] == 0)  # 3690–3700 Å lies outside LAMOST's range


def test_pass_through_on_the_grid():
    grid = make_grid()
    f = np.random.default_rng(0).normal(size=2600)
    out, bad = to_grid(grid, f, np.zeros(2600, bool), grid)
    assert np.array_equal(out, f) and not bad.any()


def test_masked_pixels_are_bridged_not_zeroed():
    grid = make_grid()
    f = 1.0 + LAMOST / 9000.0  # linear in λ, so bridging is exact
    mask = np.zeros(len(LAMOST), bool)
    mask[1000:1100] = True
    f_bad = f.copy()
    f_bad[1000:1100] = 1e6  # garbage under the mask must not leak
    out, bad = to_grid(LAMOST, f_bad, mask, grid)
    ref, _ = to_grid(LAMOST, f, np.zeros_like(mask), grid)
    assert bad.any()
    assert np.allclose(out, ref, rtol=1e-4)


def test_outside_coverage_is_bad_and_filled():
    grid = make_grid()
    short = LAMOST[LAMOST > 5000]
    out, bad = to_grid(short, np.ones(len(short)), np.zeros(len(short), bool), grid)
    assert bad[grid < 4990].all() and not bad[grid > 5010].any()
    assert np.all(np.isfinite(out)) and np.allclose(out, 1.0)


def test_nonfinite_flux_is_masked():
    f = np.ones(len(LAMOST))
    f[::7] = np.nan
    out, _ = to_grid(LAMOST, f, np.zeros(len(LAMOST), bool), make_grid())
    assert np.all(np.isfinite(out)) and np.allclose(out, 1.0)


def test_all_bad_raises():
    with pytest.raises(PreprocessError, match="no valid pixels"):
        to_grid(LAMOST, np.full(len(LAMOST), np.nan), np.zeros(len(LAMOST), bool), make_grid())
    with pytest.raises(PreprocessError, match="no overlap"):
        w = np.linspace(10000, 11000, 100)
        to_grid(w, np.ones(100), np.zeros(100, bool), make_grid())


@pytest.mark.parametrize("method", ["median", "zscore", "l2", "none"])
def test_normalisers(method):
    rng = np.random.default_rng(1)
    f = 5 + rng.normal(size=500)
    bad = np.zeros(500, bool)
    bad[:10] = True
    f[:10] = 1e9  # bad pixels must not drive the statistics
    out = normalise(f, bad, method)
    good = out[~bad]
    if method == "median":
        assert np.median(np.abs(good)) == pytest.approx(1.0)
    elif method == "zscore":
        assert good.mean() == pytest.approx(0, abs=1e-9) and good.std() == pytest.approx(1.0)
    elif method == "l2":
        assert np.sum(good**2) == pytest.approx(1.0)
    else:
        assert out is f


def test_normalise_rejects_zero_and_unknown():
    with pytest.raises(PreprocessError, match="constant or zero"):
        normalise(np.zeros(10), np.zeros(10, bool), "median")
    with pytest.raises(ValueError, match="not one of"):
        normalise(np.ones(10), np.zeros(10, bool), "minmax")


def test_preprocess_limits_bad_fraction():
    mask = np.zeros(len(LAMOST), bool)
    mask[: int(0.95 * len(mask))] = True
    with pytest.raises(PreprocessError, match="bad"):
        preprocess(LAMOST, np.ones(len(LAMOST)), mask, make_grid(), "median", 0.9)
    out, frac = preprocess(WIDE, np.ones(len(WIDE)) * 7, np.zeros(len(WIDE), bool), make_grid(), "median")
    assert out.dtype == np.float32 and frac == 0.0 and np.allclose(out, 1.0)
