"""Shared fixtures: the repository root and the real spectra beside the project."""
from pathlib import Path

import pytest

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
