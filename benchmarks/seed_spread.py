"""The spread of the default run's scores over mock-survey and fold seeds: what difference is noise.

    python benchmarks/seed_spread.py --seeds 2019,2020 --also /path/to/a/finished/clone

For each seed the committed HEAD is cloned into ``benchmarks/_work/seeds/<seed>``, its
params.yaml gets ``mock.seed`` and ``folds.seed`` set to the seed (a new survey drawn from the
same populations, new folds; every other setting the default's), and ``dvc repro`` runs the
whole default pipeline there with this checkout's environment (``PYTHONPATH`` points at the
clone's own ``src``). A finished clone can be rerun for free: its stages are up to date.
``--also DIR`` adds a finished run of the default params (e.g. the fresh-clone ``make run``)
after checking that its pipeline code is the same as HEAD's.

Writes benchmarks/results/seed_spread.csv (one row per run and model) and the `seed-spread`
section of RESULTS.md: per model, OOF macro-F1 and mock-test macro-F1 for every run, their mean,
standard deviation and range.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from _results import publish, stamp

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work" / "seeds"
OUT = ROOT / "benchmarks" / "results"
PIPELINE = ["src", "pipelines", "dvc.yaml", "constraints.txt", "pyproject.toml"]


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def seeded_clone(seed: int) -> Path:
    """A clone of HEAD whose params.yaml draws the mock survey and the folds from ``seed``."""
    work = WORK / str(seed)
    if not (work / ".git").exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(work)], check=True)
    head = git("rev-parse", "HEAD")
    if git("rev-parse", "HEAD", cwd=work) != head:
        subprocess.run(["git", "fetch", "--quiet", str(ROOT), "HEAD"], cwd=work, check=True)
        subprocess.run(["git", "checkout", "--quiet", "--force", head], cwd=work, check=True)
    params = yaml.safe_load(git("show", "HEAD:params.yaml"))
    params["mock"]["seed"] = params["folds"]["seed"] = int(seed)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def repro(work: Path) -> float:
    """``dvc repro`` in ``work`` with this environment's tools and the clone's own package."""
    env = {**os.environ, "PYTHONPATH": str(work / "src"), "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    check = subprocess.run([sys.executable, "-c", "import spectraforge; print(spectraforge.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.strip()
    if not Path(check).resolve().is_relative_to(work.resolve()):
        raise SystemExit(f"{work}: spectraforge imports from {check}, not from the clone")
    t = time.perf_counter()
    with open(work / "repro.log", "a") as log:
        subprocess.run(["dvc", "repro"], cwd=work, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - t


def same_pipeline(work: Path) -> str:
    """The run's commit, after checking that its pipeline code is HEAD's."""
    commit = git("rev-parse", "HEAD", cwd=work)
    if git("diff", "--stat", commit, "HEAD", "--", *PIPELINE):
        raise SystemExit(f"{work}: commit {commit[:7]} runs other pipeline code than HEAD "
                         f"(git diff {commit[:7]} HEAD -- {' '.join(PIPELINE)})")
    dirty = git("status", "--porcelain", "--", *PIPELINE, cwd=work)
    if dirty:
        raise SystemExit(f"{work}: uncommitted pipeline changes:\n{dirty}")
    return commit


def scores(work: Path, seed: int, commit: str) -> pd.DataFrame:
    table = pd.read_csv(work / "reports" / "plots" / "ablation.csv")
    return pd.DataFrame({"seed": seed, "commit": commit[:7], "model": table["variant"],
                         "oof_macro_f1": table["macro_f1"], "test_macro_f1": table["test_macro_f1"]})


def spread(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean, sample standard deviation and range of each score over the runs."""
    out = []
    for model, g in runs.groupby("model", sort=False):
        row = {"model": model, "runs": len(g)}
        for col in ("oof_macro_f1", "test_macro_f1"):
            v = g[col].to_numpy(float)
            row.update({f"{col}_mean": v.mean(), f"{col}_sd": v.std(ddof=1) if len(v) > 1 else np.nan,
                        f"{col}_min": v.min(), f"{col}_max": v.max()})
        out.append(row)
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="2019,2020", help="mock.seed = folds.seed for each run")
    ap.add_argument("--also", action="append", default=[], metavar="DIR",
                    help="a finished run of the default params.yaml to include (its commit must run HEAD's code)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    frames, minutes = [], {}
    for seed in (int(s) for s in args.seeds.split(",") if s):
        work = seeded_clone(seed)
        print(f"seed {seed}: dvc repro in {work}", flush=True)
        minutes[seed] = repro(work) / 60
        frames.append(scores(work, seed, same_pipeline(work)))
    for folder in map(Path, args.also):
        params = yaml.safe_load((folder / "params.yaml").read_text())
        default = yaml.safe_load(git("show", "HEAD:params.yaml"))
        if params != default:
            raise SystemExit(f"{folder}: params.yaml is not HEAD's")
        frames.append(scores(folder, int(params["mock"]["seed"]), same_pipeline(folder)))
    runs = pd.concat(frames, ignore_index=True).sort_values("seed", kind="stable", ignore_index=True)
    table = spread(runs)
    OUT.mkdir(parents=True, exist_ok=True)
    runs.to_csv(OUT / "seed_spread.csv", index=False)
    seeds = list(dict.fromkeys(runs["seed"]))
    lines = ["## Score spread over mock and fold seeds", "",
             f"Run {stamp()}.",
             f"Command: `python benchmarks/seed_spread.py --seeds {args.seeds}"
             + "".join(f" --also {Path(a).name}" for a in args.also) + "` "
             f"(commit {runs['commit'].iloc[0]}; each run: the default params.yaml with mock.seed = folds.seed = "
             f"the seed, so a new mock survey from the same populations and new folds; `dvc repro` "
             + ", ".join(f"{m:.1f} min for seed {s}" if m >= 0.1 else f"seed {s} already up to date"
                         for s, m in minutes.items())
             + "). sd: sample standard deviation over the runs.", "",
             "| model | " + " | ".join(f"OOF {s}" for s in seeds) + " | OOF mean ± sd [min, max] | "
             + " | ".join(f"test {s}" for s in seeds) + " | test mean ± sd [min, max] |",
             "|---|" + "---|" * (2 * len(seeds) + 2)]
    for _, r in table.iterrows():
        g = runs[runs["model"] == r["model"]].set_index("seed")
        cells = [f"{g.loc[s, 'oof_macro_f1']:.4f}" if s in g.index else "—" for s in seeds]
        tests = [f"{g.loc[s, 'test_macro_f1']:.4f}" if s in g.index else "—" for s in seeds]
        lines.append(f"| {r['model']} | " + " | ".join(cells)
                     + f" | {r['oof_macro_f1_mean']:.4f} ± {r['oof_macro_f1_sd']:.4f} "
                       f"[{r['oof_macro_f1_min']:.4f}, {r['oof_macro_f1_max']:.4f}] | " + " | ".join(tests)
                     + f" | {r['test_macro_f1_mean']:.4f} ± {r['test_macro_f1_sd']:.4f} "
                       f"[{r['test_macro_f1_min']:.4f}, {r['test_macro_f1_max']:.4f}] |")
    publish("seed-spread", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
