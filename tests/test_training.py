"""One fold's two-phase training on a small separable problem; seeding; callbacks."""
import numpy as np
import pytest
from conftest import toy_spectra

from spectraforge.metrics import macro_f1
from spectraforge.models.cnn import CNNConfig
from spectraforge.training import (
    MacroF1Checkpoint, PhaseConfig, TrainConfig, predict_proba, train_fold,
)

N_PIX = 128
CNN = CNNConfig(n_pix=N_PIX, channels=[8, 8, 16], dense_units=16, dropout=0.1)


def quick_cfg(**kw) -> TrainConfig:
    base = dict(batch_size=32, phase1=PhaseConfig(3, 25, 1e-2, "crossentropy"),
                phase2=PhaseConfig(2, 6, 1e-3, "macro_f1"), seed=7, deterministic=True)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    X, y = toy_spectra(600, N_PIX, seed=0)
    path = tmp_path_factory.mktemp("toy") / "train.npy"
    np.save(path, X.astype(np.float32))
    val = np.arange(y.size) % 4 == 0
    return np.load(path, mmap_mode="r"), y, np.flatnonzero(~val), np.flatnonzero(val)


class FakeLive:
    def __init__(self):
        self.metrics, self.steps = [], 0

    def log_metric(self, name, value):
        self.metrics.append((self.steps, name, value))

    def next_step(self):
        self.steps += 1


@pytest.fixture(scope="module")
def trained(toy):
    X, y, tr, va = toy
    live = FakeLive()
    return train_fold(X, y, tr, va, CNN, quick_cfg(), logger=live), live


def test_learns_a_separable_problem(toy, trained):
    result, _ = trained
    assert result.best_score > 0.9
    assert result.val_proba.shape == (len(toy[3]), 4)


def test_both_phases_run_and_the_best_weights_are_restored(toy, trained):
    X, y, _, va = toy
    result, _ = trained
    assert [h["phase"] for h in result.history] == [1, 1, 1, 2, 2]
    scores = [h["val_macro_f1"] for h in result.history]
    assert result.best_score == max(scores)
    assert all(np.isfinite(h["loss"]) for h in result.history)
    proba = predict_proba(result.model, X, va)
    np.testing.assert_allclose(proba, result.val_proba, atol=1e-6)
    assert macro_f1(y[va], proba.argmax(1)) == result.best_score


def test_logger_gets_one_step_per_epoch(trained):
    _, live = trained
    assert live.steps == 5
    assert [name for step, name, _ in live.metrics if step == 0] == ["loss", "val_macro_f1"]


def test_same_seed_same_validation_probabilities(toy, trained):
    X, y, tr, va = toy
    again = train_fold(X, y, tr, va, CNN, quick_cfg())
    np.testing.assert_array_equal(again.val_proba, trained[0].val_proba)


def test_patience_stops_a_stalled_phase_and_phase2_can_be_off(toy):
    X, y, tr, va = toy
    # a vanishing learning rate freezes the validation score: no improvement after epoch 1
    cfg = quick_cfg(phase1=PhaseConfig(6, 2, 1e-12, "crossentropy"), phase2=PhaseConfig(0, 1, 1e-4, "macro_f1"),
                    patience=2)
    result = train_fold(X, y, tr, va, CNN, cfg)
    assert [(h["phase"], h["epoch"]) for h in result.history] == [(1, 1), (1, 2), (1, 3)]


def test_checkpoint_writes_val_macro_f1_into_the_logs(toy, trained):
    X, y, _, va = toy
    cb = MacroF1Checkpoint(X, y[va], va)
    cb.set_model(trained[0].model)
    logs = {"loss": 0.5}
    cb.on_epoch_end(0, logs)
    assert logs["val_macro_f1"] == cb.best == trained[0].best_score
    assert cb.history == [{"phase": 1, "epoch": 1, "loss": 0.5, "val_macro_f1": cb.best}]


def test_extra_spectra_are_trained_on(toy):
    X, y, tr, va = toy
    # only synthetic qso: the real qso rows are withheld from training
    tr_no_qso = tr[y[tr] != 2]
    qso = X[tr[y[tr] == 2]]
    result = train_fold(X, y, tr_no_qso, va, CNN, quick_cfg(phase2=PhaseConfig(0, 1, 1e-4, "macro_f1")),
                        extra=(np.asarray(qso), np.full(len(qso), 2)))
    assert result.best_score > 0.9


def test_overlapping_train_and_validation_rows_are_refused(toy):
    X, y, tr, va = toy
    with pytest.raises(ValueError, match="both train_rows and val_rows"):
        train_fold(X, y, np.concatenate([tr, va[:3]]), va, CNN, quick_cfg())


class _Killed(Exception):
    pass


@pytest.mark.parametrize("kill_after", [2, 3, 4])  # inside phase 1, at the phase boundary, inside phase 2
def test_a_fold_killed_after_an_epoch_resumes_to_the_uninterrupted_result(toy, tmp_path, monkeypatch, kill_after):
    """The fold's state after each epoch (weights, optimizer moments, dropout seed state,
    sampler position, best weights, patience count) lets a rerun continue where a killed run
    stopped; the resumed fold equals one that never stopped, epoch for epoch."""
    from spectraforge.training import EpochState

    X, y, tr, va = toy
    cfg = quick_cfg(patience=5)
    plain = train_fold(X, y, tr, va, CNN, cfg)

    save = EpochState.on_epoch_end
    calls = []

    def save_then_die(self, epoch, logs=None):
        save(self, epoch, logs)
        calls.append(epoch)
        if len(calls) == kill_after:
            raise _Killed

    monkeypatch.setattr(EpochState, "on_epoch_end", save_then_die)
    with pytest.raises(_Killed):
        train_fold(X, y, tr, va, CNN, cfg, resume_dir=tmp_path / "state")
    monkeypatch.setattr(EpochState, "on_epoch_end", save)
    assert EpochState.load(tmp_path / "state")["record"]["batches"] == sum(
        (25 if h["phase"] == 1 else 6) for h in EpochState.load(tmp_path / "state")["record"]["history"])
    live = FakeLive()
    resumed = train_fold(X, y, tr, va, CNN, cfg, logger=live, resume_dir=tmp_path / "state")
    assert resumed.history == plain.history
    np.testing.assert_array_equal(resumed.val_proba, plain.val_proba)
    for a, b in zip(resumed.model.get_weights(), plain.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert live.steps == len(plain.history)  # the learning curve is complete again


def test_a_saved_state_from_another_model_is_refused(toy, tmp_path):
    from spectraforge.training import EpochState

    X, y, tr, va = toy
    cfg = quick_cfg(phase1=PhaseConfig(1, 3, 1e-2, "crossentropy"), phase2=PhaseConfig(1, 3, 1e-3, "macro_f1"))
    train_fold(X, y, tr, va, CNN, cfg, resume_dir=tmp_path / "state")
    rec = EpochState.load(tmp_path / "state")["record"]
    assert rec["phase"] == 2 and rec["epochs_done"] == 1
    other = CNNConfig(n_pix=N_PIX, channels=[8, 16], dense_units=16, dropout=0.1)
    with pytest.raises(ValueError, match="saved fold state is from another model"):
        train_fold(X, y, tr, va, other, cfg, resume_dir=tmp_path / "state")


@pytest.mark.parametrize("warmup,final", [(0.0, 0.0), (0.1, 0.05), (0.3, 1.0)])
def test_cosine_schedule_matches_its_closed_form(warmup, final):
    from spectraforge.training import PhaseSchedule

    phase = PhaseConfig(4, 25, 3e-3, "crossentropy")
    cfg = quick_cfg(schedule="cosine", warmup=warmup, final_lr=final)
    sched = PhaseSchedule()
    sched.set_phase(40, phase, cfg)
    total, w = 100, round(warmup * 100)
    for t in (0, 1, 5, w - 1, w, 50, 99, 100, 150):
        if t < 0:
            continue
        warm = min(1.0, (t + 1) / max(w, 1))
        prog = min(max((t - w) / max(total - w, 1), 0.0), 1.0)
        want = 3e-3 * warm * (final + (1 - final) * 0.5 * (1 + np.cos(np.pi * prog)))
        assert float(sched(40 + t)) == pytest.approx(want, rel=1e-5, abs=1e-8)  # float32
    sched.set_phase(0, phase, quick_cfg(schedule="constant"))
    assert [float(sched(t)) for t in (0, 50, 500)] == pytest.approx([3e-3] * 3)


def test_bad_schedule_settings_name_the_key():
    with pytest.raises(ValueError, match=r"train\.schedule"):
        quick_cfg(schedule="linear").validate()
    with pytest.raises(ValueError, match="warmup"):
        quick_cfg(schedule="cosine", warmup=1.0).validate()
