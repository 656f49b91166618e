"""The one interface every level-1 classifier implements, so that the K-fold engine
(:mod:`spectraforge.crossval`), ``spectraforge predict``, the augmentation stage's confidence
filter and the ensemble's inputs treat every kind alike.

A classifier kind is a subclass of :class:`Classifier` with

- ``kind``: its name in ``train.variants.<name>.kind`` and in the models' manifest;
- ``Config``: its typed settings, built from ``train.variants.<name>.config`` by
  :meth:`Classifier.build_config` (unknown keys, wrong types and bad values name the key);
- ``fit(X, y, *, val, extra, resume_dir, logger, label)``: fit on one fold's training part;
- ``predict_proba(X)``: (n, K) probabilities in LABELS order;
- ``save(stem)`` / ``load(path)``: one file per fitted model, in a format that loading
  cannot execute code from (no pickle).

and one line in :data:`spectraforge.models.registry.CLASSIFIERS`.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np


class Classifier:
    """A level-1 classifier of prepared flux arrays (n, n_pix)."""

    kind: ClassVar[str]
    Config: ClassVar[type]
    suffix: ClassVar[str]  # the file name ending :meth:`save` writes (``.keras``, ``.npz``)

    def __init__(self, config, *, wave: np.ndarray, threads: int = 1):
        self.config, self.wave, self.threads = config, np.asarray(wave), threads
        self.val_proba_: np.ndarray | None = None  # validation probabilities a fit computed, if any
        self.history_: list[dict] = []  # one row per epoch (or none) from the last fit

    @classmethod
    def build_config(cls, data: dict, key: str):
        """The kind's typed, validated config from its params mapping; errors name ``key``."""
        from spectraforge.params import build_dataclass

        config = build_dataclass(cls.Config, data, key)
        config.validate(key)
        return config

    @classmethod
    def configure_process(cls, threads: int) -> None:
        """Set up the process before the first fit (e.g. TensorFlow's thread pools); default none."""

    @classmethod
    def runtime(cls) -> str | None:
        """One line on what the kind computes on (the stage prints it), or None; default none."""
        return None

    def fit(self, X, y, *, val, extra=None, resume_dir=None, logger=None, label=None) -> "Classifier":
        """Fit on (X, y), one fold's training part; ``val = (X_val, y_val)`` is the fold's
        validation part (model selection or a learning curve only, never training rows);
        ``extra = (flux, codes)`` synthetic spectra added to the training part; ``resume_dir``
        a folder where a long fit may keep its state to resume after a kill; ``logger`` a
        dvclive-like object (``log_metric``, ``next_step``) for the learning curve; ``label``
        (e.g. "cnn fold 2") prefixes any progress lines a long fit prints."""
        raise NotImplementedError

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) class probabilities in LABELS order (float32 or float64, as the model computes)."""
        raise NotImplementedError

    def save(self, stem: Path) -> str:
        """Write the fitted model to ``stem`` + :attr:`suffix`; returns the file's name."""
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path) -> "Classifier":
        """A fitted classifier from a file :meth:`save` wrote (ready for predict_proba)."""
        raise NotImplementedError


def class_columns(proba: np.ndarray, classes, n_classes: int) -> np.ndarray:
    """(n, n_classes) float64 from probabilities over the ``classes`` a fit saw; a class absent
    from a tiny fold keeps probability 0."""
    out = np.zeros((len(proba), n_classes), np.float64)
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out
