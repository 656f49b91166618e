"""Sample quality of every generator on the default mock, from the metrics `make run` wrote.

    make run && python benchmarks/generators.py [--extra rasgan,hinge_oneloss]

``--extra`` adds variants defined in params.yaml but not in the default `generators` list,
from their metrics files (run them with `dvc exp run -S 'generate.generators=[...]'`).

Per generator: held-out NLL against the Gaussian baseline (density models), and the
fold-mean and per-fold sample-quality figures against the folds' validation spectra, with
the floor that real training spectra reach on the same figures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from _results import stamp, write_section

ROOT = Path(__file__).resolve().parents[1]


def _fmt(m: dict, key: str, spec: str = ".3f") -> str:
    return format(m[key], spec) if key in m else "—"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", default="", help="comma-separated variants outside the default list")
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["generate"]
    names = params["generators"] + [n for n in args.extra.split(",") if n]
    ms = {n: json.loads((ROOT / "reports" / "metrics" / f"generate_{n}.json").read_text()) for n in names}
    classes = list(params["target"])
    k = max(int(key[4:].split("_")[0]) for m in ms.values() for key in m if key.startswith("fold")) + 1
    lines = [
        "## Generators on the default mock: likelihood and sample quality",
        "",
        f"Run {stamp()}.",
        f"Command: `make run && python benchmarks/generators.py{' --extra ' + args.extra if args.extra else ''}` "
        "(default params.yaml: "
        f"targets {', '.join(f'{c} {v}' for c, v in params['target'].items())} ({params['target_mode']}), "
        f"{k} folds, each generator fitted on the fold's training part). Held-out = the fold's validation "
        f"spectra of {', '.join(classes)}. NLL in bits/dim of each generator's PCA space; FD, precision, recall "
        f"and the real-vs-synthetic accuracy (C2ST, 0.5 is perfect) in a fixed {params['quality']['embedding']}-"
        "component PCA embedding, means over folds and classes; 'real' rows are real training spectra scored "
        "the same way (the floor).",
        "",
        "| generator | NLL (bits/dim) | Gaussian NLL | gain | FD | precision | recall | C2ST | redraws | fit/fold (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, m in ms.items():
        lines.append(f"| {n} | {_fmt(m, 'nll_bpd')} | {_fmt(m, 'nll_bpd_gauss')} | {_fmt(m, 'nll_gain_bpd', '+.3f')} "
                     f"| {m['fd']:.1f} | {m['precision']:.2f} | {m['recall']:.2f} | {m['c2st']:.2f} "
                     f"| {m['rejected_fraction']:.1%} | {m['fit_seconds']:.1f} |")
    first = next(iter(ms.values()))
    real = {q: sum(first[f"{q}_{c}_real"] for c in classes) / len(classes) for q in ("fd", "precision", "recall", "c2st")}
    lines.append(f"| real training spectra | | | | {real['fd']:.1f} | {real['precision']:.2f} | {real['recall']:.2f} "
                 f"| {real['c2st']:.2f} | | |")
    lines += ["", "Per class (fold means):", "",
              "| generator | " + " | ".join(f"FD {c} | C2ST {c} | recall {c}" for c in classes) + " |",
              "|---|" + "---|---|---|" * len(classes)]
    for n, m in list(ms.items()) + [("real training spectra", None)]:
        src, suffix = (first, "_real") if m is None else (m, "")
        lines.append(f"| {n} | " + " | ".join(
            f"{src[f'fd_{c}{suffix}']:.1f} | {src[f'c2st_{c}{suffix}']:.2f} | {src[f'recall_{c}{suffix}']:.2f}"
            for c in classes) + " |")
    lines += ["", "Per fold (FD / C2ST, means over classes):", "",
              "| generator | " + " | ".join(f"fold {f}" for f in range(k)) + " |",
              "|---|" + "---|" * k]
    for n, m in ms.items():
        lines.append(f"| {n} | " + " | ".join(f"{m[f'fold{f}_fd']:.1f} / {m[f'fold{f}_c2st']:.2f}" for f in range(k))
                     + " |")
    text = "\n".join(lines)
    print(text)
    write_section("generators", text)


if __name__ == "__main__":
    main()
