"""Classifiers behind one interface (``base.Classifier``) and registry (``registry.CLASSIFIERS``):
the Conv1D residual network (``cnn``, trained by ``cnn_classifier``) and its losses
(``losses``), LightGBM on features (``lgbm``).

Names are resolved lazily so that importing a sibling module (e.g. a tabular baseline)
does not pull in TensorFlow.
"""
import importlib

_EXPORTS = {
    "CNNConfig": "cnn", "build_cnn": "cnn", "embedding_model": "cnn",
    "macro_f1_loss": "losses", "get_loss": "losses", "LOSSES": "losses",
    "Classifier": "base", "CLASSIFIERS": "registry", "classifier_class": "registry",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
