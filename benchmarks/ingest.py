"""Ingestion speed: the `prepare` stage on LAMOST FITS against a plain astropy loop.

Both read the same files in the same run. The baseline is the simplest correct loop a
user would write: one process, astropy.io.fits.open, take the flux row or column, close.
`prepare` does strictly more (masks, wavelength checks, resampling onto the grid,
normalisation, quarantine bookkeeping, .npy output) with prepare.n_jobs workers.

    python benchmarks/ingest.py [--n-files 3000] [--repeat-real 20]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from _results import stamp, write_section
from spectraforge.io import Spectrum, write_lamost_fits
from spectraforge.mock.simulate import simulate
from spectraforge.mock.survey import FITS_VARIANTS, draw_labels
from spectraforge.params import InputSpec, PrepareParams
from spectraforge.prepare import run_prepare

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "lamost"


def write_mock_fits(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    labels = draw_labels({"star": 0.8, "unknown": 0.13, "galaxy": 0.05, "qso": 0.02}, n, rng)
    paths = []
    for start in range(0, n, 500):
        batch = simulate(list(labels[start : start + 500]), seed=seed + start)
        for j, meta in enumerate(batch.meta):
            i = start + j
            layout, gz, early = FITS_VARIANTS[i % len(FITS_VARIANTS)]
            spec = Spectrum(batch.wave, batch.flux[j], batch.ivar[j], batch.andmask[j] != 0,
                            {**meta, "id": str(10_000 + i), "object_id": f"obj{i}"})
            path = folder / (f"spec-{i:06d}.fits" + (".gz" if gz else ""))
            write_lamost_fits(spec, path, layout=layout, gzip=gz, early=early)
            paths.append(path)
    return paths


def astropy_loop(paths) -> float:
    """Files per second of the plain loop: open, take the flux, close."""
    t0 = time.perf_counter()
    for path in paths:
        with fits.open(path, memmap=False) as hdul:
            data = hdul[0].data
            flux = np.array(data[0] if data is not None else hdul["COADD"].data["FLUX"][0])
    assert flux.size > 0
    return len(paths) / (time.perf_counter() - t0)


def prepare_rate(inputs: list[InputSpec], raw_dir: Path, out: Path, n_jobs: int, n_files: int) -> float:
    params = PrepareParams(raw_dir=str(raw_dir), inputs=inputs, n_jobs=n_jobs, chunk_size=128, out_dir=str(out))
    params.validate()
    t0 = time.perf_counter()
    counts = run_prepare(params, progress=False)
    rate = n_files / (time.perf_counter() - t0)
    assert counts["train_listed"] == n_files, counts
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-files", type=int, default=3000)
    ap.add_argument("--repeat-real", type=int, default=20, help="passes over the 58 real files")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sf-ingest-"))
    rows = []
    try:
        mock_dir = work / "mock"
        mock_dir.mkdir()
        paths = write_mock_fits(mock_dir, args.n_files)
        base = astropy_loop(paths)
        spec = [InputSpec(kind="fits", split="train", path=str(mock_dir))]
        for n_jobs in (1, 2):
            rate = prepare_rate(spec, work, work / f"out{n_jobs}", n_jobs, len(paths))
            rows.append(("mock LAMOST FITS (both layouts, 1/2 gzipped)", len(paths), base, n_jobs, rate))
        if REAL.is_dir():
            real = sorted(REAL.glob("*.fits*"))
            base = astropy_loop(real * args.repeat_real)
            # the same folder listed repeat times: later copies are read, then quarantined as duplicates
            spec = [InputSpec(kind="fits", split="train", path=str(REAL))] * args.repeat_real
            for n_jobs in (1, 2):
                rate = prepare_rate(spec, REAL, work / f"real{n_jobs}", n_jobs, len(real) * args.repeat_real)
                rows.append((f"real LAMOST ({len(real)} files × {args.repeat_real})", len(real) * args.repeat_real,
                             base, n_jobs, rate))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "## Ingest: `prepare` on LAMOST FITS vs a plain astropy loop",
        "",
        f"Run {stamp()}.",
        f"Command: `python benchmarks/ingest.py --n-files {args.n_files} --repeat-real {args.repeat_real}`. "
        "Baseline: one process, `astropy.io.fits.open`, take the flux, close. "
        "`prepare` also validates, masks, resamples to the 2600-pixel grid, normalises and writes .npy. Target ≥ 4× on 2 cores.",
        "",
        "| files | n | astropy loop (files/s) | prepare n_jobs | prepare (files/s) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, n, b, j, r in rows:
        lines.append(f"| {name} | {n} | {b:.0f} | {j} | {r:.0f} | {r / b:.2f}× |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("ingest", text)


if __name__ == "__main__":
    main()
