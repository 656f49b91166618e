"""The ``spectraforge`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_inspect(args) -> int:
    """Read spectra with the project's readers and print one line per file."""
    from spectraforge.io import SpectrumReadError, read_spectrum

    status = 0
    for path in args.files:
        try:
            s = read_spectrum(path)
        except SpectrumReadError as exc:
            print(f"ERROR {exc}", file=sys.stderr)
            status = 1
            continue
        m = s.meta
        z = "-" if m.get("z") is None else f"{m['z']:.4f}"
        snr = "-" if m.get("snr") is None else f"{m['snr']:.1f}"
        print(
            f"{path}\tformat={m.get('format')}\tid={m.get('id')}\tlabel={m.get('label')}\tz={z}\t"
            f"snr={snr}\tnpix={len(s.wave)}\twave={s.wave[0]:.1f}-{s.wave[-1]:.1f}\tbad={s.mask.mean():.1%}"
        )
    return status


def _cmd_summary(args) -> int:
    """Print the pipeline's counts, the generators' figures, then the out-of-fold score table."""
    root = Path(args.metrics_dir)
    files = sorted(root.glob("*.json"))
    if not files:
        print(f"no metrics in {root}: run `dvc repro` first", file=sys.stderr)
        return 1
    scores, generators, submission = {}, {}, None
    for f in files:
        data = json.loads(f.read_text())
        if "macro_f1" in data:
            scores[f.stem] = data
            continue
        if f.stem.startswith("generate_"):
            generators[f.stem.removeprefix("generate_")] = data
            continue
        if f.stem == "submit":
            submission = data
            continue
        print(f"{f.stem}: " + "  ".join(f"{k}={v}" for k, v in data.items()))
    if generators:
        head = (f"{'generator':<14} {'synthetic':>9} {'NLL b/dim':>9} {'Gaussian':>9} {'FD':>7} "
                f"{'precision':>9} {'recall':>7} {'C2ST':>6}")
        print("\nGenerators (held-out folds; FD, precision, recall, real-vs-synthetic accuracy C2ST)\n"
              + head + "\n" + "-" * len(head))
        nan = float("nan")
        for name, m in generators.items():
            print(f"{name:<14} {m.get('n_synthetic', 0):>9} {m.get('nll_bpd', nan):>9.3f} "
                  f"{m.get('nll_bpd_gauss', nan):>9.3f} {m.get('fd', nan):>7.1f} {m.get('precision', nan):>9.2f} "
                  f"{m.get('recall', nan):>7.2f} {m.get('c2st', nan):>6.2f}")
    if scores:
        _print_scores(scores, root.parent / "plots" / "ablation.csv")
    if submission:
        test = submission.get("test_macro_f1")
        print(f"\nSubmission: submissions/latest.csv, {submission['n_rows']} rows ({submission['n_filled']} filled)"
              + (f"; mock test macro-F1 {test:.4f} [{submission['test_macro_f1_ci_low']:.4f}, "
                 f"{submission['test_macro_f1_ci_high']:.4f}]" if test is not None else ""))
    return 0


def _print_scores(scores: dict, ablation_csv: Path) -> None:
    """The OOF score table, best first, with the mock test score and the paired Δ against the
    report's baseline when the report computed them."""
    from spectraforge.labels import LABELS

    test, delta, baseline = {}, {}, None
    if ablation_csv.exists():
        import pandas as pd

        table = pd.read_csv(ablation_csv)
        test = dict(zip(table["variant"], table["test_macro_f1"]))
        if "baseline" in table and table["baseline"].notna().any():
            baseline = str(table["baseline"].dropna().iloc[0])
            delta = {r.variant: (r.delta_macro_f1, r.delta_low, r.delta_high) for r in table.itertuples()}
    width = max(12, *(len(n) for n in scores))
    d_head = f"Δ vs {baseline} [95% CI]" if baseline else ""
    head = (f"{'model':<{width}} {'OOF macro-F1':>12} {'95% CI':>17} " + " ".join(f"{'F1 ' + c:>10}" for c in LABELS)
            + f" {'mock test':>9}" + (f"  {d_head:>24}" if baseline else ""))
    print("\nOut-of-fold scores (mock test: the held-apart test labels of the mock survey"
          + ("; Δ: paired bootstrap over the same OOF rows" if baseline else "") + ")\n"
          + head + "\n" + "-" * len(head))
    nan = float("nan")
    for name, m in sorted(scores.items(), key=lambda kv: -kv[1]["macro_f1"]):
        ci = f"[{m.get('macro_f1_ci_low', nan):.3f}, {m.get('macro_f1_ci_high', nan):.3f}]"
        row = (f"{name:<{width}} {m['macro_f1']:>12.4f} {ci:>17} "
               + " ".join(f"{m.get('f1_' + c, nan):>10.3f}" for c in LABELS) + f" {test.get(name, nan):>9.4f}")
        if baseline:
            d, lo, hi = delta.get(name, (nan, nan, nan))
            cell = "baseline" if name == baseline else ("" if d != d else f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            row += f"  {cell:>24}"
        print(row)


def _cmd_gallery(args) -> int:
    """PNG of mock spectra per class next to real survey spectra (for looking, not for tests)."""
    from spectraforge.mock.gallery import compare_with_real

    path = compare_with_real(args.real, args.out, seed=args.seed)
    print(path)
    return 0


def _cmd_predict(args) -> int:
    """Classify spectra with the trained fold models; one row per readable spectrum."""
    from spectraforge.safeload import ModelFileError
    from spectraforge.predict import predict

    combiner = args.ensemble
    if combiner == "auto":
        default = Path("data/ensemble/combiner.json")
        combiner = default if default.exists() and Path(args.models).resolve() == Path("models").resolve() else None
    elif combiner == "none":
        combiner = None
    try:
        summary = predict(args.inputs, args.models, args.out, n_jobs=args.n_jobs, combiner_path=combiner,
                          threads=args.threads, allow_pickle=args.allow_pickle, cnn_backend=args.cnn_backend)
    except (ModelFileError, FileNotFoundError) as exc:  # the models or combiner, named in the message
        print(f"spectraforge predict: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0 if summary.predicted else 1


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1, with a plain message otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _cmd_validate_submission(args) -> int:
    """Check a submission CSV against the test index; exit 1 with the reasons if it fails."""
    from spectraforge.submission import SubmissionError, read_test_ids, validate_file

    try:
        n = validate_file(args.file, read_test_ids(args.index))
    except SubmissionError as exc:
        print(f"invalid submission: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: valid ({n} rows)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectraforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="read spectra (FITS, Tianchi txt) and print their metadata")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("predict", help="classify FITS files/folders or Tianchi txt folders/zips")
    p.add_argument("inputs", nargs="+", help="FITS files or folders, Tianchi txt folders or zips")
    p.add_argument("--models", default="models", help="a variant's folder or the folder of all variants")
    p.add_argument("--out", required=True, help="output CSV: id,type,p_star,p_galaxy,p_qso,p_unknown,file")
    p.add_argument("--n-jobs", type=_positive_int, default=1,
                   help="reader processes (>= 1), reading while the models run")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="TensorFlow and LightGBM threads for the models (default: all cores)")
    p.add_argument("--ensemble", default="auto",
                   help="the ensemble's combiner.json; 'auto': data/ensemble/combiner.json when --models is "
                        "./models and it exists; 'none': average the variants")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load pickle files (.joblib: models or a combiner from older versions); unpickling "
                        "runs any code the file holds, so only for files you trust. Refused without it")
    p.add_argument("--cnn-backend", choices=("auto", "tensorflow"), default="auto",
                   help="auto: the CNN folds on onnxruntime where it can run them (no TensorFlow start-up), "
                        "else on TensorFlow; tensorflow: always the Keras models")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("summary", help="print the pipeline's metrics")
    p.add_argument("--metrics-dir", default="reports/metrics")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("validate-submission", help="check a submission CSV (id,type) against the test index")
    p.add_argument("file")
    p.add_argument("--index", required=True, help="the test index CSV (column id)")
    p.set_defaults(func=_cmd_validate_submission)

    p = sub.add_parser("gallery", help="PNG of mock spectra per class next to real spectra")
    p.add_argument("--real", default="../shared/real", help="folder with lamost/ and sdss/ real spectra")
    p.add_argument("--out", default="reports/gallery.png")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_cmd_gallery)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
