"""LAMOST low-resolution spectra (FITS): reader for both layouts and a writer for the mock survey.

Layouts (verified on real files from pipeline v2.6.4 to DR13; gzipped or not):

- image ("lamost-image"): the primary HDU is a 5 × N image, rows
  flux, ivar, wavelength, andmask, ormask. In early pipeline files (header EXTEN0 =
  'Flux Inverse Subcontinuum Andmask Ormask', v2.6.4) row 2 is a continuum-normalised flux,
  not the wavelength.
- table ("lamost-table", DR9 on): the primary HDU has no data; HDU 1 `COADD` holds one row of
  vector columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK, NORMALIZATION.

In both the wavelength is log-linear in vacuum, 10**(COEFF0 + COEFF1·i), and labels live in the
primary header: CLASS (STAR, GALAXY, QSO, Unknown), SUBCLASS, Z (-9999 when unknown), OBSID,
DESIG, and S/N per band as SNRU..SNRZ (early files: SN_U..SN_Z).
"""
from __future__ import annotations

import gzip as gzip_module
import io
from pathlib import Path

import numpy as np

from ._common import file_stem, finalise, header_float, header_str, label_from
from .spectrum import Spectrum, SpectrumReadError

Z_UNKNOWN = -9999.0
BANDS = "UGRIZ"
# approximate ugriz spans (Å) for the per-band S/N keywords the writer fills in
BAND_EDGES = (3000.0, 4000.0, 5500.0, 6900.0, 8400.0, 11000.0)
SNR_KEYS = {"new": tuple(f"SNR{b}" for b in BANDS), "early": tuple(f"SN_{b}" for b in BANDS)}
_MAX_WAVE_OFFSET = 0.1  # pixels; stored float32 wavelengths agree with COEFF0/COEFF1 to ~0.002
_CLASS_KEYWORD = {"star": "STAR", "galaxy": "GALAXY", "qso": "QSO", "unknown": "Unknown"}
_BAD_PIXEL_BIT = 1  # any nonzero andmask bit marks a bad pixel for every reader


# ----------------------------------------------------------------------------------------- reader

def is_early(header) -> bool:
    """True for early pipeline files whose image row 2 is a normalised flux (EXTEN0 says so)."""
    return "subcontinuum" in str(header.get("EXTEN0", "")).lower()


def read_lamost_image(path, hdul) -> Spectrum:
    """Primary-HDU 5 × N image layout; hdul is an open astropy HDUList."""
    hdu = hdul[0]
    data = hdu.data
    if data is None or data.ndim != 2 or data.shape[0] < 5:
        shape = None if data is None else data.shape
        raise SpectrumReadError(
            path, f"primary image has shape {shape}, expected 5×N (flux, ivar, wavelength, andmask, ormask)")
    header = hdu.header
    row2 = None if is_early(header) else data[2]
    wave = _wavelength(path, header, data.shape[1], row2, "image row 2")
    flux = data[0]
    return finalise(path, wave, flux, data[1], data[3], _meta(path, header, "lamost-image"),
                    bad=edge_padding(flux))


def read_lamost_table(path, hdul) -> Spectrum:
    """Primary header + `COADD` binary table with one row of vector columns."""
    if "COADD" not in hdul:
        raise SpectrumReadError(path, "no COADD extension")
    table = hdul["COADD"].data
    if table is None or len(table) == 0:
        raise SpectrumReadError(path, "COADD table has no rows")
    names = {name.upper(): name for name in table.columns.names}
    missing = [c for c in ("FLUX", "IVAR", "ANDMASK") if c not in names]
    if missing:
        raise SpectrumReadError(path, f"COADD table lacks column(s) {', '.join(missing)}")
    row = table[0]
    flux, ivar, andmask = (np.atleast_1d(np.asarray(row[names[c]])) for c in ("FLUX", "IVAR", "ANDMASK"))
    wave_col = np.atleast_1d(np.asarray(row[names["WAVELENGTH"]])) if "WAVELENGTH" in names else None
    header = hdul[0].header
    wave = _wavelength(path, header, flux.size, wave_col, "WAVELENGTH column")
    return finalise(path, wave, flux, ivar, andmask, _meta(path, header, "lamost-table"),
                    bad=edge_padding(flux))


def edge_padding(flux) -> np.ndarray:
    """True on the runs of flux == 0 exactly at either end of the spectrum.

    LAMOST pads the red end (up to ~50 pixels in the real files) with zero flux, yet often with
    ivar > 0 and andmask 0, so neither would mark those pixels bad.
    """
    nonzero = np.flatnonzero(np.asarray(flux) != 0)
    pad = np.zeros(np.size(flux), dtype=bool)
    if nonzero.size == 0:
        pad[:] = True
    else:
        pad[: nonzero[0]] = True
        pad[nonzero[-1] + 1 :] = True
    return pad


def _wavelength(path, header, n: int, stored, where: str) -> np.ndarray:
    """10**(COEFF0 + COEFF1·i), checked against the stored wavelengths when the file has them."""
    c0, c1 = header_float(header, "COEFF0"), header_float(header, "COEFF1")
    if c0 is None or c1 is None:
        if stored is None:
            raise SpectrumReadError(path, "no COEFF0/COEFF1 in header and no stored wavelength")
        return np.asarray(stored, dtype=np.float64)
    wave = 10.0 ** (c0 + c1 * np.arange(n))
    if stored is not None:
        if len(stored) != n:
            raise SpectrumReadError(path, f"{where} has {len(stored)} values, flux has {n}")
        stored = np.asarray(stored, dtype=np.float64)
        if not np.all(np.isfinite(stored) & (stored > 0)):
            raise SpectrumReadError(path, f"{where} has non-finite or non-positive wavelengths")
        worst = np.max(np.abs(np.log10(stored) - np.log10(wave))) / abs(c1)
        if not worst < _MAX_WAVE_OFFSET:
            raise SpectrumReadError(
                path, f"{where} disagrees with COEFF0/COEFF1 by up to {worst:.3g} pixels (not a wavelength?)")
    return wave


def _meta(path, header, fmt: str) -> dict:
    obsid = header_str(header, "OBSID")
    ident = obsid or file_stem(path)
    z = header_float(header, "Z")
    meta = {
        "id": ident,
        "label": label_from(path, header.get("CLASS"), "CLASS"),
        "z": None if z is None or z <= Z_UNKNOWN + 1 else z,
        "snr": _snr(header),
        "format": fmt,
        "object_id": header_str(header, "DESIG") or obsid or ident,
        "file": str(path),
    }
    subclass = header_str(header, "SUBCLASS")
    if subclass is not None:
        meta["subclass"] = subclass
    return meta


def _snr(header) -> float | None:
    """SNRR (SN_R in early files); else the median of whichever band S/N values exist."""
    r = header_float(header, "SNRR", "SN_R")
    if r is not None and r >= 0:
        return r
    bands = [header_float(header, a, b) for a, b in zip(*SNR_KEYS.values())]
    bands = [v for v in bands if v is not None and v >= 0]
    return float(np.median(bands)) if bands else None


# ----------------------------------------------------------------------------------------- writer

def write_lamost_fits(spec: Spectrum, path, layout: str = "image", gzip: bool = False,
                      early: bool = False, header: dict | None = None) -> Path:
    """Write `spec` as a LAMOST low-resolution FITS file that `read_spectrum` reads back.

    layout: "image" (primary 5 × N: flux, ivar, wavelength, andmask, ormask) or "table"
    (empty primary + COADD row of FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK, NORMALIZATION).
    early: image layout as pipeline v2.6.4 wrote it: row 2 is flux / running-median continuum,
    EXTEN0 says 'Subcontinuum', S/N keywords are SN_U..SN_Z, no DATA_V.
    gzip: gzip the bytes (whatever the file name says; the reader detects gzip by magic).
    header: keywords to add or override; a value of None removes the keyword (e.g. OBSID, which
    real early files lack: the reader then takes the id from the file name).

    meta used: id → OBSID, object_id → DESIG, label → CLASS, z → Z (-9999 when None), z_err → Z_ERR,
    snr → SNRR (other bands: median flux·sqrt(ivar) over their wavelength span), subclass → SUBCLASS.
    spec.wave must be log-linear (ValueError otherwise); spec.mask becomes andmask and ormask bits.
    """
    from astropy.io import fits  # writer only: readers take the fast path without astropy

    if layout not in ("image", "table"):
        raise ValueError(f"layout must be 'image' or 'table', got {layout!r}")
    if spec.meta.get("label") not in (*_CLASS_KEYWORD, None):
        raise ValueError(f"meta label {spec.meta['label']!r} is not one of {tuple(_CLASS_KEYWORD)} or None")
    if early and layout != "image":
        raise ValueError("early=True exists only for the image layout")
    wave = np.asarray(spec.wave, dtype=np.float64)
    coeff0, coeff1 = _loglinear_coefficients(wave)
    flux = np.asarray(spec.flux, dtype=np.float32)
    ivar = np.asarray(spec.ivar, dtype=np.float32)
    mask = np.asarray(spec.mask, dtype=bool)
    bits = np.where(mask, np.float32(_BAD_PIXEL_BIT), np.float32(0))
    path = Path(path)

    hdr = _header(spec.meta, path, layout, early, coeff0, coeff1, wave, flux, ivar, mask)
    for key, value in (header or {}).items():
        if value is None:
            hdr.remove(key, ignore_missing=True)
        else:
            hdr[key] = value

    if layout == "image":
        row2 = continuum_normalised(flux, mask) if early else wave.astype(np.float32)
        hdul = fits.HDUList([fits.PrimaryHDU(data=np.stack([flux, ivar, row2, bits, bits]), header=hdr)])
    else:
        columns = [fits.Column(name=name, format=f"{wave.size}E", array=values[None, :]) for name, values in (
            ("FLUX", flux), ("IVAR", ivar), ("WAVELENGTH", wave.astype(np.float32)), ("ANDMASK", bits),
            ("ORMASK", bits), ("NORMALIZATION", continuum_normalised(flux, mask)))]
        coadd = fits.BinTableHDU.from_columns(columns, name="COADD")
        hdul = fits.HDUList([fits.PrimaryHDU(header=hdr), coadd])
    buffer = io.BytesIO()
    hdul.writeto(buffer)
    blob = buffer.getvalue()
    path.write_bytes(gzip_module.compress(blob, mtime=0) if gzip else blob)
    return path


def _loglinear_coefficients(wave: np.ndarray) -> tuple[float, float]:
    if wave.ndim != 1 or wave.size < 2 or not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise ValueError("spec.wave must be a finite, positive 1-D array of at least 2 pixels")
    loglam = np.log10(wave)
    coeff0 = float(loglam[0])
    coeff1 = float((loglam[-1] - loglam[0]) / (wave.size - 1))
    deviation = np.max(np.abs(loglam - (coeff0 + coeff1 * np.arange(wave.size))))
    if not coeff1 > 0 or deviation > 1e-3 * coeff1:
        raise ValueError(f"spec.wave is not log-linear ascending (COEFF1 {coeff1:.3g}, "
                         f"deviation {deviation:.3g} dex): LAMOST files need 10**(COEFF0 + COEFF1*i)")
    return coeff0, coeff1


def _header(meta: dict, path: Path, layout: str, early: bool, coeff0: float, coeff1: float,
            wave, flux, ivar, mask) -> fits.Header:
    """Primary header with the keywords (and order) of real LAMOST files."""
    from astropy.io import fits

    ident = meta.get("id")
    z = meta.get("z")
    label = meta.get("label")
    cards = [("FILENAME", path.name.removesuffix(".gz"), "")]
    if ident is not None:
        numeric = str(ident).isdigit() and len(str(ident)) < 19  # real OBSIDs are integers
        cards.append(("OBSID", int(ident) if numeric else str(ident), "Unique number ID of this spectrum"))
    cards.append(("AUTHOR", "spectraforge", "Who compiled the information"))
    if not early:
        cards.append(("DATA_V", "spectraforge mock", "Data release version"))
    if early:
        cards += [("N_EXTEN", 1, "The extension number"),
                  ("EXTEN0", "Flux Inverse Subcontinuum Andmask Ormask", "")]
    elif layout == "image":
        cards += [("EXTEN0", "Flux, Inverse, Wavelength, Andmask, Ormask", ""),
                  ("N_EXTEN", 1, "The extension number"), ("EXTNAME", "Flux", "The extension name")]
    else:
        cards += [("N_EXTEN", 2, "The amount of extension"),
                  ("NORM", 1, "1 if there exists a normalized spectrum")]
    if meta.get("object_id") is not None:
        cards.append(("DESIG", str(meta["object_id"]), "Designation of LAMOST target"))
    cards += [
        ("VACUUM", True, "Wavelengths are in vacuum"),
        ("NWORDER", 2, "Number of linear-log10 coefficients"),
        ("WFITTYPE", "LOG-LINEAR", "Linear-log10 dispersion"),
        ("COEFF0", coeff0, "Central wavelength (log10) of first pixel"),
        ("COEFF1", coeff1, "Log10 dispersion per pixel"),
        ("CRVAL1", coeff0, "Central wavelength (log10) of first pixel"),
        ("CD1_1", coeff1, "Log10 dispersion per pixel"),
        ("CRPIX1", 1, "Starting pixel (1-indexed)"),
        ("CTYPE1", "LINEAR", ""),
        ("DC-FLAG", 1, "Log-linear flag"),
        ("VERSPIPE", "mock v2.6.4" if early else "mock v2.9.8", "Version of Pipeline"),
    ]
    if label is not None:
        cards.append(("CLASS", _CLASS_KEYWORD[label], "Class of object"))
    if meta.get("subclass") is not None:
        cards.append(("SUBCLASS", str(meta["subclass"]), "Subclass of object"))
    z_err = meta.get("z_err", Z_UNKNOWN if z is None else 0.0)
    cards += [("Z", Z_UNKNOWN if z is None else float(z), "Redshift of object"),
              ("Z_ERR", float(z_err), "Redshift error of object")]
    snr = band_snr(wave, flux, ivar, mask)
    if meta.get("snr") is not None:
        snr[BANDS.index("R")] = float(meta["snr"])
    keys = SNR_KEYS["early" if early else "new"]
    cards += [(key, value, f"SNR of {band.lower()} filter") for key, value, band in zip(keys, snr, BANDS)]
    return fits.Header(cards)


def band_snr(wave, flux, ivar, mask) -> list[float]:
    """Median flux·sqrt(ivar) over good pixels in each of the u, g, r, i, z spans (0 when none)."""
    flux, ivar = np.asarray(flux, dtype=np.float64), np.asarray(ivar, dtype=np.float64)
    good = ~np.asarray(mask) & np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    sn = flux[good] * np.sqrt(ivar[good])
    band = np.searchsorted(BAND_EDGES, np.asarray(wave)[good], side="right") - 1
    return [round(float(np.median(sn[band == k])), 2) if np.any(band == k) else 0.0
            for k in range(len(BANDS))]


def continuum_normalised(flux, mask, width: int = 301) -> np.ndarray:
    """flux / running-median continuum (width pixels), bad pixels bridged by interpolation."""
    flux = np.asarray(flux, dtype=np.float64)
    good = ~np.asarray(mask) & np.isfinite(flux)
    if not good.any():
        return np.ones(flux.size, dtype=np.float32)
    index = np.arange(flux.size)
    filled = np.interp(index, index[good], flux[good])
    from scipy.ndimage import median_filter  # writer only; keeps reader start-up light

    continuum = median_filter(filled, size=min(width, flux.size), mode="nearest")
    ratio = np.divide(filled, continuum, out=np.ones_like(filled), where=continuum != 0)
    return ratio.astype(np.float32)
