"""params.yaml is read strictly: unknown keys and bad values fail with the key named."""
import pytest
import yaml

from spectraforge.params import ParamsError, load_section

REPO_PARAMS = "params.yaml"


def write(tmp_path, data):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_repo_params_validate(repo_root):
    for section in ("mock", "prepare", "folds"):
        load_section(section, repo_root / REPO_PARAMS)


def test_unknown_key_is_named_with_suggestion(tmp_path):
    p = write(tmp_path, {"folds": {"kk": 3}})
    with pytest.raises(ParamsError, match=r"folds\.kk: unknown key \(did you mean 'k'\?\)"):
        load_section("folds", p)


def test_out_of_range_values(tmp_path):
    with pytest.raises(ParamsError, match=r"folds\.k: needs at least 2"):
        load_section("folds", write(tmp_path, {"folds": {"k": 1}}))
    with pytest.raises(ParamsError, match=r"mock\.class_mix\.stars: unknown label"):
        load_section("mock", write(tmp_path, {"mock": {"class_mix": {"stars": 1.0}}}))


def test_prepare_inputs_checked(tmp_path):
    base = {"raw_dir": "data/raw/x", "inputs": [{"kind": "csv", "split": "train", "path": "data/raw/x/a"}]}
    with pytest.raises(ParamsError, match=r"inputs\[0\]\.kind: 'csv' is not one of"):
        load_section("prepare", write(tmp_path, {"prepare": base}))
    base["inputs"][0] = {"kind": "fits", "split": "train", "path": "elsewhere/a"}
    with pytest.raises(ParamsError, match=r"not under prepare\.raw_dir"):
        load_section("prepare", write(tmp_path, {"prepare": base}))
    base["inputs"][0] = {"kind": "tianchi", "split": "train", "path": "data/raw/x/a.zip"}
    with pytest.raises(ParamsError, match="needs its index CSV"):
        load_section("prepare", write(tmp_path, {"prepare": base}))
    base["inputs"][0]["index"] = "data/raw/x/i.csv"
    base["normalise"] = "max"
    with pytest.raises(ParamsError, match=r"prepare\.normalise: 'max' is not one of: median, zscore, l2, none"):
        load_section("prepare", write(tmp_path, {"prepare": base}))


def test_unknown_section_is_named_with_suggestion(tmp_path, repo_root):
    import yaml

    from spectraforge.ensemble import load_ensemble_params

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["ensembel"] = params.pop("ensemble")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"ensembel: unknown section \(did you mean 'ensemble'\?\)"):
        load_ensemble_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("section, key, value, match", [
    ("ensemble", "method", "vote", r"ensemble\.method: 'vote' is not one of: average, stack"),
    ("ensemble", "stackr", "lgbm", r"ensemble\.stackr: unknown key \(did you mean 'stacker'\?\)"),
    ("submit", "fill_missing", "quasar", r"submit\.fill_missing: 'quasar' is not one of"),
    ("report", "n_boot", 3, r"report\.n_boot: must be >= 10"),
])
def test_late_stage_sections_are_strict(tmp_path, repo_root, section, key, value, match):
    import yaml

    from spectraforge.ensemble import load_ensemble_params
    from spectraforge.report import load_report_params
    from spectraforge.submission import load_submit_params

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    load = {"ensemble": load_ensemble_params, "submit": load_submit_params, "report": load_report_params}[section]
    with pytest.raises(ParamsError, match=match):
        load(tmp_path / "params.yaml")
