"""The generate stage and its parts: spaces, the Gaussian baseline, the envelope guard,
sample-quality figures against closed forms, and the stage's honesty (no validation
spectrum reaches a generator), counts, outputs and determinism."""
import json

import numpy as np
import pandas as pd
import pytest
from conftest import write_prepared
from scipy.stats import multivariate_normal

from spectraforge.generative.base import FeatureModel, PCASpace, PixelSpace, SpectrumGenerator
from spectraforge.generative.gaussian import GaussianModel
from spectraforge.generative.quality import frechet_distance, precision_recall, two_sample_accuracy
from spectraforge.generative.stage import (
    GeneratorSpec, GenerateParams, QualityParams, check_no_leak, run_generate, sample_counts,
)
from spectraforge.io.spectrum import LABELS
from spectraforge.params import ParamsError

N_PIX = 64


def _spectra(n, seed=0, p=(0.6, 0.15, 0.1, 0.15)):
    """Smooth class-dependent continua with a class-dependent line, on noise, median ≈ 1."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, n, p=list(p))
    x = np.linspace(0, 1, N_PIX)
    slope = np.array([0.5, -0.3, 1.0, 0.0])[y][:, None] + rng.normal(0, 0.1, (n, 1))
    line = np.exp(-0.5 * ((x - np.array([0.2, 0.4, 0.6, 0.8])[y][:, None]) / 0.03) ** 2)
    X = 1 + slope * (x - 0.5) + 0.8 * line + rng.normal(0, 0.05, (n, N_PIX))
    return X.astype("float32"), y


# ---------------------------------------------------------------------- spaces


def test_pca_space_round_trips_its_span_and_whitens():
    X, _ = _spectra(300)
    space = PCASpace(8).fit(X)
    Z = space.encode(X)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=0.05)
    inside = space.decode(Z[:5])  # a point of the span decodes and re-encodes to itself
    np.testing.assert_allclose(space.encode(inside), Z[:5], atol=1e-3)
    np.testing.assert_allclose(space.log_det, -np.log(space.sigma_).sum())


@pytest.mark.parametrize("squash", ["asinh", "none"])
def test_pixel_space_inverts_exactly(squash):
    X, _ = _spectra(50)
    X[0, 3] = 2000.0  # a low-S/N tail: asinh squashes it and sinh brings it back
    space = PixelSpace(squash).fit(X)
    np.testing.assert_allclose(space.decode(space.encode(X)), X, rtol=1e-4, atol=1e-4)


def test_residual_bootstrap_recovers_a_training_spectrum_from_its_own_features():
    X, y = _spectra(200)

    class Echo(FeatureModel):  # "samples" the training features of one row
        def fit(self, Z, y, seed=0):
            self.Z = Z
            return self

        def sample(self, y, seed=0, temperature=1.0):
            return np.repeat(self.Z[7:8], len(y), axis=0)

    gen = SpectrumGenerator(PCASpace(6), Echo(), residual="bootstrap", envelope=0).fit(X, y, [f"i{i}" for i in range(200)])
    gen._residuals[:] = gen._residuals[7]  # every donor lends row 7's residual
    out = gen.sample(int(y[7]), 3, seed=1)
    np.testing.assert_allclose(out.flux, np.repeat(X[7:8], 3, axis=0), atol=1e-4)
    assert set(out.parents) <= {f"i{i}" for i in np.flatnonzero(y == y[7])}


# ---------------------------------------------------------------------- Gaussian baseline


def test_gaussian_log_prob_matches_scipy_and_samples_reproduce():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(400, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 0.5]])
    y = np.repeat([0, 2], 200)
    model = GaussianModel().fit(Z, y)
    mean, chol = model.params[2]
    want = multivariate_normal(mean, chol @ chol.T).logpdf(Z[y == 2])
    np.testing.assert_allclose(model.log_prob(Z[y == 2], y[y == 2]), want, rtol=1e-8)
    np.testing.assert_array_equal(model.sample(np.full(5, 2), seed=4), model.sample(np.full(5, 2), seed=4))
    with pytest.raises(ValueError, match="class 1"):
        model.sample(np.array([1]))


# ---------------------------------------------------------------------- the envelope guard


class _Wild(FeatureModel):
    """Returns inf in every other row on the first call, or always when ``broken``."""

    def __init__(self, broken=False):
        self.broken, self.calls = broken, 0

    def fit(self, Z, y, seed=0):
        self.first = {c: Z[y == c][0] for c in np.unique(y)}  # a training row: inside the envelope
        return self

    def sample(self, y, seed=0, temperature=1.0):
        self.calls += 1
        out = np.stack([self.first[c] for c in y]).astype(np.float32)
        if self.broken or self.calls == 1:
            out[::2] = np.inf
        return out


def test_envelope_guard_redraws_and_counts_wild_samples():
    X, y = _spectra(100)
    gen = SpectrumGenerator(PCASpace(4), _Wild(), envelope=1.5).fit(X, y, np.arange(100))
    out = gen.sample(0, 10, seed=0)
    assert np.isfinite(out.flux).all() and gen.rejected == 5
    broken = SpectrumGenerator(PCASpace(4), _Wild(broken=True), envelope=1.5, max_redraws=3).fit(X, y, np.arange(100))
    with pytest.raises(FloatingPointError, match="envelope after 3 redraws"):
        broken.sample(0, 10)


# ---------------------------------------------------------------------- sample quality


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # 1-D Gaussians: (μ1 − μ2)² + (σ1 − σ2)²
    x, z = rng.normal(0, 1, (200_000, 1)), rng.normal(3, 2, (200_000, 1))
    assert frechet_distance(x, z) == pytest.approx(9.0 + 1.0, rel=0.02)


def test_precision_recall_extremes():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 2))
    assert precision_recall(real, real) == (1.0, 1.0)
    p, r = precision_recall(real, real + 100.0)
    assert p == 0.0 and r == 0.0
    # a collapsed generator: faithful (precision high) but covers little (recall low)
    p, r = precision_recall(real, rng.normal(0, 0.05, (300, 2)))
    assert p > 0.9 and r < 0.3


def test_two_sample_accuracy_is_chance_for_one_distribution_and_high_for_two():
    rng = np.random.default_rng(2)
    same = two_sample_accuracy(rng.normal(size=(400, 4)), rng.normal(size=(400, 4)))
    apart = two_sample_accuracy(rng.normal(size=(400, 4)), rng.normal(1.5, 1, (400, 4)))
    assert 0.4 < same < 0.6 and apart > 0.9


# ---------------------------------------------------------------------- the stage


def test_sample_counts_fill_up_to_the_target():
    y = np.repeat([0, 1, 2, 3], [800, 50, 3, 100])
    counts, skipped = sample_counts(y, {"galaxy": 0.25, "qso": 0.25, "unknown": 0.1}, "ratio", min_train=5)
    assert counts == {1: 150, 3: 0} and skipped == {"qso": 3}
    counts, _ = sample_counts(y, {"galaxy": 120}, "count")
    assert counts == {1: 70}


def test_check_no_leak_names_the_leaked_id():
    check_no_leak(["v1", "v2"], ["t1", "t2"], ["t1", ""], "here")
    with pytest.raises(AssertionError, match="here.*v2"):
        check_no_leak(["v1", "v2"], ["t1"], ["v2"], "here")
    with pytest.raises(AssertionError, match="v1"):
        check_no_leak(["v1"], ["t1", "v1"], [], "here")


GEN = {
    "gauss": GeneratorSpec(kind="gauss", n_components=6),
    "flow": GeneratorSpec(kind="flow", n_components=6, flow={
        "recipe": "glow", "n_levels": 1, "steps": 2, "hidden": [16], "epochs": 5, "batch_size": 64}),
    "pixel_flow": GeneratorSpec(kind="flow", space="pixel", residual="none", flow={
        "recipe": "realnvp", "conditioner": "conv", "filters": 8, "n_levels": 2, "steps": 1, "epochs": 3,
        "batch_size": 64}),
    "gan": GeneratorSpec(kind="gan", n_components=6, gan={
        "loss": "rasgan", "g_widths": [16], "d_widths": [16], "steps": 60, "batch_size": 32, "log_every": 20}),
    "oversample": GeneratorSpec(kind="oversample"),
    "noise": GeneratorSpec(kind="noise", noise=0.2),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    X, y = _spectra(300, seed=3)
    Xt, _ = _spectra(20, seed=4)
    return write_prepared(tmp_path_factory.mktemp("gen"), X, y, Xt, k=3)


def _params(root, **kw):
    return GenerateParams(generators=list(GEN), prepared_dir=str(root / "prepared"), folds=str(root / "folds.csv"),
                          seed=11, target={"galaxy": 0.4, "qso": 0.4}, variants=GEN,
                          quality=QualityParams(embedding=4), **kw)


@pytest.fixture(scope="module")
def runs(prepared):
    out = {}
    for name in GEN:
        for tag in ("a", "b"):
            root = prepared / tag
            m = run_generate(name, _params(prepared), out_root=root / "syn", reports_dir=root / "reports")
            out[name, tag] = (m, root)
    return out


@pytest.mark.parametrize("name", list(GEN))
def test_stage_writes_honest_counted_outputs(name, runs, prepared):
    metrics, root = runs[name, "a"]
    folds = pd.read_csv(prepared / "folds.csv")
    total = 0
    for k in sorted(folds["fold"].unique()):
        z = np.load(root / "syn" / name / f"fold{k}.npz")
        train = folds[folds.fold != k]
        val_ids = set(folds.loc[folds.fold == k, "id"])
        assert set(z["fit_ids"]) == set(train["id"])  # fitted on exactly the training part
        assert not val_ids & set(z["fit_ids"]) and not val_ids & set(z["parent"])
        assert set(z["parent"]) - {""} <= set(train["id"])  # residual donors: training spectra only
        assert (z["parent"] != "").all() == (GEN[name].residual == "bootstrap")
        have = train["label"].value_counts()
        for label in ("galaxy", "qso"):
            assert (z["label"] == label).sum() == max(0, round(0.4 * have.max()) - have.get(label, 0))
        assert set(z["label"]) <= {"galaxy", "qso"} and len(set(z["id"])) == len(z["id"])
        assert z["flux"].shape[1] == N_PIX and np.isfinite(z["flux"]).all()
        total += len(z["flux"])
    saved = json.loads((root / "reports" / "metrics" / f"generate_{name}.json").read_text())
    assert saved["n_synthetic"] == total == metrics["n_synthetic"]
    for key in ("fd_galaxy", "precision_qso", "recall_galaxy", "c2st_qso", "fd_galaxy_real", "rejected_fraction"):
        assert np.isfinite(saved[key]), key
    density = GEN[name].kind in ("gauss", "flow")  # a GAN or a resampler has no likelihood to report
    for key in ("nll_bpd", "nll_bpd_gauss", "nll_gain_bpd"):
        assert (key in saved) == density, key
    for label in ("galaxy", "qso"):
        assert (root / "reports" / "plots" / f"generate_{name}" / f"{label}.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", list(GEN))
def test_stage_same_seed_same_samples(name, runs):
    (_, a), (_, b) = runs[name, "a"], runs[name, "b"]
    for k in range(3):
        za, zb = np.load(a / "syn" / name / f"fold{k}.npz"), np.load(b / "syn" / name / f"fold{k}.npz")
        for key in ("flux", "label", "id", "parent"):
            np.testing.assert_array_equal(za[key], zb[key])


def test_gauss_scores_as_its_own_baseline(runs):
    metrics, _ = runs["gauss", "a"]
    assert metrics["nll_bpd"] == pytest.approx(metrics["nll_bpd_gauss"], abs=1e-6)


def test_rare_class_below_min_train_is_skipped_and_reported(prepared, tmp_path):
    params = _params(prepared, min_train=10_000)
    params.generators, params.variants = ["gauss"], {"gauss": GEN["gauss"]}
    m = run_generate("gauss", params, out_root=tmp_path / "syn", reports_dir=tmp_path / "reports")
    assert m["n_synthetic"] == 0 and m["skipped_galaxy"] == 3 and m["skipped_qso"] == 3


def test_oversample_copies_training_spectra_and_noise_scales_with_each_spectrum():
    from spectraforge.generative.resample import ResampleGenerator

    X, y = _spectra(200, seed=5)
    ids = np.array([f"t{i}" for i in range(len(X))])
    by_id = dict(zip(ids, X))
    syn = ResampleGenerator(0.0).fit(X, y, ids).sample(2, 500, seed=1)
    assert (syn.labels == 2).all() and set(syn.parents) <= set(ids[y == 2])
    np.testing.assert_array_equal(syn.flux, np.stack([by_id[p] for p in syn.parents]))
    k = 0.3
    syn = ResampleGenerator(k).fit(X, y, ids).sample(1, 400, seed=1)
    parents = np.stack([by_id[p] for p in syn.parents])
    ratio = (syn.flux - parents).std(axis=1) / parents.std(axis=1)
    assert ratio.mean() == pytest.approx(k, rel=0.02)  # x' = x + k·std(x)·N(0, 1), per spectrum
    with pytest.raises(ValueError, match="galaxy"):
        ResampleGenerator(0.1).fit(X[y != 1], y[y != 1], ids[y != 1]).sample(1, 3)


def test_generator_spec_rejects_bad_values_naming_the_key():
    with pytest.raises(ParamsError, match=r"v\.kind.*gauss, flow, gan, oversample, noise"):
        GeneratorSpec(kind="vae").validate("v")
    with pytest.raises(ParamsError, match=r"v\.residual.*space: pca"):
        GeneratorSpec(kind="flow", space="pixel", residual="bootstrap").validate("v")
    with pytest.raises(ParamsError, match=r"generate\.target\.quasar"):
        GenerateParams(target={"quasar": 0.2}).validate()


def test_load_generate_params_reads_the_repo_params(repo_root):
    from spectraforge.generative.stage import feature_model, load_generate_params

    params = load_generate_params(repo_root / "params.yaml")
    for name in params.generators:
        spec = params.variants[name]
        model = feature_model(spec, name)
        assert model is None if spec.kind in ("oversample", "noise") else isinstance(model, FeatureModel)
    assert all(label in LABELS for label in params.target)
