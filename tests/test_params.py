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


# ------------------------------------------------------------------ types, from the annotations

def _load_key(path, dotted: str) -> None:
    """Run the loader that reads ``dotted`` (and build the typed config of its variant)."""
    import numpy as np

    from spectraforge.augment import load_augment_params
    from spectraforge.compute import load_compute
    from spectraforge.crossval import build_classifier, load_train_params
    from spectraforge.ensemble import load_ensemble_params
    from spectraforge.generative.stage import feature_model, load_generate_params
    from spectraforge.report import load_report_params
    from spectraforge.submission import load_submit_params

    section, *rest = dotted.split(".")
    variant = rest[1] if rest[:1] == ["variants"] and len(rest) > 2 else None
    if section in ("mock", "prepare", "folds"):
        load_section(section, path)
    elif section == "train":
        params = load_train_params(path)
        if variant:
            build_classifier(params.variants[variant], variant, wave=np.arange(2600.0), threads=1)
    elif section == "generate":
        params = load_generate_params(path)
        if variant:
            feature_model(params.variants[variant], variant)
    else:
        {"augment": load_augment_params, "ensemble": load_ensemble_params, "submit": load_submit_params,
         "report": load_report_params, "compute": load_compute}[section](path)


def _scalar_leaves(tree, prefix=""):
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _scalar_leaves(value, dotted + ".")
        elif isinstance(value, (bool, int, float, str)):
            yield dotted, value


# the wrong-typed values tried on every scalar of the repo's params.yaml, by the type it holds there
WRONG = {bool: ["yes", 1], int: ["5", True, [5]], float: ["0.5", True], str: [3, True, {"a": 1}]}
LENIENT = {".config.fit.jit_compile": "yes"}  # any CNN variant: bool | str, "auto" is a valid string


def _set(tree, dotted, value):
    *parents, last = dotted.split(".")
    for p in parents:
        tree = tree[p]
    tree[last] = value


def test_every_params_value_of_the_wrong_type_is_refused_naming_its_key(tmp_path, repo_root):
    """Each scalar of params.yaml, replaced by values of other types, fails in its stage's
    loader with ``params: <full key>: expected ...``, before any work starts."""
    base = yaml.safe_load((repo_root / "params.yaml").read_text())
    tried, problems = 0, []
    for dotted, value in _scalar_leaves(base):
        for wrong in WRONG[type(value)]:
            if any(dotted.endswith(end) and wrong == w for end, w in LENIENT.items()):
                continue
            params = yaml.safe_load((repo_root / "params.yaml").read_text())
            _set(params, dotted, wrong)
            path = write(tmp_path, params)
            tried += 1
            try:
                _load_key(path, dotted)
            except ParamsError as exc:
                if not str(exc).startswith(f"params: {dotted}: expected "):
                    problems.append(f"{dotted} = {wrong!r}: {exc}")
            else:
                problems.append(f"{dotted} = {wrong!r}: accepted")
    assert tried > 150 and not problems, "\n".join(problems)


@pytest.mark.parametrize("dotted, value, match", [
    ("folds.k", "5", r"params: folds\.k: expected an integer, got '5' \(str\)"),
    ("folds.k", 2.5, r"params: folds\.k: expected an integer, got 2\.5 \(float\)"),
    ("folds.seed", "abc", r"params: folds\.seed: expected an integer, got 'abc' \(str\)"),
    ("prepare.chunk_size", 2.5, r"params: prepare\.chunk_size: expected an integer"),
    ("prepare.n_jobs", 1.5, r"params: prepare\.n_jobs: expected an integer"),
    ("prepare.grid.n_pix", 2600.5, r"params: prepare\.grid\.n_pix: expected an integer"),
    ("prepare.grid.wave_min", "3690", r"params: prepare\.grid\.wave_min: expected a number"),
    ("mock.class_mix.star", "lots", r"params: mock\.class_mix\.star: expected a number"),
    ("generate.target.qso", "1/4", r"params: generate\.target\.qso: expected a number"),
    ("ensemble.inputs", "cnn", r"params: ensemble\.inputs: expected a list"),
    ("train.variants.lgbm.config.class_weight", 1, r"params: train\.variants\.lgbm\.config\.class_weight: "
                                                    r"expected a string or null"),
    ("train.variants.cnn.config.fit.patience", 2.0, r"params: train\.variants\.cnn\.config\.fit\.patience: "
                                                     r"expected an integer or null, got 2\.0"),
])
def test_wrong_types_name_the_key(tmp_path, repo_root, dotted, value, match):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    _set(params, dotted, value)
    with pytest.raises(ParamsError, match=match):
        _load_key(write(tmp_path, params), dotted)


def test_int_is_accepted_where_a_number_is_expected(tmp_path, repo_root):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["prepare"]["grid"]["wave_min"] = 3690
    params["ensemble"]["C"] = 1
    load_section("prepare", write(tmp_path, params))
    _load_key(tmp_path / "params.yaml", "ensemble.C")


# ------------------------------------------------- the profiles (README "Profiles")

PROFILE_KEYS = [("generate", "generators"), ("augment", "variants"), ("ensemble", "inputs")]


def _consistent(params):
    gens, train = params["generate"]["generators"], params["train"]
    assert set(gens) <= set(params["generate"]["variants"])
    assert set(train["models"]) <= set(train["variants"])
    for name, spec in params["augment"]["variants"].items():
        assert spec["source"] in gens, f"augment variant {name}: source {spec['source']} is not generated"
        assert spec["model"] in train["models"], f"augment variant {name}: model {spec['model']} is not trained"
    assert set(params["ensemble"]["inputs"]) <= set(train["models"]) | set(params["augment"]["variants"])


@pytest.mark.parametrize("profile", ["params-full.yaml", "params-cnn.yaml"])
def test_profiles_are_the_default_with_more_generators_and_variants(repo_root, profile):
    """A profile differs from params.yaml only in which generators, augment variants and
    ensemble inputs run, so its scores compare with the default's; both validate."""
    from spectraforge.augment import load_augment_params
    from spectraforge.crossval import load_train_params
    from spectraforge.ensemble import load_ensemble_params
    from spectraforge.generative.stage import load_generate_params

    default = yaml.safe_load((repo_root / "params.yaml").read_text())
    full = yaml.safe_load((repo_root / profile).read_text())
    for params in (default, full):
        _consistent(params)
    for section, key in PROFILE_KEYS:
        small, big = default[section].pop(key), full[section].pop(key)
        assert set(small) <= set(big), f"{section}.{key}: a profile must run at least the default's"
        assert section == "generate" or set(small) < set(big), f"{section}.{key}: the profile adds nothing"
        if isinstance(small, dict):
            assert all(big[name] == spec for name, spec in small.items())
    assert full == default, f"{profile} drifted from params.yaml outside the profile's keys"
    path = repo_root / profile
    if profile == "params-full.yaml":  # every generator defined runs
        assert set(load_generate_params(path).generators) == set(yaml.safe_load(path.read_text())["generate"]["variants"])
    load_train_params(path), load_augment_params(path), load_ensemble_params(path)
    assert any(spec["model"] == "cnn" for spec in yaml.safe_load(path.read_text())["augment"]["variants"].values())
