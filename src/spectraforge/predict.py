"""`spectraforge predict`: the trained fold models applied to new spectra of any supported format.

Inputs may be FITS files (LAMOST either layout, SDSS; gzipped or not), Tianchi txt files,
folders of any of these (searched recursively, zips inside included), or Tianchi zips (read
in place). Each spectrum goes through the same reading and preprocessing as in `prepare`
(grid and normalisation come from the models' manifest), then every fold model of every
variant in the models folder; the probabilities are averaged over folds, then combined over
variants by the ensemble stage's fitted combiner and decision weights
(``data/ensemble/combiner.joblib``) when it is there and all its inputs are in the models
folder, else averaged.

Every input is accounted for: it is a row of the output CSV, or a row of ``<out>.errors.csv``
with the reason it was not classified (missing path, unreadable zip or file, a file that is not
a spectrum, a duplicate), and ``predicted + errors = inputs`` is checked before the outputs are
put in place. The rules are prepare's: files in folders are recognised by their names
(:func:`spectraforge.prepare.file_kind`), zip members by :func:`spectraforge.io.scan_unindexed`
(duplicate file names keep the first, as ``prepare`` keeps it), every spectrum is read by
``prepare``'s reader (:func:`spectraforge.prepare._process_chunk`).

Speed and memory (benchmarks/predict.py): the listing is lazy and chunks are read by a pool of
``n_jobs`` reader processes, a bounded number in flight, in order, while the main process runs
the models; the CNN folds of a variant run as one compiled function on fixed-size padded
batches (traced once), LightGBM folds share the hand-made features of a block of spectra;
rows are written to the CSV block by block. Nothing but the current blocks grows with the
number of inputs.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
from tqdm.auto import tqdm

from spectraforge.io import SpectrumReadError, scan_unindexed
from spectraforge.io.spectrum import LABELS
from spectraforge.params import GridParams, InputSpec
from spectraforge.prepare import NOT_A_SPECTRUM, Chunk, _process_chunk, file_kind, walk_files
from spectraforge.preprocess import make_grid

OUTPUT_COLUMNS = ["id", "type", *(f"p_{c}" for c in LABELS), "file"]
ERROR_COLUMNS = ["file", "reason"]
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local header, or the end record of an empty zip
STDERR_LINES = 20  # skipped inputs named on stderr; the rest only in the errors file


def load_model(path: Path, kind: str):
    """One fold model from its file: the only place that knows the on-disk formats."""
    if kind == "cnn":
        import keras

        import spectraforge.models.cnn  # noqa: F401  registers the custom layers

        return keras.models.load_model(path, compile=False)
    return joblib.load(path)


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

def read_chunk(chunk: Chunk, wave: np.ndarray, normalise: str):
    """Run in a reader process: prepare's read and preprocessing of one chunk, compacted for
    the trip back: (flux (m, P) float32, [(id, file)], [(file, reason)], CPU seconds)."""
    t0 = time.process_time()
    flux, metas, problems = _process_chunk(chunk, wave, normalise, 1.0)
    return (flux, [(m["id"], m["file"]) for m in metas], [(p["file"], p["reason"]) for p in problems],
            time.process_time() - t0)


class OrderedPool:
    """An iterator of (item, fn(item, *args)) in the order of ``items``, computed by ``n_jobs``
    worker processes with at most ``in_flight`` items submitted and not yet consumed: the
    listing is pulled, and results are held, only that far ahead of the consumer. The first
    items are submitted at construction, so the workers start while the caller gets ready."""

    def __init__(self, fn, items, n_jobs: int, in_flight: int, *args):
        from joblib.externals.loky import get_reusable_executor

        self.fn, self.items, self.args, self.in_flight = fn, iter(items), args, max(1, int(in_flight))
        self.executor = get_reusable_executor(max_workers=int(n_jobs))
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

    def close(self) -> None:
        for _, future in self.pending:
            future.cancel()
        self.pending.clear()


# ------------------------------------------------------------------------------------ inference

class CNNFolds:
    """The fold networks of one CNN variant as one compiled function returning their mean,
    called on fixed-size batches (the last one zero-padded), so it is traced once."""

    def __init__(self, models, batch_size: int = 256, jit_compile: bool = False):
        import tensorflow as tf

        self.models, self.batch_size = list(models), int(batch_size)
        n_pix = int(self.models[0].input_shape[-1])
        self.n_pix = n_pix

        @tf.function(input_signature=[tf.TensorSpec((self.batch_size, n_pix), tf.float32)],
                     jit_compile=jit_compile)
        def mean_proba(x):
            return tf.add_n([tf.cast(m(x, training=False), tf.float32) for m in self.models]) / len(self.models)

        self._fn = mean_proba

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
    """The LightGBM folds of every LightGBM variant: the hand-made features of a block of
    spectra are computed once and shared (they depend only on the grid and the window count);
    each fold adds its own PCA projection and runs its booster (``threads`` OpenMP threads).
    The same features and booster calls as :meth:`SpectrumLGBM.predict_proba`."""

    def __init__(self, variants: dict, threads: int = 2):
        self.variants, self.threads = variants, threads  # {name: [SpectrumLGBM]}
        self.seconds = {"features": 0.0, "lgbm": 0.0}

    def __call__(self, flux: np.ndarray) -> dict:
        from spectraforge.features import handmade_features

        flux = np.asarray(flux, np.float32)
        shared: dict = {}
        out = {}
        for name, folds in self.variants.items():
            probs = []
            for m in folds:
                t0 = time.perf_counter()
                key = (m.cfg.n_windows, np.asarray(m.wave).tobytes())
                if key not in shared:
                    shared[key] = handmade_features(flux, m.wave, m.cfg.n_windows)
                parts = [shared[key]]
                if m.pca is not None:
                    parts.append(m.pca.transform(flux).astype(np.float32))
                X = np.concatenate(parts, axis=1)
                t1 = time.perf_counter()
                proba = m.model.predict_proba(X, num_threads=self.threads)
                p = np.zeros((len(proba), len(LABELS)), np.float64)
                p[:, m.model.classes_] = proba
                probs.append(p)
                self.seconds["features"] += t1 - t0
                self.seconds["lgbm"] += time.perf_counter() - t1
            out[name] = np.mean(probs, axis=0)
        return out


class FoldEnsemble:
    """Every fold model of every variant under ``models_dir``; predict = mean over folds, then variants."""

    def __init__(self, models_dir: str | Path, threads: int = 2, batch_size: int = 256):
        models_dir = Path(models_dir)
        manifests = ([models_dir / "manifest.json"] if (models_dir / "manifest.json").exists()
                     else sorted(models_dir.glob("*/manifest.json")))
        if not manifests:
            raise FileNotFoundError(f"{models_dir}: no trained models (manifest.json); run `dvc repro` first")
        self.variants = []
        for m in manifests:
            info = json.loads(m.read_text())
            if info["labels"] != list(LABELS):
                raise ValueError(f"{m}: label order {info['labels']} differs from {list(LABELS)}")
            self.variants.append((info, [load_model(m.parent / f, info["kind"]) for f in info["folds"]]))
        prep = [json.dumps(info.get("prepare", {}), sort_keys=True) for info, _ in self.variants]
        if len(set(prep)) != 1:
            raise ValueError(f"{models_dir}: variants were trained on differently prepared data: {sorted(set(prep))}")
        first = self.variants[0][0]
        self.wave = np.asarray(first["wave"])
        self.normalise = first.get("prepare", {}).get("normalise", "median")
        grid = first.get("prepare", {}).get("grid")
        if grid and not np.allclose(make_grid(GridParams(**grid)), self.wave):
            raise ValueError(f"{models_dir}: manifest grid and wavelengths disagree")
        self.threads, self.batch_size = threads, batch_size
        self.seconds = {"cnn": 0.0, "other": 0.0}
        self._cnn: dict | None = None
        self._lgbm: LGBMFolds | None = None

    # one model at a time: the reference path (augment's confidence filter, tests)
    _load = staticmethod(load_model)

    @staticmethod
    def predict_one(model, kind: str, flux: np.ndarray) -> np.ndarray:
        """Class probabilities of one fold model of the given kind."""
        if kind == "cnn":
            from spectraforge.training import predict_proba

            return np.asarray(predict_proba(model, flux), np.float64)
        return model.predict_proba(flux)

    def per_variant_reference(self, flux: np.ndarray) -> dict:
        """{variant: mean over folds}, one model and one call at a time (what predict did before
        the batched path; kept as the reference the tests compare against)."""
        return {info["name"]: np.mean([self.predict_one(m, info["kind"], flux) for m in models], axis=0)
                for info, models in self.variants}

    def _runners(self):
        if self._cnn is None:
            from spectraforge.models.lgbm import SpectrumLGBM

            self._cnn = {info["name"]: CNNFolds(models, self.batch_size)
                         for info, models in self.variants if info["kind"] == "cnn"}
            self._lgbm = LGBMFolds({info["name"]: models for info, models in self.variants
                                    if info["kind"] != "cnn" and all(isinstance(m, SpectrumLGBM) for m in models)},
                                   self.threads)
        return self._cnn, self._lgbm

    def per_variant(self, flux: np.ndarray) -> dict:
        """{variant name: probabilities averaged over its fold models}, in manifest order."""
        cnn, lgbm = self._runners()
        t0 = time.perf_counter()
        out = {name: run(flux) for name, run in cnn.items()}
        self.seconds["cnn"] += time.perf_counter() - t0
        out.update(lgbm(flux) if lgbm.variants else {})
        t0 = time.perf_counter()
        for info, models in self.variants:  # kinds without a batched path
            if info["name"] not in out:
                out[info["name"]] = np.mean([self.predict_one(m, info["kind"], flux) for m in models], axis=0)
        self.seconds["other"] += time.perf_counter() - t0
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

    def line(self) -> str:
        text = f"{self.predicted} spectra classified -> {self.out}"
        if self.errors:
            text += f"; {self.errors} not classified (see {self.errors_file})"
        return text + f"; {self.predicted} + {self.errors} = {self.inputs} inputs"


def predict(paths, models_dir, out_csv, n_jobs: int = 1, progress: bool = True,
            combiner_path: str | Path | None = None, threads: int | None = None,
            chunk_size: int = 256, block_rows: int = 1024, in_flight: int | None = None) -> PredictSummary:
    """Classify every spectrum in ``paths``; writes ``out_csv`` and, if any input was not
    classified, ``<out>.errors.csv`` (file, reason). Returns the counts and where the time went.

    ``combiner_path``: the ensemble stage's ``combiner.joblib``; the variants it blends must be
    under ``models_dir``. Without it the variants' probabilities are averaged.
    ``n_jobs``: reader processes (>= 1), which read while this process runs the models;
    ``threads``: TensorFlow's and LightGBM's threads in this process (default: all cores).
    ``chunk_size`` spectra per reader task, ``block_rows`` spectra per model call, at most
    ``in_flight`` (default 2·n_jobs + 1) chunks read ahead.
    """
    import pandas as pd

    if int(n_jobs) < 1:
        raise ValueError(f"n_jobs must be >= 1 (reader processes), got {n_jobs}")
    threads = int(threads or os.cpu_count() or 1)
    in_flight = in_flight or 2 * n_jobs + 1
    t_start = time.perf_counter()
    seconds = {"startup": 0.0, "read_wait": 0.0, "read_cpu": 0.0, "cnn": 0.0, "features": 0.0,
               "lgbm": 0.0, "combine": 0.0, "write": 0.0}
    out_csv = Path(out_csv)
    err_path = errors_path(out_csv)
    problems: list[dict] = []
    # the readers start on the first chunks while TensorFlow and the models load
    first = _first_manifest(models_dir)
    wave = np.asarray(first["wave"])
    normalise = first.get("prepare", {}).get("normalise", "median")
    results = OrderedPool(read_chunk, iter_chunks(paths, chunk_size, problems), int(n_jobs), in_flight,
                           wave, normalise)
    configure_threads_if_possible(threads)
    ensemble = FoldEnsemble(models_dir, threads=threads)
    if not np.array_equal(ensemble.wave, wave) or ensemble.normalise != normalise:
        raise ValueError(f"{models_dir}: variants were trained on differently prepared data")
    combiner = joblib.load(combiner_path) if combiner_path else None
    ensemble._runners()
    seconds["startup"] = time.perf_counter() - t_start

    rows = CsvStream(out_csv, OUTPUT_COLUMNS)
    errors = CsvStream(err_path, ERROR_COLUMNS)
    summary = PredictSummary(out_csv, err_path, seconds=seconds)
    shown = 0

    def report(batch: list[dict]) -> None:
        nonlocal shown
        if not batch:
            return
        t0 = time.perf_counter()
        errors.write(pd.DataFrame(batch, columns=ERROR_COLUMNS))
        seconds["write"] += time.perf_counter() - t0
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
        cnn0, lgbm0 = ensemble.seconds["cnn"], dict(ensemble._lgbm.seconds)
        per = ensemble.per_variant(flux)
        seconds["cnn"] += ensemble.seconds["cnn"] - cnn0
        for k in ("features", "lgbm"):
            seconds[k] += ensemble._lgbm.seconds[k] - lgbm0[k]
        t0 = time.perf_counter()
        proba, codes = combine(per, combiner)
        t1 = time.perf_counter()
        frame = pd.DataFrame(proba, columns=[f"p_{c}" for c in LABELS])
        frame.insert(0, "type", np.asarray(LABELS)[np.asarray(codes, np.int64)])
        frame.insert(0, "id", [i for i, _ in metas])
        frame["file"] = [f for _, f in metas]
        rows.write(frame)
        seconds["combine"] += t1 - t0
        seconds["write"] += time.perf_counter() - t1

    try:
        with tqdm(desc="predict", unit="spec", disable=not progress) as bar:
            n_buffered = 0
            while True:
                t0 = time.perf_counter()
                nxt = next(results, None)
                seconds["read_wait"] += time.perf_counter() - t0
                report(problems)
                summary.inputs += len(problems)
                problems.clear()
                if nxt is None:
                    break
                chunk, (flux, metas, bad, cpu) = nxt
                summary.inputs += len(chunk.items)
                seconds["read_cpu"] += cpu
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
        results.close()
        rows.abort()
        errors.abort()
        raise
    rows.finish()
    errors.finish(keep=errors.n > 0)
    if shown > STDERR_LINES:
        print(f"spectraforge predict: ... and {shown - STDERR_LINES} more skipped (see {err_path})", file=sys.stderr)
    seconds["total"] = time.perf_counter() - t_start
    return summary


def _first_manifest(models_dir) -> dict:
    models_dir = Path(models_dir)
    found = ([models_dir / "manifest.json"] if (models_dir / "manifest.json").exists()
             else sorted(models_dir.glob("*/manifest.json")))
    if not found:
        raise FileNotFoundError(f"{models_dir}: no trained models (manifest.json); run `dvc repro` first")
    return json.loads(found[0].read_text())
