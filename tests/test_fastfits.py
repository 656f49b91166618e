"""The hot-path FITS parser gives a binary table's columns as astropy gives them."""
import io

import numpy as np
from astropy.io import fits

from spectraforge.io import fastfits


def _table_file() -> bytes:
    cols = [
        fits.Column(name="CLASS", format="6A", array=np.array(["QSO", "GALAXY", ""])),
        fits.Column(name="Z", format="E", array=np.array([1.5, 0.1, 0.0], np.float32)),
        fits.Column(name="FLAGS", format="L", array=np.array([True, False, True])),
        fits.Column(name="mjd", format="J", array=np.array([51602, 55445, -1], np.int32)),
        fits.Column(name="SN", format="5D", array=np.arange(15.0).reshape(3, 5)),
    ]
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="SPECOBJ")])
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def test_table_columns_by_name_match_astropy():
    blob = _table_file()
    ours = fastfits.parse(blob)["SPECOBJ"].data
    with fits.open(io.BytesIO(blob)) as hdul:
        theirs = hdul["SPECOBJ"].data
        for name in ("CLASS", "Z", "FLAGS", "mjd", "SN"):
            a, b = theirs[name], ours[name]
            assert a.dtype.kind == b.dtype.kind, name
            assert np.array_equal(np.asarray(a), np.asarray(b)), name
            assert type(a[0]) is type(b[0]) or (a.dtype.kind == "U" and isinstance(b[0], str)), name
        assert np.array_equal(theirs["mjd"], ours["MJD"])  # astropy matches names case-insensitively
    assert list(ours["CLASS"]) == ["QSO", "GALAXY", ""]
    assert ours["FLAGS"].dtype == bool
