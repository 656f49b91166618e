"""The prepare stage on a raw folder full of bad inputs: everything is prepared or quarantined."""
import gzip

import numpy as np
import pandas as pd
import pytest

from spectraforge.io import Spectrum, write_lamost_fits, write_tianchi
from spectraforge.params import InputSpec, PrepareParams
from spectraforge.prepare import run_prepare

LAMOST = 10 ** (3.5682 + 1e-4 * np.arange(3909))
TIANCHI = np.logspace(np.log10(3690), np.log10(9100), 2600)


def spectrum(ident, label="star", flux=None, ivar=None):
    rng = np.random.default_rng(abs(hash(ident)) % 2**32)
    flux = 100 + rng.normal(size=3909) if flux is None else flux
    ivar = np.ones(3909) if ivar is None else ivar
    return Spectrum(LAMOST, np.asarray(flux, np.float32), np.asarray(ivar, np.float32), np.zeros(3909, bool),
                    {"id": ident, "label": label, "z": 0.0, "snr": 10.0, "object_id": f"J{ident}"})


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    fits = root / "fits"
    fits.mkdir()
    write_lamost_fits(spectrum("1001"), fits / "good-image.fits")
    write_lamost_fits(spectrum("1002"), fits / "good-table.fits.gz", layout="table", gzip=True)
    write_lamost_fits(spectrum("1003"), fits / "dup-id.fits")
    write_lamost_fits(spectrum("1003"), fits / "dup-id-again.fits")  # same OBSID twice
    write_lamost_fits(spectrum("1004", flux=np.full(3909, np.nan)), fits / "nan-flux.fits")
    write_lamost_fits(spectrum("1005", ivar=np.zeros(3909)), fits / "zero-ivar.fits")
    write_lamost_fits(spectrum("1006", label=None), fits / "no-class.fits")
    blob = gzip.compress((fits / "good-image.fits").read_bytes())
    (fits / "truncated.fits.gz").write_bytes(blob[: len(blob) // 2])
    (fits / "random.fits").write_bytes(np.random.default_rng(0).bytes(5000))
    (fits / "empty.fits").write_bytes(b"")
    # Tianchi: 4 good rows, a duplicate, an unknown label, an id without a file, a file not listed,
    # a file with the wrong number of values
    flux = 1 + np.random.default_rng(1).random((5, 2600))
    write_tianchi(flux, ["a", "b", "c", "d", "orphan"], ["star"] * 5, root / "ignored.csv", root / "train.zip")
    import zipfile

    with zipfile.ZipFile(root / "train.zip", "a") as zf:
        zf.writestr("short.txt", ",".join(["1.0"] * 2599))
    pd.DataFrame({"id": ["a", "b", "b", "c", "d", "e", "short"],
                  "type": ["star", "galaxy", "galaxy", "qso", "Alien", "star", "star"]}).to_csv(
        root / "train_index.csv", index=False)
    write_tianchi(flux[:2], ["t1", "t2"], None, root / "test_index.csv", root / "test.zip")
    return root


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    params = PrepareParams(raw_dir=str(raw), n_jobs=2, chunk_size=3, out_dir=str(out), inputs=[
        InputSpec("tianchi", "train", str(raw / "train.zip"), str(raw / "train_index.csv")),
        InputSpec("tianchi", "test", str(raw / "test.zip"), str(raw / "test_index.csv")),
        InputSpec("fits", "train", str(raw / "fits")),
    ])
    params.validate()
    counts = run_prepare(params, progress=False)
    return counts, pd.read_csv(out / "quarantine.csv", dtype=str), pd.read_parquet(out / "meta.parquet"), out


def test_counts_add_up(prepared):
    counts, quarantine, meta, out = prepared
    for split in ("train", "test"):
        assert counts[f"{split}_prepared"] + counts[f"{split}_quarantined"] == counts[f"{split}_listed"]
        assert counts[f"{split}_quarantined"] == (quarantine["split"] == split).sum()
        assert counts[f"{split}_prepared"] == (meta["split"] == split).sum()
    assert np.load(out / "train.npy").shape == (counts["train_prepared"], 2600)
    assert counts["test_prepared"] == 2 and counts["test_quarantined"] == 0


def test_good_inputs_are_prepared(prepared):
    _, _, meta, out = prepared
    train = meta[meta.split == "train"].sort_values("row")
    assert sorted(train["id"]) == sorted(["a", "b", "c", "1001", "1002", "1003"])
    assert set(train["format"]) == {"tianchi-txt", "lamost-image", "lamost-table"}
    X = np.load(out / "train.npy")
    assert np.isfinite(X).all()
    assert np.allclose(np.median(np.abs(X), axis=1), 1, atol=1e-3)  # median normalisation


@pytest.mark.parametrize("what, reason", [
    ("id b", "duplicate id 'b'"),
    ("id d", "unknown label 'Alien'"),
    ("id e", "no file e.txt"),
    ("orphan.txt", "not listed"),
    ("short.txt", "2599"),
    ("dup-id.fits", "duplicate id '1003' (first read from"),  # files are read in name order
    ("nan-flux.fits", "NaN"),
    ("zero-ivar.fits", "no valid pixels"),
    ("no-class.fits", "no class label"),
    ("truncated.fits.gz", "truncated"),
    ("random.fits", ""),
    ("empty.fits", "empty file"),
])
def test_every_bad_input_is_quarantined_with_its_reason(prepared, what, reason):
    _, quarantine, _, _ = prepared
    hits = quarantine[quarantine["file"].astype(str).str.endswith(what)]
    assert len(hits) == 1, quarantine.to_string()
    assert reason in hits["reason"].iloc[0]
    assert len(hits["reason"].iloc[0]) > 5


@pytest.mark.parametrize("capacity,n", [(5, 5), (7, 3), (10**9, 4), (3, 0)])
def test_npy_row_writer_preallocates_then_shrinks_to_a_valid_npy(tmp_path, capacity, n):
    """Rows land at their offsets; the header is rewritten for the rows written (padded to the
    reserved length, even when the capacity has more digits) and the file is cut to size."""
    from spectraforge.prepare import NpyRowWriter

    rows = np.random.default_rng(0).normal(size=(n, 11)).astype(np.float32)
    w = NpyRowWriter(tmp_path / "a.npy", 11, capacity)
    for i in range(0, n, 2):
        w.append(rows[i:i + 2])
    w.finish()
    got = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert got.shape == (n, 11) and got.dtype == np.float32
    np.testing.assert_array_equal(got, rows)
    header = (tmp_path / "a.npy").stat().st_size - rows.nbytes
    assert header % 64 == 0
    assert not list(tmp_path.glob(".*tmp"))


def test_npy_row_writer_refuses_more_rows_than_listed(tmp_path):
    from spectraforge.prepare import NpyRowWriter

    w = NpyRowWriter(tmp_path / "a.npy", 4, 2)
    w.append(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="exceed the 2 preallocated"):
        w.append(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"expected \(m, 4\)"):
        w.append(np.zeros((1, 5)))


def test_meta_writer_streams_row_groups_with_one_schema(tmp_path):
    """Metadata is written in row groups as it arrives; missing labels (test rows) stay null."""
    import pyarrow.parquet as pq

    from spectraforge.prepare import META_COLUMNS, MetaWriter

    w = MetaWriter(tmp_path / "meta.parquet", rows_per_group=3)
    for i in range(8):
        split = "train" if i < 5 else "test"
        w.add({"split": split, "id": str(i), "label": "star" if split == "train" else None, "snr": 1.0 * i,
               "z": np.nan, "object_id": f"o{i}", "file": f"f{i}", "format": "x", "bad_fraction": 0.0,
               "row": i if i < 5 else i - 5})
    w.finish()
    assert pq.ParquetFile(tmp_path / "meta.parquet").num_row_groups == 3
    df = pd.read_parquet(tmp_path / "meta.parquet")
    assert list(df.columns) == META_COLUMNS and len(df) == 8 and w.counts == {"train": 5, "test": 3}
    assert df["label"].isna().sum() == 3 and df["row"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]


def test_located_zip_members_read_without_the_central_directory(tmp_path, monkeypatch):
    """Workers read members at the offsets the listing found (no zipfile.ZipFile, whose open
    parses the whole central directory: seconds and ~100 MB for the official 480 000 members);
    the spectra equal zipfile's, zip64 and stored members included, and damage is reported."""
    import zipfile

    from spectraforge.io import tianchi

    rng = np.random.default_rng(0)
    flux = rng.normal(1, 0.1, (5, 2600)).astype(np.float32)
    write_tianchi(flux, [str(i) for i in range(5)], ["star"] * 5, tmp_path / "i.csv", tmp_path / "a.zip",
                  folder="first_train_data_20180131")
    text = (",".join(["1.5"] * 2600)).encode()
    with zipfile.ZipFile(tmp_path / "a.zip", "a") as zf:
        zf.writestr(zipfile.ZipInfo("first_train_data_20180131/5.txt"), text)  # stored, not deflated
        with zf.open("first_train_data_20180131/6.txt", "w", force_zip64=True) as fh:
            fh.write(text)
    pd.DataFrame({"id": [str(i) for i in range(7)], "type": ["star"] * 7}).to_csv(tmp_path / "i.csv", index=False)
    entries, problems, locations = tianchi.scan_tianchi(tmp_path / "i.csv", tmp_path / "a.zip", locate=True)
    assert problems == [] and locations.shape == (7, 4)
    plain = tianchi.read_tianchi_entries(tmp_path / "a.zip", entries)
    monkeypatch.setattr(tianchi.zipfile, "ZipFile", None)  # any use of it would fail
    located = tianchi.read_tianchi_entries(tmp_path / "a.zip", entries, locations)
    for a, b in zip(plain, located):
        np.testing.assert_array_equal(a.flux, b.flux)
        assert a.meta == b.meta
    # a member whose bytes were damaged after listing: its own error, the others still read
    blob = bytearray((tmp_path / "a.zip").read_bytes())
    off, csize = int(locations[2, 0]), int(locations[2, 1])
    blob[off + 30 + len(entries[2].member) + csize // 2] ^= 0xFF
    (tmp_path / "a.zip").write_bytes(bytes(blob))
    out = tianchi.read_tianchi_entries(tmp_path / "a.zip", entries, locations)
    assert [isinstance(o, Spectrum) for o in out] == [True, True, False, True, True, True, True]
    assert "a.zip::first_train_data_20180131/2.txt" in str(out[2]) and "zip" in out[2].reason
    shifted = locations.copy()
    shifted[0, 0] += 1
    out = tianchi.read_tianchi_entries(tmp_path / "a.zip", entries[:1], shifted[:1])
    assert "no local header at offset" in out[0].reason
