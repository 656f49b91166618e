"""Class-balanced batches and the tf.data pipelines that stream them from memory-mapped flux.

The article (kexue.fm/archives/5505) balanced the classes by sampling, not by loss weights:
every batch of 160 holds fixed per-class fractions. :class:`BalancedBatchSampler` draws such
batches as index arrays into a *pool* of training examples; :func:`make_train_dataset` turns
them into (flux, one-hot) batches, the pool being the fold's training rows of the prepared
array, optionally followed by in-memory synthetic spectra (generative augmentation).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow as tf

from spectraforge.labels import LABELS

K = len(LABELS)


def batch_counts(shares: dict | None, batch_size: int) -> np.ndarray:
    """Per-class counts (LABELS order) summing to batch_size, by largest-remainder rounding.

    Each class gets floor(b·s_c/Σs); the leftover slots go to the largest fractional parts
    (Hamilton's method), ties to the earlier class in LABELS.
    """
    shares = {label: 1.0 for label in LABELS} if shares is None else shares
    unknown = set(shares) - set(LABELS)
    if unknown:
        raise ValueError(f"shares: unknown label(s) {sorted(unknown)}; valid labels: {', '.join(LABELS)}")
    s = np.array([float(shares.get(label, 0.0)) for label in LABELS])
    if (s < 0).any() or s.sum() <= 0:
        raise ValueError(f"shares must be >= 0 with a positive sum, got {shares}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    quota = batch_size * s / s.sum()
    counts = np.floor(quota).astype(np.int64)
    leftover = batch_size - counts.sum()
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[:leftover]] += 1
    return counts


class BalancedBatchSampler:
    """Infinite stream of index batches into ``labels_int`` with exact per-class counts.

    Within a class, indices come from a shuffled pass over its members; when a pass is used
    up a new shuffled pass starts. So no example repeats before its whole class has been
    seen, and a small class is drawn with replacement across passes where its share demands
    it. The stream is a deterministic function of ``seed``.
    """

    def __init__(self, labels_int, batch_size: int = 160, shares: dict | None = None, seed: int = 0):
        self.labels = np.asarray(labels_int, dtype=np.int64).ravel()
        self.batch_size = int(batch_size)
        self.shares = shares
        self.seed = seed
        self.counts = batch_counts(shares, self.batch_size)
        self.members = [np.flatnonzero(self.labels == c) for c in range(K)]
        for c in np.flatnonzero(self.counts):
            if self.members[c].size == 0:
                raise ValueError(
                    f"sampler: class '{LABELS[c]}' has share {self.counts[c]}/{self.batch_size} "
                    f"of each batch but no example in the pool; set its share to 0"
                )
        self.reset()

    def reset(self) -> None:
        """Restart the stream from ``seed``."""
        self._rng = np.random.default_rng(self.seed)
        self._order = [np.empty(0, np.int64) for _ in range(K)]
        self._cursor = np.zeros(K, dtype=np.int64)

    def _draw(self, c: int, n: int) -> np.ndarray:
        """The next n members of class c, refilling with new shuffled passes as needed."""
        out = []
        while n > 0:
            if self._cursor[c] >= self._order[c].size:
                self._order[c] = self._rng.permutation(self.members[c])
                self._cursor[c] = 0
            take = self._order[c][self._cursor[c]:self._cursor[c] + n]
            self._cursor[c] += take.size
            out.append(take)
            n -= take.size
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def next_batch(self) -> np.ndarray:
        """One batch of pool indices, grouped by class in LABELS order."""
        return np.concatenate([self._draw(c, int(n)) for c, n in enumerate(self.counts)])

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.next_batch()


def gather_rows(X, rows) -> np.ndarray:
    """X[rows] as float32, reading a memmap in ascending row order (sequential I/O), order kept."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    out = np.empty((rows.size, X.shape[1]), dtype=np.float32)
    out[order] = X[rows[order]]
    return out


def pool_labels(labels_int, row_indices, extra=None) -> np.ndarray:
    """Labels of the training pool: the real rows ``row_indices``, then the ``extra`` spectra."""
    y = np.asarray(labels_int, dtype=np.int64)[np.asarray(row_indices, dtype=np.int64)]
    if extra is None:
        return y
    return np.concatenate([y, np.asarray(extra[1], dtype=np.int64).ravel()])


def _check_extra(extra, n_pix: int):
    X_syn, y_syn = extra
    X_syn = np.asarray(X_syn, dtype=np.float32)
    y_syn = np.asarray(y_syn, dtype=np.int64).ravel()
    if X_syn.ndim != 2 or X_syn.shape[1] != n_pix or X_syn.shape[0] != y_syn.size:
        raise ValueError(
            f"extra: expected X_synth of shape (n, {n_pix}) and n labels, got {X_syn.shape} and {y_syn.size}"
        )
    return X_syn, y_syn


def _one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(K, dtype=np.float32)[y]


def make_train_dataset(X_memmap, labels_int, row_indices, sampler: BalancedBatchSampler,
                       steps_per_epoch: int, extra=None) -> tf.data.Dataset:
    """(flux (B, n_pix) float32, one-hot (B, K) float32) batches drawn by ``sampler``.

    The pool is ``row_indices`` of ``X_memmap`` (positions 0..len(rows)−1) followed by the
    ``extra = (X_synth, y_synth)`` spectra, and ``sampler`` must be built on
    :func:`pool_labels` of the same arguments. One pass over the dataset yields
    ``steps_per_epoch`` batches; each new pass continues the sampler's stream, so a Keras
    epoch is one pass and the run is deterministic for the sampler's seed.
    """
    rows = np.asarray(row_indices, dtype=np.int64)
    labels = np.asarray(labels_int, dtype=np.int64)
    n_pix = X_memmap.shape[1]
    X_syn, y_syn = _check_extra(extra, n_pix) if extra is not None else (None, None)
    expected = pool_labels(labels, rows, (X_syn, y_syn) if extra is not None else None)
    if not np.array_equal(sampler.labels, expected):
        raise ValueError(
            f"sampler was built on {sampler.labels.size} labels that are not the pool's "
            f"({expected.size} = {rows.size} rows + {0 if y_syn is None else y_syn.size} extra); "
            "build it on pool_labels(labels_int, row_indices, extra)"
        )
    n_real = rows.size

    def batches():
        for _ in range(steps_per_epoch):
            pos = sampler.next_batch()
            real = pos < n_real
            x = np.empty((pos.size, n_pix), dtype=np.float32)
            x[real] = gather_rows(X_memmap, rows[pos[real]])
            if X_syn is not None:
                x[~real] = X_syn[pos[~real] - n_real]
            yield x, _one_hot(expected[pos])

    signature = (
        tf.TensorSpec((sampler.batch_size, n_pix), tf.float32),
        tf.TensorSpec((sampler.batch_size, K), tf.float32),
    )
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps_per_epoch))
    return ds.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(X, rows=None, batch_size: int = 512) -> tf.data.Dataset:
    """Flux batches (B, n_pix) of ``X[rows]`` (all rows if None) in order, no shuffling."""
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    n_batches = -(-rows.size // batch_size)

    def batches():
        for start in range(0, rows.size, batch_size):
            yield gather_rows(X, rows[start:start + batch_size])

    ds = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec((None, X.shape[1]), tf.float32)
    )
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    return ds.prefetch(tf.data.AUTOTUNE)
