"""`spectraforge predict`: the trained fold models applied to new spectra of any supported format.

Inputs may be FITS files (LAMOST either layout, SDSS; gzipped or not), Tianchi txt files,
folders of any of these (searched recursively, zips inside included), or Tianchi zips (read
in place). Each spectrum goes through the same reading and preprocessing as in `prepare`
(grid and normalisation come from the models' manifest), then every fold model of every
variant in the models folder; the probabilities are averaged over folds, then combined over
variants by the ensemble stage's fitted combiner and decision weights
(``data/ensemble/combiner.json``) when it is there and all its inputs are in the models
folder, else averaged.

Every input is accounted for: it is a row of the output CSV, or a row of ``<out>.errors.csv``
with the reason it was not classified (missing path, unreadable zip or file, a file that is not
a spectrum, a duplicate), and ``predicted + errors = inputs`` is checked before the outputs are
put in place. The rules are prepare's: files in folders are recognised by their names
(:func:`spectraforge.prepare.file_kind`), zip members by :func:`spectraforge.io.scan_unindexed`
(duplicate file names keep the first, as ``prepare`` keeps it), every spectrum is read by
``prepare``'s reader (:func:`spectraforge.prepare._process_chunk`).

Speed and memory (benchmarks/predict.py): the listing is lazy and chunks are read by a pool of
``n_jobs`` reader processes (started first, importing only what reading needs), a bounded
number in flight, in order, while the main process loads and runs the models; the CNN folds
of a variant run as one onnxruntime session built from their layer exports
(:mod:`spectraforge.models.cnn_onnx`: no TensorFlow start-up), or else as one XLA-compiled
TensorFlow function; LightGBM folds share the hand-made features of a block of spectra;
rows are written to the CSV block by block. Nothing but the current blocks grows with the
number of inputs.

Nothing read from a models folder can run code: fold files must lie inside the folder, each
kind is loaded from its own format (Keras in safe mode, a CNN's layer export as plain arrays
checked against the one architecture it may describe, LightGBM text in an npz, JSON + npz
for the combiner), and a pickle is refused unless the user passes ``--allow-pickle``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from spectraforge.io import SpectrumReadError, scan_unindexed
from spectraforge.labels import LABELS
from spectraforge.params import GridParams, InputSpec
from spectraforge.prepare import NOT_A_SPECTRUM, Chunk, file_kind, walk_files
from spectraforge.preprocess import make_grid
from spectraforge.readers import read_chunk
from spectraforge.safeload import ModelFileError, fold_path

# The models' libraries (LightGBM, scikit-learn, pandas; TensorFlow only for the Keras path) are
# imported when the models load, after the reader processes have started.

OUTPUT_COLUMNS = ["id", "type", *(f"p_{c}" for c in LABELS), "file"]
ERROR_COLUMNS = ["file", "reason"]
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local header, or the end record of an empty zip
STDERR_LINES = 20  # skipped inputs named on stderr; the rest only in the errors file


# ------------------------------------------------------------------------------------- listing

def _is_zip(path: Path) -> bool:
    if file_kind(path.name) == "zip":
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in ZIP_MAGIC
    except OSError:
        return False


def _zip_chunks(path: Path, chunk_size: int, problems: list) -> Iterator[Chunk]:
    """Chunks of a Tianchi zip's txt members (read at their offsets); its problems to ``problems``."""
    try:
        entries, locations, bad = scan_unindexed(path)
    except SpectrumReadError as exc:
        problems.append({"file": str(path), "reason": exc.reason})
        return
    problems += [{"file": where, "reason": reason} for where, reason in bad]
    if not entries and not bad:
        problems.append({"file": str(path), "reason": "no Tianchi .txt spectra in the zip"})
    spec = InputSpec("tianchi", "test", str(path))
    for i in range(0, len(entries), chunk_size):
        yield Chunk(spec, entries[i : i + chunk_size], locations[i : i + chunk_size])


def iter_chunks(paths, chunk_size: int, problems: list) -> Iterator[Chunk]:
    """Chunks of work for every input, lazily, in input order; what cannot become work
    (missing paths, unreadable zips, files that are not spectra, inputs given twice) is
    appended to ``problems`` as {file, reason} when the listing reaches it. Each listed input
    is in exactly one chunk item or one problem."""
    done: list[Path] = []  # resolved arguments already listed
    done_files: set[str] = set()  # of those, the files (a folder listed later skips them)
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append({"file": str(path), "reason": "no such file or folder"})
            continue
        real = path.resolve()
        earlier = next((d for d in done if real == d or (d.is_dir() and real.is_relative_to(d))), None)
        if earlier is not None:
            problems.append({"file": str(path), "reason": f"given twice (already read as part of {earlier})"})
            continue
        done.append(real)
        if path.is_file():
            done_files.add(str(real))
            if _is_zip(path):
                yield from _zip_chunks(path, chunk_size, problems)
            else:
                yield Chunk(InputSpec("fits", "test", str(path)), [str(path)])
            continue
        spec, batch, found = InputSpec("fits", "test", str(path)), [], False
        for f in walk_files(path):
            found = True
            if done_files and os.path.realpath(f) in done_files:
                problems.append({"file": f, "reason": "given twice (already read as an argument)"})
                continue
            kind = file_kind(f)
            if kind in ("fits", "txt"):
                batch.append(f)
                if len(batch) == chunk_size:
                    yield Chunk(spec, batch)
                    batch = []
            elif kind == "zip":
                if batch:  # keep the listing order
                    yield Chunk(spec, batch)
                    batch = []
                yield from _zip_chunks(Path(f), chunk_size, problems)
            else:
                problems.append({"file": f, "reason": NOT_A_SPECTRUM})
        if batch:
            yield Chunk(spec, batch)
        if not found:
            problems.append({"file": str(path), "reason": "empty folder: no files found"})


def input_chunks(paths, chunk_size: int = 256) -> tuple[list[Chunk], list[dict]]:
    """All chunks and listing problems at once (small inputs, tests)."""
    problems: list[dict] = []
    chunks = list(iter_chunks(paths, chunk_size, problems))
    return chunks, problems


# -------------------------------------------------------------------------------------- reading

class OrderedPool:
    """An iterator of (item, fn(item, *args)) in the order of ``items``, computed by ``n_jobs``
    worker processes with at most ``in_flight`` items submitted and not yet consumed: the
    listing is pulled, and results are held, only that far ahead of the consumer. The first
    items are submitted at construction, so the workers start while the caller gets ready."""

    def __init__(self, fn, items, n_jobs: int, in_flight: int, *args):
        from joblib.externals.loky import ProcessPoolExecutor

        self.fn, self.items, self.args, self.in_flight = fn, iter(items), args, max(1, int(in_flight))
        # a pool of its own (not joblib's shared one, which `prepare` sizes and reuses)
        self.executor = ProcessPoolExecutor(max_workers=int(n_jobs))
        self.pending: deque = deque()
        self._fill()

    def _fill(self) -> None:
        while len(self.pending) < self.in_flight:
            item = next(self.items, None)
            if item is None:
                return
            self.pending.append((item, self.executor.submit(self.fn, item, *self.args)))

    def __iter__(self):
        return self

    def __next__(self):
        if not self.pending:
            raise StopIteration
        item, future = self.pending.popleft()
        result = future.result()
        self._fill()
        return item, result

    def peak_memory_mb(self) -> float | None:
        """The largest peak resident memory of the workers (Linux /proc; None elsewhere)."""
        peaks = []
        for pid in list(getattr(self.executor, "_processes", None) or {}):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                pass
        return max(peaks) if peaks else None

    def close(self, kill: bool = False) -> None:
        for _, future in self.pending:
            future.cancel()
        self.pending.clear()
        self.executor.shutdown(wait=True, kill_workers=kill)


# ------------------------------------------------------------------------------------ inference

class Clock:
    """Wall and CPU seconds (this process, all its threads: TensorFlow's and LightGBM's pools
    included) per step; CPU seconds say what a step costs whatever else runs on the machine."""

    def __init__(self):
        self.wall: dict = defaultdict(float)
        self.cpu: dict = defaultdict(float)

    @contextmanager
    def __call__(self, key: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[key] += time.perf_counter() - wall
            self.cpu[key] += time.process_time() - cpu


def inference_network(model):
    """The same network on keras' Conv1D and MaxPooling1D (oneDNN/XLA convolution kernels) in
    place of ShiftConv1D and ReshapeMaxPooling1D, with the same weights: those two layers speed
    up training's gradients, but for the forward pass alone the plain kernels use ~1.5x less
    CPU (benchmarks/predict.py). Checked on a probe batch; any doubt keeps ``model``."""
    import keras

    from spectraforge.models.cnn import ReshapeMaxPooling1D, ShiftConv1D

    def swap(layer):
        if isinstance(layer, ShiftConv1D):
            return keras.layers.Conv1D.from_config(layer.get_config())
        if isinstance(layer, ReshapeMaxPooling1D):
            return keras.layers.MaxPooling1D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    if not any(isinstance(layer, (ShiftConv1D, ReshapeMaxPooling1D)) for layer in model.layers):
        return model
    try:
        net = keras.models.clone_model(model, clone_function=swap)
        net.set_weights(model.get_weights())
        probe = np.random.default_rng(0).normal(1.0, 0.3, (4, *model.input_shape[1:])).astype(np.float32)
        if np.allclose(np.asarray(net(probe, training=False)), np.asarray(model(probe, training=False)), atol=1e-5):
            return net
    except (ValueError, TypeError, KeyError):
        pass
    return model


class CNNFolds:
    """The fold networks of one CNN variant as one compiled function returning their mean,
    called on fixed-size batches (the last one zero-padded), so it is traced and compiled
    once. XLA (``jit_compile``) costs a few seconds once and ~1.6x less CPU per spectrum than
    the plain graph on 2 cores (benchmarks/predict.py)."""

    def __init__(self, models, batch_size: int = 256, jit_compile: bool = True):
        import tensorflow as tf

        self.models, self.batch_size = [inference_network(m) for m in models], int(batch_size)
        n_pix = int(self.models[0].input_shape[-1])
        self.n_pix = n_pix

        @tf.function(input_signature=[tf.TensorSpec((self.batch_size, n_pix), tf.float32)],
                     jit_compile=jit_compile)
        def mean_proba(x):
            return tf.add_n([tf.cast(m(x, training=False), tf.float32) for m in self.models]) / len(self.models)

        self._fn = mean_proba
        self._fn(tf.zeros((self.batch_size, n_pix), tf.float32))  # trace and compile now, at start-up

    def __call__(self, flux: np.ndarray) -> np.ndarray:
        flux = np.asarray(flux, np.float32)
        n, b = len(flux), self.batch_size
        out = np.empty((n, len(LABELS)), np.float64)
        for start in range(0, n, b):
            part = flux[start : start + b]
            if len(part) < b:
                part = np.concatenate([part, np.zeros((b - len(part), flux.shape[1]), np.float32)])
            out[start : start + b] = self._fn(part).numpy()[: min(b, n - start)]
        return out


class LGBMFolds:
    """The LightGBM folds of every LightGBM variant, on the features of a block of spectra
    computed once: the hand-made features depend only on the grid and the window count, so
    every fold shares them; the folds' PCA projections are one matrix product with their
    components stacked (``X @ C.T - mean @ C.T`` as ``PCA.transform`` computes it, per column
    block the same bits), then each booster runs on its fold's columns with ``threads``
    threads. The same features and booster calls as :meth:`SpectrumLGBM.predict_proba`."""

    def __init__(self, variants: dict, threads: int = 2, clock: Clock | None = None):
        self.variants, self.threads = variants, threads  # {name: [SpectrumLGBM]}
        self.clock = clock or Clock()
        folds = [m for ms in variants.values() for m in ms]
        stack = [m for m in folds if m.pca is not None and not m.pca.whiten
                 and m.pca.components_.dtype == np.float32]
        self._cols: dict[int, slice] = {}
        if stack:
            self._components = np.concatenate([m.pca.components_ for m in stack])
            self._offset = np.concatenate([m.pca.mean_.reshape(1, -1) @ m.pca.components_.T for m in stack], axis=1)
            at = 0
            for m in stack:
                self._cols[id(m)] = slice(at, at + m.pca.components_.shape[0])
                at += m.pca.components_.shape[0]

    def _pca(self, m, flux, projected):
        if id(m) in self._cols:
            return projected[:, self._cols[id(m)]].astype(np.float32)
        return m.pca.transform(flux).astype(np.float32)

    def __call__(self, flux: np.ndarray) -> dict:
        from spectraforge.features import handmade_features
        from spectraforge.models.base import class_columns

        clock = self.clock
        with clock("features"):
            flux = np.asarray(flux, np.float32)
            projected = None
            if self._cols:
                projected = flux @ self._components.T
                projected -= self._offset
        shared: dict = {}
        out = {}
        for name, folds in self.variants.items():
            probs = []
            for m in folds:
                with clock("features"):
                    key = (m.config.n_windows, np.asarray(m.wave).tobytes())
                    if key not in shared:
                        shared[key] = handmade_features(flux, m.wave, m.config.n_windows)
                    X = (shared[key] if m.pca is None
                         else np.concatenate([shared[key], self._pca(m, flux, projected)], axis=1))
                with clock("lgbm"):
                    proba = m.booster.predict(X, num_threads=self.threads)
                    if proba.ndim == 1:  # a two-class fold: P(second class) only
                        proba = np.vstack((1.0 - proba, proba)).T
                    probs.append(class_columns(proba, m.classes, len(LABELS)))
            out[name] = np.mean(probs, axis=0)
        return out


CNN_BACKENDS = ("auto", "tensorflow")


class FoldEnsemble:
    """Every fold model of every variant under ``models_dir``; predict = mean over folds, then variants.

    CNN variants run on onnxruntime when they can (``cnn_backend="auto"``): from the layer
    exports the train stage writes beside each fold (``fold0.net.npz``, checked against its
    ``fold0.keras``), without importing TensorFlow at all, or else from the Keras folds,
    converted once loaded. A network the converter does not know (bfloat16 compute, another
    architecture) or a machine without onnxruntime keeps the Keras path (one XLA-compiled
    function); ``cnn_backend="tensorflow"`` forces it. ``backends`` says which ran, ``notes``
    why an export was not used."""

    def __init__(self, models_dir: str | Path, threads: int = 2, batch_size: int = 256,
                 allow_pickle: bool = False, cnn_backend: str = "auto"):
        if cnn_backend not in CNN_BACKENDS:
            raise ValueError(f"cnn_backend must be one of {', '.join(CNN_BACKENDS)}, got {cnn_backend!r}")
        models_dir = Path(models_dir)
        manifests = manifest_paths(models_dir)
        self.threads, self.batch_size, self.allow_pickle = threads, batch_size, allow_pickle
        self.cnn_backend = cnn_backend
        self.clock = Clock()
        self.backends: dict[str, str] = {}
        self.notes: list[str] = []
        self._onnx: dict = {}  # variant name -> OnnxFolds
        self._dirs: dict[str, Path] = {}
        self.variants = []  # (manifest, fold models; None until needed for a variant run from its exports)
        from spectraforge.models.registry import read_manifest

        for m in manifests:
            info = read_manifest(m)
            if info.get("labels") != list(LABELS):
                raise ModelFileError(f"{m}: label order {info.get('labels')} differs from {list(LABELS)}")
            self._dirs[info["name"]] = m.parent
            models = None
            if info["kind"] == "cnn" and cnn_backend == "auto":
                self._from_exports(info, m.parent)
            if info["name"] not in self._onnx:
                models = self._load_folds(info)
            self.variants.append((info, models))
        prep = [json.dumps(info.get("prepare", {}), sort_keys=True) for info, _ in self.variants]
        if len(set(prep)) != 1:
            raise ValueError(f"{models_dir}: variants were trained on differently prepared data: {sorted(set(prep))}")
        first = self.variants[0][0]
        self.wave = np.asarray(first["wave"])
        self.normalise = first.get("prepare", {}).get("normalise", "median")
        grid = first.get("prepare", {}).get("grid")
        if grid and not np.allclose(make_grid(GridParams(**grid)), self.wave):
            raise ValueError(f"{models_dir}: manifest grid and wavelengths disagree")
        self._cnn: dict | None = None
        self._lgbm: LGBMFolds | None = None

    def _load_folds(self, info: dict) -> list:
        from spectraforge.models.registry import load_fold

        if info["kind"] == "cnn":
            configure_threads_if_possible(self.threads)  # before TensorFlow starts its pools
        folder = self._dirs[info["name"]]
        return [load_fold(folder, f, info["kind"], self.allow_pickle) for f in info["folds"]]

    def _from_exports(self, info: dict, folder: Path) -> None:
        """An onnxruntime session for a CNN variant from its folds' layer exports, if they are all
        there and current; else a note why not (the Keras folds are then loaded)."""
        from spectraforge.models.cnn_onnx import OnnxFolds, export_path

        files = [fold_path(folder, f) for f in info["folds"]]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise ModelFileError(f"{missing[0]}: fold model listed in the manifest is missing")
        if not all(export_path(f).is_file() for f in files):
            return  # trained before exports existed: converted from the Keras folds once loaded
        runner = self._onnx_session(info["name"], "layer export",
                                    lambda: OnnxFolds.from_exports(files, self.threads, self.batch_size))
        if runner is not None:
            self._onnx[info["name"]] = runner
            self.backends[info["name"]] = "onnxruntime (layer exports)"

    def _onnx_session(self, name: str, source: str, build):
        """``build()``, or None with a note saying why (the caller then runs the Keras folds): a
        network the converter does not know, onnxruntime missing, or onnxruntime failing."""
        from spectraforge.models.cnn_onnx import UnsupportedNetwork

        try:
            return build()
        except UnsupportedNetwork as exc:
            reason = str(exc)
        except ImportError as exc:  # onnx or onnxruntime not installed
            reason = f"onnxruntime unavailable ({exc})"
        except Exception as exc:  # onnxruntime's own errors: the Keras path still gives the answer
            reason = f"onnxruntime failed ({type(exc).__name__}: {exc})"
        self.notes.append(f"{name}: {source} not run on onnxruntime: {reason}; running the Keras folds")
        return None

    def _models(self, index: int) -> list:
        info, models = self.variants[index]
        if models is None:
            models = self._load_folds(info)
            self.variants[index] = (info, models)
        return models

    @staticmethod
    def predict_one(model, flux: np.ndarray) -> np.ndarray:
        """Class probabilities (float64) of one fold model (any registered classifier)."""
        return np.asarray(model.predict_proba(flux), np.float64)

    def per_variant_reference(self, flux: np.ndarray) -> dict:
        """{variant: mean over folds}, one model and one call at a time (what predict did before
        the batched path; kept as the reference the tests compare against). Loads the Keras folds
        of variants that run from their exports."""
        return {info["name"]: np.mean([self.predict_one(m, flux) for m in self._models(i)], axis=0)
                for i, (info, _) in enumerate(self.variants)}

    def _cnn_runner(self, index: int):
        info = self.variants[index][0]
        name = info["name"]
        if name in self._onnx:
            return self._onnx[name]
        models = [m.model for m in self._models(index)]
        if self.cnn_backend == "auto":
            from spectraforge.models.cnn_onnx import OnnxFolds

            runner = self._onnx_session(name, "the Keras folds",
                                        lambda: OnnxFolds.from_models(models, self.threads, self.batch_size))
            if runner is not None:
                self.backends[name] = "onnxruntime (converted from the Keras folds)"
                return runner
        self.backends[name] = "tensorflow (XLA)"
        return CNNFolds(models, self.batch_size)

    def _runners(self):
        if self._cnn is None:
            from spectraforge.models.lgbm import SpectrumLGBM

            self._cnn = {info["name"]: self._cnn_runner(i) for i, (info, _) in enumerate(self.variants)
                         if info["kind"] == "cnn"}
            lgbm = {info["name"]: models for info, models in self.variants
                    if info["kind"] != "cnn" and all(isinstance(m, SpectrumLGBM) for m in models)}
            self._lgbm = LGBMFolds(lgbm, self.threads, self.clock)
            self.backends.update({name: "lightgbm" for name in lgbm})
        return self._cnn, self._lgbm

    def per_variant(self, flux: np.ndarray) -> dict:
        """{variant name: probabilities averaged over its fold models}, in manifest order."""
        cnn, lgbm = self._runners()
        with self.clock("cnn"):
            out = {name: run(flux) for name, run in cnn.items()}
        out.update(lgbm(flux) if lgbm.variants else {})
        with self.clock("other models"):
            for i, (info, _) in enumerate(self.variants):  # kinds without a batched path
                if info["name"] not in out:
                    out[info["name"]] = np.mean([self.predict_one(m, flux) for m in self._models(i)], axis=0)
        return {info["name"]: out[info["name"]] for info, _ in self.variants}

    def predict(self, flux: np.ndarray, combiner=None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, label codes): the fitted ensemble's if given, else the mean over variants."""
        return combine(self.per_variant(flux), combiner)


def combine(per: dict, combiner=None) -> tuple[np.ndarray, np.ndarray]:
    if combiner is not None:
        return combiner.predict(per)
    proba = np.mean(list(per.values()), axis=0)
    return proba, proba.argmax(axis=1)


def configure_threads_if_possible(threads: int) -> None:
    """Size TensorFlow's pools for ``threads`` cores unless this process started TF already."""
    from spectraforge.training import configure_threads

    try:
        configure_threads(threads)
    except RuntimeError:
        pass  # an embedding process (a test session, a notebook) chose its own layout


# -------------------------------------------------------------------------------------- writing

class CsvStream:
    """A CSV written block by block into a temporary file, renamed into place by :meth:`finish`."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns, self.n = Path(path), columns, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.fh = open(self.tmp, "w", newline="")
        self.fh.write(",".join(columns) + "\n")

    def write(self, frame) -> None:
        frame.to_csv(self.fh, header=False, index=False, float_format="%.6f")
        self.n += len(frame)

    def finish(self, keep: bool = True) -> None:
        self.fh.close()
        if keep:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
            self.path.unlink(missing_ok=True)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def errors_path(out_csv) -> Path:
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.stem + ".errors.csv")


@dataclass
class PredictSummary:
    """What one ``predict`` call did: the counts add up (``inputs = predicted + errors``)."""

    out: Path
    errors_file: Path
    inputs: int = 0
    predicted: int = 0
    errors: int = 0
    seconds: dict = field(default_factory=dict)  # wall seconds per step (see predict)
    cpu_seconds: dict = field(default_factory=dict)  # CPU seconds per step; "total": this process
    reader_peak_mb: float | None = None  # the largest peak resident memory of a reader process
    backends: dict = field(default_factory=dict)  # variant -> what ran it (onnxruntime, tensorflow, lightgbm)

    def line(self) -> str:
        text = f"{self.predicted} spectra classified -> {self.out}"
        if self.errors:
            text += f"; {self.errors} not classified (see {self.errors_file})"
        return text + f"; {self.predicted} + {self.errors} = {self.inputs} inputs"


def predict(paths, models_dir, out_csv, n_jobs: int = 1, progress: bool = True,
            combiner_path: str | Path | None = None, threads: int | None = None, allow_pickle: bool = False,
            chunk_size: int = 256, block_rows: int = 1024, in_flight: int | None = None,
            cnn_backend: str = "auto") -> PredictSummary:
    """Classify every spectrum in ``paths``; writes ``out_csv`` and, if any input was not
    classified, ``<out>.errors.csv`` (file, reason). Returns the counts and where the time went.

    ``combiner_path``: the ensemble stage's ``combiner.json``; the variants it blends must be
    under ``models_dir``. Without it the variants' probabilities are averaged. Only fold
    models inside ``models_dir`` are read, and no pickle unless ``allow_pickle``.
    ``n_jobs``: reader processes (>= 1), which read while this process runs the models;
    ``threads``: the models' threads in this process (default: all cores).
    ``chunk_size`` spectra per reader task, ``block_rows`` spectra per model call, at most
    ``in_flight`` (default 4·n_jobs + 4) chunks read ahead: enough for the readers to keep going
    while the models load, a bound on memory whatever the number of inputs.
    ``cnn_backend``: "auto" (onnxruntime where it can run the network) or "tensorflow"
    (see :class:`FoldEnsemble`).
    """
    import pandas as pd

    if int(n_jobs) < 1:
        raise ValueError(f"n_jobs must be >= 1 (reader processes), got {n_jobs}")
    threads = int(threads or os.cpu_count() or 1)
    in_flight = in_flight or 4 * n_jobs + 4
    t_start, c_start = time.perf_counter(), time.process_time()
    out_csv = Path(out_csv)
    err_path = errors_path(out_csv)
    problems: list[dict] = []
    # the readers start on the first chunks while the models load
    first = _first_manifest(models_dir)
    wave = np.asarray(first["wave"])
    normalise = first.get("prepare", {}).get("normalise", "median")
    results = OrderedPool(read_chunk, iter_chunks(paths, chunk_size, problems), int(n_jobs), in_flight,
                          wave, normalise)
    try:
        ensemble = FoldEnsemble(models_dir, threads=threads, allow_pickle=allow_pickle, cnn_backend=cnn_backend)
        if not np.array_equal(ensemble.wave, wave) or ensemble.normalise != normalise:
            raise ValueError(f"{models_dir}: variants were trained on differently prepared data")
        from spectraforge.ensemble import load_combiner

        combiner = load_combiner(combiner_path, allow_pickle) if combiner_path else None
        ensemble._runners()
    except BaseException:
        results.close(kill=True)
        raise
    for note in ensemble.notes:
        print(f"spectraforge predict: {note}", file=sys.stderr)
    clock = ensemble.clock
    clock.wall["startup"], clock.cpu["startup"] = time.perf_counter() - t_start, time.process_time() - c_start

    rows = CsvStream(out_csv, OUTPUT_COLUMNS)
    errors = CsvStream(err_path, ERROR_COLUMNS)
    summary = PredictSummary(out_csv, err_path, backends=dict(ensemble.backends))
    shown = 0

    def report(batch: list[dict]) -> None:
        nonlocal shown
        if not batch:
            return
        with clock("write"):
            errors.write(pd.DataFrame(batch, columns=ERROR_COLUMNS))
        for e in batch:
            if shown < STDERR_LINES:
                print(f"spectraforge predict: skipped {e['file']}: {e['reason']}", file=sys.stderr)
            shown += 1

    buffered: list[tuple[np.ndarray, list]] = []

    def flush() -> None:
        if not buffered:
            return
        flux = np.concatenate([f for f, _ in buffered])
        metas = [m for _, ms in buffered for m in ms]
        buffered.clear()
        per = ensemble.per_variant(flux)
        with clock("combine"):
            proba, codes = combine(per, combiner)
        with clock("write"):
            frame = pd.DataFrame(proba, columns=[f"p_{c}" for c in LABELS])
            frame.insert(0, "type", np.asarray(LABELS)[np.asarray(codes, np.int64)])
            frame.insert(0, "id", [i for i, _ in metas])
            frame["file"] = [f for _, f in metas]
            rows.write(frame)

    try:
        with tqdm(desc="predict", unit="spec", disable=not progress) as bar:
            n_buffered = 0
            while True:
                with clock("read wait"):
                    nxt = next(results, None)
                report(problems)
                summary.inputs += len(problems)
                problems.clear()
                if nxt is None:
                    break
                chunk, (flux, metas, bad, cpu) = nxt
                summary.inputs += len(chunk.items)
                clock.cpu["read (reader processes)"] += cpu
                report([{"file": f, "reason": r} for f, r in bad])
                if len(flux):
                    buffered.append((flux, metas))
                    n_buffered += len(flux)
                if n_buffered >= block_rows:
                    flush()
                    n_buffered = 0
                bar.update(len(chunk.items))
            flush()
        summary.predicted, summary.errors = rows.n, errors.n
        if summary.predicted + summary.errors != summary.inputs:  # the books balance before any output is final
            raise RuntimeError(f"predict: {summary.predicted} predicted + {summary.errors} errors "
                               f"!= {summary.inputs} inputs")
    except BaseException:
        results.close(kill=True)
        rows.abort()
        errors.abort()
        raise
    summary.reader_peak_mb = results.peak_memory_mb()
    results.close()
    rows.finish()
    errors.finish(keep=errors.n > 0)
    if shown > STDERR_LINES:
        print(f"spectraforge predict: ... and {shown - STDERR_LINES} more skipped (see {err_path})", file=sys.stderr)
    clock.wall["total"], clock.cpu["total"] = time.perf_counter() - t_start, time.process_time() - c_start
    summary.seconds, summary.cpu_seconds = dict(clock.wall), dict(clock.cpu)
    return summary


def manifest_paths(models_dir) -> list[Path]:
    """The manifests of ``models_dir``: its own (one variant's folder) or its sub-folders'."""
    models_dir = Path(models_dir)
    found = ([models_dir / "manifest.json"] if (models_dir / "manifest.json").exists()
             else sorted(models_dir.glob("*/manifest.json")))
    if not found:
        raise FileNotFoundError(f"{models_dir}: no trained models (manifest.json); run `dvc repro` first")
    return found


def _first_manifest(models_dir) -> dict:
    return json.loads(manifest_paths(models_dir)[0].read_text())
