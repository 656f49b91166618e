"""SDSS / BOSS `spec-PLATE-MJD-FIBER.fits` reader.

HDU 1 `COADD`: one row per pixel with columns flux, loglam (log10 vacuum Å), ivar, and_mask,
or_mask, ... . HDU 2 `SPECOBJ` (SDSS-I/II) or `SPALL` (BOSS): one row with CLASS (STAR, GALAXY,
QSO), SUBCLASS, Z, SN_MEDIAN_ALL, PLATE, MJD, FIBERID, SPECOBJID. The primary header repeats
PLATEID, MJD, FIBERID.
"""
from __future__ import annotations

import numpy as np

from ._common import file_stem, finalise, header_float, label_from, median_snr
from .spectrum import Spectrum, SpectrumReadError

INFO_HDUS = ("SPECOBJ", "SPALL")


def read_sdss(path, hdul) -> Spectrum:
    """hdul is an open astropy HDUList of an SDSS spec file."""
    if "COADD" not in hdul:
        raise SpectrumReadError(path, "no COADD extension")
    table = hdul["COADD"].data
    if table is None or len(table) == 0:
        raise SpectrumReadError(path, "COADD table has no rows")
    names = {name.lower(): name for name in table.columns.names}
    missing = [c for c in ("flux", "loglam", "ivar") if c not in names]
    if missing:
        raise SpectrumReadError(path, f"COADD table lacks column(s) {', '.join(missing)}")
    loglam = np.asarray(table[names["loglam"]], dtype=np.float64)
    andmask = np.asarray(table[names["and_mask"]]) if "and_mask" in names else None
    info_name, info = _info_row(hdul)
    spec = finalise(path, 10.0 ** loglam, table[names["flux"]], table[names["ivar"]], andmask,
                    _meta(path, hdul[0].header, info_name, info))
    if spec.meta["snr"] is None:
        spec.meta["snr"] = median_snr(spec.flux, spec.ivar, spec.mask)
    return spec


INFO_COLUMNS = ("PLATE", "MJD", "FIBERID", "TARGETID", "SPECOBJID", "SN_MEDIAN_ALL", "CLASS", "SUBCLASS", "Z")


def _info_row(hdul) -> tuple[str | None, dict]:
    """(HDU name, the columns of its row that the metadata uses as {UPPER-CASE column: value}),
    or (None, {}) without SPECOBJ/SPALL. Only those columns are converted: a SPALL row has
    ~230, and turning each into Python objects was most of the cost of reading a file."""
    for name in INFO_HDUS:
        if name in hdul:
            data = hdul[name].data
            if data is not None and len(data):
                return name, {col.upper(): data[col][0] for col in data.columns.names
                              if col.upper() in INFO_COLUMNS}
    return None, {}


def _meta(path, header, info_name: str | None, info: dict) -> dict:
    plate = info.get("PLATE", header.get("PLATEID"))
    mjd = info.get("MJD", header.get("MJD"))
    fiber = info.get("FIBERID", header.get("FIBERID"))
    pmf = f"{int(plate):04d}-{int(mjd):05d}-{int(fiber):04d}" if None not in (plate, mjd, fiber) else None
    fallback = next((str(info[k]).strip() for k in ("TARGETID", "SPECOBJID") if k in info), None)
    ident = pmf or fallback or file_stem(path)
    snr = header_float(info, "SN_MEDIAN_ALL")
    meta = {
        "id": ident,
        "label": label_from(path, _text(info.get("CLASS")), f"{info_name} CLASS"),
        "z": header_float(info, "Z"),
        "snr": snr if snr is not None and snr >= 0 else None,
        "format": "sdss",
        "object_id": pmf or fallback or ident,
        "file": str(path),
    }
    subclass = _text(info.get("SUBCLASS"))
    if subclass:
        meta["subclass"] = subclass
    return meta


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).strip()
