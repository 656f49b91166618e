"""Submission files: every rejection the leaderboard would make, named; atomic, validated writes."""
import json

import numpy as np
import pandas as pd
import pytest

from spectraforge.cli import main
from spectraforge.submission import SubmissionError, check_submission, validate_file, write_submission

TEST_IDS = ["a1", "a2", "a3", "a4"]


@pytest.fixture
def index(tmp_path):
    path = tmp_path / "test_index.csv"
    pd.DataFrame({"id": TEST_IDS}).to_csv(path, index=False)
    return path


def _write(tmp_path, text, name="sub.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "id,type\na1,star\na2,galaxy\na3,qso\na4,unknown\n"


@pytest.mark.parametrize("text,reason", [
    ("", "empty file"),
    ("id,type\n", "no rows"),
    ("id,label\na1,star\na2,star\na3,star\na4,star\n", "header must be exactly 'id,type', got 'id,label'"),
    ("type,id\nstar,a1\n", "header must be exactly"),
    ("id,type,p\na1,star,1\n", "header must be exactly"),
    ("id,type\na1,star\na2,star\na3,star\n", "1 test id(s) missing: a4"),
    ("id,type\na1,star\na2,star\na3,star\na4,star\nzz,star\n", "1 id(s) not in the test index: zz"),
    ("id,type\na1,star\na1,star\na2,star\na3,star\na4,star\n", "1 duplicate id(s): a1"),
    ("id,type\na1,STAR\na2,star\na3,quasar\na4,\n", "3 row(s) with a label not in star, galaxy, qso, unknown"),
])
def test_validator_rejects_with_the_reason(tmp_path, index, text, reason):
    path = _write(tmp_path, text)
    with pytest.raises(SubmissionError) as err:
        validate_file(path, TEST_IDS)
    assert str(path) in str(err.value) and reason in str(err.value)
    assert main(["validate-submission", str(path), "--index", str(index)]) == 1


def test_validator_reports_every_problem_at_once():
    table = pd.DataFrame({"id": ["a1", "a1", "zz"], "type": ["star", "Galaxy", "qso"]})
    problems = check_submission(table, TEST_IDS)
    assert len(problems) == 4  # duplicate, missing, extra, label


def test_valid_file_passes(tmp_path, index, capsys):
    path = _write(tmp_path, GOOD)
    assert validate_file(path, TEST_IDS) == 4
    assert main(["validate-submission", str(path), "--index", str(index)]) == 0
    assert "valid (4 rows)" in capsys.readouterr().out


def test_index_without_id_column_is_named(tmp_path):
    bad_index = _write(tmp_path, "obsid\n1\n", "idx.csv")
    assert main(["validate-submission", str(_write(tmp_path, GOOD)), "--index", str(bad_index)]) == 1


def test_write_submission_validates_and_replaces_atomically(tmp_path):
    out = tmp_path / "subs" / "latest.csv"
    write_submission(TEST_IDS, ["star", "qso", "star", "galaxy"], out, TEST_IDS)
    assert out.read_text() == "id,type\na1,star\na2,qso\na3,star\na4,galaxy\n"
    assert validate_file(out, TEST_IDS) == 4
    with pytest.raises(SubmissionError, match="not written.*missing: a4"):
        write_submission(TEST_IDS[:3], ["star"] * 3, out, TEST_IDS)
    assert validate_file(out, TEST_IDS) == 4  # the earlier file is untouched
    assert [p.name for p in out.parent.iterdir()] == ["latest.csv"]  # no temporary left behind


# ---------------------------------------------------------------------- the submit stage


def _stage(tmp_path, n=40, drop=0, truth=True):
    from spectraforge.io.spectrum import LABELS
    from spectraforge.submission import SubmitParams

    rng = np.random.default_rng(0)
    ids = [f"{1000 + i}" for i in range(n)]
    pd.DataFrame({"id": ids}).to_csv(tmp_path / "test_index.csv", index=False)
    true = rng.choice(LABELS, n, p=[0.7, 0.1, 0.1, 0.1])
    pd.DataFrame({"id": ids, "type": true}).to_csv(tmp_path / "truth.csv", index=False)
    pred = np.where(rng.random(n) < 0.8, true, rng.choice(LABELS, n))
    P = np.eye(4)[[LABELS.index(c) for c in pred]] * 0.6 + 0.1
    test = pd.DataFrame(P, columns=[f"p_{c}" for c in LABELS])
    test.insert(0, "id", ids)
    test["type"] = pred
    test.iloc[drop:].to_parquet(tmp_path / "test.parquet", index=False)
    (tmp_path / "ens.json").write_text('{"macro_f1": 0.75, "f1_qso": 0.5, "method": "stack", "weight_x": 1}')
    params = SubmitParams(predictions=str(tmp_path / "test.parquet"), oof_metrics=str(tmp_path / "ens.json"),
                          test_index=str(tmp_path / "test_index.csv"), out_dir=str(tmp_path / "subs"),
                          truth=str(tmp_path / "truth.csv") if truth else None)
    return params, ids, true, pred


def test_submit_writes_a_valid_named_file_latest_and_sidecar(tmp_path):
    from datetime import datetime, timezone

    from sklearn.metrics import f1_score

    from spectraforge.submission import run_submit

    params, ids, true, pred = _stage(tmp_path)
    when = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
    side = run_submit(params, {"ensemble": {"method": "stack"}}, reports_dir=tmp_path / "rep", now=when)
    subs = tmp_path / "subs"
    assert side["file"].startswith("spectraforge-") and side["file"].endswith("-20261125T120000Z.csv")
    named = (subs / side["file"]).read_text()
    assert named == (subs / "latest.csv").read_text()
    assert named.splitlines()[0] == "id,type" and len(named.splitlines()) == 41
    assert validate_file(subs / "latest.csv", ids) == 40
    table = pd.read_csv(subs / "latest.csv", dtype=str)
    assert list(table["type"]) == list(pred)
    saved = json.loads((subs / "latest.json").read_text())
    assert saved == json.loads((subs / side["file"].replace(".csv", ".json")).read_text())
    assert saved["oof"] == {"macro_f1": 0.75, "f1_qso": 0.5, "method": "stack"}
    assert saved["params"]["ensemble"] == {"method": "stack"} and "git_revision" in saved
    assert saved["test_macro_f1"] == pytest.approx(f1_score(true, pred, average="macro"))
    assert saved["test_macro_f1_ci_low"] <= saved["test_macro_f1"] <= saved["test_macro_f1_ci_high"]
    metrics = json.loads((tmp_path / "rep/metrics/submit.json").read_text())
    assert metrics["n_rows"] == 40 and metrics["n_filled"] == 0
    # other params, other name; same params, later run, another name too
    later = run_submit(params, {"ensemble": {"method": "average"}}, reports_dir=tmp_path / "rep", now=when)
    assert later["file"].split("-")[1] != side["file"].split("-")[1]


def test_submit_fills_quarantined_ids_and_lists_them(tmp_path):
    from spectraforge.submission import run_submit

    params, ids, _, _ = _stage(tmp_path, drop=3, truth=False)
    params.fill_missing = "unknown"
    side = run_submit(params, {}, reports_dir=tmp_path / "rep")
    assert side["n_filled"] == 3 and side["filled_ids"] == ids[:3]
    table = pd.read_csv(tmp_path / "subs/latest.csv", dtype=str)
    assert list(table["type"][:3]) == ["unknown"] * 3 and "test_macro_f1" not in side


def test_submit_refuses_predictions_for_ids_outside_the_index(tmp_path):
    from spectraforge.submission import run_submit

    params, ids, _, _ = _stage(tmp_path)
    pd.DataFrame({"id": ids[:-1]}).to_csv(tmp_path / "test_index.csv", index=False)
    with pytest.raises(SubmissionError, match=rf"1 predicted id\(s\) are not in .*test_index\.csv: {ids[-1]}"):
        run_submit(params, {}, reports_dir=tmp_path / "rep")
    params.truth = str(tmp_path / "nope.csv")
    pd.DataFrame({"id": ids}).to_csv(tmp_path / "test_index.csv", index=False)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        run_submit(params, {}, reports_dir=tmp_path / "rep")
