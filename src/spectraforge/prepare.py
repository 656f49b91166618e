"""The ``prepare`` stage: list every input, read in parallel, put on the grid, write arrays.

Outputs (in ``out_dir``):
  train.npy, test.npy   float32 (n, n_pix), memory-mappable, rows in listing order
  meta.parquet          one row per prepared spectrum: split, row, id, label, snr, z,
                        object_id, file, format, bad_fraction
  quarantine.csv        one row per input that did not make it: split, file, id, reason
Counts add up per split: listed = prepared + quarantined (checked before any output is finished).

Memory stays bounded: chunks stream from the worker pool in order (a few in flight), their
rows are written in place into .npy files preallocated at the listed counts (NpyRowWriter)
and their metadata into parquet row groups (MetaWriter); what grows with the number of
spectra is only the listing and the id set for duplicate checks (~1 KB a spectrum,
benchmarks/scale.py).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
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
from spectraforge.io.spectrum import clip_reason
from spectraforge.outputs import write_metrics  # noqa: F401  (re-exported for the stage scripts)
from spectraforge.params import InputSpec, PrepareParams
from spectraforge.preprocess import PreprocessError, estimate_snr, make_grid, preprocess

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
TXT_SUFFIXES = (".txt", ".txt.gz")
ZIP_SUFFIXES = (".zip",)
NOT_A_SPECTRUM = "not a spectrum file (FITS: " + ", ".join(FITS_SUFFIXES) + "; Tianchi: .txt, .txt.gz, .zip)"
META_COLUMNS = ["split", "row", "id", "label", "snr", "z", "object_id", "file", "format", "bad_fraction"]
QUARANTINE_COLUMNS = ["split", "file", "id", "reason"]


@dataclass
class Chunk:
    """A unit of work: items of one input, read together."""

    spec: InputSpec
    items: list  # IndexEntry (tianchi) or str paths (fits)
    locations: np.ndarray | None = None  # tianchi zip: where each member lies (read without the central directory)


def file_kind(name: str) -> str | None:
    """'fits', 'txt' or 'zip' from a file's name (the readers then check the content), else None."""
    low = str(name).lower()
    if low.endswith(FITS_SUFFIXES):
        return "fits"
    if low.endswith(TXT_SUFFIXES):
        return "txt"
    if low.endswith(ZIP_SUFFIXES):
        return "zip"
    return None


def walk_files(folder: str | Path) -> Iterator[str]:
    """Every file under ``folder``, recursively, lazily, in sorted order of the full path strings
    (each directory is sorted as it is entered, sub-folders keyed ``name/``, which gives the
    order of one global sort without holding the listing). Symbolic links to folders are not
    followed (no cycles)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from walk_files(entry.path)
        elif entry.is_file():
            yield entry.path


def list_fits(path: str | Path, others: list | None = None) -> list[str]:
    """FITS files under ``path`` (a file or a folder, searched recursively), sorted.

    ``others``: a list that receives every other file of the folder (kept out of the FITS
    list), so a caller accounts for each with a reason instead of skipping it silently."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder (prepare input)")
    fits = []
    for f in walk_files(path):
        if file_kind(f) == "fits":
            fits.append(f)
        elif others is not None:
            others.append(f)
    return fits


def list_inputs(params: PrepareParams, chunk_size: int) -> tuple[list[Chunk], list[dict], dict]:
    """Chunks to read, problems found while listing, and the number listed per split."""
    chunks, problems = [], []
    listed = {"train": 0, "test": 0}
    for spec in params.inputs:
        if spec.kind == "tianchi":
            entries, bad, locations = scan_tianchi(spec.index, spec.path, locate=True)
            if spec.split == "test":
                entries = [IndexEntry(e.id, None, e.member) for e in entries]
            items = entries
            for where, reason in bad:
                # scan_tianchi names an index row's problem "id <id>": its id column is that id
                ident = where.removeprefix("id ") if where.startswith("id ") else ""
                problems.append({"split": spec.split, "file": where, "id": ident, "reason": reason})
            listed[spec.split] += len(bad)
        else:
            others: list[str] = []
            items, locations = list_fits(spec.path, others), None
            problems += [{"split": spec.split, "file": f, "id": "", "reason": NOT_A_SPECTRUM
                          if file_kind(f) is None else "not a FITS file (a 'fits' input reads FITS files only)"}
                         for f in others]
            listed[spec.split] += len(others)
        listed[spec.split] += len(items)
        chunks += [Chunk(spec, items[i : i + chunk_size], None if locations is None else locations[i : i + chunk_size])
                   for i in range(0, len(items), chunk_size)]
    return chunks, problems, listed


def _process_chunk(chunk: Chunk, grid_wave: np.ndarray, method: str, max_bad: float):
    """Read and preprocess one chunk; returns (rows float32 (m, P), meta dicts, problems)."""
    spec = chunk.spec
    if spec.kind == "tianchi":
        results = read_tianchi_entries(spec.path, chunk.items, chunk.locations)
        where = [f"{spec.path}::{e.member}" for e in chunk.items]
        known_ids = [e.id for e in chunk.items]  # the index names each file: a failed read keeps its id
    else:
        results = []
        for path in chunk.items:
            try:
                results.append(read_spectrum(path))
            except SpectrumReadError as exc:
                results.append(exc)
        where = list(chunk.items)
        known_ids = [""] * len(where)  # a FITS file's id is in the header that could not be read
    rows, metas, problems = [], [], []
    for src, known_id, res in zip(where, known_ids, results):
        if isinstance(res, SpectrumReadError):
            problems.append({"split": spec.split, "file": src, "id": known_id, "reason": res.reason})
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


class NpyRowWriter:
    """A float32 (n, n_pix) .npy preallocated for ``capacity`` rows, filled in place, then shrunk.

    The file is created at its largest size (sparse: no disk is used until rows arrive) with a
    header reserved for ``capacity`` rows; each chunk of rows is written at its offset, so
    nothing but the chunk is ever in memory. :meth:`finish` rewrites the header with the rows
    actually written (padded to the reserved length, which numpy allows) and truncates the
    file: no final copy, and readers memory-map the result (``np.load(..., mmap_mode="r")``).
    """

    def __init__(self, path: Path, n_pix: int, capacity: int):
        self.path, self.n_pix, self.capacity, self.n = Path(path), int(n_pix), int(capacity), 0
        self._header_len = len(self._header(self.capacity))
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._fh = open(self._tmp, "wb")
        self._fh.write(self._header(self.capacity))
        self._fh.truncate(self._header_len + self.capacity * self.n_pix * 4)

    def _header(self, n: int, length: int | None = None) -> bytes:
        d = {"descr": "<f4", "fortran_order": False, "shape": (n, self.n_pix)}
        text = repr(d).encode("latin1")
        # magic (6) + version (2) + length field (2) + text + padding + newline, a multiple of 64
        size = length if length is not None else -(-(10 + len(text) + 1) // 64) * 64
        text += b" " * (size - 10 - len(text) - 1) + b"\n"
        return np.lib.format.MAGIC_PREFIX + b"\x01\x00" + (size - 10).to_bytes(2, "little") + text

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype="<f4")
        if rows.ndim != 2 or rows.shape[1] != self.n_pix:
            raise ValueError(f"{self.path}: rows of shape {rows.shape}, expected (m, {self.n_pix})")
        if self.n + len(rows) > self.capacity:
            raise RuntimeError(f"{self.path}: {self.n + len(rows)} rows exceed the {self.capacity} preallocated")
        os.pwrite(self._fh.fileno(), rows.data, self._header_len + self.n * self.n_pix * 4)
        self.n += len(rows)

    def finish(self) -> None:
        """Write the final header and size, then rename the file into place."""
        header = self._header(self.n, self._header_len)
        assert len(header) == self._header_len  # fewer rows never need a longer header
        os.pwrite(self._fh.fileno(), header, 0)
        self._fh.truncate(self._header_len + self.n * self.n_pix * 4)
        self._fh.close()
        os.replace(self._tmp, self.path)


class MetaWriter:
    """meta.parquet written in row groups as chunks arrive: the rows never pile up as dicts."""

    def __init__(self, path: Path, rows_per_group: int = 65536):
        import pyarrow as pa

        self.schema = pa.schema([
            ("split", pa.string()), ("row", pa.int64()), ("id", pa.string()), ("label", pa.string()),
            ("snr", pa.float64()), ("z", pa.float64()), ("object_id", pa.string()), ("file", pa.string()),
            ("format", pa.string()), ("bad_fraction", pa.float64()),
        ])
        assert self.schema.names == META_COLUMNS
        self.path, self.rows_per_group = Path(path), rows_per_group
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._buffer: list[dict] = []
        self._writer = None
        self.counts = {"train": 0, "test": 0}

    def add(self, meta: dict) -> None:
        self._buffer.append(meta)
        self.counts[meta["split"]] += 1
        if len(self._buffer) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self.schema)
        table = pa.Table.from_pylist(self._buffer, schema=self.schema)
        self._writer.write_table(table)
        self._buffer = []

    def finish(self) -> None:
        if self._buffer or self._writer is None:
            self._flush()
        self._writer.close()
        os.replace(self._tmp, self.path)


def run_prepare(params: PrepareParams, progress: bool = True, compute=None) -> dict:
    """Run the stage; returns the counts written to the metrics file. ``compute``
    (:class:`spectraforge.compute.ComputeParams`) sends the chunks to a Dask cluster."""
    from spectraforge.outputs import staged_dir

    with staged_dir(params.out_dir) as out:
        return _prepare_into(params, out, progress, compute)


def _prepare_into(params: PrepareParams, out: Path, progress: bool, compute=None) -> dict:
    import pandas as pd  # main process only: workers import this module without it
    grid_wave = make_grid(params.grid)
    chunks, problems, listed = list_inputs(params, params.chunk_size)
    capacity = {s: sum(len(c.items) for c in chunks if c.spec.split == s) for s in ("train", "test")}
    writers = {s: NpyRowWriter(out / f"{s}.npy", len(grid_wave), capacity[s]) for s in ("train", "test")}
    meta = MetaWriter(out / "meta.parquet")
    seen: dict[str, str] = {}  # id -> where it was first read
    total = sum(capacity.values())
    with tqdm(total=total, desc="prepare", unit="spec", disable=not progress) as bar:
        for chunk, (rows, chunk_meta, chunk_problems) in zip(chunks, map_chunks(params, chunks, grid_wave, compute)):
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
                meta.add(m)
            if keep:
                writers[chunk.spec.split].append(rows[keep] if len(keep) < len(rows) else rows)
            bar.update(len(chunk.items))
    quarantine = pd.DataFrame(problems, columns=QUARANTINE_COLUMNS)
    quarantine["reason"] = quarantine["reason"].map(clip_reason)  # one short line each, whatever the source
    counts = {}
    for split in ("train", "test"):
        n_ok = meta.counts[split]
        n_bad = int((quarantine["split"] == split).sum())
        if n_ok + n_bad != listed[split]:  # the books must balance before any output is finished
            raise RuntimeError(f"prepare: {split}: {n_ok} prepared + {n_bad} quarantined != {listed[split]} listed")
        counts.update({f"{split}_listed": listed[split], f"{split}_prepared": n_ok, f"{split}_quarantined": n_bad})
    for w in writers.values():
        w.finish()
    meta.finish()
    quarantine.to_csv(out / "quarantine.csv", index=False)
    np.save(out / "wave.npy", grid_wave)
    return counts


def map_chunks(params: PrepareParams, chunks: list[Chunk], grid_wave: np.ndarray, compute=None):
    """Processed chunks in order, from the joblib pool (a few chunks in flight, never all):
    ``prepare.n_jobs`` local processes, or every worker of the Dask cluster ``compute`` names."""
    from spectraforge.compute import joblib_backend

    local = compute is None or compute.backend == "local"
    with joblib_backend(compute):
        yield from Parallel(n_jobs=params.n_jobs if local else -1, return_as="generator")(
            delayed(_process_chunk)(c, grid_wave, params.normalise, params.max_bad_fraction) for c in chunks
        )
