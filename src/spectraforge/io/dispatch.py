"""read_spectrum: one entry point that recognises the format from the file's content."""
from __future__ import annotations

from . import fastfits
from ._common import file_stem, is_fits, open_fits, read_blob
from .lamost import read_lamost_image, read_lamost_table
from .sdss import read_sdss
from .spectrum import Spectrum, SpectrumReadError
from .tianchi import parse_tianchi_txt

READERS = {"lamost-image": read_lamost_image, "lamost-table": read_lamost_table, "sdss": read_sdss}


def read_spectrum(path) -> Spectrum:
    """Read one spectrum file: LAMOST FITS (image or table layout), SDSS spec FITS or Tianchi txt.

    gzip is recognised by its magic bytes and FITS by its 'SIMPLE  =' card, whatever the name;
    other content is read as Tianchi text when the name ends in .txt (or .txt.gz).
    Raises SpectrumReadError(path, reason) on any bad input, and no other exception.
    """
    try:
        blob = read_blob(path)
        if is_fits(blob):
            return _read_fits(path, blob)
        if str(path).lower().removesuffix(".gz").endswith(".txt"):
            return parse_tianchi_txt(path, blob, file_stem(path))
        raise SpectrumReadError(path, "not a FITS file (no 'SIMPLE  =' card) nor a Tianchi .txt file")
    except SpectrumReadError:
        raise
    except Exception as exc:  # the contract: bad input surfaces only as SpectrumReadError
        raise SpectrumReadError(path, f"unreadable ({type(exc).__name__}: {exc})") from exc


def _read_fits(path, blob: bytes, fast: bool = True) -> Spectrum:
    """LAMOST and SDSS files through the fast parser (its first three HDUs are all the readers
    use); anything unusual, and every file the fast path cannot read, through astropy. Every
    HDU's structure is checked first either way, so a file cut short after the HDUs the
    readers use is still refused as truncated."""
    if fast:
        try:
            fastfits.check_structure(blob)
        except fastfits.HeaderError as exc:
            raise SpectrumReadError(path, str(exc)) from None
        try:
            hdul = fastfits.parse(blob)
            return READERS[fits_format(path, hdul)](path, hdul)
        except (fastfits.Fallback, KeyError, ValueError, TypeError, IndexError, AttributeError):
            pass  # the general parser decides, and words the error if the file is bad
    with open_fits(path, blob) as hdul:
        return READERS[fits_format(path, hdul)](path, hdul)


def fits_format(path, hdul) -> str:
    """'lamost-image', 'lamost-table' or 'sdss', from the HDU structure (never the file name)."""
    primary = hdul[0].header
    if primary.get("NAXIS", 0) == 2:
        return "lamost-image"
    # a fastfits TableHDU or an astropy BinTableHDU
    if "COADD" in hdul and (getattr(hdul["COADD"], "is_table", False)
                            or type(hdul["COADD"]).__name__ == "BinTableHDU"):
        columns = {str(name).lower() for name in hdul["COADD"].columns.names}
        if "loglam" in columns:
            return "sdss"
        if "flux" in columns:
            return "lamost-table"
        raise SpectrumReadError(path, f"COADD table has neither loglam (SDSS) nor FLUX (LAMOST) columns: "
                                      f"{sorted(columns)}")
    raise SpectrumReadError(path, "no spectrum data: primary HDU is not a 5×N image and there is no "
                                  "COADD table")
