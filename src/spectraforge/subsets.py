"""Reduced training parts for benchmarks that ask how a model does with fewer spectra of a class."""
from __future__ import annotations

import numpy as np


def reduce_per_class(rows, y, keep: dict[int, int], seed: int) -> np.ndarray:
    """``rows`` with at most ``keep[c]`` rows of each class c in ``keep`` (other classes whole):
    the first ``keep[c]`` of a permutation of the class's rows drawn from (seed, c) alone, so
    the subsets are nested in ``keep[c]`` (N=25 ⊂ N=50 ⊂ …), independent of the other classes'
    caps, and the same for the same seed. Returned in ascending order."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    y = np.asarray(y, dtype=np.int64)
    out = [rows[~np.isin(y[rows], list(keep))]]
    for c, n in keep.items():
        if n < 0:
            raise ValueError(f"reduce_per_class: class {c} cap must be >= 0, got {n}")
        members = rows[y[rows] == c]
        out.append(np.random.default_rng([int(seed), int(c)]).permutation(members)[:n])
    return np.sort(np.concatenate(out))
