"""LightGBM on hand-made features and a PCA of the flux: the tabular level-1 model."""
from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
from sklearn.decomposition import PCA

from spectraforge.features import feature_names, handmade_features
from spectraforge.labels import LABELS
from spectraforge.models.base import Classifier, class_columns
from spectraforge.params import require

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
        require(self.n_pca >= 0, f"{key}.n_pca", f"must be >= 0, got {self.n_pca}")
        require(self.n_windows >= 1, f"{key}.n_windows", f"must be >= 1, got {self.n_windows}")
        require(self.n_estimators >= 1, f"{key}.n_estimators", f"must be >= 1, got {self.n_estimators}")
        require(0 < self.learning_rate <= 1, f"{key}.learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        require(self.class_weight in (None, "balanced"), f"{key}.class_weight",
               f"'{self.class_weight}' is not one of: balanced, null")


class SpectrumLGBM(Classifier):
    """Kind ``lgbm``: LightGBM on :func:`handmade_features` and a PCA of the flux; the PCA is
    fitted inside ``fit`` on the fold's training part only.

    Saved as one ``.npz`` (read without pickle): the booster in LightGBM's own text format,
    the PCA's arrays, the classes the booster saw, the wavelengths and the config as JSON.
    """

    kind = "lgbm"
    Config = LGBMConfig
    suffix = ".npz"

    def _features(self, flux: np.ndarray) -> np.ndarray:
        parts = [handmade_features(flux, self.wave, self.config.n_windows)]
        if self.pca is not None:
            parts.append(self.pca.transform(flux).astype(np.float32))
        return np.concatenate(parts, axis=1)

    def fit(self, X, y, *, val, extra=None, resume_dir=None, logger=None, label=None) -> "SpectrumLGBM":
        """Fit PCA and booster on (X, y) plus ``extra``; ``val`` only records a learning curve
        (``self.curve_``: validation multi-logloss per iteration, logged one step per
        iteration), it never stops or steers training. LightGBM fits take seconds: they
        restart rather than resume (``resume_dir`` unused)."""
        cfg = self.config
        flux, y = np.asarray(X, np.float32), np.asarray(y)
        if extra is not None and len(extra[1]):
            flux, y = np.concatenate([flux, extra[0]]), np.concatenate([y, extra[1]])
        self.pca = (PCA(cfg.n_pca, svd_solver="randomized", random_state=cfg.seed).fit(flux)
                    if cfg.n_pca > 0 else None)
        self.model = lgb.LGBMClassifier(
            objective="multiclass", n_estimators=cfg.n_estimators,
            learning_rate=cfg.learning_rate, num_leaves=cfg.num_leaves,
            min_child_samples=cfg.min_child_samples, subsample=cfg.subsample, subsample_freq=1,
            colsample_bytree=cfg.colsample_bytree, class_weight=cfg.class_weight,
            random_state=cfg.seed, n_jobs=self.threads, deterministic=True, force_row_wise=True,
            verbose=-1,
        )
        record: dict = {}
        kwargs = {}
        if val is not None:
            X_val, y_val = self._features(np.asarray(val[0], np.float32)), np.asarray(val[1])
            # LightGBM 4.7 renamed eval_set to eval_X/eval_y; older 4.x only know eval_set
            data = ({"eval_X": (X_val,), "eval_y": (y_val,)} if "eval_X" in _FIT_PARAMS
                    else {"eval_set": [(X_val, y_val)]})
            kwargs = {**data, "eval_names": ["val"], "callbacks": [lgb.record_evaluation(record)]}
        self.model.fit(self._features(flux), y, **kwargs)
        self.booster, self.classes = self.model.booster_, np.asarray(self.model.classes_)
        self.curve_ = record.get("val", {}).get("multi_logloss", [])
        self.feature_names_ = feature_names(cfg.n_windows, cfg.n_pca)
        if logger is not None:
            for loss in self.curve_:
                logger.log_metric("val_multi_logloss", float(loss))
                logger.next_step()
        return self

    def predict_proba(self, X) -> np.ndarray:
        features = self._features(np.asarray(X, np.float32))
        if hasattr(self, "model"):  # fitted here: the estimator's own predict_proba
            return class_columns(self.model.predict_proba(features), self.classes, len(LABELS))
        proba = self.booster.predict(features)
        if proba.ndim == 1:  # a two-class fold: LightGBM gives P(second class) only
            proba = np.vstack((1.0 - proba, proba)).T
        return class_columns(proba, self.classes, len(LABELS))

    def save(self, stem: Path) -> str:
        path = Path(stem).with_suffix(self.suffix)
        arrays = {"booster": np.frombuffer(self.booster.model_to_string().encode(), np.uint8),
                  "classes": self.classes, "wave": self.wave,
                  "config": np.frombuffer(json.dumps(asdict(self.config)).encode(), np.uint8)}
        if self.pca is not None:
            arrays.update({f"pca_{name}": getattr(self.pca, f"{name}_") for name in _PCA_ARRAYS})
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path.name

    @classmethod
    def load(cls, path: Path) -> "SpectrumLGBM":
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        config = LGBMConfig(**json.loads(arrays["config"].tobytes().decode()))
        self = cls(config, wave=arrays["wave"])
        self.booster = lgb.Booster(model_str=arrays["booster"].tobytes().decode())
        self.classes = arrays["classes"]
        self.pca = None
        if "pca_components" in arrays:  # a fitted sklearn PCA again, so transform runs the same code
            self.pca = PCA(config.n_pca)
            for name in _PCA_ARRAYS:
                setattr(self.pca, f"{name}_", arrays[f"pca_{name}"])
            self.pca.n_components_, self.pca.n_features_in_ = self.pca.components_.shape
        return self

    def __setstate__(self, state: dict) -> None:
        """A pickle of the earlier SpectrumLGBM (``cfg``, ``n_threads``, the sklearn estimator),
        loaded only with ``--allow-pickle``, works as a fitted classifier."""
        if "cfg" in state:
            state = {"config": state.pop("cfg"), "threads": state.pop("n_threads", 1), "val_proba_": None,
                     "history_": [], **state}
        self.__dict__.update(state)
        if "model" in state:
            self.booster, self.classes = self.model.booster_, np.asarray(self.model.classes_)


_PCA_ARRAYS = ("components", "mean", "explained_variance")
