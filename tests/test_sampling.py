"""Class-balanced batches and the tf.data pipelines over memory-mapped flux."""
import numpy as np
import pytest

from spectraforge.sampling import (
    BalancedBatchSampler, batch_counts, make_eval_dataset, make_train_dataset, pool_labels,
)

N_PIX = 16


@pytest.fixture
def flux(tmp_path):
    """A memory-mapped (300, N_PIX) array whose row i holds the value i everywhere, and labels."""
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=300, p=[0.7, 0.1, 0.05, 0.15])
    np.save(tmp_path / "train.npy", np.repeat(np.arange(300, dtype=np.float32)[:, None], N_PIX, axis=1))
    return np.load(tmp_path / "train.npy", mmap_mode="r"), labels


@pytest.mark.parametrize("shares, batch, expected", [
    (None, 160, [40, 40, 40, 40]),
    ({"star": 0.5, "galaxy": 0.2, "qso": 0.1, "unknown": 0.2}, 160, [80, 32, 16, 32]),
    # quotas 3.85, 1.75, 1.05, 0.35 → floors 3,1,1,0; the 2 leftover slots to .85 and .75
    ({"star": 0.55, "galaxy": 0.25, "qso": 0.15, "unknown": 0.05}, 7, [4, 2, 1, 0]),
    # equal remainders: the leftover slot goes to the earliest class
    ({"star": 1, "galaxy": 1, "qso": 1}, 10, [4, 3, 3, 0]),
])
def test_largest_remainder_counts(shares, batch, expected):
    assert batch_counts(shares, batch).tolist() == expected


def test_every_batch_has_exactly_the_requested_class_counts():
    labels = np.random.default_rng(1).choice(4, size=1000, p=[0.85, 0.08, 0.02, 0.05])
    sampler = BalancedBatchSampler(labels, 160, {"star": 0.4, "galaxy": 0.2, "qso": 0.2, "unknown": 0.2}, seed=3)
    for _ in range(20):
        idx = sampler.next_batch()
        assert np.bincount(labels[idx], minlength=4).tolist() == [64, 32, 32, 32]


def test_a_class_repeats_only_after_all_its_members_are_drawn():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 7 + [3] * 40)
    idx = BalancedBatchSampler(labels, 160, seed=0).next_batch()
    assert np.bincount(idx[labels[idx] == 1]).tolist()[50:55] == [8] * 5  # 40 draws of 5 members
    assert np.unique(idx[labels[idx] == 0]).size == 40  # 40 of 50 stars: no repeat yet


def test_same_seed_same_stream_other_seed_other_stream():
    labels = np.arange(400) % 4
    a, b, c = (BalancedBatchSampler(labels, 32, seed=s) for s in (5, 5, 6))
    first = [a.next_batch() for _ in range(5)]
    assert all(np.array_equal(x, b.next_batch()) for x in first)
    assert not all(np.array_equal(x, c.next_batch()) for x in first)
    a.reset()
    assert np.array_equal(a.next_batch(), first[0])


def test_a_class_with_a_share_but_no_examples_is_an_error():
    with pytest.raises(ValueError, match="qso"):
        BalancedBatchSampler(np.array([0, 1, 3, 3]), 8)
    BalancedBatchSampler(np.array([0, 1, 3, 3]), 8, {"star": 1, "galaxy": 1, "unknown": 1})


def test_train_dataset_draws_only_training_rows_with_their_labels(flux):
    X, labels = flux
    train_rows = np.flatnonzero(np.arange(300) % 5 != 0)  # every fifth row is validation
    sampler = BalancedBatchSampler(pool_labels(labels, train_rows), 40, seed=0)
    ds = make_train_dataset(X, labels, train_rows, sampler, steps_per_epoch=6)
    seen = []
    for epoch in range(2):
        batches = list(ds.as_numpy_iterator())
        assert len(batches) == 6
        for x, y in batches:
            assert x.shape == (40, N_PIX) and x.dtype == np.float32 and y.shape == (40, 4)
            rows = x[:, 0].astype(int)
            assert (x == x[:, :1]).all()  # whole rows gathered intact
            assert np.isin(rows, train_rows).all()
            np.testing.assert_array_equal(y.argmax(1), labels[rows])
            assert (y.sum(1) == 1).all() and (y.sum(0) == 10).all()
            seen.append(rows)
    # the second epoch continues the sampler's stream rather than replaying the first
    assert not np.array_equal(np.concatenate(seen[:6]), np.concatenate(seen[6:]))
    again = BalancedBatchSampler(pool_labels(labels, train_rows), 40, seed=0)
    replay = make_train_dataset(X, labels, train_rows, again, steps_per_epoch=12)
    np.testing.assert_array_equal(
        np.concatenate([x[:, 0] for x, _ in replay.as_numpy_iterator()]).astype(int), np.concatenate(seen)
    )


def test_extra_spectra_join_the_pool_with_their_labels(flux):
    X, labels = flux
    train_rows = np.arange(0, 300, 2)
    X_syn = -np.repeat(np.arange(1, 21, dtype=np.float32)[:, None], N_PIX, axis=1)  # rows -1..-20
    y_syn = np.full(20, 2)  # synthetic quasars
    extra = (X_syn, y_syn)
    sampler = BalancedBatchSampler(pool_labels(labels, train_rows, extra), 80, seed=1)
    x, y = next(make_train_dataset(X, labels, train_rows, sampler, 1, extra).as_numpy_iterator())
    marker = x[:, 0].astype(int)
    synthetic = marker < 0
    assert synthetic.any()
    assert (y[synthetic].argmax(1) == 2).all()
    np.testing.assert_array_equal(x[synthetic], X_syn[-marker[synthetic] - 1])
    assert np.isin(marker[~synthetic], train_rows).all()
    np.testing.assert_array_equal(y[~synthetic].argmax(1), labels[marker[~synthetic]])


def test_a_sampler_built_on_other_labels_is_refused(flux):
    X, labels = flux
    sampler = BalancedBatchSampler(labels, 40)  # all rows, not the training pool
    with pytest.raises(ValueError, match="pool_labels"):
        make_train_dataset(X, labels, np.arange(100), sampler, 1)


def test_eval_dataset_keeps_row_order_and_the_last_partial_batch(flux):
    X, _ = flux
    rows = np.array([250, 3, 17, 17, 120, 0, 299])
    batches = list(make_eval_dataset(X, rows, batch_size=3).as_numpy_iterator())
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(batches)[:, 0], rows)
    assert sum(len(b) for b in make_eval_dataset(X, None, 128).as_numpy_iterator()) == 300
