"""Every level-1 classifier kind by name: ``train.variants.<name>.kind`` and a models
manifest's ``kind`` are looked up here. Adding a classifier is one module with a
:class:`~spectraforge.models.base.Classifier` subclass plus one line below."""
from __future__ import annotations

import json
from pathlib import Path

from spectraforge.models.base import Classifier
from spectraforge.models.cnn_classifier import SpectrumCNN
from spectraforge.models.lgbm import SpectrumLGBM
from spectraforge.params import require
from spectraforge.safeload import PICKLE_SUFFIXES, ModelFileError, fold_path, unpickle

CLASSIFIERS: dict[str, type[Classifier]] = {
    "cnn": SpectrumCNN,
    "lgbm": SpectrumLGBM,
}


def classifier_class(kind: str, key: str = "kind") -> type[Classifier]:
    """The class registered for ``kind``; a :class:`~spectraforge.params.ParamsError` naming
    ``key`` for an unknown kind."""
    require(kind in CLASSIFIERS, key, f"'{kind}' is not one of: {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[kind]


def read_manifest(path) -> dict:
    """A variant's ``manifest.json``, checked: a registered kind and a non-empty list of fold
    files that are plain names inside the manifest's folder."""
    path = Path(path)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable manifest ({exc})") from None
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: a manifest is a JSON object, got {type(info).__name__}")
    if info.get("kind") not in CLASSIFIERS:
        raise ModelFileError(f"{path}: kind {info.get('kind')!r} is not one of: {', '.join(CLASSIFIERS)}")
    folds = info.get("folds")
    if not isinstance(folds, list) or not folds or not all(isinstance(f, str) for f in folds):
        raise ModelFileError(f"{path}: 'folds' must list the fold model files, got {folds!r}")
    for name in folds:
        fold_path(path.parent, name)
    return info


def load_fold(model_dir, name: str, kind: str, allow_pickle: bool = False) -> Classifier:
    """A fitted fold model of ``kind`` from ``model_dir / name``, read by the kind's own
    :meth:`~spectraforge.models.base.Classifier.load`. A pickle (``.joblib``, ``.pkl``) can
    run code when loaded: it is refused unless ``allow_pickle`` (then loaded with a warning)."""
    path = fold_path(model_dir, name)
    if not path.is_file():
        raise ModelFileError(f"{path}: fold model listed in the manifest is missing")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        obj = unpickle(path, allow_pickle)
        if not hasattr(obj, "predict_proba"):
            raise ModelFileError(f"{path}: the pickle holds a {type(obj).__name__}, not a classifier")
        return obj
    cls = CLASSIFIERS[kind]
    if path.suffix != cls.suffix:  # each kind reads only its own (code-free) format
        raise ModelFileError(f"{path}: a {kind} fold model is a {cls.suffix} file; refused")
    try:
        return cls.load(path)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise ModelFileError(f"{path}: cannot load the {kind} fold model ({type(exc).__name__}: {exc})") from exc
