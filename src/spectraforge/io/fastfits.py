"""A minimal FITS parser for the hot path of survey-scale ingestion.

astropy parses every card into objects and builds a full table model per file, which costs
~1.5 ms for a LAMOST spectrum — more than everything else `prepare` does with it. LAMOST
files are simple (a primary image, or an empty primary plus one binary-table row of
fixed-length vector columns), so this module reads exactly that, straight from the bytes
with numpy, and hands anything else back to astropy by raising :class:`Fallback`:
scaled integers (BSCALE/BZERO), variable-length (heap) columns, random groups, an
unexpected card, or a short file. The readers see the same interface either way
(``hdul[0].header.get``, ``hdul[0].data``, ``"COADD" in hdul``, ``hdul["COADD"].data[0][name]``),
and the test suite checks both paths give identical spectra on the real files.

:func:`check_structure` validates the structural keywords of every HDU (NAXIS, NAXISn, BITPIX,
PCOUNT, GCOUNT, TFIELDS, TFORMn, THEAP) against the FITS standard and the bytes actually
present, before astropy is given a file: a 100 KB file whose header claims NAXIS = 2³¹ or
TFIELDS = 10⁸ is rejected at once instead of costing minutes and gigabytes.
"""
from __future__ import annotations

import math
import re

import numpy as np

BLOCK = 2880
CARD = 80
# binary-table TFORM codes -> big-endian numpy dtypes (fixed-width only; 'P'/'Q' heap columns fall back)
_TFORM = {"L": "i1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "A": "S1"}
_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class Fallback(Exception):
    """This file needs the general parser (astropy); not an error in the file."""


class Header(dict):
    """Keyword → value (str, bool, int, float); the first occurrence of a keyword wins."""


def _value(raw: str):
    raw = raw.strip()
    if raw.startswith("'"):
        # a quoted string: '' is an escaped quote; a '/' inside quotes is not a comment
        out, i = [], 1
        while i < len(raw):
            ch = raw[i]
            if ch == "'":
                if raw[i + 1 : i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(ch)
            i += 1
        return "".join(out).rstrip()
    raw = raw.split("/", 1)[0].strip()
    if raw == "T":
        return True
    if raw == "F":
        return False
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw.replace("D", "E"))
    except ValueError:
        raise Fallback(f"unparsed header value {raw!r}") from None


def parse_header(blob: bytes, start: int) -> tuple[Header, int]:
    """Header starting at byte ``start``; returns it and the offset of its data (block-aligned)."""
    header = Header()
    pos = start
    while True:
        if pos + BLOCK > len(blob):
            raise Fallback("header runs past the end of the file")
        block = blob[pos : pos + BLOCK].decode("ascii", errors="replace")
        pos += BLOCK
        for i in range(0, BLOCK, CARD):
            card = block[i : i + CARD]
            key = card[:8].rstrip()
            if key == "END":
                return header, pos
            if card[8:10] != "= " or key in header or not key:
                continue  # COMMENT, HISTORY, blank, CONTINUE: nothing the readers use
            header[key] = _value(card[10:])


def _padded(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


class ImageHDU:
    def __init__(self, header: Header, data):
        self.header, self.data, self.name = header, data, str(header.get("EXTNAME", "PRIMARY")).upper()


class Columns:
    def __init__(self, names):
        self.names = names


class TableData:
    """Rows of a binary table with fixed-length columns: ``table[i][name]`` is a row's value,
    ``table[name]`` a whole column, as astropy gives them (character columns as ``str`` with
    trailing blanks removed, logical columns as ``bool``)."""

    def __init__(self, record: np.ndarray, names: list[str], logical: frozenset = frozenset()):
        self._record, self.columns, self._logical = record, Columns(names), logical  # logical: 'L' columns

    def __len__(self) -> int:
        return len(self._record)

    def __getitem__(self, key):
        if isinstance(key, str):
            return _column(self._record, key, self.columns.names, self._logical)
        row = self._record[key]
        return {name: row[name] for name in self.columns.names}


def _column(record: np.ndarray, key: str, names: list[str], logical: frozenset) -> np.ndarray:
    name = key if key in names else next((n for n in names if n.lower() == key.lower()), None)
    if name is None:
        raise KeyError(key)
    col = record[name]
    if col.dtype.kind == "S":  # astropy: str, trailing blanks (and NULs) stripped
        return np.char.rstrip(np.char.decode(col, "ascii", errors="replace"), " \x00")
    if name in logical:  # 'T' / 'F' bytes
        return col == ord("T")
    return col


class TableHDU:
    is_table = True

    def __init__(self, header: Header, data: TableData):
        self.header, self.data, self.name = header, data, str(header.get("EXTNAME", "")).upper()
        self.columns = data.columns


def _image(header: Header, blob: bytes, offset: int):
    naxis = header.get("NAXIS", 0)
    if naxis == 0:
        return None, offset
    if "BSCALE" in header or "BZERO" in header or header.get("GROUPS"):
        raise Fallback("scaled or grouped image")
    shape = tuple(int(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
    dtype = np.dtype(_BITPIX[int(header["BITPIX"])])
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if offset + _padded(nbytes) > len(blob):  # FITS files are whole 2880-byte blocks
        raise Fallback("image data runs past the end of the file")
    data = np.frombuffer(blob, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
    return data.astype(dtype.newbyteorder("=")), offset + _padded(nbytes)


def _table(header: Header, blob: bytes, offset: int):
    if (header.get("XTENSION") != "BINTABLE" or header.get("PCOUNT", 0) or header.get("THEAP")
            or header.get("GCOUNT", 1) != 1):
        raise Fallback("not a heap-free binary table")
    row_bytes, nrows = int(header["NAXIS1"]), int(header["NAXIS2"])
    fields, logical = [], set()  # logical: the 'L' columns ('T'/'F' bytes, read as bool)
    for i in range(1, int(header["TFIELDS"]) + 1):
        form = str(header[f"TFORM{i}"]).strip()
        count = int(form[:-1]) if form[:-1] else 1
        code = form[-1]
        if code not in _TFORM or f"TSCAL{i}" in header or f"TZERO{i}" in header:
            raise Fallback(f"column format {form!r}")
        name = str(header.get(f"TTYPE{i}", f"col{i}"))
        base = np.dtype(_TFORM[code])
        dtype = np.dtype(f"S{count}") if code == "A" else (base if count == 1 else np.dtype((base, (count,))))
        fields.append((name, dtype))
        if code == "L":
            logical.add(name)
    dtype = np.dtype(fields)
    if dtype.itemsize != row_bytes:
        raise Fallback("row width disagrees with NAXIS1")
    nbytes = row_bytes * nrows
    if offset + _padded(nbytes) > len(blob):
        raise Fallback("table data runs past the end of the file")
    record = np.frombuffer(blob, dtype=dtype, count=nrows, offset=offset)
    native = record.astype(dtype.newbyteorder("="))
    return TableData(native, [n for n, _ in fields], frozenset(logical)), offset + _padded(nbytes)


class HDUList(list):
    """HDUs by position or by EXTNAME (``"COADD" in hdul``, ``hdul["COADD"]``)."""

    def __getitem__(self, key):
        if isinstance(key, str):
            for hdu in self:
                if hdu.name == key.upper():
                    return hdu
            raise KeyError(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        if isinstance(key, str):
            return any(hdu.name == key.upper() for hdu in self)
        return super().__contains__(key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def parse(blob: bytes, max_hdus: int = 3) -> HDUList:
    """Primary HDU and up to ``max_hdus - 1`` extensions; raises Fallback on anything unusual,
    including a length that is not whole 2880-byte blocks (a file cut short, perhaps after
    the HDUs read here: astropy then words the error)."""
    if len(blob) % BLOCK:
        raise Fallback("the file is not a whole number of 2880-byte blocks")
    header, offset = parse_header(blob, 0)
    if header.get("SIMPLE") is not True:
        raise Fallback("SIMPLE is not T")
    data, offset = _image(header, blob, offset)
    hdul = HDUList([ImageHDU(header, data)])
    while offset < len(blob) and len(hdul) < max_hdus:
        if not blob[offset : offset + 8].strip(b" \x00"):
            break  # zero padding after the last HDU
        header, offset = parse_header(blob, offset)
        kind = header.get("XTENSION")
        if kind == "BINTABLE":
            data, offset = _table(header, blob, offset)
            hdul.append(TableHDU(header, data))
        elif kind == "IMAGE":
            data, offset = _image(header, blob, offset)
            hdul.append(ImageHDU(header, data))
        else:
            raise Fallback(f"extension {kind!r}")
    return hdul


# --------------------------------------------------------------------------- structure check

MAX_AXES = 999  # FITS standard 4.4.1.1 and 7.3.1: NAXIS and TFIELDS are at most 999
MAX_HDUS = 1000  # far more than any survey file has; each HDU costs astropy objects
_BITPIX_BYTES = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 8}
_STRUCTURAL = re.compile(r"(SIMPLE|XTENSION|BITPIX|NAXIS\d{0,3}|PCOUNT|GCOUNT|TFIELDS|TFORM\d{1,3}|THEAP|GROUPS)")
_INTEGER = re.compile(r"[+-]?\d{1,30}")
# binary-table TFORM: rT with T a type code; P/Q (heap descriptors) may name the element type and a max length
_BIN_TFORM = re.compile(r"(\d{0,12})([LXBIJKAEDCMPQ])(.*)")
_HEAP_REST = re.compile(r"[LXBIJKAEDCM]?(\(\d{1,12}\))?")
_BIN_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}
_ASCII_TFORM = re.compile(r"[AIFED]\d{1,6}(\.\d{1,6})?")


class HeaderError(ValueError):
    """The headers break the FITS standard or claim more data than the file holds."""


def _structural_cards(blob: bytes, start: int, hdu: int) -> tuple[dict[str, list[str]], int]:
    """The raw values of the structural keywords of the header at ``start`` (every occurrence),
    and the offset of its data."""
    cards: dict[str, list[str]] = {}
    pos = start
    while True:
        if pos + BLOCK > len(blob):
            raise HeaderError(f"truncated FITS file: the header of HDU {hdu} has no END card before "
                              "the end of the file")
        block = blob[pos : pos + BLOCK].decode("ascii", errors="replace")
        pos += BLOCK
        for i in range(0, BLOCK, CARD):
            key = block[i : i + 8].rstrip()
            if key == "END":
                return cards, pos
            if block[i + 8 : i + 10] == "= " and _STRUCTURAL.fullmatch(key):
                cards.setdefault(key, []).append(block[i + 10 : i + CARD])


def _raw(text: str) -> str:
    return text.split("/", 1)[0].strip()


def _int(cards, key: str, hdu: int, default=None) -> int | None:
    """An integer keyword; every occurrence must parse and agree. ``default``: when absent (None:
    required)."""
    values = cards.get(key)
    if not values:
        if default is None:
            raise HeaderError(f"invalid FITS header: HDU {hdu} lacks the required keyword {key}")
        return default
    out = None
    for text in values:
        raw = _raw(text)
        if not _INTEGER.fullmatch(raw):
            raise HeaderError(f"invalid FITS header: HDU {hdu}: {key} = {raw[:30]!r} is not an integer")
        value = int(raw)  # a Python int: no overflow, whatever the digits
        if out is not None and value != out:
            raise HeaderError(f"invalid FITS header: HDU {hdu}: {key} is given twice ({out} and {value})")
        out = value
    return out


def _str(cards, key: str, hdu: int) -> str | None:
    values = cards.get(key)
    if not values:
        return None
    try:
        value = _value(values[0])
    except Fallback:
        value = None
    if not isinstance(value, str):
        raise HeaderError(f"invalid FITS header: HDU {hdu}: {key} = {_raw(values[0])[:30]!r} is not a string")
    return value.strip()


def _table_row_bytes(cards, hdu: int, xtension: str, tfields: int) -> int | None:
    """Bytes a row of the table's TFORMs need (binary tables), checking every TFORMn parses."""
    width = 0
    for i in range(1, tfields + 1):
        form = _str(cards, f"TFORM{i}", hdu)
        if form is None:
            raise HeaderError(f"invalid FITS header: HDU {hdu} lacks TFORM{i} (TFIELDS = {tfields})")
        if xtension == "TABLE":
            if not _ASCII_TFORM.fullmatch(form.upper()):
                raise HeaderError(f"invalid FITS header: HDU {hdu}: TFORM{i} = {form[:30]!r} is not an ASCII-table format")
            continue
        match = _BIN_TFORM.fullmatch(form.upper())
        rest = match[3].strip() if match else ""
        if (match is None or (match[2] in "PQ" and not _HEAP_REST.fullmatch(rest))
                or (match[2] == "A" and rest and not rest.isdigit()) or (match[2] not in "PQA" and rest)):
            raise HeaderError(f"invalid FITS header: HDU {hdu}: TFORM{i} = {form[:30]!r} is not a binary-table format")
        repeat = int(match[1]) if match[1] else 1
        width += -(-repeat // 8) if match[2] == "X" else repeat * _BIN_BYTES[match[2]]
    return None if xtension == "TABLE" else width


def check_structure(blob: bytes) -> None:
    """Raise :class:`HeaderError` unless every HDU's structural keywords are within the FITS
    standard and its data fits in the bytes that follow its header.

    Checked per HDU: BITPIX one of 8, 16, 32, 64, -32, -64; NAXIS in 0..999 and every NAXISn a
    non-negative integer no larger than the bytes left; PCOUNT, GCOUNT non-negative and bounded
    the same way; the data size |BITPIX|/8 · GCOUNT · (PCOUNT + NAXIS1 ⋯ NAXISn) no more than the
    bytes left; tables: TFIELDS in 0..999, each TFORMn present and parsable, a binary table's
    TFORMs no wider than NAXIS1, THEAP inside the data. Integers are Python ints, so no value
    overflows. Walks at most MAX_HDUS HDUs; stops at trailing bytes that are not an extension.
    """
    offset, hdu = 0, 0
    while offset < len(blob):
        if hdu >= MAX_HDUS:
            raise HeaderError(f"invalid FITS file: more than {MAX_HDUS} HDUs")
        if hdu and not blob[offset : offset + 8] == b"XTENSION":
            return  # padding or trailing bytes: not an HDU (the parser decides what to make of them)
        cards, data_start = _structural_cards(blob, offset, hdu)
        left = len(blob) - data_start
        bitpix = _int(cards, "BITPIX", hdu)
        if bitpix not in _BITPIX_BYTES:
            raise HeaderError(f"invalid FITS header: HDU {hdu}: BITPIX = {bitpix} is not one of 8, 16, 32, 64, -32, -64")
        naxis = _int(cards, "NAXIS", hdu)
        if not 0 <= naxis <= MAX_AXES:
            raise HeaderError(f"invalid FITS header: HDU {hdu}: NAXIS = {naxis} is outside 0..{MAX_AXES} "
                              "(the FITS standard's limit)")
        axes = [_int(cards, f"NAXIS{i}", hdu) for i in range(1, naxis + 1)]
        xtension = _str(cards, "XTENSION", hdu) if hdu else None
        groups = hdu == 0 and naxis >= 1 and axes[0] == 0 and _str_or_bool(cards, "GROUPS")
        pcount = _int(cards, "PCOUNT", hdu, default=0) if hdu or groups else 0
        gcount = _int(cards, "GCOUNT", hdu, default=1) if hdu or groups else 1
        counts = [(f"NAXIS{i}", n) for i, n in enumerate(axes, start=1)] + [("PCOUNT", pcount), ("GCOUNT", gcount)]
        for key, value in counts:
            if value < 0:
                raise HeaderError(f"invalid FITS header: HDU {hdu}: {key} = {value} is negative")
        pixels = math.prod(axes[1:] if groups else axes) if naxis else 0
        size = _BITPIX_BYTES[bitpix] * gcount * (pcount + pixels)  # Python ints: exact, however large
        if size > left:
            shape = "×".join(map(str, axes)) or "-"
            raise HeaderError(f"truncated or corrupt FITS file: HDU {hdu} declares {str(size)[:40]} bytes of data "
                              f"(NAXISn {shape[:80]}, PCOUNT {pcount}, GCOUNT {gcount}), but only {left} bytes "
                              "follow its header")
        for key, value in counts:  # with a zero axis the size is 0 whatever the others claim
            if value > max(left, 1):
                raise HeaderError(f"invalid FITS header: HDU {hdu}: {key} = {value} is larger than the "
                                  f"{left} bytes after the header")
        if xtension in ("BINTABLE", "A3DTABLE", "TABLE"):
            _check_table(cards, hdu, xtension, naxis, axes, size)
        offset = data_start + _padded(size)
        hdu += 1


def _str_or_bool(cards, key: str) -> bool:
    values = cards.get(key)
    return bool(values) and _raw(values[0]) == "T"


def _check_table(cards, hdu: int, xtension: str, naxis: int, axes: list[int], size: int) -> None:
    if naxis != 2:
        raise HeaderError(f"invalid FITS header: HDU {hdu}: a {xtension} has NAXIS = 2, got {naxis}")
    tfields = _int(cards, "TFIELDS", hdu)
    if not 0 <= tfields <= MAX_AXES:
        raise HeaderError(f"invalid FITS header: HDU {hdu}: TFIELDS = {tfields} is outside 0..{MAX_AXES} "
                          "(the FITS standard's limit)")
    width = _table_row_bytes(cards, hdu, xtension, tfields)
    if width is not None and width > axes[0]:
        raise HeaderError(f"invalid FITS header: HDU {hdu}: the TFORMs need {width} bytes a row, NAXIS1 is {axes[0]}")
    if "THEAP" in cards:
        theap = _int(cards, "THEAP", hdu)
        if not axes[0] * axes[1] <= theap <= size:
            raise HeaderError(f"invalid FITS header: HDU {hdu}: THEAP = {theap} is outside the table's data "
                              f"({axes[0] * axes[1]}..{size} bytes)")
