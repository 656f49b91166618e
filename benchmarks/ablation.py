"""The augmentation ablation on the default mock survey, from the outputs `make run` wrote.

    make run && python benchmarks/ablation.py
    python benchmarks/ablation.py --root ../run --baseline cnn+oversample --section ablation-cnn   # a profile's run

For every variant the ensemble blends (the article's CNN, LightGBM, LightGBM retrained with
each augmentation source) and the ensemble itself: OOF macro-F1 with its 95 % bootstrap
interval, per-class F1, the change against the baseline (paired bootstrap over the same OOF
rows, for macro-F1 and the two rare classes), the extra spectra used, and the score on the
mock survey's held-apart test labels. Then the ensemble's combiners side by side.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from _results import stamp, write_section
from spectraforge.data import label_index
from spectraforge.ensemble import load_ensemble_params
from spectraforge.io.spectrum import LABELS
from spectraforge.report import paired_delta, predicted_codes

ROOT = Path(__file__).resolve().parents[1]


def _oof(root: Path, name: str) -> pd.DataFrame:
    folder = root / "data" / ("ensemble" if name == "ensemble" else f"predictions/{name}")
    return pd.read_parquet(folder / "oof.parquet").sort_values("id").reset_index(drop=True)


def _ci(value: float, low: float, high: float, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(value)} [{f.format(low)}, {f.format(high)}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline", default="cnn")
    ap.add_argument("--root", default=str(ROOT), help="the checkout whose finished run to read (its params.yaml)")
    ap.add_argument("--section", default="ablation", help="the RESULTS.md section to write")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    ens = load_ensemble_params(root / "params.yaml")
    names = [*ens.inputs, "ensemble"]
    metrics = {n: json.loads((root / "reports" / "metrics" / f"{n}.json").read_text()) for n in names}
    test = pd.read_csv(root / "reports" / "plots" / "ablation.csv").set_index("variant")["test_macro_f1"]
    base = _oof(root, args.baseline)
    y = label_index(base["label"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    default = ens == load_ensemble_params(ROOT / "params.yaml")
    profile = "default params.yaml" if default else f"params.yaml of the run: {', '.join(ens.inputs)}"
    extra_args = "".join(f" --{k} {v}" for k, v in (("baseline", args.baseline), ("section", args.section))
                         if v != ap.get_default(k))
    lines = [
        f"## Augmentation ablation on the default mock survey{'' if args.section == 'ablation' else ' (' + args.section + ')'}",
        "",
        f"Tabled {stamp()}, from the run in a clone of commit {commit}.",
        f"Command: `{'make run' if default else 'dvc repro'} && python benchmarks/ablation.py"
        f"{extra_args}{'' if args.root == str(ROOT) else ' --root <the run>'}` ({profile}). OOF: out-of-fold over the "
        f"{len(y)} training spectra, 95 % bootstrap intervals; Δ: against `{args.baseline}`, paired bootstrap over "
        "the same OOF rows; extra: synthetic spectra used over all folds; mock test: macro-F1 on the mock "
        "survey's held-apart test labels.",
        "",
        "| variant | OOF macro-F1 [95 % CI] | " + " | ".join(f"F1 {c}" for c in LABELS)
        + " | Δ macro-F1 | Δ F1 galaxy | Δ F1 qso | extra | mock test |",
        "|---|---|" + "---|" * len(LABELS) + "---|---|---|---|---|",
    ]
    for name in names:
        m = metrics[name]
        row = [name, _ci(m["macro_f1"], m["macro_f1_ci_low"], m["macro_f1_ci_high"]),
               *(f"{m[f'f1_{c}']:.3f}" for c in LABELS)]
        if name == args.baseline:
            row += ["baseline", "", ""]
        else:
            oof = _oof(root, name)
            if not np.array_equal(oof["id"], base["id"]):
                raise ValueError(f"{name}: OOF rows differ from {args.baseline}'s")
            d = paired_delta(y, predicted_codes(oof), predicted_codes(base), n_boot=1000, seed=0)
            row += [_ci(d[k], d[f"{k}_low"], d[f"{k}_high"], signed=True) for k in ("macro_f1", "f1_galaxy", "f1_qso")]
        used = sum(v for k, v in m.items() if k.startswith("extra_used_"))
        row += [str(used) if used else "", f"{test[name]:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    e = metrics["ensemble"]
    dw = ", ".join(f"{c} {e[f'decision_weight_{c}']:.2f}" for c in LABELS if f"decision_weight_{c}" in e)
    weights = ", ".join(f"{n} {e[f'weight_{n}']:.2f}" for n in ens.inputs if e.get(f"weight_{n}", 0) >= 0.005)
    lines += [
        "",
        "Ensemble combiners, each scored by nested cross-validation on the same folds (argmax, before decision "
        "weights):",
        "",
        "| combiner | OOF macro-F1 [95 % CI] | F1 galaxy | F1 qso |",
        "|---|---|---|---|",
        *(f"| {c}{' (stacker: ' + ens.stacker + f', C={ens.C})' if c == 'stack' else ''} | "
          f"{_ci(e[f'{c}_macro_f1'], e[f'{c}_macro_f1_ci_low'], e[f'{c}_macro_f1_ci_high'])} | "
          f"{e[f'{c}_f1_galaxy']:.3f} | {e[f'{c}_f1_qso']:.3f} |" for c in ("average", "stack")),
        f"| {ens.method} + decision weights (submitted) | {_ci(e['macro_f1'], e['macro_f1_ci_low'], e['macro_f1_ci_high'])}"
        f" | {e['f1_galaxy']:.3f} | {e['f1_qso']:.3f} |",
        "",
        f"Average weights (≥ 0.005): {weights}. Decision weights: {dw}.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(args.section, text)


if __name__ == "__main__":
    main()
