"""Accuracy of the level-1 models on the default mock survey, from the metrics `make run` wrote.

    make run && python benchmarks/accuracy.py

Reports OOF macro-F1 (95 % bootstrap interval), per-class F1 and the time each variant took,
with the params that produced them, into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from _results import stamp, write_section
from spectraforge.io.spectrum import LABELS

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    lines = [
        "## Accuracy of the level-1 models on the default mock survey",
        "",
        f"Run {stamp()}.",
        f"Command: `make run && python benchmarks/accuracy.py` (default params.yaml: "
        f"{params['mock']['n_train']} training spectra, {params['folds']['k']} folds).",
        "",
        "| model | OOF macro-F1 [95 % CI] | " + " | ".join(f"F1 {c}" for c in LABELS) + " | time (s) |",
        "|---|---|" + "---|" * len(LABELS) + "---|",
    ]
    for name in params["train"]["models"]:
        m = json.loads((ROOT / "reports" / "metrics" / f"{name}.json").read_text())
        per_class = " | ".join(f"{m[f'f1_{c}']:.3f}" for c in LABELS)
        lines.append(f"| {name} | {m['macro_f1']:.3f} [{m['macro_f1_ci_low']:.3f}, {m['macro_f1_ci_high']:.3f}] "
                     f"| {per_class} | {m['seconds']:.0f} |")
    cnn = params["train"]["variants"]["cnn"]["config"]["fit"]
    steps = cnn["phase1"]["epochs"] * cnn["phase1"]["steps"] + cnn["phase2"]["epochs"] * cnn["phase2"]["steps"]
    lines += ["", f"The CNN trains at most {steps} batches of {cnn['batch_size']} per fold here "
              "(the article: 20 000); see README 'Scaling up'."]
    text = "\n".join(lines)
    print(text)
    write_section("accuracy", text)


if __name__ == "__main__":
    main()
