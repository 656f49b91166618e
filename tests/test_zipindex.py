"""The compact zip table of contents against zipfile's, and members read at their offsets."""
import io
import zipfile

import numpy as np
import pytest

from spectraforge.io.zipindex import MemberError, read_member, zip_index


def _zip(path, prefix: bytes = b""):
    """A zip of every kind of member the readers may meet, optionally behind prepended bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("first_train_data_20180131/", b"")  # a directory entry
        zf.writestr("first_train_data_20180131/1.txt", b"1,2,3\n" * 100)
        zf.writestr(zipfile.ZipInfo("stored/2.txt"), b"4,5,6")  # stored
        zf.writestr("ünïcode/3.txt", b"7,8,9")  # UTF-8 name (flag bit 11)
        with zf.open("big/4.txt", "w", force_zip64=True) as fh:  # zip64 extra field
            fh.write(b"0," * 5000)
        zf.comment = b"archive comment"
    path.write_bytes(prefix + buf.getvalue())
    return path


@pytest.mark.parametrize("prefix", [b"", b"#!/bin/sh\nself-extracting stub\n" * 3])
def test_index_equals_zipfile_and_members_read_back(tmp_path, prefix):
    path = _zip(tmp_path / "a.zip", prefix)
    names, loc = zip_index(path)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert names == [i.filename for i in infos]
        expect = [(i.header_offset, i.compress_size, i.file_size, i.CRC) for i in infos]
        np.testing.assert_array_equal(loc, np.array(expect, dtype=np.int64))
        with open(path, "rb") as fh:
            for info, row in zip(infos, loc):
                assert read_member(fh, row) == zf.read(info)


def test_forced_zip64_offsets_are_resolved(tmp_path):
    """Members past 4 GiB store 0xFFFFFFFF and the real offset in the zip64 extra field."""
    import struct

    from spectraforge.io.zipindex import _zip64

    extra = struct.pack("<HHQQ", 0x0001, 16, 5_000_000_000, 6_000_000_000) + struct.pack("<HH", 0x5455, 0)
    assert _zip64(extra, 123, 0xFFFFFFFF, 0xFFFFFFFF) == (123, 5_000_000_000, 6_000_000_000)
    import zipfile as zf_mod

    with pytest.raises(zf_mod.BadZipFile, match="zip64"):
        _zip64(struct.pack("<HHQ", 0x0001, 8, 1), 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)


@pytest.mark.parametrize("blob,match", [(b"", "not a zip"), (b"PK\x05\x06" + b"\0" * 10, "not a zip"),
                                        (b"garbage" * 100, "not a zip")])
def test_not_a_zip(tmp_path, blob, match):
    (tmp_path / "x.zip").write_bytes(blob)
    with pytest.raises(zipfile.BadZipFile, match=f"(?i){match}"):
        zip_index(tmp_path / "x.zip")


def test_damaged_members_raise_member_error(tmp_path):
    path = _zip(tmp_path / "a.zip")
    names, loc = zip_index(path)
    i = names.index("first_train_data_20180131/1.txt")
    with open(path, "rb") as fh:
        bad = loc[i].copy()
        bad[3] ^= 1  # wrong CRC
        with pytest.raises(MemberError, match="CRC"):
            read_member(fh, bad)
        bad = loc[i].copy()
        bad[0] += 3  # not at a local header
        with pytest.raises(MemberError, match="no local header"):
            read_member(fh, bad)
        bad = loc[i].copy()
        bad[1] = 10**9  # claims more stored bytes than the file has
        with pytest.raises(MemberError, match="truncated"):
            read_member(fh, bad)
