"""The class vocabulary every stage shares: the labels in their fixed order and their codes.

A leaf module (it imports nothing of the package), so a stage that needs the labels does not
pull in the readers, the networks or anything else with them.
"""
from __future__ import annotations

import numpy as np

LABELS = ("star", "galaxy", "qso", "unknown")
PROBA_COLUMNS = [f"p_{c}" for c in LABELS]  # the probability columns of every prediction table


def label_index(labels) -> np.ndarray:
    """Class names → integer codes in LABELS order (star, galaxy, qso, unknown)."""
    lookup = {name: i for i, name in enumerate(LABELS)}
    try:
        return np.array([lookup[x] for x in labels], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"unknown label {exc.args[0]!r}; valid labels: {', '.join(LABELS)}") from None
