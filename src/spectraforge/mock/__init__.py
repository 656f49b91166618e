"""The embedded mock LAMOST low-resolution survey (star, galaxy, qso, unknown).

``simulate(labels, seed)`` returns a :class:`SimBatch` of observed spectra on the native LAMOST
grid :data:`LAMOST_WAVE`; the class models live in ``stars``, ``galaxies``, ``quasars`` and
``unknown``, the spectrograph and observing conditions in ``instrument``, line lists in
``lines``; ``gallery.plot_gallery`` draws spectra for eyeballing.
"""
from .instrument import LAMOST_WAVE
from .simulate import SimBatch, simulate

__all__ = ["simulate", "SimBatch", "LAMOST_WAVE"]
