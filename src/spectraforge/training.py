"""Training one fold of the Conv1D classifier: the article's two phases, inside ``model.fit``.

Phase 1: categorical cross-entropy, Adam 1e-3; phase 2 starts from the best phase-1 weights
with the soft macro-F1 loss and Adam 1e-4 (kexue.fm/archives/5505). Batches are
class-balanced (:mod:`spectraforge.sampling`); the best weights by validation macro-F1 over
both phases are kept in memory and restored at the end.

One :class:`CNNTrainer` serves every fold of a stage: the network is built and compiled once
(one traced, XLA-compiled training step for both phases: the loss is a mix of cross-entropy and
soft macro-F1 whose weights, like the learning-rate schedule's, are variables assigned at each
phase start), each fold re-initialises the weights and the optimizer in place, and validation
and test predictions go through one compiled predict function on fixed-size batches.

Call :func:`configure_threads` first, before TensorFlow runs any op.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from spectraforge.metrics import macro_f1
from spectraforge.params import require
from spectraforge.models.cnn import CNNConfig, build_cnn
from spectraforge.models.losses import LOSSES, macro_f1_loss
from spectraforge.sampling import (
    BalancedBatchSampler, batch_counts, gather_rows, make_eval_dataset, make_train_dataset, pool_labels,
)
from spectraforge.threads import configure_threads  # noqa: F401  (re-exported: call it before any op runs)

# Each fold builds a new model, so TF's "retracing" heuristic fires on every fold's first predict
# and warns about an intended pattern; real errors still surface as exceptions.
tf.get_logger().setLevel("ERROR")


def set_seed(seed: int, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow/Keras; optionally force deterministic TF kernels.

    ``enable_op_determinism`` is process-wide and cannot be undone by this function; it also
    makes Keras refuse XLA (``jit_compile``) and forbids nondeterministic tf.data ordering.
    """
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


@dataclass
class PhaseConfig:
    """One training phase: ``epochs`` of ``steps`` balanced batches; epochs 0 skips the phase."""

    epochs: int
    steps: int
    lr: float
    loss: str

    def validate(self, key: str) -> None:
        require(self.epochs >= 0 and self.steps >= 1 and self.lr > 0, key,
                f"need epochs >= 0, steps >= 1, lr > 0, got {self}")
        require(self.loss in LOSSES, f"{key}.loss", f"'{self.loss}' is not one of: {', '.join(LOSSES)}")


SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """One fold's training; defaults are the article's (20 + 20 epochs of 500 batches of 160).

    schedule: "constant" (the article: each phase at its ``lr``) or "cosine": in each phase a
    linear warm-up over the first ``warmup`` fraction of its batches to its ``lr``, then a
    cosine decay to ``final_lr`` × lr at its last batch (Loshchilov & Hutter 2017; Goyal et al.
    2017 for the warm-up), which converges in far fewer batches.

    shares: label → share of every batch (None: equal shares).
    patience: stop a phase after this many epochs without a better validation macro-F1
    (None: never; the article ran all epochs and kept the best weights).
    deterministic: enable TF op determinism (bitwise-repeatable runs for a seed on one machine).
    jit_compile: passed to ``model.compile``; "auto" means no XLA on CPU. XLA (True) cut the
    CPU cost of a default-model step by about 30 % here, but Keras refuses it (with a
    warning) while op determinism is enabled, so it needs ``deterministic=False``.
    """

    batch_size: int = 160
    shares: dict[str, float] | None = None
    phase1: PhaseConfig = field(default_factory=lambda: PhaseConfig(20, 500, 1e-3, "crossentropy"))
    phase2: PhaseConfig = field(default_factory=lambda: PhaseConfig(20, 500, 1e-4, "macro_f1"))
    patience: int | None = None
    eval_batch_size: int = 512
    schedule: str = "constant"
    warmup: float = 0.0
    final_lr: float = 0.0
    seed: int = 2018
    deterministic: bool = True
    jit_compile: bool | str = "auto"
    verbose: int = 0

    def validate(self, key: str = "train") -> None:
        require(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1, got {self.batch_size}")
        try:
            batch_counts(self.shares, self.batch_size)
        except ValueError as exc:
            require(False, f"{key}.shares", str(exc))
        require(self.patience is None or self.patience >= 1, f"{key}.patience",
                f"must be >= 1 or None, got {self.patience}")
        require(self.schedule in SCHEDULES, f"{key}.schedule",
                f"'{self.schedule}' is not one of: {', '.join(SCHEDULES)}")
        require(0.0 <= self.warmup < 1.0 and 0.0 <= self.final_lr <= 1.0, key,
                f"need 0 <= warmup < 1 and 0 <= final_lr <= 1, got warmup={self.warmup}, final_lr={self.final_lr}")
        require(self.eval_batch_size >= 1, f"{key}.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        self.phase1.validate(f"{key}.phase1")
        self.phase2.validate(f"{key}.phase2")
        require(self.phase1.epochs + self.phase2.epochs > 0, key, "both phases have 0 epochs; nothing to train")


def predict_proba(model: keras.Model, X, rows=None, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (n, K) of ``X[rows]`` (all rows if None), streamed in batches."""
    n = X.shape[0] if rows is None else len(rows)
    if n == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return model.predict(make_eval_dataset(X, rows, batch_size), verbose=0)


class MacroF1Checkpoint(keras.callbacks.Callback):
    """Validation macro-F1 at every epoch end: logs it, keeps the best weights, stops on stalls.

    Writes ``logs["val_macro_f1"]`` (so later callbacks and History see it), holds the best
    weights and validation probabilities in memory, restores the best weights at train end,
    and sets ``stop_training`` after ``patience`` epochs without improvement. One instance
    can serve several consecutive ``fit`` calls (phases): the best score carries over, the
    patience counter restarts. ``history`` collects one dict per epoch.
    """

    def __init__(self, x_val, y_val, rows=None, patience: int | None = None, batch_size: int = 512,
                 predict=None, label: str | None = None, epochs: dict | None = None):
        super().__init__()
        self.x_val, self.rows, self.batch_size = x_val, rows, batch_size
        # predict(X, rows) -> probabilities; default: the model's own predict in batches
        self.predict = predict or (lambda X, rows: predict_proba(self.model, X, rows, self.batch_size))
        self.label, self.epochs = label, epochs or {}  # progress lines: "<label> phase p epoch e/E ..."
        self._t0 = None
        self.y_val = np.asarray(y_val, dtype=np.int64)
        self.patience = patience
        self.phase = 1
        self.best = -math.inf
        self.best_weights = None
        self.best_proba = None
        self.history: list[dict] = []
        self._wait = 0
        self.resumed_wait: int | None = None  # set by a resume: the next fit continues the count

    def on_train_begin(self, logs=None):
        self._wait, self.resumed_wait = (self.resumed_wait or 0), None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        proba = self.predict(self.x_val, self.rows)
        score = macro_f1(self.y_val, proba.argmax(axis=1))
        if logs is not None:
            logs["val_macro_f1"] = score
        self.history.append({
            "phase": self.phase, "epoch": epoch + 1,
            "loss": float(logs["loss"]) if logs and "loss" in logs else float("nan"),
            "val_macro_f1": score,
        })
        if score > self.best:
            self.best, self.best_weights, self.best_proba = score, self.model.get_weights(), proba
            self._wait = 0
        else:
            self._wait += 1
            if self.patience is not None and self._wait >= self.patience:
                self.model.stop_training = True
        if self.label:
            took = f", {time.perf_counter() - self._t0:.1f} s" if self._t0 is not None else ""
            of = f"/{self.epochs[self.phase]}" if self.phase in self.epochs else ""
            print(f"{self.label} phase {self.phase} epoch {epoch + 1}{of}: loss "
                  f"{self.history[-1]['loss']:.4f}, val macro-F1 {score:.4f} (best {self.best:.4f}){took}",
                  flush=True)

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class EpochState(keras.callbacks.Callback):
    """Everything a fold needs to resume after its last finished epoch, in one atomic file.

    ``<folder>/state.npz`` holds every model variable (the dropout seed state included, which
    ``get_weights`` leaves out), the optimizer's variables, the best weights and validation
    probabilities held by the :class:`MacroF1Checkpoint`, and a JSON record: phase, epochs
    done in it, whether it stopped early, batches drawn so far, best score, patience count and
    history. It is written through a temporary file and renamed, after the checkpoint callback
    has seen the epoch, so a kill at any moment leaves either the previous state or the new one.
    """

    def __init__(self, folder, checkpoint: MacroF1Checkpoint, steps: dict):
        super().__init__()
        self.folder, self.checkpoint, self.steps = Path(folder), checkpoint, steps  # steps: phase -> batches

    def batches(self) -> int:
        """Batches the sampler has drawn: one epoch of its phase's steps per history row."""
        return sum(self.steps[h["phase"]] for h in self.checkpoint.history)

    def on_epoch_end(self, epoch, logs=None):
        ck = self.checkpoint
        record = {"phase": ck.phase, "epochs_done": epoch + 1, "stopped": bool(self.model.stop_training),
                  "batches": self.batches(), "best": ck.best,
                  "wait": ck._wait, "history": ck.history}
        arrays = {f"v{i}": np.asarray(v) for i, v in enumerate(self.model.variables)}
        arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(self.model.optimizer.variables)})
        arrays.update({f"b{i}": w for i, w in enumerate(ck.best_weights or [])})
        if ck.best_proba is not None:
            arrays["best_proba"] = ck.best_proba
        arrays["record"] = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".state.{os.getpid()}.npz"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, self.folder / "state.npz")

    @staticmethod
    def load(folder) -> dict | None:
        path = Path(folder) / "state.npz" if folder is not None else None
        if path is None or not path.exists():
            return None
        with np.load(path) as z:
            arrays = {name: z[name] for name in z.files}
        record = json.loads(arrays.pop("record").tobytes().decode())
        pick = lambda p: [arrays[f"{p}{i}"] for i in range(sum(n.startswith(p) and n[1:].isdigit() for n in arrays))]
        return {"record": record, "variables": pick("v"), "optimizer": pick("o"), "best_weights": pick("b"),
                "best_proba": arrays.get("best_proba")}


class LiveLogger(keras.callbacks.Callback):
    """Per-epoch metrics into a dvclive.Live-like ``logger`` (log_metric, next_step)."""

    def __init__(self, logger, keys=("loss", "val_macro_f1"), prefix: str = ""):
        super().__init__()
        self.logger, self.keys, self.prefix = logger, keys, prefix

    def on_epoch_end(self, epoch, logs=None):
        for key in self.keys:
            if logs and key in logs:
                self.logger.log_metric(f"{self.prefix}{key}", float(logs[key]))
        self.logger.next_step()

    def replay(self, history: list[dict]) -> None:
        """Log the epochs of a resumed fold again (its earlier learning curve was not kept)."""
        for row in history:
            self.on_epoch_end(row["epoch"] - 1, row)


class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate at optimizer step ``t``, for the phase that started at step ``start``.

    constant: ``lr``; cosine: linear warm-up over ``warmup`` steps, then a cosine from ``lr`` to
    ``final`` · lr at step start + ``total``. Every setting is a variable that :meth:`set_phase`
    assigns, so a new phase or fold changes the schedule without retracing the training step.
    """

    def __init__(self):
        self.start = tf.Variable(0.0, trainable=False, name="schedule_start")
        self.lr = tf.Variable(1e-3, trainable=False, name="schedule_lr")
        self.cosine = tf.Variable(0.0, trainable=False, name="schedule_cosine")
        self.warmup = tf.Variable(0.0, trainable=False, name="schedule_warmup")
        self.total = tf.Variable(1.0, trainable=False, name="schedule_total")
        self.final = tf.Variable(0.0, trainable=False, name="schedule_final")

    def set_phase(self, start: int, phase: "PhaseConfig", cfg: "TrainConfig") -> None:
        total = phase.epochs * phase.steps
        self.start.assign(float(start))
        self.lr.assign(phase.lr)
        self.cosine.assign(1.0 if cfg.schedule == "cosine" else 0.0)
        self.warmup.assign(float(round(cfg.warmup * total)))
        self.total.assign(float(max(total, 1)))
        self.final.assign(cfg.final_lr)

    def __call__(self, step):
        t = tf.cast(step, tf.float32) - self.start
        warm = tf.minimum(1.0, (t + 1.0) / tf.maximum(self.warmup, 1.0))
        progress = tf.clip_by_value((t - self.warmup) / tf.maximum(self.total - self.warmup, 1.0), 0.0, 1.0)
        decay = self.final + (1.0 - self.final) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return self.lr * (self.cosine * warm * decay + (1.0 - self.cosine))

    def get_config(self):
        return {}


class CNNTrainer:
    """One network, one compiled training step and one compiled predict for every fold and phase.

    The model is built and compiled once; :meth:`reset` gives it the fresh weights a new model of
    the fold's seed would have and zeroes the optimizer (moments and step), :meth:`set_phase`
    switches loss and learning-rate schedule by assigning variables. ``traces`` counts how often
    TensorFlow traced the training step (the loss runs in Python only while tracing) and
    ``predict_traces`` the predict function: one each per stage is the point of the class.
    """

    def __init__(self, cnn_cfg: CNNConfig, train_cfg: TrainConfig):
        self.cnn_cfg, self.batch_size = cnn_cfg, train_cfg.eval_batch_size
        self.traces = self.predict_traces = 0
        self.model = build_cnn(cnn_cfg)
        self.mix = tf.Variable([1.0, 0.0], trainable=False, name="loss_mix")  # crossentropy, macro-F1
        self.schedule = PhaseSchedule()
        trainer = self

        def loss(y_true, y_pred):
            trainer.traces += 1
            ce = keras.ops.mean(keras.losses.categorical_crossentropy(y_true, y_pred))
            return self.mix[0] * ce + self.mix[1] * macro_f1_loss(y_true, y_pred)

        self.model.compile(optimizer=keras.optimizers.Adam(self.schedule), loss=loss,
                           jit_compile=train_cfg.jit_compile)
        jit = train_cfg.jit_compile is True

        def forward(x):
            trainer.predict_traces += 1
            return self.model(x, training=False)

        self._forward = tf.function(forward, jit_compile=jit, reduce_retracing=True)

    def reset(self, seed: int, deterministic: bool = False) -> None:
        """Fresh weights (those ``build_cnn`` gives under ``seed``), a zeroed optimizer."""
        set_seed(seed, deterministic)
        fresh = build_cnn(self.cnn_cfg)
        _assign(self.model.variables, [v.numpy() for v in fresh.variables])
        self.zero_optimizer()

    def zero_optimizer(self) -> None:
        """Adam as new: moments and step count zeroed (nothing to do before its first build)."""
        for var in self.model.optimizer.variables:
            var.assign(tf.zeros_like(var))

    def set_phase(self, number: int, phase: PhaseConfig, cfg: TrainConfig, start: int | None = None) -> None:
        """Loss and schedule of phase ``number`` from optimizer step ``start`` (default: now)."""
        self.mix.assign([1.0, 0.0] if phase.loss == "crossentropy" else [0.0, 1.0])
        begin = int(self.model.optimizer.iterations.numpy()) if start is None else start
        self.schedule.set_phase(begin, phase, cfg)

    def predict(self, X, rows=None) -> np.ndarray:
        """Probabilities of ``X[rows]`` (all rows if None): fixed-size batches, the last one padded,
        so the compiled function sees one shape only."""
        rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        out = np.zeros((rows.size, self.cnn_cfg.n_classes), dtype=np.float32)
        batch = np.zeros((self.batch_size, X.shape[1]), dtype=np.float32)
        for start in range(0, rows.size, self.batch_size):
            part = rows[start:start + self.batch_size]
            batch[:part.size] = gather_rows(X, part)
            batch[part.size:] = 0.0
            out[start:start + part.size] = self._forward(tf.constant(batch)).numpy()[:part.size]
        return out


_TRAINERS: dict = {}


def get_trainer(cnn_cfg: CNNConfig, train_cfg: TrainConfig) -> CNNTrainer:
    """The process's trainer for this architecture and compile settings (built on first use)."""
    key = json.dumps([asdict(cnn_cfg), train_cfg.eval_batch_size, train_cfg.jit_compile,
                      train_cfg.deterministic], sort_keys=True, default=str)
    if key not in _TRAINERS:
        if train_cfg.deterministic:
            set_seed(train_cfg.seed, True)  # before the first compile: op determinism rules out XLA
        _TRAINERS[key] = CNNTrainer(cnn_cfg, train_cfg)
    return _TRAINERS[key]


@dataclass
class FoldResult:
    """A trained fold: its best weights, what it scored, and predict through the stage's trainer."""

    trainer: CNNTrainer
    weights: list
    val_proba: np.ndarray
    history: list
    best_score: float

    def predict(self, X, rows=None) -> np.ndarray:
        """Probabilities of ``X[rows]`` by this fold's weights (loaded into the shared network)."""
        self.trainer.model.set_weights(self.weights)
        return self.trainer.predict(X, rows)

    @property
    def model(self) -> keras.Model:
        """A standalone, uncompiled copy of the fold's network (built on each access: save it,
        don't loop on it)."""
        copy = build_cnn(self.trainer.cnn_cfg)
        copy.set_weights(self.weights)
        return copy


def train_fold(X, y_int, train_rows, val_rows, cnn_cfg: CNNConfig, train_cfg: TrainConfig,
               extra=None, logger=None, log_prefix: str = "", resume_dir=None,
               label: str | None = None) -> FoldResult:
    """Train on ``train_rows`` (+ ``extra`` synthetic spectra), select on ``val_rows``.

    X: (n, n_pix) float32, typically memory-mapped; y_int: class codes in LABELS order for
    every row of X. Runs phase 1 then phase 2 (when its epochs > 0) from the best phase-1
    weights; returns the best weights by validation macro-F1 over both phases, the validation
    probabilities (len(val_rows), K), the per-epoch history and the best score. Every call with
    the same architecture reuses the process's :class:`CNNTrainer` (one compiled step).

    resume_dir: a folder for the fold's state after every epoch (:class:`EpochState`); when it
    already holds one (a killed run), training continues after that epoch — same sampler
    position, optimizer moments, dropout seed state, best weights and patience count — so the
    result equals an uninterrupted run. The caller removes the folder when the fold is saved.
    label: print one progress line per epoch, prefixed by it (e.g. "cnn fold 2").
    """
    train_cfg.validate()
    if cnn_cfg.n_pix != X.shape[1]:
        raise ValueError(f"cnn.n_pix={cnn_cfg.n_pix} but the flux array has {X.shape[1]} pixels")
    val_rows = np.asarray(val_rows, dtype=np.int64)
    leaked = np.intersect1d(train_rows, val_rows)
    if leaked.size:
        raise ValueError(f"{leaked.size} rows are in both train_rows and val_rows (e.g. row {leaked[0]})")
    trainer = get_trainer(cnn_cfg, train_cfg)
    trainer.reset(train_cfg.seed, train_cfg.deterministic)
    model = trainer.model
    sampler = BalancedBatchSampler(
        pool_labels(y_int, train_rows, extra), train_cfg.batch_size, train_cfg.shares, train_cfg.seed
    )
    checkpoint = MacroF1Checkpoint(X, np.asarray(y_int)[val_rows], val_rows, train_cfg.patience,
                                   train_cfg.eval_batch_size, predict=trainer.predict, label=label,
                                   epochs={1: train_cfg.phase1.epochs, 2: train_cfg.phase2.epochs})
    live = LiveLogger(logger, prefix=log_prefix) if logger is not None else None
    callbacks = [checkpoint] + ([live] if live is not None else [])
    saved = EpochState.load(resume_dir)
    if saved is not None:
        rec = saved["record"]
        checkpoint.best, checkpoint.history = rec["best"], rec["history"]
        checkpoint.best_weights = saved["best_weights"] or None
        checkpoint.best_proba = saved["best_proba"]
        for _ in range(rec["batches"]):  # the sampler where the killed run left it
            sampler.next_batch()
        if live is not None:
            live.replay(rec["history"])
    steps = {1: train_cfg.phase1.steps, 2: train_cfg.phase2.steps}
    for number, phase in enumerate((train_cfg.phase1, train_cfg.phase2), start=1):
        if phase.epochs == 0 or (saved is not None and number < saved["record"]["phase"]):
            continue
        first_epoch, start = 0, None
        if saved is not None and number == saved["record"]["phase"]:
            rec = saved["record"]
            _assign(model.variables, saved["variables"])
            if rec["stopped"] or rec["epochs_done"] >= phase.epochs:
                # the phase ended with the saved epoch: restore its best weights, as on_train_end does
                if checkpoint.best_weights is not None:
                    model.set_weights(checkpoint.best_weights)
                continue
            first_epoch, checkpoint.resumed_wait = rec["epochs_done"], rec["wait"]
            model.optimizer.build(model.trainable_variables)
            _assign(model.optimizer.variables, saved["optimizer"])
            start = int(model.optimizer.iterations.numpy()) - first_epoch * phase.steps
        elif number == 2:
            trainer.zero_optimizer()  # the article restarted phase 2 with a fresh optimizer
        checkpoint.phase = number
        trainer.set_phase(number, phase, train_cfg, start)
        # the checkpoint first (it sets val_macro_f1 and stop_training), the saved state last
        state = [EpochState(resume_dir, checkpoint, steps)] if resume_dir is not None else []
        data = make_train_dataset(X, y_int, train_rows, sampler, phase.steps, extra)
        model.fit(data, epochs=phase.epochs, initial_epoch=first_epoch, callbacks=callbacks + state,
                  verbose=train_cfg.verbose, shuffle=False)
    return FoldResult(trainer, model.get_weights(), checkpoint.best_proba, checkpoint.history, checkpoint.best)


def _assign(variables, values) -> None:
    if len(variables) != len(values):
        raise ValueError(f"resume: {len(values)} saved values for {len(variables)} variables "
                         "(the saved fold state is from another model); delete the checkpoint folder")
    for var, value in zip(variables, values):
        var.assign(value)
