"""The ``prepare`` stage: list every input, read in parallel, put on the grid, write arrays.

Outputs (in ``out_dir``):
  train.npy, test.npy   float32 (n, n_pix), memory-mappable, rows in listing order
  meta.parquet          one row per prepared spectrum: split, row, id, label, snr, z,
                        object_id, file, format, bad_fraction
  quarantine.csv        one row per input that did not make it: split, file, id, reason
Counts add up per split: listed = prepared + quarantined (checked before any output is finished).

Memory stays bounded: chunks stream from the worker pool in order and their rows are
appended to a raw file that becomes the .npy at the end; nothing holds the whole array.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from spectraforge.io import (
    IndexEntry,
    SpectrumReadError,
    read_spectrum,
    read_tianchi_entries,
    scan_tianchi,
)
from spectraforge.params import InputSpec, PrepareParams
from spectraforge.preprocess import PreprocessError, estimate_snr, make_grid, preprocess

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
META_COLUMNS = ["split", "row", "id", "label", "snr", "z", "object_id", "file", "format", "bad_fraction"]
QUARANTINE_COLUMNS = ["split", "file", "id", "reason"]


@dataclass
class Chunk:
    """A unit of work: items of one input, read together (one zip open per chunk)."""

    spec: InputSpec
    items: list  # IndexEntry (tianchi) or str paths (fits)


def list_fits(path: str | Path) -> list[str]:
    """FITS files under ``path`` (a file or a folder, searched recursively), sorted."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder (prepare input)")
    return sorted(str(p) for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES))


def list_inputs(params: PrepareParams, chunk_size: int) -> tuple[list[Chunk], list[dict], dict]:
    """Chunks to read, problems found while listing, and the number listed per split."""
    chunks, problems = [], []
    listed = {"train": 0, "test": 0}
    for spec in params.inputs:
        if spec.kind == "tianchi":
            entries, bad = scan_tianchi(spec.index, spec.path)
            if spec.split == "test":
                entries = [IndexEntry(e.id, None, e.member) for e in entries]
            items = entries
            for where, reason in bad:
                problems.append({"split": spec.split, "file": where, "id": "", "reason": reason})
            listed[spec.split] += len(bad)
        else:
            items = list_fits(spec.path)
        listed[spec.split] += len(items)
        chunks += [Chunk(spec, items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
    return chunks, problems, listed


def _process_chunk(chunk: Chunk, grid_wave: np.ndarray, method: str, max_bad: float):
    """Read and preprocess one chunk; returns (rows float32 (m, P), meta dicts, problems)."""
    spec = chunk.spec
    if spec.kind == "tianchi":
        results = read_tianchi_entries(spec.path, chunk.items)
        where = [f"{spec.path}::{e.member}" for e in chunk.items]
    else:
        results = []
        for path in chunk.items:
            try:
                results.append(read_spectrum(path))
            except SpectrumReadError as exc:
                results.append(exc)
        where = list(chunk.items)
    rows, metas, problems = [], [], []
    for src, res in zip(where, results):
        if isinstance(res, SpectrumReadError):
            problems.append({"split": spec.split, "file": src, "id": "", "reason": res.reason})
            continue
        meta = res.meta
        ident = str(meta.get("id", ""))
        label = meta.get("label")
        if spec.split == "train" and label is None:
            problems.append({"split": spec.split, "file": src, "id": ident,
                             "reason": "no class label for a training spectrum"})
            continue
        try:
            flux, bad_frac = preprocess(res.wave, res.flux, res.mask, grid_wave, method, max_bad)
        except PreprocessError as exc:
            problems.append({"split": spec.split, "file": src, "id": ident, "reason": str(exc)})
            continue
        snr = meta.get("snr")
        if snr is None or not np.isfinite(snr):
            snr = estimate_snr(res.flux, res.ivar, res.mask)
        rows.append(flux)
        metas.append({
            "split": spec.split,
            "id": ident,
            "label": label if spec.split == "train" else None,
            "snr": np.nan if snr is None else float(snr),
            "z": np.nan if meta.get("z") is None else float(meta["z"]),
            "object_id": str(meta.get("object_id") or ident),
            "file": str(meta.get("file") or src),
            "format": meta.get("format", spec.kind),
            "bad_fraction": bad_frac,
        })
    arr = np.stack(rows) if rows else np.zeros((0, len(grid_wave)), np.float32)
    return arr, metas, problems


class _NpyAppender:
    """Append float32 rows to a raw file, then wrap it as a .npy (streamed, bounded memory)."""

    def __init__(self, path: Path, n_pix: int):
        self.path, self.n_pix, self.n = Path(path), n_pix, 0
        self._raw = self.path.with_suffix(".raw.tmp")
        self._fh = open(self._raw, "wb")

    def append(self, rows: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
        self.n += len(rows)

    def finish(self) -> None:
        self._fh.close()
        tmp = self.path.with_suffix(".npy.tmp")
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                  "fortran_order": False, "shape": (self.n, self.n_pix)}
        with open(tmp, "wb") as out, open(self._raw, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, length=16 << 20)
        os.replace(tmp, self.path)
        self._raw.unlink()


def run_prepare(params: PrepareParams, progress: bool = True) -> dict:
    """Run the stage; returns the counts written to the metrics file."""
    from spectraforge.outputs import staged_dir

    with staged_dir(params.out_dir) as out:
        return _prepare_into(params, out, progress)


def _prepare_into(params: PrepareParams, out: Path, progress: bool) -> dict:
    import pandas as pd  # main process only: workers import this module without it
    grid_wave = make_grid(params.grid)
    chunks, problems, listed = list_inputs(params, params.chunk_size)
    writers = {s: _NpyAppender(out / f"{s}.npy", len(grid_wave)) for s in ("train", "test")}
    metas: list[dict] = []
    seen: dict[str, str] = {}
    total = sum(len(c.items) for c in chunks)
    jobs = Parallel(n_jobs=params.n_jobs, return_as="generator")(
        delayed(_process_chunk)(c, grid_wave, params.normalise, params.max_bad_fraction) for c in chunks
    )
    with tqdm(total=total, desc="prepare", unit="spec", disable=not progress) as bar:
        for chunk, (rows, chunk_meta, chunk_problems) in zip(chunks, jobs):
            problems += chunk_problems
            keep = []
            for i, m in enumerate(chunk_meta):
                if m["id"] in seen:  # the same id from two inputs: keep the first
                    problems.append({"split": m["split"], "file": m["file"], "id": m["id"],
                                     "reason": f"duplicate id '{m['id']}' (first read from {seen[m['id']]})"})
                    continue
                seen[m["id"]] = m["file"]
                m["row"] = writers[m["split"]].n + len(keep)
                keep.append(i)
                metas.append(m)
            if keep:
                writers[chunk.spec.split].append(rows[keep])
            bar.update(len(chunk.items))
    meta = pd.DataFrame(metas, columns=META_COLUMNS)
    quarantine = pd.DataFrame(problems, columns=QUARANTINE_COLUMNS)
    counts = {}
    for split in ("train", "test"):
        n_ok = int((meta["split"] == split).sum())
        n_bad = int((quarantine["split"] == split).sum())
        if n_ok + n_bad != listed[split]:  # the books must balance before any output is finished
            raise RuntimeError(f"prepare: {split}: {n_ok} prepared + {n_bad} quarantined != {listed[split]} listed")
        counts.update({f"{split}_listed": listed[split], f"{split}_prepared": n_ok, f"{split}_quarantined": n_bad})
    for w in writers.values():
        w.finish()
    meta.to_parquet(out / "meta.parquet", index=False)
    quarantine.to_csv(out / "quarantine.csv", index=False)
    np.save(out / "wave.npy", grid_wave)
    return counts


def write_metrics(counts: dict, path: str | Path) -> None:
    from spectraforge.outputs import atomic_write_text

    atomic_write_text(path, json.dumps(counts, indent=2, sort_keys=True) + "\n")
