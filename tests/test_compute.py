"""The compute backends: params, and a real distributed.LocalCluster on loopback running
prepare's chunks, K-fold training folds and generator folds with the same results as local."""
import numpy as np
import pandas as pd
import pytest
from conftest import toy_table, write_prepared

from spectraforge.compute import ComputeParams, close_clients, get_client, run_jobs
from spectraforge.params import ParamsError, build_dataclass

distributed = pytest.importorskip("distributed")


def test_params_name_the_key_and_the_choices():
    with pytest.raises(ParamsError, match=r"compute\.backend: 'spark' is not one of: local, dask"):
        ComputeParams(backend="spark").validate()
    with pytest.raises(ParamsError, match=r"compute\.scheduler: backend dask needs the scheduler's address"):
        ComputeParams(backend="dask").validate()
    with pytest.raises(ParamsError, match=r"compute\.shceduler: unknown key \(did you mean 'scheduler'\?\)"):
        build_dataclass(ComputeParams, {"shceduler": "tcp://x:1"}, "compute")
    ComputeParams(backend="dask", scheduler="tcp://127.0.0.1:8786").validate()


def test_local_runs_jobs_in_order_here():
    assert run_jobs(ComputeParams(), lambda j: j * j, [3, 1, 2]) == [9, 1, 4]
    assert get_client(ComputeParams()) is None


def test_an_unreachable_scheduler_fails_naming_it():
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = ComputeParams(backend="dask", scheduler=f"tcp://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(ParamsError, match=rf"compute\.scheduler: cannot reach the Dask scheduler at tcp://127\.0\.0\.1:{port}"):
        get_client(params)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as lc:
        yield ComputeParams(backend="dask", scheduler=lc.scheduler_address)
    close_clients()


def _square(x):
    import os

    return x * x, os.getpid()


@pytest.mark.slow
def test_jobs_run_on_the_workers_and_come_back_in_order(cluster):
    import os

    out = run_jobs(cluster, _square, list(range(6)))
    assert [v for v, _ in out] == [x * x for x in range(6)]
    assert os.getpid() not in {pid for _, pid in out}  # not in this process


def _fail(x):
    if x == 2:
        raise ValueError("fold 2 broke")
    return x


@pytest.mark.slow
def test_a_failing_job_raises_here_with_its_own_error(cluster):
    with pytest.raises(ValueError, match="fold 2 broke"):
        run_jobs(cluster, _fail, [0, 1, 2, 3])


@pytest.mark.slow
def test_prepare_on_the_cluster_equals_local(cluster, tmp_path):
    from spectraforge.io import write_tianchi
    from spectraforge.params import InputSpec, PrepareParams
    from spectraforge.prepare import run_prepare

    rng = np.random.default_rng(0)
    flux = (1 + 0.1 * rng.normal(size=(700, 2600))).astype(np.float32)
    flux[5] = np.nan  # quarantined: every pixel bad
    raw = tmp_path / "raw"
    write_tianchi(flux, [str(i) for i in range(700)], ["star"] * 700, raw / "train_index.csv", raw / "train.zip")
    outs = {}
    for backend, compute in (("local", None), ("dask", cluster)):
        params = PrepareParams(raw_dir=str(raw), inputs=[InputSpec(kind="tianchi", split="train",
                               index=str(raw / "train_index.csv"), path=str(raw / "train.zip"))],
                               chunk_size=64, out_dir=str(tmp_path / backend))
        params.validate()
        outs[backend] = run_prepare(params, progress=False, compute=compute)
    assert outs["local"] == outs["dask"] and outs["dask"]["train_quarantined"] == 1
    for name in ("train.npy", "test.npy", "quarantine.csv", "wave.npy"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local/meta.parquet"),
                                  pd.read_parquet(tmp_path / "dask/meta.parquet"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    X, y = toy_table(160, seed=1, p=(0.5, 0.2, 0.15, 0.15))
    return write_prepared(tmp_path_factory.mktemp("compute"), X, y, X[:12], k=3)


@pytest.mark.slow
def test_kfold_on_the_cluster_equals_local(cluster, prepared, tmp_path, monkeypatch):
    from spectraforge.crossval import ModelSpec, TrainParams, run_kfold

    monkeypatch.setenv("SPECTRAFORGE_CHECKPOINTS", str(tmp_path / "ckpt"))
    params = TrainParams(models=[], prepared_dir=str(prepared / "prepared"), folds=str(prepared / "folds.csv"),
                         threads=1)
    spec = ModelSpec(kind="lgbm", config={"n_estimators": 10, "n_pca": 4, "n_windows": 4})
    metrics = {}
    for backend, compute in (("local", None), ("dask", cluster)):
        out = tmp_path / backend
        metrics[backend] = run_kfold("lgbm", params, models_dir=out / "models", predictions_dir=out / "pred",
                                     reports_dir=out / "rep", spec=spec, compute=compute)
    for part in ("oof", "test"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"local/pred/lgbm/{part}.parquet"),
                                      pd.read_parquet(tmp_path / f"dask/pred/lgbm/{part}.parquet"))
    drop = lambda m: {k: v for k, v in m.items() if k != "seconds"}
    assert drop(metrics["local"]) == drop(metrics["dask"])
    assert sorted(p.name for p in (tmp_path / "dask/models/lgbm").iterdir()) == [
        "fold0.npz", "fold1.npz", "fold2.npz", "manifest.json"]
    assert (tmp_path / "dask/rep/live/lgbm/fold2").is_dir()  # learning curves written on the worker


@pytest.mark.slow
def test_generator_folds_on_the_cluster_equal_local(cluster, prepared, tmp_path):
    from spectraforge.generative.stage import GenerateParams, GeneratorSpec, QualityParams, run_generate

    params = GenerateParams(generators=["gauss"], prepared_dir=str(prepared / "prepared"),
                            folds=str(prepared / "folds.csv"), threads=1, target_mode="count",
                            target={"galaxy": 40, "qso": 40}, quality=QualityParams(embedding=4, k=3),
                            variants={"gauss": GeneratorSpec(kind="gauss", n_components=4)})
    params.validate()
    m = {}
    for backend, compute in (("local", None), ("dask", cluster)):
        m[backend] = run_generate("gauss", params, out_root=tmp_path / backend / "syn",
                                  reports_dir=tmp_path / backend / "rep", compute=compute)
    for k in range(3):
        a, b = (np.load(tmp_path / d / f"syn/gauss/fold{k}.npz") for d in ("local", "dask"))
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    timing = ("seconds", "per_second")
    drop = lambda d: {k: v for k, v in d.items() if not any(t in k for t in timing)}
    assert drop(m["local"]) == drop(m["dask"])
