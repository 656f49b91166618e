"""LightGBM on hand-made features and a PCA of the flux: the tabular level-1 model."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from sklearn.decomposition import PCA

from spectraforge.features import feature_names, handmade_features
from spectraforge.io.spectrum import LABELS

_FIT_PARAMS = inspect.signature(lgb.LGBMClassifier.fit).parameters


@dataclass
class LGBMConfig:
    n_pca: int = 32
    n_windows: int = 26
    n_estimators: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 10
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    class_weight: str | None = "balanced"  # the rare classes weigh as much as stars in macro-F1
    seed: int = 2018

    def validate(self, key: str = "train.lgbm") -> None:
        from spectraforge.params import require

        require(self.n_pca >= 0, f"{key}.n_pca", f"must be >= 0, got {self.n_pca}")
        require(self.n_windows >= 1, f"{key}.n_windows", f"must be >= 1, got {self.n_windows}")
        require(self.n_estimators >= 1, f"{key}.n_estimators", f"must be >= 1, got {self.n_estimators}")
        require(0 < self.learning_rate <= 1, f"{key}.learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        require(self.class_weight in (None, "balanced"), f"{key}.class_weight",
               f"'{self.class_weight}' is not one of: balanced, null")


class SpectrumLGBM:
    """fit / predict_proba on flux arrays (n, n_pix); the PCA is fitted inside ``fit`` only."""

    def __init__(self, cfg: LGBMConfig, wave: np.ndarray, n_threads: int = 2):
        self.cfg, self.wave, self.n_threads = cfg, np.asarray(wave), n_threads

    def _features(self, flux: np.ndarray) -> np.ndarray:
        parts = [handmade_features(flux, self.wave, self.cfg.n_windows)]
        if self.pca is not None:
            parts.append(self.pca.transform(flux).astype(np.float32))
        return np.concatenate(parts, axis=1)

    def fit(self, flux: np.ndarray, y: np.ndarray, eval_set=None) -> "SpectrumLGBM":
        """Fit PCA and booster on (flux, y); ``eval_set=(flux_val, y_val)`` only records a
        learning curve (``self.curve_``: validation multi-logloss per iteration), it never
        stops or steers training."""
        cfg = self.cfg
        flux = np.asarray(flux, np.float32)
        self.pca = (PCA(cfg.n_pca, svd_solver="randomized", random_state=cfg.seed).fit(flux)
                    if cfg.n_pca > 0 else None)
        self.model = lgb.LGBMClassifier(
            objective="multiclass", n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate, num_leaves=cfg.num_leaves,
            min_child_samples=cfg.min_child_samples, subsample=cfg.subsample, subsample_freq=1,
            colsample_bytree=cfg.colsample_bytree, class_weight=cfg.class_weight,
            random_state=cfg.seed, n_jobs=self.n_threads, deterministic=True, force_row_wise=True,
            verbose=-1,
        )
        record: dict = {}
        kwargs = {}
        if eval_set is not None:
            X_val, y_val = self._features(np.asarray(eval_set[0], np.float32)), np.asarray(eval_set[1])
            # LightGBM 4.7 renamed eval_set to eval_X/eval_y; older 4.x only know eval_set
            data = ({"eval_X": (X_val,), "eval_y": (y_val,)} if "eval_X" in _FIT_PARAMS
                    else {"eval_set": [(X_val, y_val)]})
            kwargs = {**data, "eval_names": ["val"], "callbacks": [lgb.record_evaluation(record)]}
        self.model.fit(self._features(flux), np.asarray(y), **kwargs)
        self.curve_ = record.get("val", {}).get("multi_logloss", [])
        self.feature_names_ = feature_names(cfg.n_windows, cfg.n_pca)
        return self

    def predict_proba(self, flux: np.ndarray) -> np.ndarray:
        proba = self.model.predict_proba(self._features(np.asarray(flux, np.float32)))
        out = np.zeros((len(proba), len(LABELS)), np.float64)
        out[:, self.model.classes_] = proba  # a class absent from a tiny fold keeps probability 0
        return out
