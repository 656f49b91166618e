"""The rare-class benchmark: does a generator's spectra help when the minority classes are scarce?

    dvc repro folds   # the prepared default mock and its folds
    python benchmarks/rare_class.py --n 25,50,100,all --folds 0,1 --batches 150

For each fold k run and each N, fold k's training part keeps only N galaxies and N quasars
(``spectraforge.subsets.reduce_per_class``: a seeded permutation per class, so N=25 ⊂ N=50 ⊂ …;
stars and unknowns whole; fold k's validation spectra untouched). Every source of extra spectra
is fitted on that reduced part alone, exactly as ``generate@<source>`` does it (same spec from
params.yaml, same target counts, same seeds, the same leak check against fold k's ids), and the
CNN (``train.variants.cnn``, its budget scaled to ``--batches`` per fold) and LightGBM
(``train.variants.lgbm``) are trained on the reduced part plus the extras and scored on fold k.
``none`` adds nothing (the CNN still sees balanced batches: it repeats its N spectra), and
``oversample`` (copies of the N training spectra) is the control every source is compared with.

Scores are over the validation rows of the folds run, labels by the nested-CV decision weights
of ``train.decision`` (argmax with one fold). minority F1: the mean of the galaxy and quasar F1.
Δ: against ``oversample`` at the same N for the same model, a paired bootstrap over the same
rows (``spectraforge.report.paired_delta``). Each cell's probabilities are kept in
benchmarks/_work/rare_class/ so a killed run resumes where it stopped.

Writes benchmarks/results/rare_class.{csv,png} and the `rare-class` section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _results import publish, stamp
from learning_curve import decided_labels, scaled_fit
from spectraforge.training import configure_threads

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "_work" / "rare_class"
MINORITY = ("galaxy", "qso")
CONTROL = "oversample"


def n_label(n) -> str:
    return "all" if n is None else str(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="25,50,100,all", help="training spectra kept per minority class")
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--sources", default="none,oversample,noise,realnvp,energy",
                    help="none, or generate.variants names of params.yaml")
    ap.add_argument("--models", default="cnn,lgbm")
    ap.add_argument("--batches", type=int, default=150, help="CNN batches per fold (the default's split)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import yaml

    raw = yaml.safe_load(Path(args.params).read_text())
    tp = raw["train"]
    configure_threads(tp["threads"])
    from spectraforge.crossval import DecisionParams, ModelSpec, build_classifier
    from spectraforge.data import fold_rows, label_index, load_prepared
    from spectraforge.subsets import reduce_per_class
    from spectraforge.generative.stage import _generate_fold, load_generate_params, sample_counts
    from spectraforge.labels import LABELS
    from spectraforge.metrics import per_class_f1
    from spectraforge.report import paired_delta

    gp = load_generate_params(args.params)
    data = load_prepared(ROOT / tp["prepared_dir"])
    meta = data.train_meta
    fold = fold_rows(meta, pd.read_csv(ROOT / tp["folds"], dtype={"id": str}))
    y = label_index(meta["label"])
    ids = meta["id"].astype(str).to_numpy()
    ks = [int(k) for k in args.folds.split(",")]
    ns = [None if n == "all" else int(n) for n in args.n.split(",")]
    sources, models = args.sources.split(","), args.models.split(",")
    for s in sources:
        if s != "none" and s not in gp.variants:
            raise SystemExit(f"--sources: '{s}' is not a generate.variants entry of {args.params}")
    if CONTROL not in sources:
        raise SystemExit(f"--sources must include the control '{CONTROL}'")
    cnn_fit = scaled_fit(tp["variants"]["cnn"]["config"]["fit"], args.batches)
    specs = {"cnn": ModelSpec(kind="cnn", config={**tp["variants"]["cnn"]["config"], "fit": cnn_fit}),
             "lgbm": ModelSpec(kind="lgbm", config=tp["variants"]["lgbm"]["config"])}
    minority = [LABELS.index(c) for c in MINORITY]
    setup = json.dumps({"train": tp["variants"], "generate": raw["generate"], "batches": args.batches,
                        "prepared": str((ROOT / tp["prepared_dir"] / "train.npy").stat().st_mtime_ns)},
                       sort_keys=True, default=str)
    cache = WORK / hashlib.sha1(setup.encode()).hexdigest()[:12]
    cache.mkdir(parents=True, exist_ok=True)

    def cell(model, source, n, k) -> Path:
        return cache / f"{model}-{source}-{n_label(n)}-fold{k}.npz"

    t_start = time.perf_counter()
    for k in ks:
        va = np.flatnonzero(fold == k)
        X_va = np.asarray(data.train[va], np.float32)
        for n in ns:
            tr = reduce_per_class(np.flatnonzero(fold != k), y, {c: n for c in minority} if n is not None else {},
                                  seed=gp.seed + 1000 * k)
            X_tr = None
            counts, _ = sample_counts(y[tr], gp.target, gp.target_mode, gp.min_train)  # the same for every source
            for source in sources:
                todo = [m for m in models if not cell(m, source, n, k).exists()]
                if not todo:
                    continue
                X_tr = np.asarray(data.train[tr], np.float32) if X_tr is None else X_tr
                extra, n_extra = None, 0
                if source != "none":
                    gen, syn, _ = _generate_fold(source, gp.variants[source], X_tr, y[tr], ids[tr], counts,
                                                 gp.seed + 1000 * k)
                    # stronger than the stage's check_no_leak: the reduced part holds no validation id,
                    # and nothing outside it (the cut spectra included) may be fitted on or borrowed from
                    outside = (set(map(str, gen.fit_ids)) | set(map(str, syn["parent"]))) - set(ids[tr]) - {""}
                    if outside:
                        raise AssertionError(f"{source}: fitted on or borrowed from spectra outside the reduced "
                                             f"training part: {sorted(outside)[:3]}")
                    extra = (syn["flux"], label_index(pd.Series(syn["label"])))
                    n_extra = len(extra[1])
                for model in todo:
                    t = time.perf_counter()
                    clf = build_classifier(specs[model], model, wave=data.wave, threads=tp["threads"])
                    if model == "cnn":
                        clf.fit(X_tr, y[tr], val=(X_va, y[va]), extra=extra)
                        proba = clf.val_proba_
                    else:
                        clf.fit(X_tr, y[tr], val=None, extra=extra)
                        proba = clf.predict_proba(X_va)
                    real = {c: int((y[tr] == LABELS.index(c)).sum()) for c in MINORITY}
                    np.savez(cell(model, source, n, k), proba=np.asarray(proba, np.float64), rows=va,
                             n_extra=n_extra, **{f"n_real_{c}": v for c, v in real.items()})
                    print(f"{model} {source} N={n_label(n)} fold {k}: {time.perf_counter() - t:.0f} s "
                          f"({(time.perf_counter() - t_start) / 60:.1f} min so far)", flush=True)

    decision = DecisionParams(**tp.get("decision", {}))
    rows = []
    for model in models:
        for n in ns:
            parts = {s: [np.load(cell(model, s, n, k)) for k in ks] for s in sources}
            va = np.concatenate([p["rows"] for p in parts[CONTROL]])  # the same rows for every source
            decided = {s: decided_labels(np.concatenate([p["proba"] for p in ps]), y[va], fold[va], decision)
                       for s, ps in parts.items()}
            for source, ps in parts.items():
                d = paired_delta(y[va], decided[source], decided[CONTROL], n_boot=args.n_boot, seed=0)
                f1 = per_class_f1(y[va], decided[source])
                n_extra = sum(int(p["n_extra"]) for p in ps)
                n_real = {c: np.mean([int(p[f"n_real_{c}"]) for p in ps]) for c in MINORITY}
                rows.append({"model": model, "source": source, "n_per_class": n_label(n),
                             "minority_f1": float(np.mean([f1[c] for c in MINORITY])),
                             "delta_vs_oversample": d["minority_f1"], "ci_low": d["minority_f1_low"],
                             "ci_high": d["minority_f1_high"], "f1_galaxy": f1["galaxy"], "f1_qso": f1["qso"],
                             "macro_f1": float(np.mean(list(f1.values()))), "macro_delta": d["macro_f1"],
                             "macro_ci_low": d["macro_f1_low"], "macro_ci_high": d["macro_f1_high"],
                             **{f"train_{c}": n_real[c] for c in MINORITY}, "extra_spectra": n_extra})
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / "rare_class.csv", index=False)
    plot(table, OUT / "rare_class.png", [n_label(n) for n in ns])
    publish("rare-class", section(table, args, ks, [n_label(n) for n in ns], len(va)), write=not args.no_write)


def section(table: pd.DataFrame, args, ks, ns, n_rows: int) -> list[str]:
    full = table[table["n_per_class"] == "all"]
    n_all = (f"Training spectra per fold at N=all: {full['train_galaxy'].iloc[0]:.0f} galaxies, "
             f"{full['train_qso'].iloc[0]:.0f} quasars (mean over the folds run)." if len(full) else "")
    lines = ["## Rare classes: generators against oversampling with N galaxies and quasars per fold", "",
             f"Run {stamp()}.",
             f"Command: `python benchmarks/rare_class.py --n {args.n} --folds {args.folds} --batches {args.batches} "
             f"--sources {args.sources}` (the default mock; {n_rows} validation spectra of fold"
             f"{'s' if len(ks) > 1 else ''} {args.folds}, untouched; each fold's training part cut to N galaxies and "
             f"N quasars, nested in N; every generator fitted on that part only; the CNN at {args.batches} batches "
             "per fold, LightGBM as in params.yaml). Cell: minority F1 (mean of galaxy and quasar F1), then Δ "
             f"against `{CONTROL}` at the same N with its paired bootstrap 95 % interval over the same rows "
             f"({args.n_boot} resamples). {n_all}",
             ""]
    for model, part in table.groupby("model", sort=False):
        lines += [f"**{'CNN' if model == 'cnn' else 'LightGBM'}**", "",
                  "| source | " + " | ".join(f"N = {n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for source, g in part.groupby("source", sort=False):
            g = g.set_index("n_per_class")
            cells = []
            for n in ns:
                r = g.loc[n]
                if source == CONTROL:
                    cells.append(f"{r['minority_f1']:.3f} (control)")
                else:
                    cells.append(f"{r['minority_f1']:.3f} ({r['delta_vs_oversample']:+.3f} "
                                 f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}])")
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Macro-F1 and its Δ, per-class F1 and the training counts per cell are in "
              "`benchmarks/results/rare_class.csv`.", "", "![rare-class](results/rare_class.png)"]
    return lines


def plot(table: pd.DataFrame, path: Path, ns: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), sharey=True, squeeze=False)
    x = np.arange(len(ns))
    for ax, model in zip(axes[0], models):
        part = table[table["model"] == model]
        for source, g in part.groupby("source", sort=False):
            g = g.set_index("n_per_class").loc[ns]
            ax.plot(x, g["minority_f1"], "o-" if source != CONTROL else "s-k", label=source,
                    lw=2.2 if source == CONTROL else 1.4)
        ax.set_xticks(x, ns)
        ax.set_xlabel("training spectra per minority class (N)")
        ax.set_title("CNN" if model == "cnn" else "LightGBM")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("minority-class F1 (mean of galaxy, qso)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
