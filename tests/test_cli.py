"""The `spectraforge` command: inspect, summary, gallery."""
import json

from spectraforge.cli import main


def test_inspect_real_files(real_dir, capsys):
    files = sorted((real_dir / "lamost").glob("*.fits*"))[:3]
    assert main(["inspect", *map(str, files)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and all("format=lamost-" in line and "label=star" in line for line in out)


def test_inspect_reports_bad_file(tmp_path, capsys):
    bad = tmp_path / "x.fits"
    bad.write_bytes(b"nonsense")
    assert main(["inspect", str(bad)]) == 1
    assert "x.fits" in capsys.readouterr().err


def test_summary_prints_score_table(tmp_path, capsys):
    (tmp_path / "prepare.json").write_text(json.dumps({"train_listed": 3}))
    (tmp_path / "cnn.json").write_text(json.dumps({"macro_f1": 0.5, "macro_f1_ci_low": 0.4, "macro_f1_ci_high": 0.6,
                                                   "f1_star": 0.9, "f1_galaxy": 0.1, "f1_qso": 0.2, "f1_unknown": 0.3}))
    assert main(["summary", "--metrics-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train_listed=3" in out and "Out-of-fold scores" in out and "0.5000" in out
    (tmp_path / "generate_glow.json").write_text(json.dumps({"n_synthetic": 12, "nll_bpd": 2.5, "nll_bpd_gauss": 3.0,
                                                             "fd": 40.0, "precision": 0.8, "recall": 0.7, "c2st": 0.55}))
    (tmp_path / "generate_gan.json").write_text(json.dumps({"n_synthetic": 9, "fd": 80.0, "precision": 0.7,
                                                            "recall": 0.2, "c2st": 0.9}))
    assert main(["summary", "--metrics-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("glow", "gan "))}
    assert rows["glow"][1:4] == ["12", "2.500", "3.000"] and rows["gan"][2] == "nan"
    assert "generate_glow:" not in out  # a table row, not a raw dump
    # the mock test column comes from the report's ablation table; the submission line ends it
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "ablation.csv").write_text("variant,macro_f1,ci_low,ci_high,test_macro_f1\ncnn,0.5,0.4,0.6,0.61\n")
    (tmp_path / "metrics").mkdir()
    for f in tmp_path.glob("*.json"):
        f.rename(tmp_path / "metrics" / f.name)
    (tmp_path / "metrics" / "submit.json").write_text(json.dumps(
        {"n_rows": 20, "n_filled": 1, "test_macro_f1": 0.7, "test_macro_f1_ci_low": 0.6, "test_macro_f1_ci_high": 0.8}))
    assert main(["summary", "--metrics-dir", str(tmp_path / "metrics")]) == 0
    out = capsys.readouterr().out
    cnn = next(line for line in out.splitlines() if line.startswith("cnn"))
    assert cnn.split()[-1] == "0.6100"
    assert out.strip().splitlines()[-1] == ("Submission: submissions/latest.csv, 20 rows (1 filled); "
                                            "mock test macro-F1 0.7000 [0.6000, 0.8000]")
    assert main(["summary", "--metrics-dir", str(tmp_path / "none")]) == 1
    # with the report's baseline: a paired-Δ column, "baseline" on its own row
    (tmp_path / "metrics" / "lgbm.json").write_text((tmp_path / "metrics" / "cnn.json").read_text().replace("0.5,", "0.45,", 1))
    (tmp_path / "plots" / "ablation.csv").write_text(
        "variant,macro_f1,ci_low,ci_high,test_macro_f1,baseline,delta_macro_f1,delta_low,delta_high\n"
        "cnn,0.5,0.4,0.6,0.61,cnn,,,\nlgbm,0.45,0.4,0.6,0.5,cnn,-0.05,-0.09,-0.012\n")
    assert main(["summary", "--metrics-dir", str(tmp_path / "metrics")]) == 0
    out = capsys.readouterr().out
    assert "Δ vs cnn [95% CI]" in out and "paired bootstrap" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("cnn", "lgbm"))}
    assert lines["cnn"].rstrip().endswith("baseline")
    assert lines["lgbm"].rstrip().endswith("-0.050 [-0.090, -0.012]")


def test_gallery_png(real_dir, tmp_path):
    out = tmp_path / "g.png"
    assert main(["gallery", "--real", str(real_dir), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 50_000
