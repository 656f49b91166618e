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
"""
from __future__ import annotations

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
    """Rows of a binary table with fixed-length columns; ``table[i][name]`` is a numpy array."""

    def __init__(self, record: np.ndarray, names: list[str]):
        self._record, self.columns = record, Columns(names)

    def __len__(self) -> int:
        return len(self._record)

    def __getitem__(self, i: int):
        row = self._record[i]
        return {name: row[name] for name in self.columns.names}


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
    if header.get("XTENSION") != "BINTABLE" or header.get("PCOUNT", 0) or header.get("THEAP"):
        raise Fallback("not a heap-free binary table")
    row_bytes, nrows = int(header["NAXIS1"]), int(header["NAXIS2"])
    fields = []
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
    dtype = np.dtype(fields)
    if dtype.itemsize != row_bytes:
        raise Fallback("row width disagrees with NAXIS1")
    nbytes = row_bytes * nrows
    if offset + _padded(nbytes) > len(blob):
        raise Fallback("table data runs past the end of the file")
    record = np.frombuffer(blob, dtype=dtype, count=nrows, offset=offset)
    native = record.astype(dtype.newbyteorder("="))
    return TableData(native, [n for n, _ in fields]), offset + _padded(nbytes)


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
    """Primary HDU and up to ``max_hdus - 1`` extensions; raises Fallback on anything unusual."""
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
