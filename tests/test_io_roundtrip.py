"""The project's writers and readers agree: write → read gives the same spectrum back."""
import gzip
import zipfile

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from spectraforge.io import (
    TIANCHI_WAVE,
    Spectrum,
    read_spectrum,
    read_tianchi_entries,
    read_tianchi_txt,
    scan_tianchi,
    write_lamost_fits,
    write_tianchi,
)

N_LAMOST = 3909


def make_spectrum(seed=0, label="star", z=0.0012, snr=23.5, n=N_LAMOST, **meta) -> Spectrum:
    rng = np.random.default_rng(seed)
    wave = 10.0 ** (3.5682 + 1e-4 * np.arange(n))
    flux = (100 + 20 * np.sin(wave / 300) + rng.normal(0, 3, n)).astype(np.float32)
    ivar = rng.uniform(0.05, 0.2, n).astype(np.float32)
    mask = np.zeros(n, bool)
    mask[rng.choice(n, 40, replace=False)] = True
    ivar[mask] = 0
    meta = {"id": "12345678", "object_id": "LAMOST J000000.00+000000.0", "label": label, "z": z,
            "snr": snr, "subclass": "G5", **meta}
    return Spectrum(wave=wave, flux=flux, ivar=ivar, mask=mask, meta=meta)


VARIANTS = [("image", False, False), ("image", True, False), ("image", False, True),
            ("image", True, True), ("table", False, False), ("table", True, False)]


@pytest.mark.parametrize("layout,gz,early", VARIANTS)
def test_lamost_roundtrip(tmp_path, layout, gz, early):
    spec = make_spectrum()
    path = write_lamost_fits(spec, tmp_path / ("x.fits.gz" if gz else "x.fits"), layout=layout,
                             gzip=gz, early=early)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    back = read_spectrum(path)
    np.testing.assert_allclose(back.wave, spec.wave, rtol=1e-6)
    np.testing.assert_array_equal(back.flux, spec.flux)
    np.testing.assert_array_equal(back.ivar, spec.ivar)
    np.testing.assert_array_equal(back.mask, spec.mask)
    for key in ("id", "object_id", "label", "subclass"):
        assert back.meta[key] == spec.meta[key]
    assert back.meta["z"] == pytest.approx(spec.meta["z"], rel=1e-12)
    assert back.meta["snr"] == pytest.approx(spec.meta["snr"], rel=1e-12)
    assert back.meta["format"] == f"lamost-{layout}"


@pytest.mark.parametrize("label", ["star", "galaxy", "qso", "unknown", None])
def test_lamost_labels_and_unknown_redshift(tmp_path, label):
    spec = make_spectrum(label=label, z=None, snr=None)
    back = read_spectrum(write_lamost_fits(spec, tmp_path / "x.fits", layout="table"))
    assert back.meta["label"] == label
    assert back.meta["z"] is None
    assert back.meta["snr"] > 0  # SNRR computed from the data when meta has no snr
    with fits.open(tmp_path / "x.fits") as hdul:
        assert hdul[0].header["Z"] == -9999
        if label is not None:
            assert hdul[0].header["CLASS"] == {"unknown": "Unknown"}.get(label, label.upper())


def test_lamost_early_file_looks_like_pipeline_v264(tmp_path):
    spec = make_spectrum()
    path = write_lamost_fits(spec, tmp_path / "12345678.fits", early=True, header={"OBSID": None})
    with fits.open(path) as hdul:
        header, data = hdul[0].header, hdul[0].data
        assert "Subcontinuum" in header["EXTEN0"]
        assert "OBSID" not in header and "SNRR" not in header
        assert header["SN_R"] == spec.meta["snr"]
        assert np.median(data[2]) == pytest.approx(1.0, abs=0.05)  # normalised flux, not Å
    back = read_spectrum(path)
    assert back.meta["id"] == "12345678"  # no OBSID: the id comes from the file name
    np.testing.assert_allclose(back.wave, spec.wave, rtol=1e-6)


def test_lamost_table_columns_and_header_override(tmp_path):
    path = write_lamost_fits(make_spectrum(), tmp_path / "x.fits", layout="table",
                             header={"VERSPIPE": "custom", "PLANID": "MOCK01"})
    with fits.open(path) as hdul:
        assert hdul[0].data is None
        assert hdul[1].name == "COADD"
        assert hdul[1].columns.names == ["FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK", "NORMALIZATION"]
        assert hdul[0].header["VERSPIPE"] == "custom" and hdul[0].header["PLANID"] == "MOCK01"


def test_lamost_writer_rejects_non_loglinear_wave(tmp_path):
    spec = make_spectrum()
    spec.wave = np.linspace(3700, 9100, N_LAMOST)
    with pytest.raises(ValueError, match="log-linear"):
        write_lamost_fits(spec, tmp_path / "x.fits")


# ------------------------------------------------------------------------------------------ Tianchi

def _tianchi_data(n=6, seed=1):
    rng = np.random.default_rng(seed)
    flux = rng.uniform(0.01, 3.0, (n, 2600)).astype(np.float32)
    ids = [str(1000 + i) for i in range(n)]
    labels = [("star", "galaxy", "qso", "unknown")[i % 4] for i in range(n)]
    return flux, ids, labels


@pytest.mark.parametrize("target,folder", [("train.zip", None), ("train.zip", "first_train_data"),
                                           ("train_dir", None), ("train_dir", "sub")])
def test_tianchi_roundtrip(tmp_path, target, folder):
    flux, ids, labels = _tianchi_data()
    index, source = tmp_path / "train_index.csv", tmp_path / target
    write_tianchi(flux, ids, labels, index, source, folder=folder)
    assert index.read_text().splitlines()[0] == "id,type"
    entries, problems = scan_tianchi(index, source)
    assert problems == []
    assert [e.id for e in entries] == ids and [e.label for e in entries] == labels
    results = read_tianchi_entries(source, entries)
    for spec, row, ident, label, entry in zip(results, flux, ids, labels, entries):
        assert isinstance(spec, Spectrum)
        np.testing.assert_allclose(spec.flux, row, rtol=1e-4)  # '%.5g' keeps 5 significant digits
        assert spec.wave is TIANCHI_WAVE or np.array_equal(spec.wave, TIANCHI_WAVE)
        assert spec.meta["id"] == ident and spec.meta["label"] == label
        assert spec.meta["format"] == "tianchi-txt" and not spec.mask.any()
        if target.endswith(".zip"):
            assert spec.meta["file"] == f"{source}::{entry.member}"


def test_tianchi_test_index_without_labels(tmp_path):
    flux, ids, _ = _tianchi_data(3)
    write_tianchi(flux, ids, None, tmp_path / "test_index.csv", tmp_path / "test.zip")
    assert pd.read_csv(tmp_path / "test_index.csv").columns.tolist() == ["id"]
    entries, problems = scan_tianchi(tmp_path / "test_index.csv", tmp_path / "test.zip")
    assert problems == [] and [e.label for e in entries] == [None] * 3
    assert all(s.meta["label"] is None for s in read_tianchi_entries(tmp_path / "test.zip", entries))


def test_tianchi_float32_exact_with_9_digits(tmp_path):
    flux, ids, labels = _tianchi_data(2)
    write_tianchi(flux, ids, labels, tmp_path / "i.csv", tmp_path / "d", fmt="%.9g")
    for row, ident in zip(flux, ids):
        spec = read_spectrum(tmp_path / "d" / f"{ident}.txt")
        np.testing.assert_array_equal(spec.flux, row)
        assert spec.meta["label"] is None and spec.meta["id"] == ident


def test_tianchi_txt_tolerates_whitespace_and_trailing_newline(tmp_path):
    values = np.arange(2600) / 100
    path = tmp_path / "77.txt"
    path.write_text(", ".join(f"{v:g}" for v in values) + " \r\n\n")
    spec = read_tianchi_txt(path)
    np.testing.assert_allclose(spec.flux, values, rtol=1e-6)
    assert spec.meta["id"] == "77"
    gz = tmp_path / "78.txt.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    np.testing.assert_array_equal(read_spectrum(gz).flux, spec.flux)


def test_tianchi_grid():
    assert TIANCHI_WAVE.shape == (2600,)
    assert TIANCHI_WAVE[0] == pytest.approx(3690) and TIANCHI_WAVE[-1] == pytest.approx(9100)


def test_tianchi_zip_is_deflated(tmp_path):
    flux, ids, labels = _tianchi_data(2)
    write_tianchi(flux, ids, labels, tmp_path / "i.csv", tmp_path / "t.zip")
    with zipfile.ZipFile(tmp_path / "t.zip") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
