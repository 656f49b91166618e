"""The reader-process side of ``spectraforge predict``, in a module of its own so that a reader
process imports only what reading needs (prepare's reader and numpy: ~0.3 s), not the models'
libraries (LightGBM, scikit-learn, pandas: another ~1.5 s before its first chunk)."""
from __future__ import annotations

import time

import numpy as np

from spectraforge.prepare import Chunk, _process_chunk


def read_chunk(chunk: Chunk, wave: np.ndarray, normalise: str):
    """Prepare's read and preprocessing of one chunk, compacted for the trip back:
    (flux (m, P) float32, [(id, file)], [(file, reason)], CPU seconds)."""
    t0 = time.process_time()
    flux, metas, problems = _process_chunk(chunk, wave, normalise, 1.0)
    return (flux, [(m["id"], m["file"]) for m in metas], [(p["file"], p["reason"]) for p in problems],
            time.process_time() - t0)
