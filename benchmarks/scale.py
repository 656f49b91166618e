"""Survey scale: `prepare` memory and time against the number of spectra, and a Tianchi-size zip.

Two sections of RESULTS.md:

- ``scale-memory`` (``--sizes 20000,200000``): the mock at each size as a Tianchi zip + index;
  `prepare` runs in a subprocess while a sampler reads the resident memory of its whole
  process tree (the main process and the joblib workers) every 50 ms. Targets: peak RSS at the
  largest size at most 1.5x that at the smallest, time per spectrum flat (linear time).
- ``scale-tianchi`` (``--tianchi 480000``): a zip the size of the official training zip
  (`first_train_data_20180131.zip`, ~480 000 txt members), read in place with the progress bar
  off; baseline in the same run: the plain loop a user would write (one process, `zipfile`
  read + `numpy` parse, no grid or checks) on the first ``--baseline-n`` members. Also the
  time `dvc status` takes on a stage whose one data dependency is the folder holding the zip.

Spectra: a pool of ``--pool`` distinct mock spectra (the survey simulator, all classes, the
default S/N range) is written under unique ids, so the reader does the full work for every
member while building a 480 000-member zip takes minutes, not hours.

    python benchmarks/scale.py --sizes 20000,200000 --tianchi 480000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil

from _results import publish, stamp
from spectraforge.io.tianchi import DEFAULT_FMT, TIANCHI_NPIX
from spectraforge.mock.simulate import simulate
from spectraforge.mock.survey import draw_labels
from spectraforge.preprocess import make_grid, to_grid

MIX = {"star": 0.8, "unknown": 0.13, "galaxy": 0.05, "qso": 0.02}


def mock_pool(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n distinct mock spectra as Tianchi txt lines, and their labels."""
    rng = np.random.default_rng(seed)
    labels = draw_labels(MIX, n, rng)
    grid, line = make_grid(), ",".join([DEFAULT_FMT] * TIANCHI_NPIX) + "\n"
    texts = []
    for start in range(0, n, 500):
        batch = simulate(list(labels[start : start + 500]), seed=seed + start)
        for j in range(len(batch.meta)):
            flux, _ = to_grid(batch.wave, batch.flux[j], batch.andmask[j] != 0, grid)
            texts.append(line % tuple(flux.astype(np.float32).tolist()))
    return texts, list(labels)


def write_zip(folder: Path, n: int, texts: list[str], labels: list[str]) -> Path:
    """folder/train.zip with n members (official layout: one sub-folder) and folder/train_index.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train_index.csv", "w") as fh:
        fh.write("id,type\n")
        fh.writelines(f"{i},{labels[i % len(labels)]}\n" for i in range(n))
    with zipfile.ZipFile(folder / "train.zip", "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(n):
            zf.writestr(f"first_train_data_20180131/{i}.txt", texts[i % len(texts)])
    return folder / "train.zip"


PREPARE = """
import json, sys
from spectraforge.params import InputSpec, PrepareParams
from spectraforge.prepare import run_prepare
raw, out, n_jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = PrepareParams(raw_dir=raw, inputs=[InputSpec(kind="tianchi", split="train",
                  index=raw + "/train_index.csv", path=raw + "/train.zip")], n_jobs=n_jobs, out_dir=out)
p.validate()
print(json.dumps(run_prepare(p, progress=False)))
"""


def run_measured(cmd: list[str], env=None) -> dict:
    """Run cmd; wall time, its stdout, and peak RSS of the main process and of the whole tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    peak = {"main": 0, "tree": 0}
    done = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                main = root.memory_info().rss
                tree = main + sum(c.memory_info().rss for c in root.children(recursive=True))
            except psutil.Error:
                main = tree = 0
            peak["main"], peak["tree"] = max(peak["main"], main), max(peak["tree"], tree)
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd} exited {proc.returncode}")
    return {"seconds": time.perf_counter() - t0, "stdout": out, "main_mib": peak["main"] / 2**20,
            "tree_mib": peak["tree"] / 2**20}


def measure_prepare(raw: Path, out: Path, n_jobs: int) -> dict:
    r = run_measured([sys.executable, "-c", PREPARE, str(raw), str(out), str(n_jobs)])
    r["counts"] = json.loads(r["stdout"].strip().splitlines()[-1])
    arr = np.load(out / "train.npy", mmap_mode="r")
    assert arr.shape[0] == r["counts"]["train_prepared"], (arr.shape, r["counts"])
    return r


def plain_loop(zip_path: Path, n: int) -> float:
    """Spectra per second of the simplest reader: one process, read the member, parse the floats."""
    t0 = time.perf_counter()
    with zipfile.ZipFile(zip_path) as zf:
        names = [i.filename for i in zf.infolist()][:n]
        for name in names:
            flux = np.array(zf.read(name).decode().split(","), dtype=np.float64)
    assert flux.size == TIANCHI_NPIX
    return len(names) / (time.perf_counter() - t0)


def dvc_status_seconds(raw: Path, work: Path) -> tuple[float, float]:
    """`dvc status` on a one-stage project depending on the folder with the zip: first and second call."""
    proj = work / "dvcproj"
    proj.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=proj, check=True, env=env)
    (proj / "dvc.yaml").write_text(
        f"stages:\n  prepare:\n    cmd: echo prepare\n    deps:\n      - {raw}\n    outs:\n      - out\n")
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run(["dvc", "status", "-q"], cwd=proj, env=env, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20000,200000", help="comma-separated spectra counts ('' to skip)")
    ap.add_argument("--tianchi", type=int, default=480_000, help="members of the Tianchi-size zip (0 to skip)")
    ap.add_argument("--baseline-n", type=int, default=20_000)
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    command = f"python benchmarks/scale.py --sizes '{args.sizes}' --tianchi {args.tianchi} --pool {args.pool}"

    work = Path(tempfile.mkdtemp(prefix="sf-scale-", dir=os.environ.get("SF_BENCH_DIR")))
    texts, labels = mock_pool(args.pool)
    try:
        if sizes:
            rows = []
            for n in sizes:
                raw = work / f"raw{n}"
                write_zip(raw, n, texts, labels)
                r = measure_prepare(raw, work / f"out{n}", args.n_jobs)
                rows.append((n, r))
                shutil.rmtree(work / f"out{n}")
                shutil.rmtree(raw)
                print(n, {k: v for k, v in r.items() if k != "stdout"}, flush=True)
            (n0, r0), (n1, r1) = rows[0], rows[-1]
            lines = [
                "## Scale: `prepare` peak memory and time against the number of spectra",
                "",
                f"Run {stamp()}.",
                f"Command: `{command}`. Mock Tianchi zips "
                f"({args.pool} distinct mock spectra under unique ids), prepare.n_jobs={args.n_jobs}, chunk 256. "
                "RSS sampled every 50 ms over the process tree (main process + joblib workers). "
                "Targets: peak tree RSS at the largest size ≤ 1.5× that at the smallest; time linear.",
                "",
                "| spectra | time (s) | µs per spectrum | peak RSS main (MiB) | peak RSS tree (MiB) | train.npy (MiB) |",
                "|---|---|---|---|---|---|",
            ]
            for n, r in rows:
                lines.append(f"| {n} | {r['seconds']:.1f} | {1e6 * r['seconds'] / n:.0f} | {r['main_mib']:.0f} | "
                             f"{r['tree_mib']:.0f} | {n * TIANCHI_NPIX * 4 / 2**20:.0f} |")
            lines += ["", f"Ratios {n1} / {n0} spectra ({n1 / n0:.0f}× the data): peak RSS tree "
                          f"{r1['tree_mib'] / r0['tree_mib']:.2f}× (main {r1['main_mib'] / r0['main_mib']:.2f}×), "
                          f"time {r1['seconds'] / r0['seconds']:.2f}× "
                          f"(time per spectrum {r1['seconds'] / n1 / (r0['seconds'] / n0):.2f}×)."]
            publish("scale-memory", lines, not args.no_write)
        if args.tianchi:
            raw = work / "tianchi"
            t0 = time.perf_counter()
            zip_path = write_zip(raw, args.tianchi, texts, labels)
            t_write = time.perf_counter() - t0
            base = plain_loop(zip_path, args.baseline_n)
            r = measure_prepare(raw, work / "tianchi_out", args.n_jobs)
            rate = args.tianchi / r["seconds"]
            first, second = dvc_status_seconds(raw, work)
            c = r["counts"]
            lines = [
                "## Scale: a Tianchi-size training zip read in place",
                "",
                f"Run {stamp()}.",
                f"Command: `{command}`. "
                f"A zip of {args.tianchi} txt members in one sub-folder, as the official "
                f"`first_train_data_20180131.zip` ({zip_path.stat().st_size / 2**30:.2f} GiB, written in {t_write:.0f} s), "
                f"never unpacked. prepare.n_jobs={args.n_jobs}. Baseline in the same run: one process, "
                f"`zipfile` read + `numpy` parse of the first {args.baseline_n} members (no grid, masks, checks or output).",
                "",
                "| measure | value |",
                "|---|---|",
                f"| `prepare` (listing, index match, read, grid, normalise, .npy) | {r['seconds']:.0f} s, {rate:.0f} spectra/s |",
                f"| plain loop baseline | {base:.0f} spectra/s |",
                f"| ratio prepare / baseline | {rate / base:.2f}× |",
                f"| prepared / quarantined | {c['train_prepared']} / {c['train_quarantined']} |",
                f"| peak RSS, process tree (main) | {r['tree_mib']:.0f} MiB ({r['main_mib']:.0f} MiB) |",
                f"| `dvc status`, first call (hashes the zip) / second call | {first:.1f} s / {second:.1f} s |",
            ]
            publish("scale-tianchi", lines, not args.no_write)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
