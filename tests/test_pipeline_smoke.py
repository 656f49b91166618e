"""A smoke `dvc repro` of the whole pipeline on a tiny params set, in a temporary git repo.

mock → prepare → folds → train@cnn, train@lgbm, generate@{oversample,noise,gauss,glow},
augment@{lgbm,cnn}+..., ensemble, submit, report; then `spectraforge predict` with the trained
fold models on the real spectra of ../shared/real (when present).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def run(cmd, cwd, check=True):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, repo_root):
    work = tmp_path_factory.mktemp("repo")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("src", "pipelines"):
        shutil.copytree(repo_root / name, work / name, ignore=ignore)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore", "data/README.md", "submissions/README.md"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root / name, work / name)
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["mock"].update(n_train=80, n_test=24, fits_fraction=0.25, repeat_fraction=0.5,
                          class_mix={"star": 0.4, "galaxy": 0.2, "qso": 0.2, "unknown": 0.2})
    params["prepare"].update(n_jobs=2, chunk_size=16)
    params["folds"]["k"] = 3
    cnn = params["train"]["variants"]["cnn"]["config"]
    cnn["network"]["channels"] = [4, 4, 8, 8]
    cnn["fit"].update(phase1={"epochs": 2, "steps": 3, "lr": 0.001, "loss": "crossentropy"},
                      phase2={"epochs": 1, "steps": 2, "lr": 0.0001, "loss": "macro_f1"}, batch_size=32)
    params["train"]["variants"]["lgbm"]["config"].update(n_estimators=20, n_pca=4)
    gen = params["generate"]
    gen.update(generators=["gauss", "glow"], target={"galaxy": 1.0, "qso": 1.0}, quality={"embedding": 4, "k": 3, "plot_fold": 0, "plot_examples": 2})
    gen["variants"]["gauss"]["n_components"] = 6
    gen["variants"]["glow"].update(n_components=6, flow={"recipe": "glow", "n_levels": 1, "steps": 2,
                                                         "hidden": [16], "epochs": 3, "batch_size": 32})
    gen["generators"] = ["oversample", "noise", "gauss", "glow"]
    params["augment"]["variants"] = {
        "lgbm+oversample": {"model": "lgbm", "source": "oversample"},
        "lgbm+noise": {"model": "lgbm", "source": "noise", "confidence": 0.3},
        "lgbm+glow": {"model": "lgbm", "source": "glow", "per_class": {"qso": 5}},
        "cnn+noise": {"model": "cnn", "source": "noise"},
    }
    params["ensemble"].update(inputs=["cnn", "lgbm", *params["augment"]["variants"]], resamples=3)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    run(["git", "add", "-A"], work)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], work)
    first = run(["dvc", "repro"], work)
    return work, first


def test_repro_writes_every_output(tiny_repo):
    work, _ = tiny_repo
    for rel in ("data/raw/mock/train.zip", "data/raw/mock/test_index.csv", "data/truth/mock_test_labels.csv",
                "data/prepared/train.npy", "data/prepared/test.npy", "data/prepared/meta.parquet",
                "data/prepared/quarantine.csv", "data/folds.csv"):
        assert (work / rel).exists(), rel
    fits = list((work / "data/raw/mock/fits").iterdir())
    assert any(f.name.endswith(".gz") for f in fits) and any(f.name.endswith(".fits") for f in fits)


def test_generators_write_synthetic_spectra_per_fold(tiny_repo):
    work, _ = tiny_repo
    folds = pd.read_csv(work / "data/folds.csv", dtype={"id": str})
    for name in ("gauss", "glow"):
        metrics = json.loads((work / f"reports/metrics/generate_{name}.json").read_text())
        n = 0
        for k in range(3):
            z = np.load(work / f"data/synthetic/{name}/fold{k}.npz")
            assert not set(z["fit_ids"]) & set(folds.loc[folds.fold == k, "id"])
            n += len(z["flux"])
        assert n == metrics["n_synthetic"] > 0


def test_counts_add_up(tiny_repo):
    work, _ = tiny_repo
    mock = json.loads((work / "reports/metrics/mock.json").read_text())
    prep = json.loads((work / "reports/metrics/prepare.json").read_text())
    assert prep["train_listed"] == mock["n_train_txt"] + mock["n_fits_files"]
    assert prep["test_listed"] == 24
    for split in ("train", "test"):
        assert prep[f"{split}_prepared"] + prep[f"{split}_quarantined"] == prep[f"{split}_listed"]
    train = np.load(work / "data/prepared/train.npy", mmap_mode="r")
    meta = pd.read_parquet(work / "data/prepared/meta.parquet")
    assert train.shape == (prep["train_prepared"], 2600) and train.dtype == np.float32
    assert np.isfinite(train).all()
    assert (meta[meta.split == "train"]["row"].sort_values().to_numpy() == np.arange(len(train))).all()
    # every quarantined spectrum has a reason
    q = pd.read_csv(work / "data/prepared/quarantine.csv")
    assert q["reason"].notna().all()


def test_test_truth_is_kept_apart(tiny_repo):
    work, _ = tiny_repo
    index = pd.read_csv(work / "data/raw/mock/test_index.csv", dtype=str)
    assert list(index.columns) == ["id"]
    truth = pd.read_csv(work / "data/truth/mock_test_labels.csv", dtype=str)
    assert set(truth["id"]) == set(index["id"])


def test_folds_group_revisits(tiny_repo):
    work, _ = tiny_repo
    folds = pd.read_csv(work / "data/folds.csv", dtype={"id": str})
    meta = pd.read_parquet(work / "data/prepared/meta.parquet")
    assert set(folds["id"]) == set(meta[meta.split == "train"]["id"])
    repeated = folds[folds.duplicated("object_id", keep=False)]
    assert len(repeated) > 0, "the tiny survey should contain revisited objects"
    assert (repeated.groupby("object_id")["fold"].nunique() == 1).all()


def test_second_repro_runs_nothing(tiny_repo):
    work, _ = tiny_repo
    second = run(["dvc", "repro"], work)
    assert "Running stage" not in second.stdout, second.stdout
    status = run(["dvc", "status"], work)
    assert "up to date" in status.stdout.lower(), status.stdout
    # git sees only the READMEs of data/ and submissions/: every stage output there is ignored
    changed = run(["git", "status", "--porcelain", "--untracked-files=all", "data", "submissions"], work)
    assert changed.stdout.strip() == "", changed.stdout
    assert run(["git", "ls-files", "data", "submissions"], work).stdout.split() == [
        "data/README.md", "submissions/README.md"]


def test_oof_covers_every_training_spectrum_once(tiny_repo):
    work, _ = tiny_repo
    meta = pd.read_parquet(work / "data/prepared/meta.parquet")
    train_ids = meta[meta.split == "train"]["id"].astype(str)
    folds = pd.read_csv(work / "data/folds.csv", dtype={"id": str})
    for name in ("cnn", "lgbm"):
        oof = pd.read_parquet(work / f"data/predictions/{name}/oof.parquet")
        assert sorted(oof["id"]) == sorted(train_ids) and oof["id"].is_unique
        # each OOF row was predicted by the model of its own fold (never trained on it)
        assert dict(zip(oof["id"], oof["fold"])) == dict(zip(folds["id"], folds["fold"]))
        p = oof[[c for c in oof if c.startswith("p_")]].to_numpy()
        assert np.allclose(p.sum(axis=1), 1, atol=1e-4)
        test = pd.read_parquet(work / f"data/predictions/{name}/test.parquet")
        assert len(test) == 24
        metrics = json.loads((work / f"reports/metrics/{name}.json").read_text())
        assert 0 <= metrics["macro_f1"] <= 1 and metrics["n_train"] == len(train_ids)
        manifest = json.loads((work / "models" / name / "manifest.json").read_text())
        assert len(manifest["folds"]) == 3 and all((work / "models" / name / f).is_file() for f in manifest["folds"])
        # a CNN fold is its model file and its layer export (predict's TensorFlow-free path)
        assert len(list((work / "models" / name).glob("fold*"))) == (6 if name == "cnn" else 3)


def test_dvc_metrics_and_plots_render(tiny_repo):
    work, _ = tiny_repo
    shown = run(["dvc", "metrics", "show"], work).stdout
    assert "macro_f1" in shown and "train_prepared" in shown and "nll_bpd" in shown
    run(["dvc", "plots", "show", "-o", "plots_html"], work)
    assert (work / "plots_html" / "index.html").exists()


def test_predict_on_real_spectra(tiny_repo, real_dir, tmp_path):
    work, _ = tiny_repo
    files = sorted((real_dir / "lamost").glob("*.fits*")) + sorted((real_dir / "sdss").glob("*.fits"))
    out = tmp_path / "pred.csv"
    res = run(["spectraforge", "predict", str(real_dir / "lamost"), str(real_dir / "sdss"),
               "--models", "models", "--out", str(out)], work)
    pred = pd.read_csv(out, dtype={"id": str})
    assert list(pred.columns) == ["id", "type", "p_star", "p_galaxy", "p_qso", "p_unknown", "file"]
    assert len(pred) == len(files) == 64, res.stderr
    assert sorted(Path(f).name for f in pred["file"]) == sorted(f.name for f in files)
    assert set(pred["type"]) <= {"star", "galaxy", "qso", "unknown"}
    assert np.allclose(pred[["p_star", "p_galaxy", "p_qso", "p_unknown"]].sum(axis=1), 1, atol=1e-4)


def test_predict_applies_the_ensemble_and_reproduces_the_submission(tiny_repo, tmp_path):
    from spectraforge.models.cnn_onnx import export_path

    work, _ = tiny_repo
    folds = json.loads((work / "models/cnn/manifest.json").read_text())["folds"]
    assert all(export_path(work / "models/cnn" / f).is_file() for f in folds)  # predict runs these (no TensorFlow)
    out = tmp_path / "test_pred.csv"
    run(["spectraforge", "predict", "data/raw/mock/test.zip", "--models", "models", "--out", str(out)], work)
    pred = pd.read_csv(out, dtype={"id": str}).set_index("id")
    ens = pd.read_parquet(work / "data/ensemble/test.parquet").set_index("id")
    sub = pd.read_csv(work / "submissions/latest.csv", dtype=str).set_index("id")
    cols = ["p_star", "p_galaxy", "p_qso", "p_unknown"]
    assert sorted(pred.index) == sorted(ens.index)
    np.testing.assert_allclose(pred.loc[ens.index, cols].to_numpy(), ens[cols].to_numpy(), atol=2e-4)
    assert (pred.loc[sub.index, "type"] == sub["type"]).mean() >= 0.95  # ties may break either way
    plain = tmp_path / "plain.csv"
    run(["spectraforge", "predict", "data/raw/mock/test.zip", "--models", "models", "--ensemble", "none",
         "--out", str(plain)], work)
    mean = pd.read_csv(plain, dtype={"id": str}).set_index("id")
    assert not np.allclose(mean.loc[ens.index, cols].to_numpy(), ens[cols].to_numpy(), atol=2e-4)


def test_predict_reports_unreadable_inputs_and_goes_on(tiny_repo, tmp_path):
    work, _ = tiny_repo
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  = garbage")
    good = next((work / "data/raw/mock/fits").iterdir())
    out = tmp_path / "p.csv"
    res = run(["spectraforge", "predict", str(bad), str(good), "--models", "models", "--out", str(out)], work)
    assert "broken.fits" in res.stderr
    assert len(pd.read_csv(out)) == 1
    errors = pd.read_csv(tmp_path / "p.errors.csv")
    assert errors["file"].tolist() == [str(bad)] and errors["reason"].str.len().min() > 0


AUGMENTED = ("lgbm+oversample", "lgbm+noise", "lgbm+glow", "cnn+noise")


def test_augmented_variants_use_their_folds_extras_and_count_them(tiny_repo):
    work, _ = tiny_repo
    folds = pd.read_csv(work / "data/folds.csv", dtype={"id": str})
    for name in AUGMENTED:
        source = name.split("+")[1]
        metrics = json.loads((work / f"reports/metrics/{name}.json").read_text())
        oof = pd.read_parquet(work / f"data/predictions/{name}/oof.parquet")
        assert sorted(oof["id"]) == sorted(folds["id"])  # OOF rows: real spectra, each once
        for label in ("galaxy", "qso"):
            drawn = sum(int((np.load(work / f"data/synthetic/{source}/fold{k}.npz")["label"] == label).sum())
                        for k in range(3))
            assert metrics[f"extra_drawn_{label}"] == drawn > 0, (name, label)
            used, dropped = metrics[f"extra_used_{label}"], (metrics[f"extra_capped_{label}"]
                                                            + metrics[f"extra_filtered_{label}"])
            assert used + dropped == drawn, (name, label)  # nothing dropped silently
    assert json.loads((work / "reports/metrics/lgbm+glow.json").read_text())["extra_used_qso"] <= 15


def test_submission_is_valid_named_and_scored(tiny_repo):
    work, _ = tiny_repo
    res = run(["spectraforge", "validate-submission", "submissions/latest.csv",
               "--index", "data/raw/mock/test_index.csv"], work)
    assert "valid" in res.stdout.lower()
    side = json.loads((work / "submissions/latest.json").read_text())
    assert (work / "submissions" / side["file"]).read_text() == (work / "submissions/latest.csv").read_text()
    ens = json.loads((work / "reports/metrics/ensemble.json").read_text())
    assert side["oof"]["macro_f1"] == ens["macro_f1"] and 0 <= side["test_macro_f1"] <= 1
    assert side["n_rows"] == 24 and side["params"]["ensemble"]["inputs"][:2] == ["cnn", "lgbm"]


def test_report_has_every_variant_and_the_ablation_plot(tiny_repo):
    work, _ = tiny_repo
    html = (work / "reports/report.html").read_text()
    table = pd.read_csv(work / "reports/plots/ablation.csv")
    variants = ["cnn", "lgbm", *AUGMENTED, "ensemble"]
    assert sorted(table["variant"]) == sorted(variants)
    for name in variants:
        assert name in html
    assert html.count("data:image/png;base64,") >= len(variants) and "http://" not in html
    side = json.loads((work / "submissions/latest.json").read_text())
    # the report's mock test score of the ensemble is the submission's score
    assert table.set_index("variant").loc["ensemble", "test_macro_f1"] == pytest.approx(side["test_macro_f1"])


def test_forced_rerun_writes_a_byte_identical_submission(tiny_repo):
    """Same seeds, same params: `dvc repro --force` reproduces the submission byte for byte."""
    work, _ = tiny_repo
    before = (work / "submissions/latest.csv").read_bytes()
    probs = pd.read_parquet(work / "data/ensemble/test.parquet")
    run(["dvc", "repro", "--force"], work)
    assert (work / "submissions/latest.csv").read_bytes() == before
    again = pd.read_parquet(work / "data/ensemble/test.parquet")
    cols = [c for c in probs if c.startswith("p_")]
    np.testing.assert_array_equal(again[cols].to_numpy(), probs[cols].to_numpy())
    assert len(list((work / "submissions").glob("spectraforge-*.csv"))) == 2  # both runs kept


def _stale(work) -> set:
    out = run(["dvc", "status"], work).stdout
    return {line[:-1] for line in out.splitlines() if line.endswith(":") and not line[0].isspace()}


def test_ensemble_param_change_makes_exactly_ensemble_submit_report_stale(tiny_repo):
    work, _ = tiny_repo
    path = work / "params.yaml"
    original = path.read_text()
    try:
        params = yaml.safe_load(original)
        params["ensemble"]["C"] = 0.5
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        assert _stale(work) == {"ensemble", "submit", "report"}
        params["ensemble"]["method"] = "average"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        assert _stale(work) == {"ensemble", "submit", "report"}
    finally:
        path.write_text(original)
    assert _stale(work) == set()


def test_sigkill_midway_then_repro_resumes_to_the_uninterrupted_result(tiny_repo):
    work, _ = tiny_repo
    before = pd.read_parquet(work / "data/predictions/cnn/oof.parquet")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen(["dvc", "repro", "--force", "--single-item", "train@cnn"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    # killed inside fold 1, after its first epoch: fold 0 is restored, fold 1 resumes mid-fold
    while not list(work.glob(".sf-checkpoints/train-cnn/*/fold1.epochs/state.npz")):
        assert proc.poll() is None, "train@cnn finished before it could be killed"
        assert time.monotonic() < deadline, "no epoch of fold 1 finished in 10 minutes"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage's python, mid-run
    proc.wait()
    assert not (work / "models/cnn").exists()  # nothing half-written where DVC would look
    assert not (work / "data/predictions/cnn").exists()
    res = run(["dvc", "repro", "--single-item", "train@cnn"], work)
    assert "fold 0 restored" in res.stdout, res.stdout
    assert "fold 1 resumes after its last finished epoch" in res.stdout, res.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(work / "data/predictions/cnn/oof.parquet"), before)
    assert not list(work.glob(".sf-checkpoints/train-cnn/*"))  # cleared once the stage completed


def test_param_change_reruns_downstream_only(tiny_repo):
    work, _ = tiny_repo
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train"]["variants"]["lgbm"]["config"]["num_leaves"] = 7
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "status"], work).stdout
    assert "train@lgbm:" in out and "train@cnn:" not in out and "folds:" not in out, out
    params["folds"]["seed"] = 99
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "status"], work).stdout
    assert "folds:" in out and "train@cnn:" not in out  # training reruns once folds.csv itself changes
    assert "prepare:" not in out and "mock:" not in out, out
