"""Tianchi submission files: ``id,type`` with one row per test id, labels lower-case.

:func:`check_submission` lists everything wrong with a submission table against the test
index (header, empty, missing / extra / duplicate ids, unknown labels); :func:`write_submission`
refuses to write a file that would fail it and writes through a temporary file renamed into
place, so a half-written submission never exists. ``spectraforge validate-submission FILE
--index TEST_INDEX.csv`` runs the same check on a file.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from spectraforge.io.spectrum import LABELS

HEADER = ["id", "type"]


class SubmissionError(ValueError):
    """A submission that the leaderboard would reject; the message says why."""


def _preview(values, n: int = 3) -> str:
    values = sorted(map(str, values))
    more = f" (+{len(values) - n} more)" if len(values) > n else ""
    return ", ".join(values[:n]) + more


def check_submission(table: pd.DataFrame, test_ids) -> list[str]:
    """Every problem of ``table`` (read with ``dtype=str``) against the test ids; [] if none."""
    problems = []
    if list(table.columns) != HEADER:
        problems.append(f"header must be exactly '{','.join(HEADER)}', got '{','.join(map(str, table.columns))}'")
        return problems
    if table.empty:
        return ["no rows: a submission needs one row per test id"]
    ids = table["id"].astype(str)
    expected = set(map(str, test_ids))
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        problems.append(f"{len(dup)} duplicate id(s): {_preview(dup)}")
    missing = expected - set(ids)
    if missing:
        problems.append(f"{len(missing)} test id(s) missing: {_preview(missing)}")
    extra = set(ids) - expected
    if extra:
        problems.append(f"{len(extra)} id(s) not in the test index: {_preview(extra)}")
    labels = table["type"].fillna("").astype(str)
    bad = labels[~labels.isin(LABELS)]
    if len(bad):
        problems.append(f"{len(bad)} row(s) with a label not in {', '.join(LABELS)} (lower-case): "
                        f"{_preview(bad.unique())}")
    return problems


def read_test_ids(index_csv: str | Path) -> list[str]:
    path = Path(index_csv)
    try:
        index = pd.read_csv(path, dtype=str)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise SubmissionError(f"{path}: cannot read the test index ({exc})") from exc
    if "id" not in index.columns:
        raise SubmissionError(f"{path}: the test index has no 'id' column (columns: {', '.join(index.columns)})")
    return index["id"].tolist()


def validate_file(path: str | Path, test_ids) -> int:
    """Raise :class:`SubmissionError` naming the file and every problem; else the row count."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise SubmissionError(f"{path}: empty file (expected the header '{','.join(HEADER)}' and one row per test id)") from None
    except (OSError, pd.errors.ParserError) as exc:
        raise SubmissionError(f"{path}: cannot read as CSV ({exc})") from exc
    problems = check_submission(table, test_ids)
    if problems:
        raise SubmissionError(f"{path}: " + "; ".join(problems))
    return len(table)


def write_submission(ids, labels, path: str | Path, test_ids) -> Path:
    """Validate, then write ``path`` atomically (temporary file in the same folder, renamed)."""
    table = pd.DataFrame({"id": list(map(str, ids)), "type": list(map(str, labels))})
    problems = check_submission(table, test_ids)
    if problems:
        raise SubmissionError(f"{path}: not written: " + "; ".join(problems))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
