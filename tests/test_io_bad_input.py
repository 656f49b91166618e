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


# ------------------------------------------------------- hostile header values (issue 19, item 1)

def _header_case(tmp_path, layout, key, value, gz, hdu=None):
    from conftest import set_fits_card

    blob = fits_file(tmp_path, "seed.fits", layout=layout).read_bytes()
    blob = set_fits_card(blob, key, value, hdu)
    path = tmp_path / ("bad.fits.gz" if gz else "bad.fits")
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


HOSTILE_HEADERS = [  # (layout, key, value, hdu, words the reason must hold)
    ("image", "NAXIS", "2147483648", 0, "NAXIS = 2147483648 is outside 0..999"),
    ("image", "NAXIS", "1000", 0, "outside 0..999"),
    ("image", "NAXIS", "-1", 0, "outside 0..999"),
    ("image", "NAXIS", "3", 0, "lacks the required keyword NAXIS3"),
    ("image", "NAXIS", "2.5", 0, "is not an integer"),
    ("image", "NAXIS", "T", 0, "is not an integer"),
    ("image", "NAXIS1", "2147483648", 0, "declares"),
    ("image", "NAXIS2", "99999999999999999999", 0, "declares"),
    ("image", "NAXIS1", "-3909", 0, "negative"),
    ("image", "BITPIX", "7", 0, "BITPIX = 7"),
    ("table", "NAXIS", "2147483648", 0, "outside 0..999"),
    ("table", "NAXIS1", "2147483648", 1, "declares"),
    ("table", "NAXIS2", "100000000", 1, "declares"),
    ("table", "NAXIS2", "0", 1, None),  # no rows: the readers' own reason
    ("table", "TFIELDS", "100000000", 1, "TFIELDS = 100000000 is outside 0..999"),
    ("table", "TFIELDS", "1000", 1, "outside 0..999"),
    ("table", "TFIELDS", "7", 1, "lacks TFORM7"),
    ("table", "TFIELDS", "-2", 1, "outside 0..999"),
    ("table", "TFORM1", "'100000000E'", 1, "TFORMs need"),
    ("table", "TFORM2", "'Z'", 1, "not a binary-table format"),
    ("table", "TFORM3", "''", 1, "not a binary-table format"),
    ("table", "TFORM1", "'3909E(12)'", 1, "not a binary-table format"),
    ("table", "TFORM4", "'PE(99999999999999)'", 1, "not a binary-table format"),
    ("table", "TFORM1", "12", 1, "is not a string"),
    ("table", "PCOUNT", "1000000000", 1, "declares"),
    ("table", "PCOUNT", "-1", 1, "negative"),
    ("table", "GCOUNT", "-1", 1, "negative"),
    ("table", "GCOUNT", "100000000000", 1, "declares"),
]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("layout,key,value,hdu,words", HOSTILE_HEADERS,
                         ids=[f"{c[0]}-{c[1]}={c[2]}" for c in HOSTILE_HEADERS])
def test_hostile_header_values_fail_fast_and_small(tmp_path, layout, key, value, hdu, words, gz):
    """A header value the bytes cannot back is a SpectrumReadError at once, before astropy sizes
    anything from it: well under a second and a few MB, plain or gzipped, through the fast
    parser and straight through the astropy path alike."""
    import time
    import tracemalloc

    from spectraforge.io.dispatch import _read_fits
    from spectraforge.io._common import read_blob

    path = _header_case(tmp_path, layout, key, value, gz, hdu)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        got = reason(path)
        with pytest.raises(SpectrumReadError) as astropy_path:
            _read_fits(path, read_blob(path), fast=False)
        elapsed, (_, peak) = time.perf_counter() - t0, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 5 and peak < 50 << 20, (elapsed, peak)
    if words is not None:
        assert words in got and words in astropy_path.value.reason


def test_hostile_header_through_inspect(tmp_path, capsys):
    """`spectraforge inspect` (the command of the report) answers with the reason, exit 1."""
    from spectraforge.cli import main

    path = _header_case(tmp_path, "image", "NAXIS", "2147483648", gz=False)
    assert main(["inspect", str(path)]) == 1
    assert f"{path}: invalid FITS header: HDU 0: NAXIS = 2147483648" in capsys.readouterr().err


def test_structure_check_accepts_every_writer_layout(tmp_path):
    from spectraforge.io._common import read_blob
    from spectraforge.io.fastfits import check_structure

    for layout, early in (("image", False), ("image", True), ("table", False)):
        for gz in (False, True):
            path = fits_file(tmp_path, f"ok{layout}{early}{gz}.fits", layout=layout, early=early, gzip=gz)
            check_structure(read_blob(path))


@pytest.mark.real
def test_structure_check_accepts_every_real_file(real_dir):
    from spectraforge.io._common import read_blob
    from spectraforge.io.fastfits import check_structure

    files = sorted(real_dir.rglob("*.fits*"))
    assert len(files) >= 60
    for path in files:
        check_structure(read_blob(path))


@pytest.mark.parametrize("members", [1, 3])
def test_gzip_bomb_stops_at_the_limit(tmp_path, monkeypatch, members):
    """A small gzip file that inflates past the size limit fails with that reason (bounded
    memory); multi-member streams and zero padding still read as gzip.decompress reads them."""
    import spectraforge.io._common as common

    monkeypatch.setattr(common, "MAX_FILE_BYTES", 1 << 20)
    part = gzip.compress(b"\0" * (1 << 19) + b"\1" * 1000)
    path = tmp_path / "bomb.fits.gz"
    path.write_bytes(part * members * 3)  # 1.5 MB per member set: over the 1 MiB limit
    assert "decompresses to more than 1048576 bytes" in reason(path)
    small = gzip.compress(b"a" * 100)
    path.write_bytes(small * members + b"\0" * 64)
    assert common.read_blob(path) == b"a" * 100 * members
    path.write_bytes(small + b"garbage")
    with pytest.raises(SpectrumReadError, match="corrupt gzip stream"):
        common.read_blob(path)


def test_oversized_plain_file_is_refused_before_reading(tmp_path, monkeypatch):
    import spectraforge.io._common as common

    monkeypatch.setattr(common, "MAX_FILE_BYTES", 1 << 16)
    path = tmp_path / "big.fits"
    with open(path, "wb") as fh:
        fh.truncate(1 << 17)  # sparse: no disk used
    assert "more than any spectrum file" in reason(path)


# -------------------------------------------------------- reasons stay short (issue 19, item 5)

@pytest.mark.parametrize("content", [b"\0" * (1 << 20), b"x" * (3 << 20), b"1," * 2599 + b"\0\n" * 100000,
                                     ("é" * 100000).encode("utf-8")], ids=["nul", "letters", "tail", "utf8"])
def test_reasons_are_one_short_printable_line(tmp_path, content):
    """A member full of NULs (or letters, or any bytes) gives a reason of at most 300 printable
    characters, in the reader, in quarantine.csv, whatever the value quoted."""
    from spectraforge.io.spectrum import MAX_REASON

    source, index = tmp_path / "train.zip", tmp_path / "train_index.csv"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("1.txt", content)
        zf.writestr("2.txt", ",".join(["1.0"] * 2600))
    index.write_text("id,type\n1,star\n2,star\n")
    entries, problems = scan_tianchi(index, source)
    bad, good = read_tianchi_entries(source, entries)
    assert isinstance(good, Spectrum) and isinstance(bad, SpectrumReadError)
    assert len(bad.reason) <= MAX_REASON and bad.reason.isprintable() and len(str(bad)) < MAX_REASON + 200
    counts, quarantine = _prepare_tianchi(tmp_path, index, source)
    assert counts["train_quarantined"] == 1 and (tmp_path / "out" / "quarantine.csv").stat().st_size < 1000
    assert quarantine["reason"][0] == bad.reason and quarantine["id"][0] == "1"


def test_spectrum_read_error_clips_any_reason():
    from spectraforge.io.spectrum import MAX_REASON

    for reason_text in ("a" * 10_000_000, "line\nbreak\0" * 1000, "\x07bell", "short"):
        exc = SpectrumReadError("f.fits", reason_text)
        assert len(exc.reason) <= MAX_REASON and exc.reason.isprintable()
    assert SpectrumReadError("f", "short").reason == "short"
    assert SpectrumReadError("f", "a\nb").reason == "a\\nb"
    assert SpectrumReadError("f", "a" * 1000).reason.endswith("…")


def test_oversized_zip_member_is_refused_without_inflating(tmp_path):
    source = tmp_path / "train.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("1.txt", b"0" * (5 << 20))
    index = tmp_path / "i.csv"
    index.write_text("id\n1\n")
    for locate in (False, True):
        entries, _, locations = scan_tianchi(index, source, locate=True)
        (res,) = read_tianchi_entries(source, entries, locations if locate else None)
        assert "more than a Tianchi txt" in res.reason


def _prepare_tianchi(tmp_path, index, source):
    import pandas as pd

    from spectraforge.params import InputSpec, PrepareParams
    from spectraforge.prepare import run_prepare

    params = PrepareParams(raw_dir=str(tmp_path), n_jobs=1, out_dir=str(tmp_path / "out"),
                           inputs=[InputSpec("tianchi", "train", str(source), str(index))])
    params.validate()
    counts = run_prepare(params, progress=False)
    return counts, pd.read_csv(tmp_path / "out" / "quarantine.csv", dtype=str, keep_default_na=False)


# ---------------------------------------------- Tianchi fields, one by one (issue 19, item 11)

@pytest.mark.parametrize("values,words", [
    (["1.0"] * 1300 + [""] + ["1.0"] * 1300, "empty value in field 1301 of 2601"),
    ([""] + ["1.0"] * 2600, "empty value in field 1 of 2601"),
    (["1.0"] * 2599 + ["", "1.0"], "empty value in field 2600 of 2601"),
    (["1.0"] * 1000 + ["  "] + ["1.0"] * 1600, "empty value in field 1001 of 2601"),
    (["1.0"] * 1000 + ["\n"] + ["1.0"] * 1599, "empty value in field 1001 of 2600"),
    (["1.0"] * 2600 + ["", ""], "empty value in field 2601"),  # one trailing comma is allowed, not two
    (["1.0"] * 500 + ["1.0 2.0"] + ["1.0"] * 2099, "non-numeric value '1.0 2.0' in field 501"),
])
def test_tianchi_empty_or_merged_field_is_an_error_not_a_shift(tmp_path, values, words):
    """Values are split on commas only: an empty field (anywhere) or two values in one field is
    named with its position, never dropped or merged so that later pixels shift."""
    assert words in reason(_txt(tmp_path, values))


@pytest.mark.parametrize("text", [",".join(["1.5"] * 2600) + ",", " " + ", ".join(["1.5"] * 2600) + " \n",
                                  ",\n".join(["1.5"] * 2600) + "\n"])
def test_tianchi_separators_that_stay_accepted(tmp_path, text):
    """Spaces or newlines around values and one trailing comma shift nothing: still read."""
    path = tmp_path / "9.txt"
    path.write_text(text)
    spec = read_spectrum(path)
    assert spec.flux.size == 2600 and np.all(spec.flux == np.float32(1.5))


# ------------------------------------------------------ quarantine ids (issue 19, minor item)

def test_quarantine_keeps_the_index_id_of_a_failed_read(tmp_path):
    source, index = tmp_path / "train.zip", tmp_path / "train_index.csv"
    with zipfile.ZipFile(source, "w") as zf:
        zf.writestr("sub/a7.txt", ",".join(["1.0"] * 2599))  # a read failure
        zf.writestr("sub/b8.txt", ",".join(["nan"] * 2600))  # another
        zf.writestr("sub/c9.txt", ",".join(["1.0"] * 2600))
        zf.writestr("sub/d1.txt", ",".join(["1.0"] * 2600))
    index.write_text("id,type\na7,star\nb8,qso\nc9,star\nd1,alien\n")
    counts, quarantine = _prepare_tianchi(tmp_path, index, source)
    by_id = dict(zip(quarantine["id"], quarantine["reason"]))
    assert set(by_id) == {"a7", "b8", "d1"} and counts["train_prepared"] == 1
    assert "expected 2600 values" in by_id["a7"] and "NaN/inf" in by_id["b8"] and "unknown label" in by_id["d1"]
