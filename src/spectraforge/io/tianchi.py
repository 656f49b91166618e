"""Tianchi 2018 contest spectra: one `<id>.txt` per spectrum, an index CSV, a folder or a zip.

Each `<id>.txt` holds 2600 comma-separated relative fluxes (whitespace and a trailing newline
allowed) on the grid TIANCHI_WAVE, log-spaced over 3690–9100 Å. The index CSV is `id,type` for
training (type in star, galaxy, qso, unknown) and `id` for test. Users keep the official zip
(e.g. `first_train_data_20180131.zip`, ~480 000 members, possibly inside one sub-folder): it is
read in place, never unpacked. The files carry no variance: ivar is 1 on finite pixels.
"""
from __future__ import annotations

import csv
import io
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ._common import file_stem, finalise, read_blob, to_label
from .spectrum import LABELS, Spectrum, SpectrumReadError
from .zipindex import MemberError, read_member, zip_index

TIANCHI_NPIX = 2600
TIANCHI_WAVE = np.logspace(np.log10(3690), np.log10(9100), TIANCHI_NPIX)
TIANCHI_WAVE.setflags(write=False)  # shared by every Tianchi Spectrum, never copied
TIANCHI_MAX_BYTES = 4 << 20  # a txt of 2600 numbers is ~30 KB; a member this large is not a spectrum
DEFAULT_FMT = "%.5g"  # ~1e-5 relative: far below the noise of any survey spectrum
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, ValueError, NotImplementedError)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One readable row of a Tianchi index: its id, lower-case label (None for test) and file."""

    id: str
    label: str | None
    member: str  # path of the txt inside the zip or folder, e.g. "123.txt" or "train/123.txt"


# ------------------------------------------------------------------------------------ one spectrum

def parse_tianchi_txt(where, blob: bytes | str, ident: str, label: str | None = None) -> Spectrum:
    """A Spectrum from the bytes of one Tianchi txt; `where` names the source in errors and meta.

    Values are split on commas only (spaces and newlines around a value are allowed, one
    trailing comma too): an empty field is an error, never skipped, so a missing value cannot
    shift every later pixel by one.
    """
    try:
        text = blob.decode("ascii") if isinstance(blob, bytes) else blob
    except UnicodeDecodeError:
        raise SpectrumReadError(where, "not ASCII text (expected 2600 comma-separated numbers)") from None
    text = text.strip()
    if not text:
        raise SpectrumReadError(where, "empty file")
    fields = text.removesuffix(",").split(",")
    try:
        flux = np.array(fields, dtype=np.float64)
    except ValueError:
        raise SpectrumReadError(where, _bad_field(fields)) from None
    if flux.size != TIANCHI_NPIX:
        raise SpectrumReadError(where, f"expected {TIANCHI_NPIX} values, found {flux.size}")
    ivar = np.isfinite(flux).astype(np.float32)
    meta = {"id": ident, "label": label, "z": None, "snr": None, "format": "tianchi-txt",
            "object_id": ident, "file": str(where)}
    return finalise(where, TIANCHI_WAVE, flux, ivar, None, meta)


def _bad_field(fields: list[str]) -> str:
    """The reason for the first field that is not a number (only called when one is not)."""
    for i, field in enumerate(fields, start=1):
        try:
            float(field)
        except ValueError:
            where = f"field {i} of {len(fields)}"
            value = field.strip()
            if not value:
                return f"empty value in {where} (expected {TIANCHI_NPIX} comma-separated numbers)"
            return (f"non-numeric value {value[:40]!r}{'…' if len(value) > 40 else ''} in {where}; "
                    f"expected {TIANCHI_NPIX} comma-separated numbers")
    return f"non-numeric value; expected {TIANCHI_NPIX} comma-separated numbers"  # pragma: no cover


def read_tianchi_txt(path, label: str | None = None) -> Spectrum:
    """One `<id>.txt` file (gzipped or not); id = file stem."""
    return parse_tianchi_txt(path, read_blob(path), file_stem(path), label)


# ------------------------------------------------------------------------------------- a data set

def _is_zip(source) -> bool:
    """A source that is a file is read as a zip; a directory as a folder of txt files."""
    return Path(source).is_file()


def _list_members(source, others: list | None = None) -> tuple[list[str], np.ndarray | None]:
    """Every txt in the zip or folder (recursively), as member paths relative to the source,
    and for a zip their locations (see :func:`read_located`; None for a folder).
    ``others``: a list that receives the other files (not directories, not the macOS
    ``__MACOSX/`` and ``._`` metadata twins), for the caller to account for with a reason."""
    locations = None
    if _is_zip(source):
        try:
            names, locations = zip_index(source)  # compact: no ZipInfo per member
        except _ZIP_ERRORS as exc:
            raise SpectrumReadError(source, f"cannot open zip ({exc})") from exc
    elif Path(source).is_dir():
        names = [PurePosixPath(Path(root, f).relative_to(source)).as_posix()
                 for root, _, files in os.walk(source) for f in files]
    else:
        raise SpectrumReadError(source, "no such zip file or folder")
    # directories are not .txt; macOS zips carry '__MACOSX/._<id>.txt' resource forks that are not spectra
    def metadata(n):
        return n.endswith("/") or "__MACOSX/" in n or PurePosixPath(n).name.startswith("._")

    keep = [i for i, n in enumerate(names) if n.lower().endswith(".txt") and not metadata(n)]
    if others is not None:
        others += [n for n in names if not n.lower().endswith(".txt") and not metadata(n)]
    return [names[i] for i in keep], (locations[keep] if locations is not None else None)


def list_tianchi(source) -> list[IndexEntry]:
    """Every txt of a folder or zip as an unlabelled entry (id = file stem), for data without an index."""
    return [IndexEntry(PurePosixPath(m).name.removesuffix(".txt"), None, m) for m in _list_members(source)[0]]


def scan_unindexed(source) -> tuple[list[IndexEntry], np.ndarray | None, list[tuple[str, str]]]:
    """A zip or folder of txt files without an index (``predict``): by the rules of
    :func:`scan_tianchi` but with every file listed. Returns the unlabelled entries (id = file
    stem), their zip locations (None for a folder) and problems as (where, reason): duplicate
    file names (the first is kept, as ``scan_tianchi`` keeps it) and files that are not txt.
    Raises SpectrumReadError for an unreadable source."""
    others: list[str] = []
    names, locations = _list_members(source, others)
    where = (lambda m: f"{source}::{m}") if _is_zip(source) else (lambda m: str(Path(source) / m))
    problems = [(where(m), "not a Tianchi .txt file") for m in others]
    first: dict[str, str] = {}
    keep = []
    for pos, member in enumerate(names):
        base = PurePosixPath(member).name
        if base in first:
            problems.append((where(member), f"duplicate file name {base!r} in {source} (kept {first[base]})"))
            continue
        first[base] = member
        keep.append(pos)
    entries = [IndexEntry(PurePosixPath(names[i]).name.removesuffix(".txt"), None, names[i]) for i in keep]
    return entries, (locations[keep] if locations is not None else None), problems


class CSVReadError(SpectrumReadError):
    """An index (or submission) CSV that cannot be read strictly; names the file and the reason."""


def read_csv_rows(path, what: str = "CSV") -> tuple[list[str], dict[str, list[str]]]:
    """The header and the columns (header name -> values) of a CSV file, read strictly.

    UTF-8 text (a byte-order mark is allowed), CSV quoting rules, every row with exactly as many
    fields as the header (a row with one more field is not silently taken as an index column, nor
    one with fewer padded), empty lines skipped. Values are returned exactly as written. Raises
    CSVReadError naming the file and, for a malformed row, its line.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CSVReadError(path, f"cannot read {what} ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CSVReadError(path, f"{what} is not UTF-8 text (byte {raw[exc.start:exc.start + 1]!r} at offset "
                                 f"{exc.start}); save it as UTF-8") from None
    if "\x00" in text:
        raise CSVReadError(path, f"{what} is not UTF-8 text (NUL bytes: UTF-16 or binary data); save it as UTF-8")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    columns: list[list[str]] = []
    try:
        for row in reader:
            if not row:
                continue  # an empty line
            if header is None:
                header = row
                columns = [[] for _ in header]
                continue
            if len(row) != len(header):
                raise CSVReadError(path, f"{what}: line {reader.line_num} has {len(row)} field(s), the header "
                                         f"{','.join(header)!r} has {len(header)}")
            for values, value in zip(columns, row):
                values.append(value)
    except csv.Error as exc:
        raise CSVReadError(path, f"{what}: malformed CSV at line {reader.line_num} ({exc})") from None
    if header is None:
        raise CSVReadError(path, f"empty file (no header line in the {what})")
    names = [name.strip() for name in header]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CSVReadError(path, f"{what}: the header names column(s) {', '.join(map(repr, dup))} twice")
    return header, dict(zip(header, columns))


def read_index(index_csv) -> pd.DataFrame:
    """A Tianchi index (train ``id,type`` or test ``id``) as the one reading every stage uses.

    Read strictly (read_csv_rows: UTF-8, one field per header column on every line); column
    names are stripped and lower-cased, ids and labels stripped of surrounding spaces; every
    value is kept as written otherwise (an id ``NA`` is an id, not a missing value). Needs an
    ``id`` column (``type`` optional). ``prepare``, ``submit`` and ``validate-submission`` all
    read the test index here, so they agree on its ids.
    """
    import pandas as pd  # only the listing step needs it, not the reader workers

    header, raw = read_csv_rows(index_csv, "index CSV")
    names = [name.strip().lower() for name in header]
    if len(set(names)) != len(names):
        raise CSVReadError(index_csv, f"index CSV names a column twice (columns: {header})")
    columns = {name: raw[original] for name, original in zip(names, header)}
    if "id" not in columns:
        raise CSVReadError(index_csv, f"index CSV has no 'id' column (columns: {list(columns)})")
    for name in ("id", "type"):
        if name in columns:
            columns[name] = [value.strip() for value in columns[name]]
    return pd.DataFrame(columns, dtype=object)


def index_ids(index_csv) -> list[str]:
    """The ids of an index, as ``prepare`` takes them: stripped, non-empty, first occurrence of each."""
    return list(dict.fromkeys(i for i in read_index(index_csv)["id"] if i))


def scan_tianchi(index_csv, source, locate: bool = False):
    """Match an index CSV against a folder or zip of txt files (by basename).

    Returns the readable entries (index order) and problems as (what, reason) for: empty ids,
    duplicate ids (the first is kept), unknown or missing labels, ids without a file, duplicate
    file names, txt files the index does not list, and files that are not txt. Nothing is dropped silently: every index
    row and every txt file is accounted for (a file of a rejected row by that row's problem).
    With ``locate``, a third value: the entries' zip locations, an (n, 4) int64 array to pass
    to :func:`read_tianchi_entries` (None for a folder).
    Raises SpectrumReadError for an unreadable CSV, a CSV without `id`, or an unreadable source.
    """
    index = read_index(index_csv)
    others: list[str] = []
    names, locations = _list_members(source, others)
    problems: list[tuple[str, str]] = [(m, "not a Tianchi .txt file") for m in others]
    files: dict[str, int] = {}  # basename -> position in names
    for pos, member in enumerate(names):
        base = PurePosixPath(member).name
        if base in files:
            problems.append((member, f"duplicate file name {base!r} in {source} (kept {names[files[base]]})"))
        else:
            files[base] = pos
    labels = index["type"] if "type" in index.columns else [None] * len(index)
    entries, positions, listed = [], [], set()
    for row, (ident, raw) in enumerate(zip(index["id"], labels), start=2):
        if not ident:
            problems.append((f"row {row} of {index_csv}", "empty id"))
            continue
        if ident in listed:
            problems.append((f"id {ident}", f"duplicate id {ident!r} in {index_csv}"))
            continue
        listed.add(ident)
        label = None
        if raw is not None:
            try:
                label = to_label(raw)
            except ValueError:
                problems.append((f"id {ident}", f"unknown label {raw.strip()!r} for id {ident}"))
                continue
            if label is None:
                problems.append((f"id {ident}", f"missing label for id {ident}"))
                continue
        pos = files.get(f"{ident}.txt")
        if pos is None:
            problems.append((f"id {ident}", f"no file {ident}.txt in {source}"))
            continue
        entries.append(IndexEntry(ident, label, names[pos]))
        positions.append(pos)
    problems += [(names[pos], f"not listed in {index_csv}") for base, pos in files.items()
                 if base.removesuffix(".txt") not in listed]
    if not locate:
        return entries, problems
    return entries, problems, (locations[positions] if locations is not None else None)


def iter_tianchi_entries(source, entries: Sequence[IndexEntry],
                         locations: np.ndarray | None = None) -> Iterator[Spectrum | SpectrumReadError]:
    """Read entries one by one, opening a zip once; a bad member yields its SpectrumReadError.

    locations: the entries' rows of ``scan_tianchi(..., locate=True)``: members are then read
    straight at their offsets (:func:`read_located`), without parsing the zip's central
    directory, which for the official 480 000-member zip costs seconds and ~100 MB per open.
    Raises SpectrumReadError only when the source itself cannot be opened.
    """
    if not _is_zip(source):
        for entry in entries:
            path = Path(source) / entry.member
            try:
                yield parse_tianchi_txt(path, read_blob(path, TIANCHI_MAX_BYTES), entry.id, entry.label)
            except SpectrumReadError as exc:
                yield exc
        return
    if locations is not None and len(locations) != len(entries):
        raise ValueError(f"{len(locations)} locations for {len(entries)} entries")
    try:  # located entries need only a file handle; others zipfile's table of contents
        handle = open(source, "rb") if locations is not None else zipfile.ZipFile(source)
    except _ZIP_ERRORS as exc:
        raise SpectrumReadError(source, f"cannot open zip ({exc})") from exc
    with handle:
        for i, entry in enumerate(entries):
            where = f"{source}::{entry.member}"
            try:
                blob = (read_located(handle, where, locations[i]) if locations is not None
                        else _read_zip_member(handle, where, entry.member))
                yield parse_tianchi_txt(where, blob, entry.id, entry.label)
            except SpectrumReadError as exc:
                yield exc


def _check_member_size(where, size: int) -> None:
    if size > TIANCHI_MAX_BYTES:
        raise SpectrumReadError(where, f"zip member is {size} bytes uncompressed, more than a Tianchi txt "
                                       f"of {TIANCHI_NPIX} numbers can be (limit {TIANCHI_MAX_BYTES})")


def _read_zip_member(zf: zipfile.ZipFile, where: str, member: str) -> bytes:
    try:
        _check_member_size(where, zf.getinfo(member).file_size)
        return zf.read(member)
    except _ZIP_ERRORS as exc:
        raise SpectrumReadError(where, f"cannot read zip member ({type(exc).__name__}: {exc})") from None
    except RuntimeError as exc:  # zipfile's word for an encrypted member
        raise SpectrumReadError(where, f"cannot read zip member ({exc})") from None


def read_tianchi_entries(source, entries: Sequence[IndexEntry],
                         locations: np.ndarray | None = None) -> list[Spectrum | SpectrumReadError]:
    """All entries as a list (see iter_tianchi_entries); read large sets in chunks to bound memory."""
    return list(iter_tianchi_entries(source, entries, locations))


def read_located(fh, where, location) -> bytes:
    """One member's bytes from its zip location row (see zipindex.read_member), errors named."""
    _check_member_size(where, int(location[2]))
    try:
        return read_member(fh, location)
    except MemberError as exc:
        raise SpectrumReadError(where, f"cannot read zip member ({exc})") from None


# ----------------------------------------------------------------------------------------- writer

def write_tianchi(spectra_flux: np.ndarray, ids: Sequence, labels: Sequence | None, index_csv, out,
                  fmt: str = DEFAULT_FMT, folder: str | None = None) -> None:
    """Write spectra in the contest layout: an index CSV and a zip (name ends .zip) or folder.

    spectra_flux: (n, 2600) fluxes on TIANCHI_WAVE; ids: n unique ids (file names `<id>.txt`);
    labels: n labels from LABELS for a training index `id,type`, or None for a test index `id`.
    Values are written with `fmt` (default '%.5g'), comma-separated, one line per file; NaN stays
    'nan'. folder: put the txt files inside this sub-folder of the zip/folder, as the official zip does.
    """
    import pandas as pd
    flux = np.asarray(spectra_flux)
    if flux.ndim != 2 or flux.shape[1] != TIANCHI_NPIX:
        raise ValueError(f"spectra_flux must have shape (n, {TIANCHI_NPIX}), got {flux.shape}")
    ids = [str(i) for i in ids]
    if len(ids) != len(flux):
        raise ValueError(f"{len(ids)} ids for {len(flux)} spectra")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    bad_ids = [i for i in ids if not i or "/" in i or "\\" in i]
    if bad_ids:
        raise ValueError(f"ids must be non-empty file names, got {bad_ids[:3]}")
    columns = {"id": ids}
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(ids) or any(lab not in LABELS for lab in labels):
            raise ValueError(f"labels must be {len(ids)} values from {LABELS}")
        columns["type"] = labels
    Path(index_csv).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_csv(index_csv, index=False)

    line = ",".join([fmt] * TIANCHI_NPIX) + "\n"
    prefix = f"{folder.strip('/')}/" if folder else ""
    texts = ((f"{prefix}{ident}.txt", line % tuple(row.tolist())) for ident, row in zip(ids, flux))
    out = Path(out)
    if out.suffix.lower() == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        # level 1: 7x faster than the default for ~14 % more bytes on spectra text
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, text in texts:
                zf.writestr(name, text)
    else:
        (out / prefix).mkdir(parents=True, exist_ok=True)
        for name, text in texts:
            (out / name).write_text(text)
