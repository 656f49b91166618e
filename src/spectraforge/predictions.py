"""The outputs every model stage writes alike (``train@*``, ``augment@*`` and ``ensemble``), so the
ensemble, the report and ``dvc metrics`` / ``dvc plots`` read them alike:

  <pred_dir>/oof.parquet              id, fold, label, p_star, p_galaxy, p_qso, p_unknown [, type]
  <pred_dir>/test.parquet             id, p_* [, type]
  reports/metrics/NAME.json           the given metrics, then confusion_<actual>_<predicted>, n_train, n_test
  reports/plots/NAME/confusion.csv    actual, predicted (dvc plots confusion template) [+ history.csv]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spectraforge.labels import LABELS, PROBA_COLUMNS
from spectraforge.metrics import confusion
from spectraforge.outputs import atomic_write_json, staged_dir


def write_predictions(pred_dir: Path, ids, fold, labels, oof: np.ndarray, test_ids, test: np.ndarray,
                      oof_type=None, test_type=None) -> None:
    """The OOF and test tables into the (staging) folder ``pred_dir``; ``labels``: the true
    class names of the OOF rows; ``*_type``: final label names, when the stage decides them."""
    oof_df = pd.DataFrame(oof, columns=PROBA_COLUMNS)
    oof_df.insert(0, "label", labels)
    oof_df.insert(0, "fold", fold)
    oof_df.insert(0, "id", ids)
    if oof_type is not None:
        oof_df["type"] = oof_type
    oof_df.to_parquet(Path(pred_dir) / "oof.parquet", index=False)
    test_df = pd.DataFrame(test, columns=PROBA_COLUMNS)
    test_df.insert(0, "id", test_ids)
    if test_type is not None:
        test_df["type"] = test_type
    test_df.to_parquet(Path(pred_dir) / "test.parquet", index=False)


def write_scores(reports_dir, name: str, y: np.ndarray, pred: np.ndarray, metrics: dict, n_test: int,
                 history: list | None = None, **tail) -> dict:
    """Add the OOF confusion counts, ``n_train``, ``n_test`` and ``tail`` to ``metrics``; write
    the confusion (and learning-curve ``history``) plots and the metrics JSON of ``name``."""
    cm = confusion(y, pred)
    metrics.update({f"confusion_{a}_{b}": int(cm[i, j]) for i, a in enumerate(LABELS) for j, b in enumerate(LABELS)})
    metrics.update({"n_train": int(len(y)), "n_test": int(n_test), **tail})
    reports = Path(reports_dir)
    with staged_dir(reports / "plots" / name) as plots:
        pd.DataFrame({"actual": [LABELS[i] for i in y], "predicted": [LABELS[i] for i in pred]}).to_csv(
            plots / "confusion.csv", index=False)
        if history:
            pd.DataFrame(history).to_csv(plots / "history.csv", index=False)
    atomic_write_json(reports / "metrics" / f"{name}.json", metrics)
    return metrics
