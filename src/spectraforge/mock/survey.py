"""The mock survey on disk, in the real formats, so the default run exercises every reader.

Layout written under ``out_dir``:
  train_index.csv, train.zip   Tianchi 2018: index ``id,type`` and one ``<id>.txt`` per spectrum
                               (2600 fluxes on the contest grid)
  test_index.csv, test.zip     the same with an ``id``-only index
  fits/                        LAMOST low-resolution FITS of part of the training set, in both
                               layouts (image and COADD table), early-pipeline image files, some
                               gzipped; some objects observed twice (same DESIG) to exercise
                               object-grouped folds
The test labels go to ``truth_csv``, outside ``out_dir``, so nothing downstream of ``prepare``
can see them; only the scoring of a submission reads them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spectraforge.io import Spectrum, write_lamost_fits, write_tianchi
from spectraforge.labels import LABELS
from spectraforge.mock.simulate import simulate
from spectraforge.params import MockParams
from spectraforge.preprocess import make_grid, to_grid

# (layout, gzip, early-pipeline) cycled over the FITS files so every reader path is used
FITS_VARIANTS = [("image", False, False), ("table", True, False), ("image", True, True), ("table", False, False)]
REVISIT_OFFSET = 10_000_000  # OBSIDs of second exposures: beyond every first-exposure id
CHUNK = 1000  # spectra simulated at a time: bounds memory at any survey size


def class_counts(mix: dict, n: int) -> dict:
    """Exact per-class counts for ``n`` spectra (largest remainder), every listed class ≥ 1."""
    names = [c for c in LABELS if float(mix.get(c, 0)) > 0]
    shares = np.array([float(mix[c]) for c in names])
    raw = shares / shares.sum() * n
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][: n - counts.sum()]] += 1
    while (counts == 0).any() and counts.max() > 1:  # rare classes present even in tiny surveys
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return dict(zip(names, counts.tolist()))


def draw_labels(mix: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    counts = class_counts(mix, n)
    labels = np.concatenate([[c] * k for c, k in counts.items()])
    return labels[rng.permutation(n)]


def _designation(rng: np.random.Generator) -> str:
    ra, dec = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-0.5, 1.0)))
    h, rem = divmod(ra / 15, 1)
    m, s = divmod(rem * 60, 1)
    sign = "+" if dec >= 0 else "-"
    d, drem = divmod(abs(dec), 1)
    dm, ds = divmod(drem * 60, 1)
    return f"J{int(h):02d}{int(m):02d}{s * 60:05.2f}{sign}{int(d):02d}{int(dm):02d}{ds * 60:04.1f}"


def reobserve(flux, ivar, mask, rng: np.random.Generator):
    """A second exposure of the same object: extra noise, another calibration wiggle."""
    sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.maximum(ivar, 1e-30)), 0.0)
    extra = rng.uniform(0.3, 1.0)  # the revisit is up to twice as noisy in variance
    x = np.linspace(-1, 1, len(flux))
    wiggle = 1 + rng.normal(0, 0.02) * x + rng.normal(0, 0.01) * (2 * x**2 - 1)
    new_flux = flux * wiggle + rng.normal(size=len(flux)) * sigma * extra
    new_ivar = np.where(ivar > 0, ivar / (wiggle**2 + extra**2), 0.0)
    return new_flux.astype(np.float32), new_ivar.astype(np.float32), mask.copy()


def build_survey(params: MockParams) -> dict:
    """Simulate and write the survey (into a staging folder renamed into place at the end);
    returns counts for the stage's metrics."""
    from spectraforge.outputs import atomic_write_text, staged_dir

    with staged_dir(params.out_dir) as out:
        counts, test_ids, test_labels = _write_survey(params, out)
    atomic_write_text(params.truth_csv, pd.DataFrame({"id": test_ids, "type": test_labels}).to_csv(index=False))
    return counts


def _write_survey(params: MockParams, out: Path):
    rng = np.random.default_rng(params.seed)
    (out / "fits").mkdir(parents=True, exist_ok=True)
    grid = make_grid()

    train_labels = draw_labels(params.class_mix, params.n_train, rng)
    test_labels = draw_labels(params.class_mix, params.n_test, rng)
    n_fits = int(round(params.fits_fraction * params.n_train))
    is_fits = np.zeros(params.n_train, bool)
    is_fits[rng.choice(params.n_train, n_fits, replace=False)] = True
    # ids as in the contest: opaque integers, unique across train and test; FITS get OBSIDs
    pool = rng.choice(np.arange(100_000, 100_000 + 20 * (params.n_train + params.n_test)),
                      params.n_train + params.n_test, replace=False)
    train_ids = pool[: params.n_train].astype(str)
    test_ids = pool[params.n_train :].astype(str)

    counts = {"n_fits_files": 0, "n_fits_repeats": 0}
    for split, labels, ids in (("train", train_labels, train_ids), ("test", test_labels, test_ids)):
        txt_rows, txt_ids, txt_labels = [], [], []
        for start in range(0, len(labels), CHUNK):
            stop = min(start + CHUNK, len(labels))
            batch = simulate(list(labels[start:stop]), seed=rng.integers(2**63),
                             snr_range=tuple(params.snr_range))
            for j in range(stop - start):
                i = start + j
                mask = batch.andmask[j] != 0
                if split == "train" and is_fits[i]:
                    counts["n_fits_files"] += _write_fits_object(
                        out / "fits", batch, j, ids[i], counts, rng, params.repeat_fraction)
                    continue
                flux, _ = to_grid(batch.wave, batch.flux[j], mask, grid)
                txt_rows.append(flux.astype(np.float32))
                txt_ids.append(ids[i])
                txt_labels.append(labels[i])
        flux = np.stack(txt_rows) if txt_rows else np.zeros((0, len(grid)), np.float32)
        write_tianchi(flux, txt_ids, txt_labels if split == "train" else None,
                      out / f"{split}_index.csv", out / f"{split}.zip")
        counts[f"n_{split}_txt"] = len(txt_ids)
    for split, labels in (("train", train_labels), ("test", test_labels)):
        for c in LABELS:
            counts[f"n_{split}_{c}"] = int((labels == c).sum())
    return counts, test_ids, test_labels


def _write_fits_object(folder: Path, batch, j: int, obsid: str, counts: dict, rng, repeat_fraction) -> int:
    """One object as LAMOST FITS, possibly with a revisit; returns the number of files written."""
    meta = dict(batch.meta[j])
    desig = _designation(rng)
    n_written = 0
    flux, ivar, mask = batch.flux[j], batch.ivar[j], batch.andmask[j] != 0
    exposures = [(obsid, flux, ivar, mask)]
    if rng.random() < repeat_fraction:
        revisit_id = str(int(obsid) + REVISIT_OFFSET)
        exposures.append((revisit_id, *reobserve(flux, ivar, mask, rng)))
        counts["n_fits_repeats"] += 1
    for k, (oid, f, iv, m) in enumerate(exposures):
        variant = FITS_VARIANTS[(counts["n_fits_files"] + n_written) % len(FITS_VARIANTS)]
        layout, gz, early = variant
        spec = Spectrum(
            wave=batch.wave, flux=f, ivar=iv, mask=m,
            meta={**meta, "id": oid, "object_id": desig, "label": meta["label"]},
        )
        mjd = 55859 + int(rng.integers(0, 3000))
        name = f"spec-{mjd}-MOCK_sp{1 + k:02d}-{oid}.fits" + (".gz" if gz else "")
        write_lamost_fits(spec, folder / name, layout=layout, gzip=gz, early=early)
        n_written += 1
    return n_written
