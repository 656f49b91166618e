"""Decision rules on class probabilities: per-class weights tuned for macro-F1, honestly.

A classifier trained on class-balanced batches estimates posteriors for equal priors; the
survey is 80 % stars. The label argmax_c(w_c · p_c) with per-class weights w moves each
class's threshold. The weights are tuned for macro-F1 by coordinate ascent over a grid of
log-weights, on bootstrap resamples of the rows, and averaged (geometric mean) over them so
a rare class's weight does not chase a handful of spectra. :func:`nested_decision` tunes
them by cross-validation over the folds, so no row's label is decided by weights fitted on it.
"""
from __future__ import annotations

import numpy as np

from spectraforge.metrics import macro_f1_batch

EPS = 1e-6


def tune_decision_weights(P: np.ndarray, y: np.ndarray, grid=(-2.0, 2.0, 41), passes: int = 3) -> np.ndarray:
    """Per-class weights w (w_0 = 1) maximising macro-F1 of argmax(w · p) by coordinate ascent
    over log w on a grid; ties keep the weight closest to 1."""
    K = P.shape[1]
    logs = np.linspace(grid[0], grid[1], int(grid[2]))
    order = np.argsort(np.abs(logs), kind="stable")  # first maximum = smallest |log w|
    logw = np.zeros(K)
    logP = np.log(np.clip(P, EPS, 1.0))
    for _ in range(passes):
        changed = False
        for c in range(1, K):  # weights are defined up to a common scale: class 0 fixed at 1
            others = logP + logw
            others[:, c] = -np.inf
            best_other, which = others.max(axis=1), others.argmax(axis=1)
            # (g, n): the label under each candidate log-weight of class c
            pred = np.where(logP[:, c] + logs[:, None] > best_other, c, which)
            f1 = macro_f1_batch(y, pred)
            best = logs[order][np.argmax(f1[order])]
            changed |= best != logw[c]
            logw[c] = best
        if not changed:
            break
    return np.exp(logw)


def bagged_decision_weights(P, y, resamples: int, grid, seed: int) -> np.ndarray:
    """Geometric mean of the weights tuned on ``resamples`` bootstrap resamples of the rows."""
    rng = np.random.default_rng(seed)
    logs = [np.log(tune_decision_weights(P[idx], y[idx], grid))
            for idx in (rng.integers(0, len(y), len(y)) for _ in range(resamples))]
    return np.exp(np.mean(logs, axis=0))


def decide(P: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Label codes argmax_c(w_c · p_c)."""
    return np.argmax(np.log(np.clip(P, EPS, 1.0)) + np.log(w), axis=1)


def nested_decision(P_oof: np.ndarray, y: np.ndarray, fold: np.ndarray, resamples: int, grid,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(OOF labels, weights for new data): fold k's rows are decided by weights tuned on the
    other folds' rows only; the weights returned for the test set are tuned on all OOF rows."""
    pred = np.empty(len(y), np.int64)
    for k in np.unique(fold):
        fit = fold != k
        w = bagged_decision_weights(P_oof[fit], y[fit], resamples, grid, seed + int(k))
        pred[fold == k] = decide(P_oof[fold == k], w)
    return pred, bagged_decision_weights(P_oof, y, resamples, grid, seed)
