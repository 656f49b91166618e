"""Bad input gives SpectrumReadError with a reason that names the problem, never another exception."""
import gzip
import zipfile

import numpy as np
import pytest
from astropy.io import fits

from spectraforge.io import (
    IndexEntry,
    Spectrum,
    SpectrumReadError,
    read_spectrum,
    read_tianchi_entries,
    scan_tianchi,
    write_lamost_fits,
    write_tianchi,
)


def make_spectrum(n=3909, seed=0, **meta) -> Spectrum:
    rng = np.random.default_rng(seed)
    wave = 10.0 ** (3.5682 + 1e-4 * np.arange(n))
    flux = rng.uniform(50, 150, n).astype(np.float32)
    ivar = np.full(n, 0.1, np.float32)
    return Spectrum(wave=wave, flux=flux, ivar=ivar, mask=np.zeros(n, bool),
                    meta={"id": "42", "label": "star", "z": 0.0, "snr": 10.0, **meta})


def fits_file(tmp_path, name="x.fits", spec=None, **kw):
    return write_lamost_fits(spec or make_spectrum(), tmp_path / name, **kw)


def reason(path) -> str:
    with pytest.raises(SpectrumReadError) as info:
        read_spectrum(path)
    assert info.value.path == str(path)
    return info.value.reason


# -------------------------------------------------------------------------------- broken bytes

@pytest.mark.parametrize("name", ["empty.fits", "empty.fits.gz", "empty.txt"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    assert reason(tmp_path / name) == "empty file"


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.fits"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert "not a FITS file" in reason(path)


def test_random_bytes_named_txt(tmp_path):
    path = tmp_path / "noise.txt"
    path.write_bytes(bytes(range(256)) * 20)
    assert "not ASCII text" in reason(path)


@pytest.mark.parametrize("layout", ["image", "table"])
def test_truncated_gzip(tmp_path, layout):
    path = fits_file(tmp_path, "x.fits.gz", layout=layout, gzip=True)
    path.write_bytes(path.read_bytes()[:-200])
    assert "truncated gzip" in reason(path)


def test_corrupt_gzip(tmp_path):
    path = fits_file(tmp_path, "x.fits.gz", gzip=True)
    blob = bytearray(path.read_bytes())
    blob[100:140] = b"\x00" * 40
    path.write_bytes(bytes(blob))
    assert "gzip" in reason(path)


@pytest.mark.parametrize("layout", ["image", "table"])
@pytest.mark.parametrize("keep", [0.5, 0.99, 1000])
def test_truncated_fits(tmp_path, layout, keep):
    path = fits_file(tmp_path, layout=layout)
    blob = path.read_bytes()
    path.write_bytes(blob[: int(keep * len(blob)) if keep < 1 else keep])
    assert "truncated" in reason(path)


def test_fits_without_data(tmp_path):
    path = tmp_path / "nodata.fits"
    fits.PrimaryHDU().writeto(path)
    assert "no spectrum data" in reason(path)


def test_image_with_too_few_rows(tmp_path):
    path = tmp_path / "rows.fits"
    fits.PrimaryHDU(np.ones((3, 100), np.float32)).writeto(path)
    assert "expected 5×N" in reason(path)


def test_table_missing_column(tmp_path):
    path = fits_file(tmp_path, layout="table")
    with fits.open(path) as hdul:
        hdul[1].columns.del_col("IVAR")
        hdul.writeto(tmp_path / "noivar.fits")
    assert "lacks column(s) IVAR" in reason(tmp_path / "noivar.fits")


def test_sdss_missing_column(tmp_path):
    path = tmp_path / "spec-0001-50000-0001.fits"
    coadd = fits.BinTableHDU.from_columns(
        [fits.Column(name="flux", format="E", array=np.ones(10)),
         fits.Column(name="loglam", format="E", array=3.6 + 1e-4 * np.arange(10))], name="COADD")
    fits.HDUList([fits.PrimaryHDU(), coadd]).writeto(path)
    assert "lacks column(s) ivar" in reason(path)


def test_missing_file_and_directory(tmp_path):
    assert "cannot read file" in reason(tmp_path / "absent.fits")
    assert "cannot read file" in reason(tmp_path)


# ---------------------------------------------------------------------------------- bad content

def test_all_nan_flux(tmp_path):
    spec = make_spectrum()
    spec.flux[:] = np.nan
    assert reason(fits_file(tmp_path, spec=spec)) == "flux is NaN/inf in all 3909 pixels"


def test_a_few_nan_pixels_are_masked_not_fatal(tmp_path):
    spec = make_spectrum()
    spec.flux[[10, 500]] = np.nan
    spec.ivar[700] = np.inf
    back = read_spectrum(fits_file(tmp_path, spec=spec, layout="table"))
    assert back.mask[[10, 500, 700]].all() and back.mask.sum() == 3
    assert np.all(np.isfinite(back.flux)) and np.all(back.ivar[back.mask] == 0)


def test_all_zero_ivar(tmp_path):
    spec = make_spectrum()
    spec.ivar[:] = 0
    assert reason(fits_file(tmp_path, spec=spec)) == "no valid pixels (all ivar <= 0 or masked)"


def test_all_pixels_masked(tmp_path):
    spec = make_spectrum()
    spec.mask[:] = True
    path = fits_file(tmp_path, spec=spec, layout="table")
    assert reason(path) == "no valid pixels (all ivar <= 0 or masked)"


def test_unknown_class_label(tmp_path):
    path = fits_file(tmp_path, header={"CLASS": "XYZ"})
    assert reason(path).startswith("unknown label 'XYZ' in CLASS")


def test_wavelength_outside_optical_range(tmp_path):
    path = fits_file(tmp_path, early=True, header={"COEFF0": 2.0})  # early: no wavelength row to check
    assert "outside 3000–11000 Å" in reason(path)


def test_wavelength_not_ascending(tmp_path):
    path = fits_file(tmp_path, layout="table", header={"COEFF0": None, "COEFF1": None})
    with fits.open(path) as hdul:
        hdul[1].data["WAVELENGTH"][0] = hdul[1].data["WAVELENGTH"][0][::-1]
        hdul.writeto(tmp_path / "reversed.fits")
    assert "not strictly ascending" in reason(tmp_path / "reversed.fits")


def test_row2_not_a_wavelength_without_subcontinuum_flag(tmp_path):
    path = fits_file(tmp_path, early=True, header={"EXTEN0": "Flux, Inverse, Wavelength, Andmask, Ormask"})
    assert "disagrees with COEFF0/COEFF1" in reason(path)


# -------------------------------------------------------------------------------------- Tianchi

def _txt(tmp_path, values, name="5.txt"):
    path = tmp_path / name
    path.write_text(",".join(values))
    return path


@pytest.mark.parametrize("n", [2599, 2601, 1])
def test_tianchi_wrong_count(tmp_path, n):
    assert reason(_txt(tmp_path, ["1.0"] * n)) == f"expected 2600 values, found {n}"


def test_tianchi_non_numeric(tmp_path):
    assert "non-numeric value" in reason(_txt(tmp_path, ["1.0"] * 2599 + ["abc"]))


def test_tianchi_all_nan(tmp_path):
    assert reason(_txt(tmp_path, ["nan"] * 2600)) == "flux is NaN/inf in all 2600 pixels"


def test_tianchi_truncated_gzip(tmp_path):
    path = tmp_path / "6.txt.gz"
    path.write_bytes(gzip.compress(",".join(["1.5"] * 2600).encode())[:30])
    assert "truncated gzip" in reason(path)


@pytest.fixture
def dataset(tmp_path):
    flux = np.random.default_rng(0).uniform(0, 1, (4, 2600)).astype(np.float32)
    index, source = tmp_path / "train.csv", tmp_path / "train.zip"
    write_tianchi(flux, ["1", "2", "3", "4"], ["star", "qso", "galaxy", "unknown"], index, source)
    return index, source


def _problems(index, source):
    entries, problems = scan_tianchi(index, source)
    return [e.id for e in entries], dict(problems)


def test_index_unknown_label(dataset):
    index, source = dataset
    index.write_text(index.read_text().replace("2,qso", "2,foo"))
    ids, problems = _problems(index, source)
    assert ids == ["1", "3", "4"]
    assert problems == {"id 2": "unknown label 'foo' for id 2"}


def test_index_duplicate_id(dataset):
    index, source = dataset
    index.write_text(index.read_text() + "3,star\n")
    ids, problems = _problems(index, source)
    assert ids == ["1", "2", "3", "4"]
    assert problems == {"id 3": f"duplicate id '3' in {index}"}


def test_index_id_without_file(dataset):
    index, source = dataset
    index.write_text(index.read_text() + "99,star\n")
    ids, problems = _problems(index, source)
    assert problems == {"id 99": f"no file 99.txt in {source}"} and len(ids) == 4


def test_file_not_in_index(dataset):
    index, source = dataset
    index.write_text("\n".join(line for line in index.read_text().splitlines() if not line.startswith("4,")))
    ids, problems = _problems(index, source)
    assert ids == ["1", "2", "3"] and problems == {"4.txt": f"not listed in {index}"}


def test_index_without_id_column(dataset):
    index, source = dataset
    index.write_text("name,type\n1,star\n")
    with pytest.raises(SpectrumReadError, match="no 'id' column") as info:
        scan_tianchi(index, source)
    assert info.value.path == str(index)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage\x00" * 50])
def test_unreadable_index(dataset, content):
    index, source = dataset
    index.write_bytes(content)
    with pytest.raises(SpectrumReadError) as info:
        scan_tianchi(index, source)
    assert info.value.path == str(index)


def test_source_missing_or_not_a_zip(dataset, tmp_path):
    index, _ = dataset
    with pytest.raises(SpectrumReadError, match="no such zip file or folder"):
        scan_tianchi(index, tmp_path / "absent.zip")
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(SpectrumReadError, match="cannot open zip"):
        scan_tianchi(index, tmp_path / "fake.zip")


def test_bad_zip_members_fill_their_slot(dataset, tmp_path):
    index, source = dataset
    with zipfile.ZipFile(source, "a") as zf:
        zf.writestr("5.txt", ",".join(["1"] * 2599))
    index.write_text(index.read_text() + "5,star\n")
    entries, problems = scan_tianchi(index, source)
    assert problems == []
    entries.append(IndexEntry("6", "star", "6.txt"))  # vanished since the scan
    results = read_tianchi_entries(source, entries)
    assert [type(r).__name__ for r in results] == ["Spectrum"] * 4 + ["SpectrumReadError"] * 2
    assert results[4].reason == "expected 2600 values, found 2599"
    assert results[4].path == f"{source}::5.txt"
    assert "cannot read zip member" in results[5].reason


# ------------------------------------------------------------------------- mutated real files

REAL_SAMPLES = ["lamost/spec-55862-B6212_sp06-018__pipelinev264.fits",
                "lamost/spec-55859-F5902_sp01-001__DR9.fits.gz",
                "sdss/pyqsofit_974136_spec-0266-51602-0107.fits"]


@pytest.mark.real
@pytest.mark.parametrize("name", REAL_SAMPLES)
def test_mutated_real_files_never_escape(real_dir, tmp_path, name):
    """Cuts and byte flips of real files: a Spectrum or a SpectrumReadError, nothing else."""
    blob = (real_dir / name).read_bytes()
    rng = np.random.default_rng(1)
    path = tmp_path / name.split("/")[-1]
    for cut in (1, 2, 10, 100, 2880, len(blob) // 3, len(blob) // 2, len(blob) - 1):
        path.write_bytes(blob[:cut])
        with pytest.raises(SpectrumReadError):
            read_spectrum(path)
    for _ in range(15):
        mutated = bytearray(blob)
        at = rng.integers(0, len(blob), 8)
        mutated[at[0]:at[0] + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(mutated))
        try:
            read_spectrum(path)
        except SpectrumReadError:
            pass
