"""The run report: a self-contained HTML page and ablation.csv built from a tiny fake run."""
import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, f1_score

from spectraforge.io.spectrum import LABELS
from spectraforge.report import build_report, paired_delta, predicted_codes

N_OOF, N_TEST = 80, 40
PROBA = [f"p_{c}" for c in LABELS]
CLASS_P = [0.4, 0.25, 0.2, 0.15]


def _proba(rng, n):
    p = rng.random((n, len(LABELS)))
    return p / p.sum(axis=1, keepdims=True)


def _noisy(rng, truth, keep):
    """Labels equal to ``truth`` with probability ``keep``, else a random class."""
    random = rng.choice(LABELS, size=truth.size)
    return np.where(rng.random(truth.size) < keep, truth, random)


def _proba_for(rng, labels):
    """Probabilities whose argmax is ``labels``."""
    p = _proba(rng, labels.size) * 0.5
    p[np.arange(labels.size), [LABELS.index(x) for x in labels]] = 1.0
    return p


def _metrics_json(y, pred, ci_halfwidth=0.05):
    macro = f1_score(y, pred, average="macro")
    per = f1_score(y, pred, labels=list(LABELS), average=None, zero_division=0)
    cm = confusion_matrix(y, pred, labels=list(LABELS))
    out = {"macro_f1": macro, "macro_f1_ci_low": macro - ci_halfwidth, "macro_f1_ci_high": macro + ci_halfwidth,
           **{f"f1_{c}": float(f) for c, f in zip(LABELS, per)},
           **{f"confusion_{a}_{b}": int(cm[i, j]) for i, a in enumerate(LABELS) for j, b in enumerate(LABELS)},
           "fold0_macro_f1": macro, "seconds": 1.5, "some_unknown_key": "ignored"}
    return out


def _png(path, colour):
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1, 2], [1, 0, 1], color=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=40)


@pytest.fixture
def run(tmp_path):
    """reports/, predictions/ and truth.csv of a run with lgbm, cnn and ensemble (``type`` columns)."""
    rng = np.random.default_rng(1)
    reports, preds = tmp_path / "reports", tmp_path / "predictions"
    (reports / "metrics").mkdir(parents=True)
    oof_ids = [f"{i:04d}" for i in range(N_OOF)]
    test_ids = [f"{i:03d}" for i in range(N_TEST)]  # leading zeros: ids must be read as strings
    y_oof = rng.choice(LABELS, size=N_OOF, p=CLASS_P)
    y_test = rng.choice(LABELS, size=N_TEST, p=CLASS_P)
    pd.DataFrame({"id": test_ids, "type": y_test}).to_csv(tmp_path / "truth.csv", index=False)

    data = {}
    for seed, (name, keep) in enumerate([("lgbm", 0.7), ("cnn", 0.45), ("ensemble", 0.9)]):
        oof_pred, test_pred = _noisy(rng, y_oof, keep), _noisy(rng, y_test, keep)
        oof = pd.DataFrame({"id": oof_ids, "fold": np.arange(N_OOF) % 2, "label": y_oof})
        if name == "ensemble":  # weighted decisions: the argmax of the probabilities disagrees
            oof[PROBA] = _proba(rng, N_OOF)
            test = pd.DataFrame(_proba(rng, N_TEST), columns=PROBA).assign(type=test_pred)
            oof["type"] = oof_pred
        else:
            oof[PROBA] = _proba_for(rng, oof_pred)
            test = pd.DataFrame(_proba_for(rng, test_pred), columns=PROBA)
        test.insert(0, "id", test_ids)
        (preds / name).mkdir(parents=True)
        # rows in a different order in every file: the report must align on id
        oof.sample(frac=1.0, random_state=seed).to_parquet(preds / name / "oof.parquet", index=False)
        test.sample(frac=1.0, random_state=seed + 10).to_parquet(preds / name / "test.parquet", index=False)
        (reports / "metrics" / f"{name}.json").write_text(json.dumps(_metrics_json(y_oof, oof_pred)))
        data[name] = {"oof_pred": oof_pred, "test_pred": test_pred, "test": test}

    hist = reports / "plots" / "cnn" / "history.csv"
    hist.parent.mkdir(parents=True)
    pd.DataFrame({"fold": [0, 0, 0, 1, 1, 1], "phase": [1, 1, 2, 1, 1, 2], "epoch": [1, 2, 1, 1, 2, 1],
                  "loss": [2.0, 1.0, 0.8, 2.1, 1.1, 0.9], "val_macro_f1": [0.3, 0.4, 0.5, 0.3, 0.45, 0.5]}
                 ).to_csv(hist, index=False)
    for fold in (0, 1):
        tsv = reports / "live" / "lgbm" / f"fold{fold}" / "plots" / "metrics" / "val_multi_logloss.tsv"
        tsv.parent.mkdir(parents=True)
        pd.DataFrame({"step": range(5), "val_multi_logloss": np.linspace(1.2, 0.4, 5) + fold / 10}
                     ).to_csv(tsv, sep="\t", index=False)

    (reports / "metrics" / "generate_glow.json").write_text(json.dumps(
        {"kind": "flow<nf>", "fd": 12.3456, "precision": 0.8123, "recall": 0.7, "c2st": 0.52,
         "n_synthetic": 321, "rejected_fraction": 0.04, "fold0_fd": 1.0}))
    for cls, colour in [("galaxy", "C0"), ("qso", "C1")]:
        _png(reports / "plots" / "generate_glow" / f"{cls}.png", colour)

    return {"tmp": tmp_path, "reports": reports, "preds": preds, "truth": tmp_path / "truth.csv",
            "y_oof": y_oof, "y_test": y_test, "data": data}


def _build(run, **kw):
    args = {"reports_dir": run["reports"], "predictions_dir": run["preds"], "truth_csv": str(run["truth"]),
            "baseline": "lgbm", "out": run["tmp"] / "out" / "report.html", "n_boot": 300, "seed": 0}
    args.update(kw)
    variants = args.pop("variants", ["lgbm", "cnn", "ensemble"])
    return build_report(variants, args.pop("generators", ["glow"]), **args), args["out"]


def test_html_is_self_contained_and_shows_every_variant(run):
    _, out = _build(run)
    text = out.read_text()
    assert not (out.parent / "report.html.tmp").exists()
    assert "http://" not in text and "https://" not in text and "<script" not in text.lower()
    for name in ("lgbm", "cnn", "ensemble", "glow"):
        assert name in text
    for name in ("lgbm", "cnn", "ensemble"):
        metrics = json.loads((run["reports"] / "metrics" / f"{name}.json").read_text())
        assert f"{metrics['macro_f1']:.3f}" in text
        assert f"{metrics['f1_galaxy']:.3f}" in text
    # images: 3 confusion matrices, 2 learning-curve figures (cnn history, lgbm dvclive), 2 generator PNGs
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 7
    assert "ensemble: no learning curves recorded." in text
    for cls in ("galaxy", "qso"):
        raw = (run["reports"] / "plots" / "generate_glow" / f"{cls}.png").read_bytes()
        assert base64.b64encode(raw).decode() in text
    # generator table: escaped text, 3 decimals, integers as such, missing keys blank
    assert "flow&lt;nf&gt;" in text and "flow<nf>" not in text
    assert "12.346" in text and ">321<" in text


def test_best_oof_row_is_highlighted(run):
    summary, out = _build(run)
    macro = {n: json.loads((run["reports"] / "metrics" / f"{n}.json").read_text())["macro_f1"]
             for n in ("lgbm", "cnn", "ensemble")}
    best = max(macro, key=macro.get)
    assert summary["best_variant"] == best and summary["best_macro_f1"] == pytest.approx(macro[best])
    assert re.findall(r'<tr class="best"><td>([^<]+)</td>', out.read_text()) == [best, best]  # both tables


def test_ablation_csv_matches_sklearn_on_the_truth(run):
    summary, _ = _build(run)
    table = pd.read_csv(run["reports"] / "plots" / "ablation.csv")
    assert list(table.columns) == ["variant", "macro_f1", "ci_low", "ci_high", "test_macro_f1",
                                   "baseline", "delta_macro_f1", "delta_low", "delta_high"]
    assert set(table["baseline"]) == {"lgbm"} and table.set_index("variant")["delta_macro_f1"].isna()["lgbm"]
    for row in table[table["variant"] != "lgbm"].itertuples():
        assert row.delta_macro_f1 == pytest.approx(summary[f"delta_macro_f1_{row.variant}"])
        assert row.delta_low == pytest.approx(summary[f"delta_macro_f1_low_{row.variant}"])
    assert list(table["variant"]) == ["lgbm", "cnn", "ensemble"]
    for row in table.itertuples():
        metrics = json.loads((run["reports"] / "metrics" / f"{row.variant}.json").read_text())
        assert (row.macro_f1, row.ci_low, row.ci_high) == pytest.approx(
            (metrics["macro_f1"], metrics["macro_f1_ci_low"], metrics["macro_f1_ci_high"]))
        expected = f1_score(run["y_test"], run["data"][row.variant]["test_pred"], average="macro")
        assert row.test_macro_f1 == pytest.approx(expected)
        assert summary[f"test_macro_f1_{row.variant}"] == pytest.approx(expected)


def test_type_column_overrides_the_argmax(run):
    test = run["data"]["ensemble"]["test"]
    argmax = np.array(LABELS)[test[PROBA].to_numpy().argmax(axis=1)]
    assert (argmax != test["type"]).any()  # the fixture really disagrees
    assert np.array_equal(predicted_codes(test), [LABELS.index(x) for x in test["type"]])
    assert np.array_equal(predicted_codes(test.drop(columns="type")), [LABELS.index(x) for x in argmax])
    summary, _ = _build(run)
    assert summary["test_macro_f1_ensemble"] != pytest.approx(f1_score(run["y_test"], argmax, average="macro"))


def test_delta_vs_baseline_is_paired_and_its_interval_holds_the_point(run):
    summary, out = _build(run)
    base = f1_score(run["y_oof"], run["data"]["lgbm"]["oof_pred"], average="macro")
    for name in ("cnn", "ensemble"):
        delta = f1_score(run["y_oof"], run["data"][name]["oof_pred"], average="macro") - base
        assert summary[f"delta_macro_f1_{name}"] == pytest.approx(delta)
        assert summary[f"delta_macro_f1_low_{name}"] < delta < summary[f"delta_macro_f1_high_{name}"]
        f1_gal = [f1_score(run["y_oof"], run["data"][v]["oof_pred"], labels=["galaxy"], average=None)[0]
                  for v in (name, "lgbm")]
        assert summary[f"delta_f1_galaxy_{name}"] == pytest.approx(f1_gal[0] - f1_gal[1])
        assert f"{delta:+.3f}" in out.read_text()
    assert "delta_macro_f1_lgbm" not in summary and ">baseline<" in out.read_text()


def test_baseline_best_is_the_best_single_variant_not_the_ensemble(run):
    """baseline "best": the best OOF macro-F1 among the variants read from predictions_dir; the
    ensemble (its own folder) scores highest in the fixture but is what the Δ is about."""
    macro = {n: json.loads((run["reports"] / "metrics" / f"{n}.json").read_text())["macro_f1"]
             for n in ("lgbm", "cnn", "ensemble")}
    assert max(macro, key=macro.get) == "ensemble" and macro["lgbm"] > macro["cnn"]
    summary, out = _build(run, baseline="best", prediction_dirs={"ensemble": run["preds"] / "ensemble"})
    assert summary["baseline"] == "lgbm"
    base = f1_score(run["y_oof"], run["data"]["lgbm"]["oof_pred"], average="macro")
    delta = f1_score(run["y_oof"], run["data"]["ensemble"]["oof_pred"], average="macro") - base
    assert summary["delta_macro_f1_ensemble"] == pytest.approx(delta)
    assert "vs lgbm" in out.read_text()
    table = pd.read_csv(run["reports"] / "plots" / "ablation.csv")
    assert set(table["baseline"]) == {"lgbm"}
    with pytest.raises(ValueError, match="not the ensemble"):
        _build(run, variants=["ensemble"], baseline="best", prediction_dirs={"ensemble": run["preds"] / "ensemble"})


def test_paired_delta_equals_a_loop_over_the_same_resamples():
    rng = np.random.default_rng(3)
    m, n_boot = 50, 200
    y = rng.choice(4, size=m, p=CLASS_P)
    pred = np.where(rng.random(m) < 0.8, y, rng.integers(0, 4, m))
    base = np.where(rng.random(m) < 0.5, y, rng.integers(0, 4, m))
    got = paired_delta(y, pred, base, n_boot=n_boot, seed=7)
    idx = np.random.default_rng(7).integers(0, m, size=(n_boot, m))  # one chunk: the same draws
    boot = [f1_score(y[i], pred[i], average="macro") - f1_score(y[i], base[i], average="macro") for i in idx]
    assert (got["macro_f1_low"], got["macro_f1_high"]) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro") - f1_score(y, base, average="macro"))
    minority = [LABELS.index(c) for c in ("galaxy", "qso")]
    boot_min = [np.mean(f1_score(y[i], pred[i], labels=minority, average=None))
                - np.mean(f1_score(y[i], base[i], labels=minority, average=None)) for i in idx]
    assert (got["minority_f1_low"], got["minority_f1_high"]) == pytest.approx(
        tuple(np.quantile(boot_min, [0.025, 0.975])))
    same = paired_delta(y, pred, pred, n_boot=n_boot, seed=7)  # pairing: identical predictions never differ
    assert same["macro_f1_low"] == same["macro_f1_high"] == 0.0 == same["minority_f1_low"]


def test_without_truth_the_test_column_is_empty(run):
    summary, out = _build(run, truth_csv=None, baseline=None)
    table = pd.read_csv(run["reports"] / "plots" / "ablation.csv")
    assert table["test_macro_f1"].isna().all()
    assert not any(k.startswith(("test_macro_f1", "delta_")) for k in summary)
    assert "mock-test" not in out.read_text() and "Δ" not in out.read_text()


def test_missing_inputs_raise_naming_the_file(run):
    with pytest.raises(FileNotFoundError, match=re.escape(str(run["reports"] / "metrics" / "ghost.json"))):
        _build(run, variants=["lgbm", "ghost"])
    missing = run["tmp"] / "no_truth.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        _build(run, truth_csv=str(missing))
    with pytest.raises(ValueError, match="baseline 'xgb'"):
        _build(run, baseline="xgb")
    assert not (run["tmp"] / "out" / "report.html").exists()


def test_missing_generator_plots_are_noted(run):
    for png in (run["reports"] / "plots" / "generate_glow").glob("*.png"):
        png.unlink()
    _, out = _build(run)
    assert "glow: no real-vs-synthetic plots found." in out.read_text()


def test_learning_curves_name_their_x_axis_epochs_for_history_and_steps_for_dvclive(tmp_path):
    from spectraforge.report import learning_curves

    (tmp_path / "plots" / "cnn").mkdir(parents=True)
    pd.DataFrame({"fold": [0, 0, 0, 1, 1], "phase": [1, 1, 2, 1, 2], "epoch": [0, 1, 0, 0, 0],
                  "val_macro_f1": [0.5, 0.6, 0.7, 0.4, 0.5]}).to_csv(tmp_path / "plots" / "cnn" / "history.csv",
                                                                       index=False)
    tsv = tmp_path / "live" / "cnn" / "fold0" / "plots" / "metrics" / "val_logloss.tsv"
    tsv.parent.mkdir(parents=True)
    pd.DataFrame({"step": [0, 1, 2], "val_logloss": [1.0, 0.8, 0.7]}).to_csv(tsv, sep="\t", index=False)
    curves = learning_curves(tmp_path, "cnn")
    f1 = curves["val_macro_f1"]["fold0"]
    assert f1.index.name == "epoch (both phases)" and list(f1.index) == [0, 1, 2]  # phase 2 counts on
    assert curves["val_logloss"]["fold0"].index.name == "step"
