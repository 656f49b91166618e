"""The one in-memory form every reader returns and every writer takes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spectraforge.labels import LABELS  # re-exported: readers return labels in this vocabulary


class SpectrumReadError(Exception):
    """A file could not be read as a spectrum; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class Spectrum:
    """One spectrum.

    wave: vacuum wavelength in Å, strictly ascending (float64)
    flux: flux, same length (float32); relative units for Tianchi, 1e-17 erg/s/cm²/Å-ish for FITS
    ivar: inverse variance (float32); 0 where unknown or bad
    mask: bool, True = bad pixel
    meta: at least id, label (one of LABELS or None), z (float or None), snr (float or None),
          format (str); optional object_id (groups repeat observations), file (source path)
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.wave)
        for name in ("flux", "ivar", "mask"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} pixels, wave has {n}")
