"""Pieces every reader shares: raw bytes (gzip by magic), FITS opening, labels, final validation."""
from __future__ import annotations

import io
import os
import re
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .spectrum import LABELS, Spectrum, SpectrumReadError

GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="
MAX_FILE_BYTES = 256 << 20  # a spectrum file (or its gunzipped content) is never this large
WAVE_RANGE = (3000.0, 11000.0)  # Å; anything outside is not an optical survey spectrum in vacuum Å
NO_VALID_PIXELS = "no valid pixels (all ivar <= 0 or masked)"
# astropy only warns (does not raise) when a file ends early or inside a header
_TRUNCATION = re.compile(r"truncated|not multiple of 2880", re.IGNORECASE)

# survey CLASS spellings (LAMOST STAR/GALAXY/QSO/Unknown, SDSS STAR/GALAXY/QSO, Tianchi lower case)
_LABEL_OF = {name: name for name in LABELS}


def to_label(value) -> str | None:
    """Map a survey class string to one of LABELS, case-insensitively.

    None or blank gives None; anything else unrecognised raises ValueError naming the value.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return _LABEL_OF[text.lower()]
    except KeyError:
        raise ValueError(f"unknown label {text!r}") from None


def file_stem(path) -> str:
    """'spec-1-2.fits.gz' -> 'spec-1-2': the name without compression and format suffixes."""
    name = Path(str(path)).name
    return re.sub(r"(\.(fits?|fts|txt))?(\.gz)?$", "", name, flags=re.IGNORECASE) or name


def read_blob(path, limit: int | None = None) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic (the name is not trusted).

    Neither the file nor its decompressed content may exceed ``limit`` bytes (MAX_FILE_BYTES):
    a gzip bomb stops at the limit instead of filling memory.
    """
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise SpectrumReadError(path, f"file is {size} bytes, more than any spectrum file "
                                              f"(limit {limit} bytes)")
            blob = fh.read(size + 1) if size else fh.read()  # never a limit-sized buffer
    except OSError as exc:
        raise SpectrumReadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if len(blob) > limit:  # grew while being read
        raise SpectrumReadError(path, f"file is more than {limit} bytes (limit for a spectrum file)")
    if not blob:
        raise SpectrumReadError(path, "empty file")
    if blob[:2] == GZIP_MAGIC:
        blob = gunzip(path, blob, limit)
        if not blob:
            raise SpectrumReadError(path, "empty file (gzip stream holds no data)")
    return blob


def gunzip(path, blob: bytes, limit: int) -> bytes:
    """Every member of a gzip stream, decompressed, refusing more than ``limit`` bytes of output.

    Same rules as ``gzip.decompress`` (members back to back, zero padding between or after
    them, CRC-32 and length checked), but the output is bounded while it is produced.
    """
    parts, total, data = [], 0, blob
    while data:
        if data[:2] != GZIP_MAGIC:
            raise SpectrumReadError(path, "corrupt gzip stream (bytes after the end of the stream are not "
                                          "another gzip member)")
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper: header, CRC-32 and size checked
        try:
            part = inflater.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise SpectrumReadError(path, f"corrupt gzip stream ({exc})") from exc
        total += len(part)
        if total > limit:
            raise SpectrumReadError(path, f"gzip stream decompresses to more than {limit} bytes "
                                          "(limit for a spectrum file)")
        if not inflater.eof:
            raise SpectrumReadError(path, "truncated gzip stream (Compressed file ended before the "
                                          "end-of-stream marker was reached)")
        parts.append(part)
        data = inflater.unused_data.lstrip(b"\x00")
    return b"".join(parts)


def is_fits(blob: bytes) -> bool:
    return blob.startswith(FITS_MAGIC)


@contextmanager
def open_fits(path, blob: bytes):
    """astropy HDUList over in-memory bytes; every astropy/numpy failure becomes SpectrumReadError.

    The headers' structural keywords are checked first (fastfits.check_structure), so astropy
    never sizes anything from a value the file cannot back.

    Warnings are recorded, not shown: astropy only warns when a file ends early (turned into an
    error here), and overflow on corrupt numbers is caught later by validation in finalise.
    """
    from astropy.io import fits  # the general parser: fallback and SDSS only

    from .fastfits import HeaderError, check_structure

    try:  # astropy believes header values: a claim of 2**31 axes or 10**8 columns costs minutes and GBs
        check_structure(blob)
    except HeaderError as exc:
        raise SpectrumReadError(path, str(exc)) from None
    try:
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            # eager HDU loading so a short file is detected here, not at first data access
            hdul = fits.open(io.BytesIO(blob), memmap=False, lazy_load_hdus=False)
            with hdul:
                truncated = [str(w.message) for w in caught if _TRUNCATION.search(str(w.message))]
                if truncated:
                    raise SpectrumReadError(path, f"truncated FITS file ({truncated[0]})")
                yield hdul
    except SpectrumReadError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, fits.VerifyError) as exc:
        reason = f"corrupt or truncated FITS file ({type(exc).__name__}: {exc})"
        raise SpectrumReadError(path, reason) from exc


def header_float(header, *keys) -> float | None:
    """The first of `keys` present in `header` as a finite float, else None."""
    for key in keys:
        if key in header:
            try:
                value = float(header[key])
            except (TypeError, ValueError):
                continue
            if np.isfinite(value):
                return value
    return None


def header_str(header, key) -> str | None:
    value = header.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def label_from(path, value, where: str) -> str | None:
    """to_label with a SpectrumReadError naming the file and the keyword it came from."""
    try:
        return to_label(value)
    except ValueError as exc:
        raise SpectrumReadError(path, f"{exc} in {where} (expected one of {', '.join(LABELS)})") from None


def median_snr(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray) -> float | None:
    """Median of flux·sqrt(ivar) over good pixels: the S/N when the file gives none."""
    good = ~mask
    if not good.any():
        return None
    return float(np.median(flux[good] * np.sqrt(ivar[good])))


def finalise(path, wave, flux, ivar, andmask, meta: dict, bad=None) -> Spectrum:
    """Build the mask and validate: the one place where every reader's arrays become a Spectrum.

    mask = ivar <= 0 | andmask != 0 | non-finite flux or ivar | bad (a reader's own bad-pixel
    knowledge, e.g. LAMOST edge padding); masked pixels get ivar 0 and
    non-finite flux 0, so downstream arithmetic never meets NaN. Raises SpectrumReadError on
    mismatched lengths, a wavelength that is not finite, strictly ascending and inside 3000–11000 Å,
    flux non-finite everywhere, or no valid pixel at all.
    """
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float32)
    ivar = np.asarray(ivar, dtype=np.float32)
    n = wave.size
    if wave.ndim != 1 or n < 2:
        raise SpectrumReadError(path, f"expected a 1-D spectrum, got wavelength shape {wave.shape}")
    for name, arr in (("flux", flux), ("ivar", ivar)):
        if arr.shape != wave.shape:
            raise SpectrumReadError(path, f"{name} has shape {arr.shape}, wavelength has {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise SpectrumReadError(path, "wavelength has non-finite values")
    if not np.all(np.diff(wave) > 0):
        raise SpectrumReadError(path, "wavelength is not strictly ascending")
    lo, hi = WAVE_RANGE
    if wave[0] < lo or wave[-1] > hi:
        raise SpectrumReadError(
            path, f"wavelength range {wave[0]:.1f}–{wave[-1]:.1f} Å is outside {lo:.0f}–{hi:.0f} Å")
    finite_flux = np.isfinite(flux)
    if not finite_flux.any():
        raise SpectrumReadError(path, f"flux is NaN/inf in all {n} pixels")
    mask = ~finite_flux | ~np.isfinite(ivar) | ~(ivar > 0)
    if andmask is not None:
        andmask = np.asarray(andmask)
        if andmask.shape != wave.shape:
            raise SpectrumReadError(path, f"andmask has shape {andmask.shape}, wavelength has {wave.shape}")
        mask |= andmask != 0
    if bad is not None:
        mask |= bad
    if mask.all():
        raise SpectrumReadError(path, NO_VALID_PIXELS)
    flux = np.where(finite_flux, flux, np.float32(0))
    ivar = np.where(mask, np.float32(0), ivar)
    meta = dict(meta)
    meta.setdefault("file", str(path))
    meta.setdefault("object_id", meta.get("id"))
    return Spectrum(wave=wave, flux=flux, ivar=ivar, mask=mask, meta=meta)
