"""`spectraforge predict` end to end on FITS files, against its TensorFlow backend (what it ran
before the CNN folds moved to onnxruntime) and a plain astropy read loop, in the same run.

The models folder has the shape a default `make run` writes (the inference cost does not
depend on how long the models trained): train@cnn (5 folds of the network as params.yaml
configures it), train@lgbm and the lgbm+<source> variants of params.yaml (5 LightGBM folds
each at params.yaml's sizes, fitted here on the prepared mock, each variant on its own
resample and seed), and an ensemble combiner over all of them. It is built once into
benchmarks/_work/models-default (``--rebuild`` to redo).

Inputs: the real LAMOST and SDSS files of ../shared/real repeated (copies in a temporary
folder, never in the repository; skipped when ../shared is absent) and mock LAMOST FITS
(both layouts, half gzipped). Each `predict` runs as its own process (`spectraforge predict`
exactly as a user calls it, plus a line of counters), so the wall time includes Python,
library and model start-up; the breakdown comes from the counters predict keeps. The two
backends' CSVs are compared row by row (largest probability difference, label agreement).

    python benchmarks/predict.py [--n-real 1500] [--n-mock 1500] [--small 1500] [--n-jobs 1] [--large 12000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from _results import publish, stamp
from ingest import astropy_loop, write_mock_fits

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real"
WORK = ROOT / "benchmarks" / "_work"


def lgbm_variants(params: dict) -> list[str]:
    """train@lgbm and params.yaml's augment variants of the lgbm model, in that order."""
    augment = (params.get("augment") or {}).get("variants") or {}
    return ["lgbm"] + [name for name, spec in augment.items() if spec.get("model") == "lgbm"]

DRIVER = """
import json, resource, sys, time
t0 = time.perf_counter()
def peak_mb():  # VmHWM: this program's peak (ru_maxrss would count the parent's size at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from spectraforge.predict import predict
args = json.loads(sys.argv[1])
s = predict(args["inputs"], args["models"], args["out"], n_jobs=args["n_jobs"], progress=False,
            combiner_path=args["combiner"], cnn_backend=args["cnn_backend"])
wall = time.perf_counter() - t0
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print("RESULT " + json.dumps({"predicted": s.predicted, "errors": s.errors, "inputs": s.inputs,
      "seconds": s.seconds, "cpu_seconds": s.cpu_seconds, "wall_in_process": wall, "rss_main_mb": peak_mb(),
      "rss_reader_mb": s.reader_peak_mb or 0.0, "backends": s.backends,
      "tensorflow_imported": "tensorflow" in sys.modules,
      "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime}))
"""


def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def training_spectra(n: int = 3000, seed: int = 0):
    """(flux (n, 2600) float32 on the default grid, label codes, wave): data/prepared when a
    `dvc repro prepare` made it, else freshly simulated and preprocessed mock spectra."""
    from spectraforge.data import label_index
    from spectraforge.preprocess import make_grid

    prepared = ROOT / "data" / "prepared"
    if (prepared / "train.npy").exists():
        import pandas as pd

        X = np.load(prepared / "train.npy", mmap_mode="r")
        meta = pd.read_parquet(prepared / "meta.parquet")
        y = label_index(meta[meta.split == "train"].sort_values("row")["label"])
        rows = np.random.default_rng(seed).permutation(len(X))[:n]
        return np.asarray(X[np.sort(rows)], np.float32), y[np.sort(rows)], np.load(prepared / "wave.npy")
    from spectraforge.mock.simulate import simulate
    from spectraforge.mock.survey import draw_labels
    from spectraforge.preprocess import preprocess

    rng = np.random.default_rng(seed)
    labels = draw_labels({"star": 0.8, "unknown": 0.13, "galaxy": 0.05, "qso": 0.02}, n, rng)
    batch, wave = simulate(list(labels), seed=seed), make_grid()
    X = np.stack([preprocess(batch.wave, batch.flux[i], batch.andmask[i] != 0, wave, "median", 1.0)[0]
                  for i in range(n)])
    return X, label_index(labels), wave


def build_models(out: Path, n_folds: int = 5) -> Path:
    """A models folder of the default shape under ``out`` (see the module docstring)."""

    from spectraforge.ensemble import FittedEnsemble, WeightedAverage
    from spectraforge.io.spectrum import LABELS
    from spectraforge.models.cnn import CNNConfig, build_cnn
    from spectraforge.models.cnn_onnx import export_path, save_export
    from spectraforge.models.lgbm import LGBMConfig, SpectrumLGBM
    from spectraforge.training import configure_threads

    configure_threads(2)
    import keras

    params = default_params()
    prep = {k: params["prepare"][k] for k in ("grid", "normalise")}
    X, y, wave = training_spectra()
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)

    def manifest(name, kind, files, config):
        (staging / name).mkdir(parents=True, exist_ok=True)
        info = {"name": name, "kind": kind, "folds": files, "labels": list(LABELS), "wave": wave.tolist(),
                "prepare": prep, "config": config}
        (staging / name / "manifest.json").write_text(json.dumps(info))

    cnn_cfg = CNNConfig(**params["train"]["variants"]["cnn"]["config"]["network"])
    (staging / "cnn").mkdir(parents=True)
    for k in range(n_folds):
        keras.utils.set_random_seed(k)
        net, path = build_cnn(cnn_cfg), staging / "cnn" / f"fold{k}.keras"
        net.save(path)  # as SpectrumCNN.save writes a fold: the model and its layer export
        save_export(net, export_path(path), source=path)
    manifest("cnn", "cnn", [f"fold{k}.keras" for k in range(n_folds)], [asdict(cnn_cfg)])
    base = params["train"]["variants"]["lgbm"]["config"]
    names = lgbm_variants(params)
    fold = np.arange(len(y)) % n_folds
    for v, name in enumerate(names):
        (staging / name).mkdir(parents=True)
        rng = np.random.default_rng(100 + v)
        for k in range(n_folds):
            rows = np.flatnonzero(fold != k)
            if v:  # each augmented variant sees a resample of its fold (other trees, same sizes)
                rows = np.sort(rng.choice(rows, len(rows), replace=True))
            t0 = time.perf_counter()
            model = SpectrumLGBM(LGBMConfig(**{**base, "seed": base.get("seed", 2018) + v}), wave=wave, threads=1)
            model.fit(X[rows], y[rows], val=None).save(staging / name / f"fold{k}")
            print(f"  {name} fold {k}: {time.perf_counter() - t0:.1f} s", flush=True)
        manifest(name, "lgbm", [f"fold{k}.npz" for k in range(n_folds)], [])
    variants = ["cnn", *names]
    w = np.random.default_rng(0).dirichlet(np.ones(len(variants)))
    combiner = WeightedAverage()
    combiner.weights = w
    FittedEnsemble(variants, combiner, np.ones(len(LABELS))).save(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def make_inputs(folder: Path, n_real: int, n_mock: int) -> list[Path]:
    """``n_real`` copies of the real files (cycled) and ``n_mock`` mock FITS under ``folder``."""
    paths = []
    real = sorted(p for sub in ("lamost", "sdss") for p in (REAL / sub).glob("*.fits*")) if REAL.is_dir() else []
    if real and n_real:
        (folder / "real").mkdir(parents=True)
        for i in range(n_real):
            src = real[i % len(real)]
            dst = folder / "real" / f"r{i:06d}_{src.name}"
            shutil.copyfile(src, dst)
            paths.append(dst)
    if n_mock:
        (folder / "mock").mkdir(parents=True)
        paths += write_mock_fits(folder / "mock", n_mock)
    return sorted(paths)


def run_predict(inputs: list[Path], models: Path, out: Path, n_jobs: int, driver: str = DRIVER,
                cnn_backend: str = "auto") -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = {"inputs": [str(p) for p in inputs], "models": str(models), "out": str(out), "n_jobs": n_jobs,
            "combiner": str(models / "combiner.json"), "cnn_backend": cnn_backend}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", driver, json.dumps(args)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
    if res.returncode or line is None:
        raise RuntimeError(f"predict failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return {**json.loads(line.removeprefix("RESULT ")), "wall": wall}


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat: all but idle, iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_avg() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def agreement(a: Path, b: Path) -> tuple[float, float, bool]:
    """(largest |Δp| over every probability, share of equal labels, same rows in the same order)."""
    import pandas as pd

    x, y = pd.read_csv(a, dtype={"id": str}), pd.read_csv(b, dtype={"id": str})
    cols = [c for c in x.columns if c.startswith("p_")]
    same_rows = x["file"].tolist() == y["file"].tolist()
    return float(np.abs(x[cols].to_numpy() - y[cols].to_numpy()).max()), float((x["type"] == y["type"]).mean()), same_rows


def breakdown(run: dict, n: int, n_jobs: int, n_lgbm: int) -> list[str]:
    w, c = run["seconds"], run["cpu_seconds"]
    read_cpu = c.get("read (reader processes)", 0.0)
    steps = [("startup", "start-up: libraries, models, sessions"), ("read wait", "waiting for the readers"),
             ("cnn", "CNN, 5 folds"), ("features", f"LightGBM features + {5 * n_lgbm} PCA"),
             ("lgbm", f"LightGBM, {5 * n_lgbm} boosters"), ("combine", "combiner"), ("write", "CSV writing")]
    table = [f"| {label} | {w.get(k, 0):.1f} | {c.get(k, 0):.1f} | {1000 * c.get(k, 0) / n:.2f} |" for k, label in steps]
    table.append(f"| reading + preprocessing, in {n_jobs} reader process(es) (overlaps the rest) | — | "
                 f"{read_cpu:.1f} | {1000 * read_cpu / n:.2f} |")
    table.append(f"| total `predict` call (main process) | {w['total']:.1f} | {c['total']:.1f} | "
                 f"{1000 * c['total'] / n:.2f} |")
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-real", type=int, default=1500, help="copies of the real files (0 without ../shared)")
    ap.add_argument("--n-mock", type=int, default=1500)
    ap.add_argument("--small", type=int, default=1500, help="the smaller input count (peak memory: past the first blocks, it should not grow)")
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--large", type=int, default=0,
                    help="also run the default once on this many files (half real, half mock): memory and rate at scale")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from spectraforge.models.cnn_onnx import export_path

    models = WORK / "models-default"
    if args.rebuild or not (models / "combiner.json").exists() or not export_path(models / "cnn" / "fold0.keras").exists():
        print(f"building a default-shaped models folder in {models} ...", flush=True)
        build_models(models)
    n_lgbm = len(json.loads((models / "combiner.json").read_text())["inputs"]) - 1  # all but the CNN
    load_before = load_avg()
    busy0, own0, t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="sf-predict-") as tmp:
        tmp = Path(tmp)
        n_real = args.n_real if REAL.is_dir() else 0
        files = make_inputs(tmp / "in", n_real, args.n_mock)
        n = len(files)
        astropy_loop(files[:50])  # warm the page cache for both
        base = astropy_loop(files)
        # in turn: the new default (onnxruntime), the TensorFlow path it replaces, the default again
        runs = [run_predict([tmp / "in"], models, tmp / "onnx1.csv", args.n_jobs)]
        tf_run = run_predict([tmp / "in"], models, tmp / "tf.csv", args.n_jobs, cnn_backend="tensorflow")
        runs.append(run_predict([tmp / "in"], models, tmp / "onnx2.csv", args.n_jobs))
        small_dir = tmp / "small"
        small_dir.mkdir()
        for i, f in enumerate(files[:: max(1, n // args.small)][: args.small]):
            os.link(f, small_dir / f"{i:06d}_{f.name}")
        small = run_predict([small_dir], models, tmp / "small.csv", args.n_jobs)
        base_after = astropy_loop(files)
        max_dp, same_label, same_rows = agreement(tmp / "onnx1.csv", tmp / "tf.csv")
        large = None
        if args.large:
            shutil.rmtree(tmp / "in")
            n_large = len(make_inputs(tmp / "large", args.large // 2 if n_real else 0, args.large - (args.large // 2 if n_real else 0)))
            large = run_predict([tmp / "large"], models, tmp / "large.csv", args.n_jobs)
            assert large["predicted"] + large["errors"] == large["inputs"] == n_large, large
    load_after = load_avg()
    # other processes' CPU during the measured runs: the machine's busy time less this benchmark's own
    others = max(0.0, (busy_cpu_seconds() - busy0) - (own_cpu_seconds() - own0)) / (time.perf_counter() - t0)
    for r in (*runs, tf_run):
        assert r["predicted"] + r["errors"] == r["inputs"] == n, r
    big = min(runs, key=lambda r: n / r["wall"])  # the slower of the two: the figure quoted
    rates = [n / r["wall"] for r in runs]
    tf_rate = n / tf_run["wall"]
    w, c = big["seconds"], big["cpu_seconds"]
    steady = n / (w["total"] - w["startup"])
    read_cpu = c.get("read (reader processes)", 0.0)
    steady_cpu = c["total"] - c["startup"] + read_cpu  # what the work costs after start-up, readers included
    baseline = (base + base_after) / 2
    shared = others > 0.15  # cores' worth of other work, on average
    lines = [
        "## Predict: `spectraforge predict` with the default ensemble, end to end",
        "",
        f"Run {stamp()}; other processes used {others:.2f} cores on average while it ran (the machine's busy "
        f"CPU time less this benchmark's; load average {load_before} before, {load_after} after): "
        + ("the machine was shared with other jobs, so wall-clock rates are below what the 2 cores give; "
           "the CPU-second figures and the same-run ratios hold better." if shared else "the machine was otherwise idle."),
        f"Command: `python benchmarks/predict.py --n-real {args.n_real} --n-mock {args.n_mock} --small {args.small} "
        f"--n-jobs {args.n_jobs}{f' --large {args.large}' if args.large else ''}`. Models: the default shape (5 CNN folds of params.yaml's network with their layer "
        f"exports, as the train stage writes them; {n_lgbm} LightGBM variants × 5 folds at params.yaml's sizes; the "
        f"ensemble combiner over {n_lgbm + 1} variants). Inputs: {n} FITS files in one folder ({n_real} copies of "
        f"the real LAMOST/SDSS files of ../shared/real, {args.n_mock} mock LAMOST FITS, both layouts, half gzipped). "
        f"Each `predict` runs as its own process with {args.n_jobs} reader process(es); its wall time includes "
        "Python, library and model start-up. In turn, in the same run: the default (the CNN folds on onnxruntime "
        "from their exports), `--cnn-backend tensorflow` (the Keras folds, one XLA-compiled function: what predict "
        "ran before), the default again; and the plain astropy loop of benchmarks/ingest.py on the same files "
        "(open, take the flux, close; mean of a run before and after).",
        "",
        "| measure | value | baseline (same run) | ratio |",
        "|---|---|---|---|",
        f"| end to end, {n} files | {min(rates):.0f} files/s ({big['wall']:.1f} s; the other run "
        f"{max(rates):.0f}) | `--cnn-backend tensorflow` {tf_rate:.0f} files/s ({tf_run['wall']:.1f} s) | "
        f"{min(rates) / tf_rate:.2f}× |",
        f"| end to end, {n} files | | astropy read loop alone {baseline:.0f} files/s | {min(rates) / baseline:.2f}× |",
        f"| after start-up | {steady:.0f} files/s | tensorflow "
        f"{n / (tf_run['seconds']['total'] - tf_run['seconds']['startup']):.0f} files/s | "
        f"{steady / (n / (tf_run['seconds']['total'] - tf_run['seconds']['startup'])):.2f}× |",
        f"| start-up, wall s (from the call to the first model call) | {w['startup']:.1f} | tensorflow "
        f"{tf_run['seconds']['startup']:.1f} | {tf_run['seconds']['startup'] / max(w['startup'], 1e-9):.1f}× less |",
        f"| CPU seconds, all processes | {big['cpu_s']:.1f} | tensorflow {tf_run['cpu_s']:.1f} | "
        f"{tf_run['cpu_s'] / big['cpu_s']:.2f}× less |",
        f"| TensorFlow imported | {'yes' if big['tensorflow_imported'] else 'no'} | "
        f"{'yes' if tf_run['tensorflow_imported'] else 'no'} | |",
        f"| predictions against tensorflow's | largest \\|Δp\\| {max_dp:.1e}; same label {100 * same_label:.2f} %"
        f"{'' if same_rows else '; ROWS DIFFER'} | | |",
        f"| CPU cost after start-up, as a rate on {cores} idle cores: {n} / (CPU s / {cores}) | "
        f"{n / (steady_cpu / cores):.0f} files/s | | |",
        f"| peak memory, main process | {n} files: {big['rss_main_mb']:.0f} MB | {small['inputs']} files: "
        f"{small['rss_main_mb']:.0f} MB | {big['rss_main_mb'] / small['rss_main_mb']:.2f} |",
        f"| peak memory, a reader process | {n} files: {big['rss_reader_mb']:.0f} MB | {small['inputs']} files: "
        f"{small['rss_reader_mb']:.0f} MB | {big['rss_reader_mb'] / max(small['rss_reader_mb'], 1):.2f} |",
        *([f"| {n_large} files, end to end | {n_large / large['wall']:.0f} files/s ({large['wall']:.1f} s); peak memory "
           f"main {large['rss_main_mb']:.0f} MB, a reader {large['rss_reader_mb']:.0f} MB | {n} files: main "
           f"{big['rss_main_mb']:.0f} MB | {large['rss_main_mb'] / big['rss_main_mb']:.2f} |"] if large else []),
        "",
        f"Backends: {', '.join(f'{k}: {v}' for k, v in big['backends'].items())}.",
        "",
        f"Where the time went, {n} files, the default (main process unless stated; CPU seconds include the "
        "models' threads), and the tensorflow run beside it:",
        "",
        "| step | wall s | CPU s | CPU ms per file |",
        "|---|---|---|---|",
        *breakdown(big, n, args.n_jobs, n_lgbm),
        "",
        "| step, `--cnn-backend tensorflow` | wall s | CPU s | CPU ms per file |",
        "|---|---|---|---|",
        *breakdown(tf_run, n, args.n_jobs, n_lgbm),
        "",
        f"At these CPU costs the 5 CNN folds alone allow {cores * 1000 / max(1000 * c.get('cnn', 0) / n, 1e-9):.0f} "
        f"files/s on {cores} idle cores, LightGBM (features and {5 * n_lgbm} boosters) "
        f"{cores * 1000 / max(1000 * (c.get('features', 0) + c.get('lgbm', 0)) / n, 1e-9):.0f}, reading "
        f"{cores * 1000 / max(1000 * read_cpu / n, 1e-9):.0f}. Target (issue 18): ≥ 250 files/s end to end on 2 cores.",
    ]
    publish("predict", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
