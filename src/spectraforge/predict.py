"""`spectraforge predict`: the trained fold models applied to new spectra of any supported format.

Inputs may be FITS files (LAMOST either layout, SDSS; gzipped or not), Tianchi txt files,
folders of either (searched recursively), or Tianchi zips (read in place). Each spectrum goes
through the same reading and preprocessing as in `prepare` (grid and normalisation come from
the models' manifest), then every fold model of every variant in the models folder; the
probabilities are averaged over folds, then combined over variants by the ensemble stage's
fitted combiner and decision weights (``data/ensemble/combiner.json``) when it is there
and all its inputs are in the models folder, else averaged. Unreadable inputs are reported on
stderr and listed in `<out>.errors.csv` with their reason; the other rows are still written.

Nothing read from a models folder can run code: fold files must lie inside the folder, each
kind is loaded from its own format (Keras in safe mode, LightGBM text in an npz, JSON + npz
for the combiner), and a pickle is refused unless the user passes ``--allow-pickle``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from spectraforge.ensemble import load_combiner
from spectraforge.io import list_tianchi
from spectraforge.labels import LABELS
from spectraforge.models.registry import load_fold, read_manifest
from spectraforge.safeload import ModelFileError
from spectraforge.params import GridParams, InputSpec
from spectraforge.prepare import Chunk, _process_chunk, list_fits
from spectraforge.preprocess import make_grid

OUTPUT_COLUMNS = ["id", "type", *(f"p_{c}" for c in LABELS), "file"]


def input_chunks(paths, chunk_size: int = 256) -> tuple[list[Chunk], list[dict]]:
    """Chunks of work for every input path; missing paths become error rows, not exceptions."""
    chunks, errors = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix.lower() == ".zip":
            spec, items = InputSpec("tianchi", "test", str(path)), list_tianchi(path)
        elif path.is_dir():
            txt = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.name.lower().endswith((".txt", ".txt.gz")))
            spec, items = InputSpec("fits", "test", str(path)), list_fits(path) + txt
        elif path.is_file():
            spec, items = InputSpec("fits", "test", str(path)), [str(path)]
        else:
            errors.append({"file": str(path), "reason": "no such file or folder"})
            continue
        if not items:
            errors.append({"file": str(path), "reason": "no FITS or Tianchi txt spectra found"})
        chunks += [Chunk(spec, items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
    return chunks, errors


class FoldEnsemble:
    """Every fold model of every variant under ``models_dir``; predict = mean over folds, then variants."""

    def __init__(self, models_dir: str | Path, allow_pickle: bool = False):
        models_dir = Path(models_dir)
        manifests = ([models_dir / "manifest.json"] if (models_dir / "manifest.json").exists()
                     else sorted(models_dir.glob("*/manifest.json")))
        if not manifests:
            raise FileNotFoundError(f"{models_dir}: no trained models (manifest.json); run `dvc repro` first")
        self.variants = []
        for m in manifests:
            info = read_manifest(m)
            if info.get("labels") != list(LABELS):
                raise ModelFileError(f"{m}: label order {info.get('labels')} differs from {list(LABELS)}")
            self.variants.append((info, [load_fold(m.parent, f, info["kind"], allow_pickle) for f in info["folds"]]))
        prep = [json.dumps(info.get("prepare", {}), sort_keys=True) for info, _ in self.variants]
        if len(set(prep)) != 1:
            raise ValueError(f"{models_dir}: variants were trained on differently prepared data: {sorted(set(prep))}")
        first = self.variants[0][0]
        self.wave = np.asarray(first["wave"])
        self.normalise = first.get("prepare", {}).get("normalise", "median")
        grid = first.get("prepare", {}).get("grid")
        if grid and not np.allclose(make_grid(GridParams(**grid)), self.wave):
            raise ValueError(f"{models_dir}: manifest grid and wavelengths disagree")

    @staticmethod
    def predict_one(model, flux: np.ndarray) -> np.ndarray:
        """Class probabilities (float64) of one fold model (any registered classifier)."""
        return np.asarray(model.predict_proba(flux), np.float64)

    def per_variant(self, flux: np.ndarray) -> dict:
        """{variant name: probabilities averaged over its fold models}."""
        return {info["name"]: np.mean([self.predict_one(m, flux) for m in models], axis=0)
                for info, models in self.variants}

    def predict(self, flux: np.ndarray, combiner=None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, label codes): the fitted ensemble's if given, else the mean over variants."""
        per = self.per_variant(flux)
        if combiner is not None:
            return combiner.predict(per)
        proba = np.mean(list(per.values()), axis=0)
        return proba, proba.argmax(axis=1)


def predict(paths, models_dir, out_csv, n_jobs: int = 1, progress: bool = True,
            combiner_path: str | Path | None = None, allow_pickle: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classify every spectrum in ``paths``; writes ``out_csv`` (and ``<out>.errors.csv`` if any).

    ``combiner_path``: the ensemble stage's ``combiner.json``; the variants it blends must be
    under ``models_dir``. Without it the variants' probabilities are averaged. Only fold
    models inside ``models_dir`` are read, and no pickle unless ``allow_pickle``.
    """
    ensemble = FoldEnsemble(models_dir, allow_pickle)
    combiner = load_combiner(combiner_path, allow_pickle) if combiner_path else None
    chunks, errors = input_chunks(paths)
    rows, codes, metas = [], [], []
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_process_chunk)(c, ensemble.wave, ensemble.normalise, 1.0) for c in chunks)
    with tqdm(total=sum(len(c.items) for c in chunks), desc="predict", unit="spec", disable=not progress) as bar:
        for chunk, (flux, meta, problems) in zip(chunks, jobs):
            errors += [{"file": p["file"], "reason": p["reason"]} for p in problems]
            if len(flux):
                proba, label = ensemble.predict(flux, combiner)
                rows.append(proba)
                codes.append(label)
                metas += meta
            bar.update(len(chunk.items))
    proba = np.concatenate(rows) if rows else np.zeros((0, len(LABELS)))
    out = pd.DataFrame(proba, columns=[f"p_{c}" for c in LABELS])
    out.insert(0, "type", [LABELS[i] for i in np.concatenate(codes)] if codes else [])
    out.insert(0, "id", [m["id"] for m in metas])
    out["file"] = [m["file"] for m in metas]
    out = out[OUTPUT_COLUMNS]
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_csv, index=False, float_format="%.6f")
    err = pd.DataFrame(errors, columns=["file", "reason"])
    err_path = out_csv.with_name(out_csv.stem + ".errors.csv")
    if len(err):
        err.to_csv(err_path, index=False)
        for e in errors:
            print(f"spectraforge predict: skipped {e['file']}: {e['reason']}", file=sys.stderr)
    elif err_path.exists():
        err_path.unlink()
    return out, err
