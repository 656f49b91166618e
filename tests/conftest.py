"""Shared fixtures: the repository root and the real spectra beside the project."""
from pathlib import Path

import pytest

from spectraforge.training import configure_threads

# One TensorFlow thread layout for the whole session, set before any test builds a model:
# TF fixes its pools at start-up, and two pools must never fight over the 2 cores.
configure_threads(2)

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = REPO_ROOT.parent / "shared" / "real"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """../shared/real, or a clean skip when a fresh clone has no ../shared."""
    if not REAL_DIR.is_dir():
        pytest.skip("../shared/real absent")
    return REAL_DIR


def toy_spectra(n: int, n_pix: int, seed: int = 0, p=(0.55, 0.2, 0.1, 0.15)):
    """4 classes of 'spectra': a line, or a doublet of class-dependent spacing, anywhere, on noise.

    The network ends in global max pooling, so classes must differ in shape, not position.
    Returns (X float32 (n, n_pix), y int64 codes in LABELS order).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=list(p))
    pix = np.arange(n_pix)
    centre = rng.integers(30, n_pix - 30, size=n)[:, None]
    half = np.array([0, 3, 6, 10])[y][:, None]

    def line(at):
        return np.exp(-0.5 * ((pix - at) / 1.5) ** 2)

    X = 1.5 * (line(centre - half) + (half > 0) * line(centre + half)) + rng.normal(0, 0.3, (n, n_pix))
    return X.astype(np.float32), y.astype(np.int64)


def toy_table(n: int, seed: int = 0, p=(0.55, 0.15, 0.15, 0.15), n_pix: int = 32):
    """A small separable 'prepared' problem for tabular learners: a class-dependent offset
    pattern on noise. Returns (X float32 (n, n_pix), y int64 codes in LABELS order)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.choice(4, n, p=list(p))
    X = 1 + 0.5 * np.eye(4)[y] @ rng.normal(0, 1, (4, n_pix)) + rng.normal(0, 0.2, (n, n_pix))
    return X.astype(np.float32), y


def write_prepared(root, X, y, X_test, k: int = 3, revisits: int = 40):
    """A prepared dataset as the prepare stage writes it (wave, train, test, meta) + folds.csv.

    The first ``revisits`` training spectra are pairs of observations of one object with one
    label, so object-grouped folds have something to group. Returns ``root``.
    """
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from spectraforge.data import make_folds
    from spectraforge.io.spectrum import LABELS

    root = Path(root)
    out = root / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    y = np.array(y).copy()
    y[1:revisits:2] = y[0:revisits:2]
    np.save(out / "train.npy", np.asarray(X, np.float32))
    np.save(out / "test.npy", np.asarray(X_test, np.float32))
    np.save(out / "wave.npy", np.logspace(np.log10(3690), np.log10(9100), X.shape[1]))
    ids = [f"t{i}" for i in range(len(y))]
    obj = [f"o{i // 2}" if i < revisits else f"o{i}" for i in range(len(y))]
    meta = pd.DataFrame({
        "split": ["train"] * len(y) + ["test"] * len(X_test),
        "row": list(range(len(y))) + list(range(len(X_test))),
        "id": ids + [f"x{i}" for i in range(len(X_test))],
        "label": [LABELS[c] for c in y] + [None] * len(X_test),
        "object_id": obj + [f"x{i}" for i in range(len(X_test))],
    })
    meta.to_parquet(out / "meta.parquet")
    make_folds(meta[meta.split == "train"].reset_index(drop=True), k, 0).to_csv(root / "folds.csv", index=False)
    return root


STRUCTURAL_KEYS = r"(BITPIX|NAXIS\d{0,3}|PCOUNT|GCOUNT|TFIELDS|TFORM\d{1,3}|THEAP)"


def fits_cards(blob: bytes, pattern: str = STRUCTURAL_KEYS) -> list[tuple[int, int, str]]:
    """(HDU number, byte offset, keyword) of every header card of an uncompressed FITS ``blob``
    whose keyword matches ``pattern``: where a test rewrites a header value."""
    import re

    out, offset, hdu = [], 0, 0
    while offset + 2880 <= len(blob) and (hdu == 0 or blob[offset:offset + 8] == b"XTENSION"):
        header = {}
        pos = offset
        while pos + 80 <= len(blob):
            key = blob[pos:pos + 8].decode("ascii", "replace").rstrip()
            if key == "END":
                break
            if blob[pos + 8:pos + 10] == b"= ":
                header[key] = blob[pos + 10:pos + 80].split(b"/")[0].strip()
                if re.fullmatch(pattern, key):
                    out.append((hdu, pos, key))
            pos += 80
        data = -(-(pos + 80) // 2880) * 2880
        naxis = int(header.get("NAXIS", b"0"))
        size = 0
        if naxis:
            size = 1
            for i in range(1, naxis + 1):
                size *= int(header[f"NAXIS{i}"])
            size = abs(int(header["BITPIX"])) // 8 * (size + int(header.get("PCOUNT", b"0")))
        offset, hdu = data + -(-size // 2880) * 2880, hdu + 1
    return out


def set_fits_card(blob: bytes, key: str, value: str, hdu: int | None = None) -> bytes:
    """``blob`` with the value field of header card ``key`` (in HDU ``hdu``, else the first HDU
    that has it) rewritten to ``value`` (as FITS text: ``123``, ``'1E'``, ``T``)."""
    for h, pos, k in fits_cards(blob, key):
        if hdu is None or h == hdu:
            out = bytearray(blob)
            out[pos + 10:pos + 80] = value.encode("ascii").ljust(70)[:70]
            return bytes(out)
    raise KeyError(f"no card {key} in HDU {hdu}")
