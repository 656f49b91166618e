"""The CNN's learning curve: OOF macro-F1 against batches per fold, with LightGBM in the same run.

    make run   # or: dvc repro folds   (the prepared default mock and its folds)
    python benchmarks/learning_curve.py --budgets 150,300,600,1200 --folds 0,1,2,3,4
    python benchmarks/learning_curve.py --overhead           # per-fold fixed cost only
    python benchmarks/learning_curve.py --budgets 300 --folds 0 --variants default \
        --set network.norm=batch --set network.input_bin=1 --no-write   # one switch's worth

Two networks, each trained afresh at every budget (a cosine schedule depends on its length):
``article`` is the article's exact network and recipe (``train.variants.cnn_article``: no
normalisation, the linear input at every pixel, Adam at a constant 1e-3 then 1e-4, the macro-F1
phase), ``default`` is ``train.variants.cnn`` of params.yaml; both
get the default's split of the budget between the two phases. LightGBM (``train.variants.lgbm``)
is fitted on the same folds. Scores are over the rows of the folds run: argmax, and with the
nested-CV decision weights of ``train.decision`` when at least two folds run.

``--overhead`` times the fixed cost of a fold: a few folds of one tiny epoch per phase, with the
stage's one shared trainer (one trace and compile per stage) against a trainer rebuilt for every
fold (one compile per fold; the code before the shared trainer compiled once per phase, twice
per fold, so this "before" is a lower bound).

Writes the `learning-curve` (or `fold-overhead`) section of RESULTS.md, and
benchmarks/results/learning_curve.{csv,png}.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _results import publish, stamp
from spectraforge.training import configure_threads

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"


def scaled_fit(fit: dict, budget: int) -> dict:
    """The fit settings with both phases scaled to ``budget`` batches, the default's split kept."""
    fit = copy.deepcopy(fit)
    p1, p2 = fit["phase1"], fit["phase2"]
    total = p1["epochs"] * p1["steps"] + p2["epochs"] * p2["steps"]
    for phase in (p1, p2):
        if phase["epochs"]:
            batches = max(phase["steps"], round(budget * phase["epochs"] * phase["steps"] / total))
            phase["epochs"] = max(1, round(batches / phase["steps"]))
    return fit


def decided_labels(P: np.ndarray, y: np.ndarray, fold: np.ndarray, decision) -> np.ndarray:
    """Labels of OOF probabilities ``P`` (rows of the folds run): the nested-CV decision weights
    of ``train.decision`` (each fold's weights tuned on the other folds' rows), argmax with one fold."""
    if len(np.unique(fold)) < 2:
        return P.argmax(axis=1)
    from spectraforge.crossval import decide_labels

    return decide_labels(P, P[:0], y, fold, decision)[0]


def article(fit: dict, faithful: dict) -> tuple[dict, dict]:
    """The default's budget split, with ``train.variants.cnn_article``'s network (its keys over
    CNNConfig's defaults, as the pipeline builds it) and learning rates (a constant schedule)."""
    net = dict(faithful["network"])
    fit = {**copy.deepcopy(fit), "schedule": "constant", "warmup": 0.0, "final_lr": 0.0}
    for phase in ("phase1", "phase2"):
        fit[phase]["lr"] = faithful["fit"][phase]["lr"]
    return net, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="150,300,600,1200")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--variants", default="article,default")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the default variant's config, e.g. network.norm=batch or fit.batch_size=80 "
                         "(YAML values; with --no-write to keep RESULTS.md's section)")
    ap.add_argument("--overhead", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from the last run's CSV")
    args = ap.parse_args()
    if args.plot_only:
        table = pd.read_csv(OUT / "learning_curve.csv")
        plot(table, (table["lgbm_macro_f1"].iloc[0], table["lgbm_macro_f1_decided"].iloc[0]),
             OUT / "learning_curve.png", len(args.folds.split(",")))
        return

    import yaml

    params = yaml.safe_load(Path(args.params).read_text())
    configure_threads(params["train"]["threads"])
    from spectraforge import training
    from spectraforge.crossval import DecisionParams, ModelSpec, build_classifier
    from spectraforge.data import fold_rows, label_index, load_prepared
    from spectraforge.metrics import macro_f1
    from spectraforge.models.lgbm import SpectrumLGBM

    tp = params["train"]
    data = load_prepared(ROOT / tp["prepared_dir"])
    fold = fold_rows(data.train_meta, pd.read_csv(ROOT / tp["folds"], dtype={"id": str}))
    y = label_index(data.train_meta["label"])
    ks = [int(k) for k in args.folds.split(",")]
    cnn = copy.deepcopy(tp["variants"]["cnn"]["config"])
    for item in args.set:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = cnn
        for part in path:
            node = node[part]
        if last not in node:
            raise SystemExit(f"--set {item}: {key} is not a key of train.variants.cnn.config")
        node[last] = yaml.safe_load(value)
    decision = DecisionParams(**tp.get("decision", {}))

    def run_cnn(network, fit, budget_folds, fresh=False):
        settings = build_classifier(ModelSpec(kind="cnn", config={"network": network, "fit": fit}), "cnn",
                                    wave=data.wave, threads=tp["threads"]).config
        cnn_cfg, fit_cfg = settings.network, settings.fit
        oof, secs = {}, []
        for k in budget_folds:
            if fresh:
                training._TRAINERS.clear()
            t = time.perf_counter()
            r = training.train_fold(data.train, y, np.flatnonzero(fold != k), np.flatnonzero(fold == k),
                                    cnn_cfg, fit_cfg, label=f"  fold {k}")
            secs.append(time.perf_counter() - t)
            oof[k] = r.val_proba
        return oof, secs

    def scores(oof: dict) -> tuple[float, float]:
        rows = np.concatenate([np.flatnonzero(fold == k) for k in oof])
        P = np.concatenate([oof[k] for k in oof])
        raw = macro_f1(y[rows], P.argmax(axis=1))
        if len(oof) < 2:
            return raw, float("nan")
        return raw, macro_f1(y[rows], decided_labels(P, y[rows], fold[rows], decision))

    if args.overhead:
        tiny = {**cnn["fit"], "phase1": {**cnn["fit"]["phase1"], "epochs": 1, "steps": 5},
                "phase2": {**cnn["fit"]["phase2"], "epochs": 1, "steps": 5}}
        lines = ["## CNN fold overhead: one trainer per stage against one per fold", "",
                 f"Run {stamp()}.", f"Command: `python benchmarks/learning_curve.py --overhead --folds {args.folds}` "
                 "(one epoch of 5 batches per phase, params.yaml's network and batch size).", "",
                 "| trainer | fold 1st (s) | later folds, mean (s) |", "|---|---|---|"]
        for label, fresh in (("rebuilt per fold (before)", True), ("one per stage (now)", False)):
            training._TRAINERS.clear()
            _, secs = run_cnn(cnn["network"], tiny, ks, fresh=fresh)
            lines.append(f"| {label} | {secs[0]:.1f} | {np.mean(secs[1:]):.1f} |")
        publish("fold-overhead", lines, write=not args.no_write)
        return

    rows = []
    lgbm = build_classifier(ModelSpec(kind="lgbm", config=tp["variants"]["lgbm"]["config"]), "lgbm",
                            wave=data.wave, threads=tp["threads"])
    t = time.perf_counter()
    lgbm_oof = {}
    for k in ks:
        tr, va = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        model = SpectrumLGBM(lgbm.config, wave=data.wave, threads=tp["threads"])
        model.fit(np.asarray(data.train[tr]), y[tr], val=None)
        lgbm_oof[k] = model.predict_proba(np.asarray(data.train[va]))
    lgbm = scores(lgbm_oof)
    lgbm_secs = (time.perf_counter() - t) / len(ks)
    print(f"lgbm: {lgbm}", flush=True)
    for variant in args.variants.split(","):
        for budget in (int(b) for b in args.budgets.split(",")):
            net, fit = cnn["network"], scaled_fit(cnn["fit"], budget)
            if variant == "article":
                net, fit = article(fit, tp["variants"]["cnn_article"]["config"])
            print(f"{variant} at {budget} batches per fold", flush=True)
            oof, secs = run_cnn(net, fit, ks)
            raw, decided = scores(oof)
            batches = sum(p["epochs"] * p["steps"] for p in (fit["phase1"], fit["phase2"]))
            rows.append({"variant": variant, "batches": batches, "macro_f1": raw, "macro_f1_decided": decided,
                         "seconds_per_fold": float(np.mean(secs))})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.assign(lgbm_macro_f1=lgbm[0], lgbm_macro_f1_decided=lgbm[1]).to_csv(OUT / "learning_curve.csv", index=False)
    plot(table, lgbm, OUT / "learning_curve.png", len(ks))
    lines = ["## CNN learning curve: OOF macro-F1 against batches per fold", "",
             f"Run {stamp()}.",
             f"Command: `python benchmarks/learning_curve.py --budgets {args.budgets} --folds {args.folds}` "
             f"(OOF over the rows of folds {args.folds} of the default mock; batch {cnn['fit']['batch_size']}; "
             "`decided`: with the nested-CV decision weights).", "",
             "| network | batches per fold | macro-F1 argmax | macro-F1 decided | s per fold |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['batches']} | {r['macro_f1']:.4f} | {fmt(r['macro_f1_decided'])} "
                     f"| {r['seconds_per_fold']:.0f} |")
    lines.append(f"| LightGBM (same folds) | — | {lgbm[0]:.4f} | {fmt(lgbm[1])} | {lgbm_secs:.0f} |")
    lines += ["", "![learning curve](results/learning_curve.png)"]
    publish("learning-curve", lines, write=not args.no_write)


def fmt(x: float) -> str:
    return "—" if np.isnan(x) else f"{x:.4f}"  # decided: needs two folds or more


def plot(table: pd.DataFrame, lgbm, path: Path, n_folds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for variant, part in table.groupby("variant"):
        line, = ax.plot(part["batches"], part["macro_f1"], "o-", label=f"CNN {variant} (argmax)")
        if part["macro_f1_decided"].notna().any():
            ax.plot(part["batches"], part["macro_f1_decided"], "o--", color=line.get_color(),
                    label=f"CNN {variant} (decision weights)")
    ax.axhline(lgbm[0], color="k", lw=1, label="LightGBM (argmax)")
    ax.set_xscale("log")
    budgets = sorted(table["batches"].unique())
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("batches per fold")
    ax.set_ylabel(f"OOF macro-F1 ({n_folds} fold{'s' if n_folds > 1 else ''})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
