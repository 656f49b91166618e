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


# ------------------------------------------------- outputs stay in the project (issue 19, item 8)

OUTPUT_KEYS = [("mock", "out_dir"), ("mock", "truth_csv"), ("prepare", "out_dir"), ("folds", "out"),
               ("submit", "out_dir"), ("report", "out"), ("augment", "models_dir")]
ESCAPES = ["../somewhere", "../../x", "data/../../x", "./../x", "/tmp/elsewhere", ".", "", "data/..",
           ".git/hooks", ".dvc/tmp"]


def _load(section, path):
    from spectraforge.augment import load_augment_params
    from spectraforge.report import load_report_params
    from spectraforge.submission import load_submit_params

    loaders = {"submit": load_submit_params, "report": load_report_params, "augment": load_augment_params}
    return loaders[section](path) if section in loaders else load_section(section, path)


def _project(tmp_path, repo_root, section, key, value):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params[section][key] = value
    path = tmp_path / "project" / "params.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("section,key", OUTPUT_KEYS, ids=[f"{s}.{k}" for s, k in OUTPUT_KEYS])
@pytest.mark.parametrize("value", ESCAPES)
def test_an_output_outside_the_project_is_refused_by_name(tmp_path, repo_root, section, key, value):
    if section == "report" and value and not value.endswith(".html"):
        value = value.rstrip("/") + "/r.html" if value not in (".", "data/..") else value
    path = _project(tmp_path, repo_root, section, key, value)
    with pytest.raises(ParamsError, match=rf"params: {section}\.{key}: "):
        _load(section, path)


@pytest.mark.parametrize("section,key", OUTPUT_KEYS, ids=[f"{s}.{k}" for s, k in OUTPUT_KEYS])
def test_outputs_inside_the_project_are_fine(tmp_path, repo_root, section, key):
    inside = {"report": "out/x/r.html"}.get(section, "out/x")
    for value in (inside, f"./{inside}", f"data/../{inside}", str(tmp_path / "project" / inside)):
        _load(section, _project(tmp_path, repo_root, section, key, value))


def test_a_symlink_does_not_carry_an_output_out(tmp_path, repo_root):
    outside = tmp_path / "outside" / "deep"
    outside.mkdir(parents=True)
    path = _project(tmp_path, repo_root, "submit", "out_dir", "link/../subs")
    (path.parent / "link").symlink_to(outside)
    with pytest.raises(ParamsError, match=r"submit\.out_dir: 'link/\.\./subs' is not inside the project"):
        _load("submit", path)


def test_submit_out_dir_outside_writes_nothing(tmp_path, repo_root, monkeypatch):
    """The reported case: four files landed outside the repository before DVC objected."""
    path = _project(tmp_path, repo_root, "submit", "out_dir", "../somewhere")
    monkeypatch.chdir(path.parent)
    with pytest.raises(ParamsError):
        _load("submit", path.name)
    assert not (tmp_path / "somewhere").exists()


def test_prepare_out_dir_may_not_hold_its_inputs(tmp_path, repo_root):
    for value in ("data/raw", "data", "data/raw/mock"):
        with pytest.raises(ParamsError, match=r"prepare\.out_dir: .* would delete its inputs"):
            _load("prepare", _project(tmp_path, repo_root, "prepare", "out_dir", value))


def test_output_path_resolves_inside_the_root(tmp_path):
    from spectraforge.params import output_path

    assert output_path("data/x", "k", tmp_path) == tmp_path.resolve() / "data" / "x"
    assert output_path("a/b/../c", "k", tmp_path) == tmp_path.resolve() / "a" / "c"
    for bad in (None, 3, "   "):
        with pytest.raises(ParamsError, match="must name an output path"):
            output_path(bad, "k", tmp_path)
