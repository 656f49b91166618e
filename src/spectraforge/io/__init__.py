"""Spectrum readers and writers: LAMOST FITS (both layouts), SDSS spec FITS, Tianchi 2018 txt/zip."""
from .dispatch import read_spectrum
from .lamost import write_lamost_fits
from .spectrum import LABELS, Spectrum, SpectrumReadError
from .tianchi import (
    TIANCHI_WAVE,
    IndexEntry,
    iter_tianchi_entries,
    list_tianchi,
    read_tianchi_entries,
    read_tianchi_txt,
    scan_tianchi,
    scan_unindexed,
    write_tianchi,
)

__all__ = [
    "LABELS",
    "TIANCHI_WAVE",
    "IndexEntry",
    "Spectrum",
    "SpectrumReadError",
    "iter_tianchi_entries",
    "list_tianchi",
    "read_spectrum",
    "read_tianchi_entries",
    "read_tianchi_txt",
    "scan_tianchi",
    "scan_unindexed",
    "write_lamost_fits",
    "write_tianchi",
]
