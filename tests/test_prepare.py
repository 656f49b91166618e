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
