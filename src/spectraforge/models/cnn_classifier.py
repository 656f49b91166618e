"""Kind ``cnn``: the Conv1D residual network (:mod:`spectraforge.models.cnn`) trained per fold by
:func:`spectraforge.training.train_fold`, behind the :class:`~spectraforge.models.base.Classifier`
interface.

TensorFlow is imported only when a config is built or a model fitted or loaded, so that
importing the registry costs a LightGBM stage nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spectraforge.models.base import Classifier


@dataclass
class CNNSettings:
    """``train.variants.<name>.config`` of a ``cnn`` variant: the network and its training."""

    network: object  # models.cnn.CNNConfig
    fit: object  # training.TrainConfig


class SpectrumCNN(Classifier):
    kind = "cnn"
    Config = CNNSettings
    suffix = ".keras"  # Keras' own format; loaded in safe mode (no Lambda layers, no pickle)

    @classmethod
    def build_config(cls, data: dict, key: str) -> CNNSettings:
        from spectraforge.models.cnn import CNNConfig
        from spectraforge.params import ParamsError, build_dataclass, require
        from spectraforge.training import TrainConfig

        require(isinstance(data, dict), key, f"expected a mapping with network and fit, got {data!r}")
        unknown = sorted(set(data) - {"network", "fit"})
        require(not unknown, f"{key}.{unknown[0] if unknown else ''}", "unknown key; valid keys: network, fit")
        try:
            network = build_dataclass(CNNConfig, data.get("network", {}), f"{key}.network")
            network.validate(f"{key}.network")
            fit = build_dataclass(TrainConfig, data.get("fit", {}), f"{key}.fit")
            fit.validate(f"{key}.fit")
        except ParamsError:
            raise
        except ValueError as exc:  # the network's own checks name the key but not the params file
            raise ParamsError(f"params: {exc}") from exc
        return CNNSettings(network, fit)

    @classmethod
    def configure_process(cls, threads: int) -> None:
        from spectraforge.threads import configure_threads

        configure_threads(threads)

    @classmethod
    def runtime(cls) -> str | None:
        from spectraforge.tfquiet import runtime_line

        return runtime_line()

    def fit(self, X, y, *, val, extra=None, resume_dir=None, logger=None, label=None) -> "SpectrumCNN":
        """:func:`~spectraforge.training.train_fold` on (X, y) + ``extra``, selecting on ``val``;
        ``resume_dir`` keeps the fold's state after every epoch, so a killed fit continues after
        its last finished epoch; ``label`` prefixes a progress line per epoch. Every fit in the
        process with the same architecture reuses one compiled network (training.CNNTrainer)."""
        from spectraforge.training import train_fold

        X_val, y_val = val
        n_fit = len(y)
        X_all = np.concatenate([np.asarray(X, np.float32), np.asarray(X_val, np.float32)])
        y_all = np.concatenate([np.asarray(y, np.int64), np.asarray(y_val, np.int64)])
        self.result = train_fold(X_all, y_all, np.arange(n_fit), np.arange(n_fit, len(y_all)), self.config.network,
                                 self.config.fit, extra=extra, logger=logger, resume_dir=resume_dir, label=label)
        self.val_proba_, self.history_ = self.result.val_proba, self.result.history
        self.model = None  # a standalone copy is built on demand (save, or a loaded model)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """The network's float32 softmax (the K-fold engine averages it over folds as such):
        through the stage's compiled predict after a fit here, else the loaded model's."""
        from spectraforge.training import predict_proba

        if getattr(self, "model", None) is None and getattr(self, "result", None) is not None:
            return self.result.predict(np.asarray(X, np.float32))
        return predict_proba(self.model, X)

    def save(self, stem: Path) -> str:
        """``<stem>.keras`` (the model) and ``<stem>.net.npz`` (its layers and weights as plain
        arrays, for predict's TensorFlow-free forward pass: models.cnn_onnx)."""
        from spectraforge.models.cnn_onnx import export_path, save_export

        path = Path(stem).with_suffix(self.suffix)
        model = self.model if getattr(self, "model", None) is not None else self.result.model
        model.save(path)
        save_export(model, export_path(path), source=path)
        return path.name

    @classmethod
    def load(cls, path: Path) -> "SpectrumCNN":
        import keras

        import spectraforge.models.cnn  # noqa: F401  registers the custom layers

        self = cls(None, wave=np.zeros(0))
        self.model = keras.models.load_model(path, compile=False, safe_mode=True)
        return self
