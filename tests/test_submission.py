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


# ------------------------------------------- one reading of the test index (issue 19, item 6)

INDEX_VARIANTS = {  # name: (index text, the ids every stage must read from it)
    "trailing spaces": ("id\na1 \n a2\na3  \na4\n", TEST_IDS),
    "upper-case header": ("ID\na1\na2\na3\na4\n", TEST_IDS),
    "padded header": (" Id \na1\na2\na3\na4\n", TEST_IDS),
    "NA and friends": ("id\nNA\nnan\nNULL\nNone\n", ["NA", "nan", "NULL", "None"]),
    "BOM": ("\ufeffid\na1\na2\na3\na4\n", TEST_IDS),
    "CRLF": ("id\r\na1\r\na2\r\na3\r\na4\r\n", TEST_IDS),
    "blank lines": ("id\na1\n\na2\na3\na4\n\n", TEST_IDS),
    "quoted": ('"id"\n"a1"\n"a2"\n"a3"\n"a4"\n', TEST_IDS),
    "duplicate and empty id": ("id\na1\na2\na2\n\"\"\na3\na4\n", TEST_IDS),
}


@pytest.mark.parametrize("name", INDEX_VARIANTS)
def test_prepare_submit_and_validate_read_the_test_index_alike(tmp_path, name, capsys):
    """prepare (scan_tianchi), submit (read_test_ids) and validate-submission agree on the ids
    of any test index prepare accepts: a submission written for them is valid."""
    from spectraforge.io import scan_tianchi, write_tianchi

    text, ids = INDEX_VARIANTS[name]
    index = tmp_path / "test_index.csv"
    index.write_bytes(text.encode("utf-8"))
    write_tianchi(np.ones((len(ids), 2600)), ids, None, tmp_path / "ignored.csv", tmp_path / "test.zip")
    entries, problems = scan_tianchi(index, tmp_path / "test.zip")
    from spectraforge.submission import read_test_ids

    assert [e.id for e in entries] == ids == read_test_ids(index)
    sub = write_submission(ids, ["star"] * len(ids), tmp_path / "sub.csv", read_test_ids(index))
    assert main(["validate-submission", str(sub), "--index", str(index)]) == 0, capsys.readouterr().err


def test_submit_stage_on_an_index_with_spaces_upper_case_header_and_na(tmp_path):
    """The pipeline's last stage accepts what its first accepted (the reported failure)."""
    from spectraforge.submission import run_submit

    params, ids, _, pred = _stage(tmp_path, n=6, truth=False)
    ids_written = ["NA"] + ids[1:]
    test = pd.read_parquet(params.predictions)
    test["id"] = ids_written
    test.to_parquet(params.predictions, index=False)
    (tmp_path / "test_index.csv").write_text("ID\n" + "".join(f"{i} \n" for i in ids_written))
    side = run_submit(params, {}, reports_dir=tmp_path / "rep")
    assert side["n_rows"] == 6 and side["n_filled"] == 0
    latest = tmp_path / "subs" / "latest.csv"
    assert latest.read_text().splitlines()[1] == f"NA,{pred[0]}"
    assert main(["validate-submission", str(latest), "--index", str(tmp_path / "test_index.csv")]) == 0


def test_submission_ids_with_spaces_are_named(tmp_path):
    path = _write(tmp_path, "id,type\na1 ,star\na2,star\na3,star\na4,star\n")
    with pytest.raises(SubmissionError, match=r"1 id\(s\) with leading or trailing spaces: 'a1 '"):
        validate_file(path, TEST_IDS)


# ------------------------------------------------------------ encodings (issue 19, item 9)

ENCODED = {
    "latin-1": lambda text: text.replace("a1", "é1").encode("latin-1"),
    "utf-16": lambda text: text.encode("utf-16"),
    "utf-16-le": lambda text: text.encode("utf-16-le"),
    "utf-32": lambda text: text.encode("utf-32"),
    "cp1252": lambda text: text.replace("a1", "a1€").encode("cp1252"),
    "binary": lambda text: bytes(range(256)) * 8,
    "gzip": lambda text: __import__("gzip").compress(text.encode()),
}


@pytest.mark.parametrize("which", ["submission", "index"])
@pytest.mark.parametrize("encoding", ENCODED)
def test_not_utf8_is_a_clear_reason_not_a_traceback(tmp_path, index, capsys, which, encoding):
    good = _write(tmp_path, GOOD)
    bad = tmp_path / f"bad-{which}.csv"
    bad.write_bytes(ENCODED[encoding](GOOD if which == "submission" else "id\na1\na2\na3\na4\n"))
    args = [str(bad), "--index", str(index)] if which == "submission" else [str(good), "--index", str(bad)]
    assert main(["validate-submission", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("invalid submission: ") and str(bad) in err and "not UTF-8 text" in err
    assert "Traceback" not in err and len(err) < 600


def test_utf8_with_bom_is_fine(tmp_path, index):
    path = tmp_path / "bom.csv"
    path.write_bytes(GOOD.encode("utf-8-sig"))
    assert validate_file(path, TEST_IDS) == 4


# ------------------------------------------------------ strict CSV rows (issue 19, item 10)

@pytest.mark.parametrize("text,line", [
    ("id,type\na1,star,extra\na2,galaxy\na3,qso\na4,unknown\n", 2),  # the reported case: pandas took an index
    ("id,type\na1,star\na2,galaxy,x,y\na3,qso\na4,unknown\n", 3),
    ("id,type\na1,star\na2,galaxy\na3,qso\na4,unknown,\n", 5),
    ("id,type\na1,star\na2\na3,qso\na4,unknown\n", 3),  # one field short
    ("id,type\na1,star\na2,galaxy\na3,qso\n\na4,unknown,star\n", 6),  # line numbers count blank lines
])
def test_a_row_with_the_wrong_field_count_is_named_by_line(tmp_path, index, capsys, text, line):
    path = _write(tmp_path, text)
    with pytest.raises(SubmissionError, match=rf"line {line} has \d field\(s\), the header 'id,type' has 2"):
        validate_file(path, TEST_IDS)
    assert main(["validate-submission", str(path), "--index", str(index)]) == 1
    assert "duplicate" not in capsys.readouterr().err


@pytest.mark.parametrize("text,line", [("id\na1,x\na2\n", 2), ("id\na1\na2\na3,b,c\n", 4), ("id,type\na1\n", 2)])
def test_test_index_rows_are_read_strictly_too(tmp_path, text, line):
    from spectraforge.io import SpectrumReadError, scan_tianchi, write_tianchi
    from spectraforge.submission import read_test_ids

    index = _write(tmp_path, text, "test_index.csv")
    write_tianchi(np.ones((2, 2600)), ["a1", "a2"], None, tmp_path / "x.csv", tmp_path / "t.zip")
    with pytest.raises(SpectrumReadError, match=rf"line {line} has"):
        scan_tianchi(index, tmp_path / "t.zip")
    with pytest.raises(SubmissionError, match=rf"line {line} has"):
        read_test_ids(index)


def test_quoted_commas_and_a_header_with_an_extra_column(tmp_path):
    path = _write(tmp_path, 'id,type\n"a,1",star\n')
    table = __import__("spectraforge.submission", fromlist=["read_submission"]).read_submission(path)
    assert table["id"].tolist() == ["a,1"]
    path = _write(tmp_path, "id,type,p\na1,star,1\n")
    with pytest.raises(SubmissionError, match="header must be exactly 'id,type', got 'id,type,p'"):
        validate_file(path, TEST_IDS)
