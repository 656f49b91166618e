"""Classification metrics in LABELS order (star, galaxy, qso, unknown), numpy only.

Everything derives from the confusion matrix C (rows true, columns predicted):
F1_c = 2·C_cc / (Σ_j C_cj + Σ_i C_ic) = 2TP / (2TP + FP + FN). Macro-F1, the Tianchi 2018
score, is the mean of F1_c over the classes present in the truth or the predictions
(sklearn's ``f1_score(average="macro")`` convention; an absent class has F1 = nan).
"""
from __future__ import annotations

import warnings

import numpy as np

from spectraforge.labels import LABELS

K = len(LABELS)


def _codes(y, name: str) -> np.ndarray:
    y = np.asarray(y, dtype=np.int64).ravel()
    if y.size and (y.min() < 0 or y.max() >= K):
        raise ValueError(f"{name}: class codes must lie in 0..{K - 1} ({', '.join(LABELS)}), got {y.min()}..{y.max()}")
    return y


def _confusions(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Confusion matrices of a stack of label rows: (..., n) codes → (..., K, K) counts."""
    lead = y_true.shape[:-1]
    stack = int(np.prod(lead, dtype=np.int64))
    cell = (y_true * K + y_pred).reshape(stack, -1) + (np.arange(stack) * K * K)[:, None]
    counts = np.bincount(cell.ravel(), minlength=stack * K * K)
    return counts.reshape(*lead, K, K)


def _f1_from_confusion(c: np.ndarray) -> np.ndarray:
    """Per-class F1 of (..., K, K) confusion matrices; nan for a class absent from both axes."""
    tp = np.diagonal(c, axis1=-2, axis2=-1).astype(np.float64)
    support = c.sum(axis=-1) + c.sum(axis=-2)  # #true + #predicted = 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, 2.0 * tp / support, np.nan)


def confusion(y_true, y_pred) -> np.ndarray:
    """K×K counts, rows = true class, columns = predicted class, in LABELS order."""
    y_true, y_pred = _codes(y_true, "y_true"), _codes(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels, y_pred has {y_pred.size}")
    return _confusions(y_true, y_pred)


def per_class_f1(y_true, y_pred) -> dict[str, float]:
    """{label: F1} in LABELS order; nan for a class neither true nor predicted."""
    return dict(zip(LABELS, _f1_from_confusion(confusion(y_true, y_pred)).tolist()))


def macro_f1(y_true, y_pred) -> float:
    """Mean per-class F1 over the classes present (in truth or predictions)."""
    f1 = _f1_from_confusion(confusion(y_true, y_pred))
    return float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")


def f1_batch(y_true, y_pred) -> np.ndarray:
    """Per-class F1 of stacked label arrays: (..., n) codes → (..., K); nan for an absent class.
    ``y_true`` broadcasts against ``y_pred`` (one truth for many predictions, or paired stacks)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    y_true, y_pred = np.broadcast_arrays(y_true, y_pred)
    return _f1_from_confusion(_confusions(y_true, y_pred))


def scores(y_true, y_pred, prefix: str = "", n_boot: int = 1000, seed: int = 0) -> dict:
    """The flat score keys every stage reports: ``<prefix>macro_f1`` with its bootstrap interval
    (``_ci_low``, ``_ci_high``) and ``<prefix>f1_<class>``."""
    lo, hi = bootstrap_macro_f1_ci(y_true, y_pred, n=n_boot, seed=seed)
    out = {f"{prefix}macro_f1": macro_f1(y_true, y_pred), f"{prefix}macro_f1_ci_low": lo,
           f"{prefix}macro_f1_ci_high": hi}
    out.update({f"{prefix}f1_{c}": v for c, v in per_class_f1(y_true, y_pred).items()})
    return out


def macro_f1_batch(y_true, y_pred) -> np.ndarray:
    """Macro-F1 of each row of a (g, n) stack of predictions against one truth y_true (n,)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: a class absent everywhere
        return np.nanmean(f1_batch(y_true, y_pred), axis=-1)


def bootstrap_macro_f1_ci(y_true, y_pred, n: int = 1000, seed: int = 0, level: float = 0.95,
                          chunk_elements: int = 4_000_000) -> tuple[float, float]:
    """Percentile bootstrap interval of macro-F1 (Efron & Tibshirani 1993, ch. 13).

    Resamples the (y_true, y_pred) pairs with replacement ``n`` times (resample b uses the
    b-th row of ``rng.integers(0, m, size=(n, m))``) and returns the (1−level)/2 and
    (1+level)/2 quantiles of the resampled macro-F1. Vectorised in chunks of about
    ``chunk_elements`` drawn indices to bound memory.
    """
    y_true, y_pred = _codes(y_true, "y_true"), _codes(y_pred, "y_pred")
    m = y_true.size
    if m == 0 or m != y_pred.size:
        raise ValueError(f"bootstrap needs equal, non-empty label arrays, got {m} and {y_pred.size}")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_elements // m)
    scores = []
    for start in range(0, n, per_chunk):
        idx = rng.integers(0, m, size=(min(per_chunk, n - start), m))
        f1 = _f1_from_confusion(_confusions(y_true[idx], y_pred[idx]))
        scores.append(np.nanmean(f1, axis=-1))
    scores = np.concatenate(scores)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(scores, [tail, 1.0 - tail])
    return float(lo), float(hi)
