"""Tianchi submission files: ``id,type`` with one row per test id, labels lower-case.

:func:`check_submission` lists everything wrong with a submission table against the test
index (header, empty, missing / extra / duplicate ids, unknown labels); :func:`write_submission`
refuses to write a file that would fail it and writes through a temporary file renamed into
place, so a half-written submission never exists. ``spectraforge validate-submission FILE
--index TEST_INDEX.csv`` runs the same check on a file.

The ``submit`` stage (:func:`run_submit`) turns the ensemble's test predictions into
``submissions/<name>.csv`` (name: prefix, source, a hash of the params, the UTC time), a
sidecar ``<name>.json`` (params, OOF scores, git revision, and on the mock survey the score
against the held-apart test labels), and copies ``latest.csv`` / ``latest.json``. Test ids
without a prediction (spectra quarantined by ``prepare``) get ``fill_missing`` and are listed
in the sidecar.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from spectraforge.labels import LABELS
from spectraforge.outputs import atomic_write_json, atomic_write_text, git_revision

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
    spaced = ids[ids != ids.str.strip()]
    if len(spaced):
        problems.append(f"{len(spaced)} id(s) with leading or trailing spaces: {_preview(map(repr, spaced))}")
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
    """The test ids, read as ``prepare`` reads the test index (io.tianchi.read_index: strict CSV,
    header names case-insensitive, ids stripped, ``NA`` an id like any other), each once, in order."""
    from spectraforge.io.tianchi import CSVReadError, index_ids

    try:
        return index_ids(index_csv)
    except CSVReadError as exc:
        raise SubmissionError(f"{exc.path}: cannot read the test index ({exc.reason})") from None


def read_submission(path: str | Path) -> pd.DataFrame:
    """A submission file as written, every value a string: strict CSV (io.tianchi.read_csv_rows),
    no stripping, no missing-value guessing; raises :class:`SubmissionError` naming the file."""
    from spectraforge.io.tianchi import CSVReadError, read_csv_rows

    try:
        header, columns = read_csv_rows(path, "submission")
    except CSVReadError as exc:
        hint = f" (expected the header '{','.join(HEADER)}' and one row per test id)" if "empty" in exc.reason else ""
        raise SubmissionError(f"{exc.path}: {exc.reason}{hint}") from None
    return pd.DataFrame({name: columns[name] for name in header}, columns=header, dtype=object)


def validate_file(path: str | Path, test_ids) -> int:
    """Raise :class:`SubmissionError` naming the file and every problem; else the row count."""
    path = Path(path)
    table = read_submission(path)
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
    return atomic_write_text(path, table.to_csv(index=False))


# ---------------------------------------------------------------------- the submit stage


@dataclass
class SubmitParams:
    """Stage ``submit``: which predictions become the submission, checked against which index."""

    predictions: str = "data/ensemble/test.parquet"  # id, p_*, and optionally type (the final label)
    oof_metrics: str = "reports/metrics/ensemble.json"  # the OOF scores copied into the sidecar
    test_index: str = "data/raw/mock/test_index.csv"  # the ids the leaderboard expects
    out_dir: str = "submissions"
    prefix: str = "spectraforge"
    fill_missing: str = "star"  # label for test ids without a prediction (quarantined spectra); counted
    truth: str | None = "data/truth/mock_test_labels.csv"  # held-apart test labels (mock only); null: none
    OUTPUTS = ("out_dir",)  # params.check_outputs: inside the project folder

    def validate(self, key: str = "submit") -> None:
        from spectraforge.params import require

        require(self.fill_missing in LABELS, f"{key}.fill_missing",
                f"'{self.fill_missing}' is not one of: {', '.join(LABELS)}")
        require(bool(self.prefix) and "/" not in self.prefix, f"{key}.prefix", "must be a plain file-name prefix")


def load_submit_params(path="params.yaml") -> SubmitParams:
    from spectraforge.params import load_section

    return load_section("submit", path, SubmitParams)


def submission_name(prefix: str, params_blob: dict, when: datetime) -> str:
    """<prefix>-<hash of the params>-<UTC time>: the params say what, the time which run."""
    digest = hashlib.sha1(json.dumps(params_blob, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{prefix}-{digest}-{when.strftime('%Y%m%dT%H%M%SZ')}"


def score_against_truth(ids, labels, truth_csv) -> dict:
    """Macro-F1 (with a bootstrap interval) and per-class F1 of submitted labels on known test labels."""
    from spectraforge.io.tianchi import CSVReadError, read_index
    from spectraforge.metrics import scores

    try:  # read as the test index is read, so the ids match it (an id NA stays NA)
        truth = read_index(truth_csv)
    except CSVReadError as exc:
        raise SubmissionError(f"{exc.path}: cannot read the test labels ({exc.reason})") from None
    if "type" not in truth.columns:
        raise SubmissionError(f"{truth_csv}: the test labels have no 'type' column")
    by_id = dict(zip(truth["id"], truth["type"].str.lower()))
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SubmissionError(f"{truth_csv}: {len(missing)} submitted id(s) have no truth label: {_preview(missing)}")
    y = np.array([LABELS.index(by_id[i]) for i in ids])
    p = np.array([LABELS.index(x) for x in labels])
    return scores(y, p, prefix="test_")


def run_submit(params: SubmitParams, all_params: dict, reports_dir="reports", now: datetime | None = None) -> dict:
    """Write submissions/<name>.csv, its sidecar <name>.json, and latest.csv / latest.json."""
    src = Path(params.predictions)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no test predictions to submit; run `dvc repro` first")
    pred = pd.read_parquet(src)
    labels = pred["type"] if "type" in pred.columns else pred[[f"p_{c}" for c in LABELS]].idxmax(axis=1).str[2:]
    by_id = dict(zip(pred["id"].astype(str), labels.astype(str)))
    test_ids = read_test_ids(params.test_index)
    unknown = set(by_id) - set(test_ids)
    if unknown:
        raise SubmissionError(f"{src}: {len(unknown)} predicted id(s) are not in {params.test_index}: {_preview(unknown)}")
    filled = [i for i in test_ids if i not in by_id]
    out_labels = [by_id.get(i, params.fill_missing) for i in test_ids]

    now = now or datetime.now(timezone.utc)
    blob = {"submit": asdict(params), "ensemble": all_params.get("ensemble", {})}
    name = submission_name(params.prefix, blob, now)
    out = Path(params.out_dir)
    csv = write_submission(test_ids, out_labels, out / f"{name}.csv", test_ids)
    validate_file(csv, test_ids)  # read back what was written
    write_submission(test_ids, out_labels, out / "latest.csv", test_ids)

    metrics = {"name": name, "n_rows": len(test_ids), "n_filled": len(filled),
               **{f"n_{c}": int(sum(x == c for x in out_labels)) for c in LABELS}}
    oof_json = Path(params.oof_metrics)
    oof = json.loads(oof_json.read_text()) if oof_json.exists() else {}
    if params.truth:
        if not Path(params.truth).exists():
            raise FileNotFoundError(f"{params.truth}: submit.truth names no file (set it to null for real data)")
        metrics.update(score_against_truth(test_ids, out_labels, params.truth))
    sidecar = {
        **metrics, "file": csv.name, "created_utc": now.isoformat(timespec="seconds"), **git_revision(),
        "params": blob, "filled_ids": filled,
        "oof": {k: v for k, v in oof.items() if k.startswith(("macro_f1", "f1_")) or k in ("method", "n_inputs")},
    }
    for path in (out / f"{name}.json", out / "latest.json"):
        atomic_write_json(path, sidecar)
    submit_metrics = {k: v for k, v in metrics.items() if k != "name"}
    atomic_write_json(Path(reports_dir) / "metrics" / "submit.json", submit_metrics)
    return sidecar
