"""Mock spectra next to real survey spectra, per class, for looking at."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spectraforge.io import SpectrumReadError, read_spectrum
from spectraforge.io.spectrum import LABELS
from spectraforge.mock.gallery import plot_gallery
from spectraforge.mock.simulate import simulate


def real_examples(real_dir: str | Path, per_class: int = 2) -> dict[str, list]:
    """Up to ``per_class`` real spectra of each class from ../shared/real (LAMOST first, then SDSS)."""
    real_dir = Path(real_dir)
    picked: dict[str, list] = {c: [] for c in LABELS}
    for survey in ("lamost", "sdss"):
        index = real_dir / survey / "index.csv"
        if not index.exists():
            continue
        table = pd.read_csv(index)
        # brightest first, so the real row shows what the features look like
        if "snrr" in table:
            table = table.sort_values("snrr", ascending=False)
        for _, row in table.iterrows():
            label = str(row["class"]).lower()
            if label not in picked or len(picked[label]) >= per_class:
                continue
            try:
                s = read_spectrum(real_dir / survey / row["file"])
            except SpectrumReadError:
                continue
            picked[label].append(s)
    return picked


def _norm(flux, mask):
    good = flux[~mask] if (~mask).any() else flux
    scale = np.median(np.abs(good)) or 1.0
    return np.where(mask, np.nan, flux / scale)


def mock_vs_real_gallery(real_dir, out_path, seed: int = 0, per_class: int = 2) -> Path:
    """PNG with, per class, real spectra and mock spectra at high and low S/N."""
    real = real_examples(real_dir, per_class)
    groups = {}
    for label in LABELS:
        rows = []
        for s in real[label]:
            m = s.meta
            z = "" if m.get("z") is None else f" z={m['z']:.3f}"
            snr = "" if m.get("snr") is None else f" S/N={m['snr']:.0f}"
            rows.append((s.wave, _norm(s.flux, s.mask), f"REAL {m['format']} {label}{z}{snr}"))
        for snr_range in ((30.0, 60.0), (3.0, 8.0)):
            batch = simulate([label] * per_class, seed=seed, snr_range=snr_range)
            for j in range(per_class):
                m = batch.meta[j]
                z = "" if m.get("z") is None else f" z={m['z']:.3f}"
                rows.append((batch.wave, _norm(batch.flux[j], batch.andmask[j] != 0),
                             f"MOCK {label} {m.get('subclass', '')}{z} S/N={m['snr']:.0f}"))
        groups[label] = rows
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    plot_gallery(groups, out_path)
    return out_path
