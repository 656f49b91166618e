"""Flows on the default mock: fit time per fold, sampling speed, held-out NLL against the
Gaussian-in-PCA baseline fitted in the same run, for label-conditioned and per-class flows.

    dvc repro folds && python benchmarks/flows.py [--folds 0,1,2,3,4] [--n-sample 2000]

Every flow variant named in params.yaml `generate.generators` with kind flow is run with its
own settings, once as written and once with the other conditioning. Held-out = the fold's
validation spectra of the target classes; NLL in bits per dimension of the PCA space.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _results import stamp, write_section
from spectraforge.threads import configure_threads

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--n-sample", type=int, default=2000)
    args = ap.parse_args()
    configure_threads(2)

    from spectraforge.data import fold_rows
    from spectraforge.data import label_index, load_prepared
    from spectraforge.generative.base import SpectrumGenerator, make_space
    from spectraforge.generative.stage import feature_model, fold_nll, load_generate_params, sample_counts
    from spectraforge.io.spectrum import LABELS

    params = load_generate_params(ROOT / "params.yaml")
    data = load_prepared(ROOT / params.prepared_dir)
    meta = data.train_meta
    fold = fold_rows(meta, pd.read_csv(ROOT / params.folds, dtype={"id": str}))
    y = label_index(meta["label"])
    ids = meta["id"].astype(str).to_numpy()
    names = [n for n in params.generators if params.variants[n].kind == "flow"]
    rows = []
    for k in [int(f) for f in args.folds.split(",")]:
        tr, va = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        X_tr, X_va = np.asarray(data.train[tr], np.float32), np.asarray(data.train[va], np.float32)
        counts, _ = sample_counts(y[tr], params.target, params.target_mode, params.min_train)
        classes = sorted(counts)
        for name in names:
            for conditioning in ("label", "per_class"):
                spec = copy.deepcopy(params.variants[name])
                spec.flow["conditioning"] = conditioning
                model = feature_model(spec, name)
                model.classes = classes
                gen = SpectrumGenerator(make_space(spec.space, spec.n_components, spec.squash), model,
                                        spec.residual, spec.temperature, spec.envelope)
                t0 = time.perf_counter()
                gen.fit(X_tr, y[tr], ids[tr], seed=params.seed + k)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                for c in classes:
                    gen.sample(c, args.n_sample // len(classes), seed=k)
                sample_rate = args.n_sample / (time.perf_counter() - t0)
                nll = fold_nll(gen, y[tr], X_va, y[va], classes)
                rows.append({
                    "fold": k, "flow": name, "conditioning": conditioning, "fit_s": fit_s,
                    "samples_per_s": sample_rate, "nll": nll["nll_bpd"], "nll_gauss": nll["nll_bpd_gauss"],
                    "rejected": gen.rejected / (gen.rejected + args.n_sample),
                    "epochs": len([h for h in model.history]),
                })
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df["gain"] = df["nll_gauss"] - df["nll"]
    g = df.groupby(["flow", "conditioning"], sort=False)
    summary = g.agg(fit_s=("fit_s", "mean"), samples_per_s=("samples_per_s", "mean"), nll=("nll", "mean"),
                    nll_gauss=("nll_gauss", "mean"), gain=("gain", "mean"), gain_min=("gain", "min"),
                    rejected=("rejected", "mean"), folds=("fold", "count")).reset_index()
    spec0 = params.variants[names[0]]
    lines = [
        "## Flows: fit, sampling and held-out likelihood against the Gaussian-in-PCA baseline",
        "",
        f"Run {stamp()}.",
        f"Command: `python benchmarks/flows.py --folds {args.folds} --n-sample {args.n_sample}` on the default mock "
        f"(prepared by `make run`); PCA space of {spec0.n_components} components of asinh flux, targets "
        f"{', '.join(f'{c} {v}' for c, v in params.target.items())} ({params.target_mode}). "
        f"Held-out: the fold's validation spectra of {', '.join(LABELS[c] for c in classes)}. "
        "Baseline: one Gaussian per class (Ledoit-Wolf) in the same fitted space, same run. "
        "NLL in bits per dimension (lower is better); gain = baseline − flow, mean and worst fold.",
        "",
        "| flow | conditioning | fit per fold (s) | sampling (spectra/s) | NLL flow | NLL Gaussian | gain (bits/dim) "
        "| worst-fold gain | envelope redraws | folds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(f"| {r.flow} | {r.conditioning} | {r.fit_s:.1f} | {r.samples_per_s:.0f} | {r.nll:.3f} | "
                     f"{r.nll_gauss:.3f} | {r.gain:+.3f} | {r.gain_min:+.3f} | {r.rejected:.1%} | {r.folds} |")
    text = "\n".join(lines)
    print(text)
    write_section("flows", text)


if __name__ == "__main__":
    main()
