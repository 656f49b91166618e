"""Reading files that a user may have got from anyone (a models folder, a combiner) without
letting them run code or reach outside their folder.

- :func:`fold_path`: a file named by a manifest must be a plain name inside the folder;
- :func:`unpickle`: a pickle runs arbitrary code when loaded, so it is refused unless the user
  opted in (``spectraforge predict --allow-pickle``), and then loaded with a loud warning.

The project itself writes no pickle: classifiers and the ensemble's combiner are saved as
Keras files, LightGBM text, JSON and ``.npz`` arrays (read with ``allow_pickle=False``).
"""
from __future__ import annotations

import warnings
from pathlib import Path, PurePath


class ModelFileError(ValueError):
    """A models folder holds a manifest or model file that cannot be used; names the file."""


def fold_path(model_dir, name: str):
    """``model_dir / name``, refused unless it is a file directly inside ``model_dir`` (no
    folders, no ``..``, no absolute path, no link leading out)."""
    model_dir = Path(model_dir)
    pure = PurePath(name)
    path = model_dir / name
    if pure.is_absolute() or len(pure.parts) != 1 or pure.name in ("", ".", ".."):
        raise ModelFileError(f"{model_dir / 'manifest.json'}: fold file {name!r} is not a file name inside "
                             f"{model_dir}; refused")
    if path.resolve().parent != model_dir.resolve():
        raise ModelFileError(f"{path}: leads outside {model_dir} (a link?); refused")
    return path


PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def unpickle(path, allow_pickle: bool):
    """Load a pickle only on the user's explicit opt-in, loudly: unpickling runs whatever code
    the file's author put in it."""
    if not allow_pickle:
        raise ModelFileError(
            f"{path}: a pickle file, and loading a pickle can run arbitrary code; refused. Retrain to get "
            "pickle-free files (`dvc repro`), or pass --allow-pickle if you trust whoever wrote it")
    warnings.warn(f"{path}: UNPICKLING (allowed by --allow-pickle): this runs any code the file holds; "
                  "only do it for files you trust",
                  UserWarning, stacklevel=2)
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot unpickle ({type(exc).__name__}: {exc})") from exc
