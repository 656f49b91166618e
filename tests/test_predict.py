"""`spectraforge predict`: the batched path against the one-model-at-a-time reference, every
input accounted for (output row or errors row with a reason), malformed zips and folders.

Every malformed input is built here; a tiny models folder of the real shape (CNN folds,
LightGBM variants, an ensemble combiner) is fitted once per module on toy spectra.
"""
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectraforge.cli import main
from spectraforge.ensemble import load_combiner
from spectraforge.io import Spectrum, scan_tianchi, scan_unindexed, write_lamost_fits, write_tianchi
from spectraforge.io.spectrum import LABELS
from spectraforge.io.tianchi import TIANCHI_WAVE, read_tianchi_entries
from spectraforge.models.cnn_onnx import export_path, save_export
from spectraforge.predict import FoldEnsemble, combine, input_chunks, predict
from spectraforge.prepare import _process_chunk
from spectraforge.preprocess import make_grid

COLS = [f"p_{c}" for c in LABELS]


def _txt(row) -> str:
    return ",".join(f"{v:.5g}" for v in row) + "\n"


@pytest.fixture(scope="module")
def spectra():
    """12 Tianchi-grid fluxes of varied shape (so the models disagree on them)."""
    rng = np.random.default_rng(3)
    x = np.linspace(0, 1, 2600)
    rows = [1 + a * x + 0.3 * np.sin(b * 40 * x) + rng.normal(0, 0.05, 2600)
            for a, b in zip(rng.uniform(-0.5, 0.5, 12), rng.uniform(0.2, 2, 12))]
    return np.asarray(rows, np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory, spectra):
    """cnn (2 folds), lgbm and lgbm+x (2 folds each), and a combiner over the three."""
    import keras

    from spectraforge.ensemble import FittedEnsemble, WeightedAverage
    from spectraforge.models.cnn import CNNConfig, build_cnn
    from spectraforge.models.lgbm import LGBMConfig, SpectrumLGBM

    root = tmp_path_factory.mktemp("models")
    wave = make_grid()
    prep = {"grid": {"wave_min": 3690.0, "wave_max": 9100.0, "n_pix": 2600, "spacing": "log"}, "normalise": "median"}

    def manifest(name, kind, files):
        (root / name / "manifest.json").write_text(json.dumps(
            {"name": name, "kind": kind, "folds": files, "labels": list(LABELS), "wave": wave.tolist(), "prepare": prep}))

    (root / "cnn").mkdir()
    for k in range(2):  # as SpectrumCNN.save writes them: the model and its layer export
        keras.utils.set_random_seed(k)
        net, path = build_cnn(CNNConfig(channels=[4, 4, 8, 8], norm="block", scale="asinh", input_bin=2)), root / "cnn" / f"fold{k}.keras"
        net.save(path)
        save_export(net, export_path(path), source=path)
    manifest("cnn", "cnn", ["fold0.keras", "fold1.keras"])
    rng = np.random.default_rng(0)
    X = (1 + rng.normal(0, 0.2, (160, 2600)) * rng.uniform(0.2, 2, (160, 1))).astype(np.float32)
    y = rng.integers(0, 4, 160)
    X[y == 1] += np.linspace(0, 1, 2600, dtype=np.float32)
    X[y == 2] *= np.linspace(1.5, 0.5, 2600, dtype=np.float32)
    for v, name in enumerate(["lgbm", "lgbm+x"]):
        (root / name).mkdir()
        for k in range(2):
            rows = np.arange(160) % 2 != k
            cfg = LGBMConfig(n_pca=4, n_windows=26, n_estimators=15, num_leaves=7, seed=v, min_child_samples=3)
            SpectrumLGBM(cfg, wave=wave, threads=1).fit(X[rows], y[rows], val=None).save(root / name / f"fold{k}")
        manifest(name, "lgbm", ["fold0.npz", "fold1.npz"])
    avg = WeightedAverage()
    avg.weights = np.array([0.2, 0.5, 0.3])
    FittedEnsemble(["cnn", "lgbm", "lgbm+x"], avg, np.array([1.0, 1.3, 0.8, 1.1])).save(root)
    return root


def _fits(spectra, path: Path, i: int, layout="image", gz=False) -> Path:
    flux = spectra[i].astype(np.float32) * 100
    spec = Spectrum(TIANCHI_WAVE.copy(), flux, np.ones_like(flux), np.zeros(flux.size, bool),
                    {"id": f"f{i}", "label": None, "z": None, "snr": None, "format": "lamost-image"})
    return write_lamost_fits(spec, path, layout=layout, gzip=gz)


def _zip(path: Path, members, compression=zipfile.ZIP_DEFLATED) -> Path:
    """A zip of (name, text or bytes) members; names may repeat (zipfile warns, writes both)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name"
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def _reference(models, combiner_path, paths) -> pd.DataFrame:
    """What predict computed before the batched path: prepare's reader per chunk, each fold
    model called alone (keras predict, SpectrumLGBM.predict_proba), folds then variants combined."""
    ens = FoldEnsemble(models)
    combiner = load_combiner(combiner_path) if combiner_path else None
    chunks, _ = input_chunks(paths)
    frames = []
    for chunk in chunks:
        flux, meta, _ = _process_chunk(chunk, ens.wave, ens.normalise, 1.0)
        if len(flux):
            proba, codes = combine(ens.per_variant_reference(flux), combiner)
            f = pd.DataFrame(proba, columns=COLS)
            f.insert(0, "type", [LABELS[c] for c in codes])
            f.insert(0, "id", [m["id"] for m in meta])
            f["file"] = [m["file"] for m in meta]
            frames.append(f)
    return pd.concat(frames, ignore_index=True)


BACKENDS = {  # how the CNN folds run: (models folder, cnn_backend) -> the backend reported
    "exports": ("onnxruntime (layer exports)", "auto"),
    "converted": ("onnxruntime (converted from the Keras folds)", "auto"),
    "tensorflow": ("tensorflow (XLA)", "tensorflow"),
}


def _models_for(models, tmp_path, backend) -> Path:
    """The fixture's folder, or (``converted``) a copy without the layer exports, as a models
    folder trained before they existed is."""
    if backend != "converted":
        return models
    import shutil

    copy = tmp_path / "models-no-exports"
    shutil.copytree(models, copy, ignore=shutil.ignore_patterns("*.net.npz"))
    return copy


@pytest.mark.parametrize("use_combiner,backend", [(True, "exports"), (False, "exports"), (True, "converted"),
                                                  (True, "tensorflow")])
def test_predictions_equal_the_one_model_at_a_time_reference(models, spectra, tmp_path, use_combiner, backend):
    models = _models_for(models, tmp_path, backend)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    paths = [_fits(spectra, folder / f"s{i}.fits", i, layout="table" if i % 2 else "image") for i in range(3)]
    paths.append(_fits(spectra, folder / "sub" / "s3.fits.gz", 3, gz=True))
    (folder / "sub" / "t4.txt").write_text(_txt(spectra[4]))
    write_tianchi(spectra[5:12], [f"z{i}" for i in range(7)], None, tmp_path / "idx.csv", folder / "z.zip")
    combiner = models / "combiner.json" if use_combiner else None
    out = tmp_path / "p.csv"
    # blocks of 3 rows and CNN batches of 256: partial blocks, padding, several model calls
    summary = predict([folder], models, out, n_jobs=2, progress=False, combiner_path=combiner,
                      chunk_size=2, block_rows=3, cnn_backend=BACKENDS[backend][1])
    assert (summary.predicted, summary.errors, summary.inputs) == (12, 0, 12)
    assert summary.backends["cnn"] == BACKENDS[backend][0]
    got = pd.read_csv(out, dtype={"id": str})
    ref = _reference(models, combiner, [folder])
    assert list(got.columns) == ["id", "type", *COLS, "file"]
    assert got["file"].tolist() == ref["file"].tolist() and got["id"].tolist() == ref["id"].tolist()
    np.testing.assert_allclose(got[COLS].to_numpy(), ref[COLS].to_numpy(), atol=5e-6)
    assert (got["type"] == ref["type"]).all()
    assert not (tmp_path / "p.errors.csv").exists()


def test_a_mixed_folder_every_input_in_the_output_or_the_errors_file(models, spectra, tmp_path, capsys):
    d = tmp_path / "mixed"
    (d / "deeper" / "empty_dir").mkdir(parents=True)
    good = {str(_fits(spectra, d / "a.fits", 0)), str(_fits(spectra, d / "deeper" / "b.fits.gz", 1, gz=True))}
    (d / "c.txt").write_text(_txt(spectra[2]))
    good.add(str(d / "c.txt"))
    expected_bad = {}
    (d / "broken.fits").write_bytes(b"SIMPLE  = garbage")
    expected_bad[str(d / "broken.fits")] = "FITS"
    (d / "short.txt").write_text("1,2,3\n")
    expected_bad[str(d / "short.txt")] = "expected 2600 values"
    (d / "README.md").write_text("notes")
    expected_bad[str(d / "README.md")] = "not a spectrum file"
    (d / "deeper" / "empty.zip").write_bytes(b"")
    expected_bad[str(d / "deeper" / "empty.zip")] = "cannot open zip"
    _zip(d / "deeper" / "inner.zip", [("t/z0.txt", _txt(spectra[3])), ("t/z0.txt", _txt(spectra[4])),
                                      ("t/notes.csv", "x"), ("t/z1.txt", _txt(spectra[5]))])
    good |= {f"{d / 'deeper' / 'inner.zip'}::t/z0.txt", f"{d / 'deeper' / 'inner.zip'}::t/z1.txt"}
    expected_bad[f"{d / 'deeper' / 'inner.zip'}::t/z0.txt"] = "duplicate file name"
    expected_bad[f"{d / 'deeper' / 'inner.zip'}::t/notes.csv"] = "not a Tianchi .txt file"
    missing = tmp_path / "nope.fits"
    expected_bad[str(missing)] = "no such file"
    again = d / "a.fits"  # inside the folder given first
    out = tmp_path / "res" / "mixed.csv"
    code = main(["predict", str(d), str(missing), str(again), "--models", str(models), "--out", str(out)])
    assert code == 0
    pred = pd.read_csv(out, dtype={"id": str})
    err = pd.read_csv(tmp_path / "res" / "mixed.errors.csv")
    assert set(pred["file"]) == good and len(pred) == len(good)
    # the duplicate member: one row (the first member's), one errors row; the argument given twice: one errors row
    assert err["file"].tolist().count(str(again)) == 1 and "given twice" in err.set_index("file").loc[str(again), "reason"]
    for f, reason in expected_bad.items():
        assert reason in " | ".join(err.loc[err["file"] == f, "reason"]), (f, err)
    assert len(err) == len(expected_bad) + 1
    assert err["reason"].str.len().min() > 0
    line = capsys.readouterr().out
    n_in = len(pred) + len(err)
    assert f"{len(pred)} spectra classified" in line and f"= {n_in} inputs" in line
    assert str(tmp_path / "res" / "mixed.errors.csv") in line  # the folder too, not only the name


BAD_ZIPS = {
    "zero_bytes": lambda p, s: p.write_bytes(b""),
    "garbage": lambda p, s: p.write_bytes(b"this is not a zip at all" * 10),
    "truncated": lambda p, s: p.write_bytes(_zip(p, [("a.txt", _txt(s[0]))]).read_bytes()[:-30]),
    "no_members": lambda p, s: _zip(p, []),
    "only_other_files": lambda p, s: _zip(p, [("notes/readme.md", "hi")]),
    "bad_crc": lambda p, s: p.write_bytes(_zip(p, [("a.txt", _txt(s[0]))], zipfile.ZIP_STORED)
                                          .read_bytes().replace(b"1.", b"2.", 1)),
    "encrypted_flag": lambda p, s: p.write_bytes(_flag_encrypted(_zip(p, [("a.txt", _txt(s[0]))]).read_bytes())),
}


def _flag_encrypted(blob: bytes) -> bytes:
    """Set the 'encrypted' bit of the first member's local header."""
    b = bytearray(blob)
    b[6] |= 0x1
    return bytes(b)


@pytest.mark.parametrize("kind", sorted(BAD_ZIPS))
def test_an_unreadable_zip_does_not_stop_the_other_inputs(models, spectra, tmp_path, kind, capsys):
    good = tmp_path / "good.txt"
    good.write_text(_txt(spectra[0]))
    bad = tmp_path / "empty.zip"
    BAD_ZIPS[kind](bad, spectra)
    out = tmp_path / "o.csv"
    assert main(["predict", str(good), str(bad), "--models", str(models), "--out", str(out)]) == 0
    pred = pd.read_csv(out)
    assert pred["file"].tolist() == [str(good)]
    err = pd.read_csv(tmp_path / "o.errors.csv")
    assert len(err) >= 1 and all(str(bad) in f for f in err["file"]) and err["reason"].str.len().min() > 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["flat", "subfolder", "two_subfolders"])
def test_a_zip_with_two_members_of_one_name_keeps_the_first_as_prepare_does(models, spectra, tmp_path, layout):
    first, second = {"flat": ("7.txt", "7.txt"), "subfolder": ("d/7.txt", "d/7.txt"),
                     "two_subfolders": ("a/7.txt", "b/7.txt")}[layout]
    z = _zip(tmp_path / "dup.zip", [(first, _txt(spectra[1])), ("8.txt", _txt(spectra[2])), (second, _txt(spectra[3]))])
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "7.txt").write_text(_txt(spectra[1]))
    (alone / "8.txt").write_text(_txt(spectra[2]))
    out, ref = tmp_path / "o.csv", tmp_path / "ref.csv"
    predict([z], models, out, progress=False, combiner_path=models / "combiner.json")
    predict([alone], models, ref, progress=False, combiner_path=models / "combiner.json")
    got, want = pd.read_csv(out, dtype={"id": str}), pd.read_csv(ref, dtype={"id": str})
    assert got["id"].tolist() == ["7", "8"]
    np.testing.assert_allclose(got[COLS].to_numpy(), want[COLS].to_numpy(), atol=5e-6)
    err = pd.read_csv(tmp_path / "o.errors.csv")
    assert err["file"].tolist() == [f"{z}::{second}"] and "duplicate file name" in err["reason"][0]
    # prepare's listing of the same zip (with an index) keeps and rejects the same members
    pd.DataFrame({"id": ["7", "8"]}).to_csv(tmp_path / "idx.csv", index=False)
    entries, problems, _ = scan_tianchi(tmp_path / "idx.csv", z, locate=True)
    assert [e.member for e in entries] == [first, "8.txt"] and [w for w, _ in problems] == [second]


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_every_compression_method_zipfile_reads_is_read_by_the_one_reader(spectra, tmp_path, method):
    z = _zip(tmp_path / "m.zip", [("1.txt", _txt(spectra[0])), ("2.txt", _txt(spectra[1]))], method)
    entries, locations, problems = scan_unindexed(z)
    assert not problems
    got = read_tianchi_entries(z, entries, locations)  # the located reader prepare and predict share
    with zipfile.ZipFile(z) as zf:
        for res, e in zip(got, entries):
            assert not isinstance(res, Exception), res
            want = np.array(zf.read(e.member).decode().split(","), float)
            np.testing.assert_allclose(res.flux, want, rtol=1e-6)


def test_prepare_and_predict_list_a_folder_by_the_same_rules(spectra, tmp_path):
    from spectraforge.params import InputSpec, PrepareParams
    from spectraforge.prepare import list_inputs

    d = tmp_path / "f"
    (d / "x").mkdir(parents=True)
    _fits(spectra, d / "b.fits", 0)
    _fits(spectra, d / "x" / "a.fits.gz", 1, gz=True)
    (d / "index.csv").write_text("id\n")
    chunks, problems, listed = list_inputs(PrepareParams(inputs=[InputSpec("fits", "test", str(d))]), 256)
    pchunks, pproblems = input_chunks([d])
    assert [c.items for c in chunks] == [c.items for c in pchunks] == [[str(d / "b.fits"), str(d / "x" / "a.fits.gz")]]
    assert [p["file"] for p in problems] == [p["file"] for p in pproblems] == [str(d / "index.csv")]
    assert listed["test"] == 3  # listed = read + quarantined, the skipped file included


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_n_jobs_must_be_a_positive_integer(models, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tmp_path), "--models", str(models), "--out", str(tmp_path / "o.csv"), "--n-jobs", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--n-jobs" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="n_jobs"):
        predict([tmp_path], models, tmp_path / "o.csv", n_jobs=0)


def test_output_is_streamed_in_blocks_and_nothing_half_written_is_left(models, spectra, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(9):
        (folder / f"{i}.txt").write_text(_txt(spectra[i]))
    calls = []
    real = FoldEnsemble.per_variant

    def spy(self, flux):
        calls.append(len(flux))
        return real(self, flux)

    monkeypatch.setattr(FoldEnsemble, "per_variant", spy)
    s = predict([folder], models, tmp_path / "o.csv", progress=False, chunk_size=2, block_rows=4)
    assert s.predicted == 9 and max(calls) <= 4 + 2 and sum(calls) == 9 and len(calls) >= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "o.csv"]

    def boom(self, flux):
        raise KeyboardInterrupt

    monkeypatch.setattr(FoldEnsemble, "per_variant", boom)
    with pytest.raises(KeyboardInterrupt):
        predict([folder], models, tmp_path / "k.csv", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "o.csv"]


def _three_fits(spectra, tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        _fits(spectra, folder / f"s{i}.fits", i)
    return folder


def test_with_layer_exports_predict_never_starts_tensorflow(models, spectra, tmp_path):
    """The CNN folds run from their exports on onnxruntime: TensorFlow is not even imported."""
    import subprocess
    import sys

    folder = _three_fits(spectra, tmp_path)
    code = ("import sys, json; from spectraforge.predict import predict; "
            f"s = predict([{str(folder)!r}], {str(models)!r}, {str(tmp_path / 'p.csv')!r}, progress=False, "
            f"combiner_path={str(models / 'combiner.json')!r}); "
            "print(json.dumps([s.predicted, s.backends['cnn'], 'tensorflow' in sys.modules, 'keras' in sys.modules]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [3, "onnxruntime (layer exports)", False, False]


def test_without_onnxruntime_predict_says_so_and_runs_the_keras_folds(models, spectra, tmp_path, monkeypatch, capsys):
    from spectraforge.models import cnn_onnx

    def missing(*args, **kwargs):
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr(cnn_onnx.OnnxFolds, "__init__", missing)
    folder = _three_fits(spectra, tmp_path)
    summary = predict([folder], models, tmp_path / "p.csv", progress=False, combiner_path=models / "combiner.json")
    assert summary.predicted == 3 and summary.backends["cnn"] == "tensorflow (XLA)"
    err = capsys.readouterr().err
    assert "cnn: layer export not run on onnxruntime: onnxruntime unavailable" in err
    assert "cnn: the Keras folds not run on onnxruntime" in err
    got = pd.read_csv(tmp_path / "p.csv")
    ref = _reference(models, models / "combiner.json", [folder])
    np.testing.assert_allclose(got[COLS].to_numpy(), ref[COLS].to_numpy(), atol=5e-6)
