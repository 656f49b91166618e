"""Pictures of spectra for eyeballing the mock survey against real ones.

``plot_gallery(groups, path)`` draws one row per group (e.g. one per class) and one panel per
spectrum. ``compare_with_real(real_dir, path)`` builds such a gallery from mock spectra and the
real LAMOST/SDSS files that sit beside the project (``../shared/real``), with zoomed panels
around Ca II H&K, Hβ/Mg b and Hα.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

Item = tuple  # (wave, flux, title) or (wave, flux, title, (xmin, xmax))


def plot_gallery(groups: dict[str, list[Item]], path, ncols: int | None = None, panel_size=(5.2, 2.1)) -> Path:
    """Draw a PNG grid: one row per group, one panel per (wave, flux, title[, xlim]) item.

    The y range of each panel follows the 1st-99th percentile of the flux in view, so spikes
    and masked zeros do not squash the spectrum.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: v for k, v in groups.items() if v}
    nrows = len(groups)
    ncols = ncols or max(len(v) for v in groups.values())
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False)
    for row, (name, items) in zip(axes, groups.items()):
        for j, ax in enumerate(row):
            if j >= len(items):
                ax.axis("off")
                continue
            wave, flux, title = items[j][:3]
            wave = np.asarray(wave, float)
            flux = np.asarray(flux, float)
            xlim = items[j][3] if len(items[j]) > 3 else (wave.min(), wave.max())
            sel = (wave >= xlim[0]) & (wave <= xlim[1]) & np.isfinite(flux)
            ax.plot(wave[sel], flux[sel], lw=0.45, color="k")
            if sel.any():
                lo, hi = np.percentile(flux[sel], [1, 99])
                pad = 0.15 * (hi - lo + 1e-12)
                ax.set_ylim(lo - pad, hi + pad)
            ax.set_xlim(*xlim)
            ax.set_title(title, fontsize=7)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


# --- real spectra --------------------------------------------------------------------------
def read_real(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(wave, flux with bad pixels as NaN, meta) of a real spectrum, through the project's readers."""
    from spectraforge.io import read_spectrum

    spec = read_spectrum(path)
    return spec.wave, np.where(spec.mask, np.nan, spec.flux.astype(float)), spec.meta


def _real_index(real_dir: Path) -> list[dict]:
    rows = []
    for survey in ("lamost", "sdss"):
        idx = real_dir / survey / "index.csv"
        if idx.exists():
            with open(idx) as fh:
                for r in csv.DictReader(fh):
                    r["survey"] = survey
                    r["path"] = str(real_dir / survey / r["file"])
                    rows.append(r)
    return rows


def _pick_real(rows, cls: str, subclasses: Sequence[str] = (), n: int = 3) -> list[dict]:
    out = [r for r in rows if r["class"].lower() == cls and (not subclasses or r["subclass"][:2] in subclasses)]
    seen, res = set(), []
    for r in out:
        key = r["subclass"][:2]
        if key in seen and len(out) > n:
            continue
        seen.add(key)
        res.append(r)
    return res[:n]


def _real_snr(r: dict) -> float:
    for key in ("snrr", "sn_median_all"):
        try:
            v = float(r.get(key) or "nan")
        except ValueError:
            continue
        if np.isfinite(v) and v > 0:
            return v
    return float("nan")


def _twin(batch, label: str, z: float, snr: float, taken: set) -> int | None:
    """Index of the mock spectrum of ``label`` nearest to (z, S/N) in log(1+z) and log S/N."""
    best, best_d = None, np.inf
    for i, m in enumerate(batch.meta):
        if m["label"] != label or i in taken:
            continue
        mz = m["z"] if m["z"] is not None else 0.0
        d = 0.0 if not np.isfinite(snr) else (np.log(max(m["snr"], 0.05)) - np.log(snr)) ** 2
        if np.isfinite(z) and z > -1 and label != "unknown":
            d += 25.0 * (np.log1p(mz) - np.log1p(z)) ** 2
        if d < best_d:
            best, best_d = i, d
    return best


def compare_with_real(real_dir, path, seed: int = 7, zooms=((3850, 4450), (4820, 5350), (6450, 6700)),
                      pool: int = 400) -> Path:
    """Gallery of mock spectra next to real LAMOST/SDSS spectra, every class.

    ``path``: stars (the brightest mock stars and low-S/N ones beside real ones, with zooms) and
    the brightest mock galaxies, quasars and unknowns. Beside it, ``<stem>_twins.png``: each real
    galaxy, quasar and unknown next to its mock twin, the mock spectrum of the same class nearest
    in redshift and S/N among ``pool`` simulated.
    """
    from .simulate import simulate

    real_dir = Path(real_dir)
    rows = _real_index(real_dir)
    labels = ["star"] * 6 + ["galaxy"] * pool + ["qso"] * pool + ["unknown"] * pool
    batch = simulate(labels, seed)
    groups: dict[str, list[Item]] = {}

    def mock_item(i, lab):
        m = batch.meta[i]
        z = m["z"] if m["z"] is not None else m.get("source_z", 0.0)
        sub = m["subclass"] if lab != "unknown" else f"{m['subclass']} ({m['source_label']})"
        return (batch.wave, batch.flux[i], f"MOCK {lab} {sub} z={z:.3f} S/N={m['snr']:.1f}")

    def mock_items(lab, k):
        idx = [i for i, m in enumerate(batch.meta) if m["label"] == lab]
        idx = sorted(idx, key=lambda i: -batch.meta[i]["snr"])[:k]
        return [mock_item(i, lab) for i in idx]

    def real_item(r):
        w, f, _ = read_real(r["path"])
        sn = _real_snr(r)
        return (w, f, f"REAL {r['survey']} {r['class']} {r['subclass'][:10]} z={float(r['z']):.3f} S/N={sn:.1f}")

    def real_items(rs):
        return [real_item(r) for r in rs]

    twins: dict[str, list[Item]] = {}
    for lab in ("galaxy", "qso", "unknown"):
        taken: set = set()
        for k, r in enumerate([r for r in rows if r["class"].lower() == lab]):
            j = _twin(batch, lab, float(r["z"]), _real_snr(r), taken)
            taken.add(j)
            twins[f"{lab} {k + 1}"] = [real_item(r), mock_item(j, lab)]

    groups["star"] = mock_items("star", 3) + real_items(_pick_real(rows, "star", ("A1", "G2", "K7", "M2"), 3))
    groups["star (low S/N)"] = [it for it in mock_items("star", 6)[3:]] + real_items(
        [r for r in rows if r["class"] == "STAR" and r.get("snrr") and float(r["snrr"]) < 12][:3])
    for lab in ("galaxy", "qso", "unknown"):
        groups[lab] = mock_items(lab, 3)
    for lo, hi in zooms:
        items = []
        for it in groups["star"]:
            items.append((it[0], it[1], it[2][:40] + f" [{lo}-{hi}]", (lo, hi)))
        groups[f"star {lo}-{hi}"] = items
    path = Path(path)
    if twins:
        plot_gallery(twins, path.with_name(path.stem + "_twins" + path.suffix), panel_size=(7.5, 2.3))
    return plot_gallery(groups, path)
