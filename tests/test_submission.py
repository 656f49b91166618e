"""Submission files: every rejection the leaderboard would make, named; atomic, validated writes."""
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
