"""The one in-memory form every reader returns and every writer takes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spectraforge.labels import LABELS  # noqa: F401  re-exported: readers return labels in this vocabulary

MAX_REASON = 300  # characters: a reason is one line for a person, whatever the bytes it quotes


def clip_reason(reason, limit: int = MAX_REASON) -> str:
    """``reason`` as one printable line of at most ``limit`` characters (an ellipsis marks a cut).

    Control characters (a NUL-filled file quoted in a parse error, a newline in a name) are
    escaped as ``\\xNN``, so a quarantine CSV or a terminal gets one short line per problem,
    however large or binary the value the reason quotes.
    """
    text = str(reason)
    if len(text) > 4 * limit:  # escaping never shortens: cut first, so a 30 MB value costs nothing
        text = text[: 4 * limit]
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(text) <= limit and len(str(reason)) <= 4 * limit:
        return text
    return text[: limit - 1] + "…"


class SpectrumReadError(Exception):
    """A file could not be read as a spectrum; the message names the file and the reason.

    ``reason`` is clipped to one printable line of at most MAX_REASON characters (clip_reason):
    every reader's errors pass here, so no quarantine list or error report can balloon.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = clip_reason(reason)
        super().__init__(f"{self.path}: {self.reason}")


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
