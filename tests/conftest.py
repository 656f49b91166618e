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
