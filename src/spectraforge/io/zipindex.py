"""A zip's table of contents as compact arrays, and members read at their offsets.

``zipfile.ZipFile`` turns every central-directory record into a ``ZipInfo`` object (~600
bytes each): for the official Tianchi training zip (~480 000 members) that is ~300 MB and
seconds per open, in every process that opens it. :func:`zip_index` reads the same records
into a list of names and one (n, 4) int64 array of locations (local-header offset, stored
size, size, CRC-32) — about 150 bytes a member — and :func:`read_member` reads one member
from its row with a plain file handle, checking size and CRC-32 as ``zipfile`` does.

The records are parsed as ``zipfile`` parses them (zip64 extra fields, archives with bytes
prepended, UTF-8 or cp437 names); anything it would reject raises :class:`zipfile.BadZipFile`.
"""
from __future__ import annotations

import bz2
import lzma
import struct
import zipfile
import zlib

import numpy as np

LOCATION_FIELDS = ("header_offset", "compress_size", "file_size", "crc")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # zipfile.structCentralDir
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader
_ZIP64_EXTRA = 0x0001
_MAX32 = 0xFFFFFFFF


def zip_index(path) -> tuple[list[str], np.ndarray]:
    """(names, locations) of every member of the zip at ``path``, directories included."""
    with open(path, "rb") as fp:
        try:
            endrec = zipfile._EndRecData(fp)  # the end records, zip64 resolved (stable since Python 2)
        except OSError:
            endrec = None
        if not endrec:
            raise zipfile.BadZipFile("File is not a zip file")
        size_cd, offset_cd = endrec[zipfile._ECD_SIZE], endrec[zipfile._ECD_OFFSET]
        concat = endrec[zipfile._ECD_LOCATION] - size_cd - offset_cd
        if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
            concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        start = offset_cd + concat
        if start < 0:
            raise zipfile.BadZipFile("Bad offset for central directory")
        fp.seek(start)
        data = fp.read(size_cd)
    names: list[str] = []
    rows: list[tuple[int, int, int, int]] = []
    pos, n = 0, len(data)
    while pos < size_cd:
        if pos + _CENTRAL.size > n:
            raise zipfile.BadZipFile("Truncated central directory")
        rec = _CENTRAL.unpack_from(data, pos)
        if rec[0] != zipfile.stringCentralDir:
            raise zipfile.BadZipFile("Bad magic number for central directory")
        flags, crc, csize, usize = rec[5], rec[9], rec[10], rec[11]
        name_len, extra_len, comment_len, offset = rec[12], rec[13], rec[14], rec[18]
        pos += _CENTRAL.size
        raw = data[pos : pos + name_len]
        name = raw.decode("utf-8") if flags & 0x800 else raw.decode("cp437")
        extra = data[pos + name_len : pos + name_len + extra_len]
        pos += name_len + extra_len + comment_len
        if _MAX32 in (usize, csize, offset):
            usize, csize, offset = _zip64(extra, usize, csize, offset)
        names.append(name.split("\x00", 1)[0])
        rows.append((offset + concat, csize, usize, crc))
    return names, np.array(rows, dtype=np.int64).reshape(-1, len(LOCATION_FIELDS))


def _zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """The 64-bit values of the fields stored as 0xFFFFFFFF, from the zip64 extra field."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == _ZIP64_EXTRA:
            body, i = extra[pos + 4 : pos + 4 + length], 0
            values = []
            for field in (usize, csize, offset):
                if field == _MAX32:
                    if i + 8 > len(body):
                        raise zipfile.BadZipFile("Corrupt extra field 0001 (zip64)")
                    values.append(struct.unpack_from("<Q", body, i)[0])
                    i += 8
                else:
                    values.append(field)
            return values[0], values[1], values[2]
        pos += 4 + length
    return usize, csize, offset


class MemberError(Exception):
    """One member cannot be read; the message says why."""


def read_member(fh, location) -> bytes:
    """The bytes of one member from its location row (offset, stored size, size, CRC-32).

    Reads the local header at the offset (for the method and flags), then the stored bytes,
    decompresses them (stored, deflated, bzip2 and LZMA members: the methods ``zipfile`` reads;
    never more than the listed size) and checks size and CRC-32. Raises :class:`MemberError`
    on a damaged, encrypted or unsupported member.
    """
    offset, csize, usize, crc = (int(v) for v in location)
    try:
        fh.seek(offset)
        head = fh.read(_LOCAL.size)
    except (OSError, ValueError, OverflowError) as exc:
        raise MemberError(str(exc)) from None
    if len(head) < _LOCAL.size or head[:4] != zipfile.stringFileHeader:
        raise MemberError(f"no local header at offset {offset}")
    rec = _LOCAL.unpack(head)
    flags, method, name_len, extra_len = rec[3], rec[4], rec[10], rec[11]
    if flags & 0x1:
        raise MemberError("encrypted")
    fh.seek(offset + _LOCAL.size + name_len + extra_len)
    data = fh.read(csize)
    if len(data) < csize:
        raise MemberError(f"truncated: {len(data)} of {csize} bytes")
    try:
        blob = _decompress(method, data, usize + 1)
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        raise MemberError(f"{type(exc).__name__}: {exc}") from None
    if len(blob) != usize or zlib.crc32(blob) != crc:
        raise MemberError("bad CRC-32 or size: the zip is damaged")
    return blob


def _decompress(method: int, data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of a member's data in compression ``method``."""
    if method == zipfile.ZIP_STORED:
        return data
    if method == zipfile.ZIP_DEFLATED:
        return zlib.decompressobj(-15).decompress(data, limit)
    if method == zipfile.ZIP_BZIP2:
        return bz2.BZ2Decompressor().decompress(data, limit)
    if method == zipfile.ZIP_LZMA:
        # the zip LZMA layout (APPNOTE 5.8.8): version (2 bytes), size of the properties (2), properties, raw LZMA1
        if len(data) < 4:
            raise MemberError("truncated LZMA header")
        (psize,) = struct.unpack_from("<H", data, 2)
        props = data[4 : 4 + psize]
        if len(props) < psize:
            raise MemberError("truncated LZMA header")
        filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)]
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(data[4 + psize :], limit)
    raise MemberError(f"compression method {method} not supported")
