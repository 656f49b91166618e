"""One self-contained HTML page summarising a pipeline run (``reports/report.html``).

The page has inline CSS, no scripts and no external references: every figure is a
base64 PNG data URI, so the file can be mailed or archived on its own. It holds

* a header with the UTC time of the build and the git revision (``unknown`` outside git);
* 1. the ablation table: per variant the OOF macro-F1 with its bootstrap interval and the
  per-class F1 (from ``<reports_dir>/metrics/<variant>.json``), the macro-F1 on the mock
  survey's held-apart test labels (``truth_csv``), and, against a ``baseline`` variant, the
  Δ macro-F1 with a paired bootstrap 95 % interval over the OOF rows and the Δ F1 of the
  minority classes (galaxy, qso); the best OOF row is highlighted. With a truth file, a
  second table gives the per-class F1 on the mock test set;
* 2. the OOF confusion matrices (``confusion_<true>_<pred>`` keys) as annotated heatmaps;
* 3. learning curves, one figure per variant and one line per fold, from
  ``<reports_dir>/plots/<variant>/history.csv`` and the dvclive files
  ``<reports_dir>/live/<variant>/fold<k>/plots/metrics/<metric>.tsv``;
* 4. the generators: their quality metrics (``metrics/generate_<name>.json``) and the
  real-versus-synthetic spectra PNGs in ``plots/generate_<name>/``.

Predicted labels are the argmax of the ``p_<class>`` columns in LABELS order, unless the
predictions carry a ``type`` column (the ensemble's weighted decision), which then wins.
:func:`build_report` also writes ``<reports_dir>/plots/ablation.csv`` (variant, macro_f1,
ci_low, ci_high, test_macro_f1) for a DVC bar plot.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from spectraforge.labels import LABELS, label_index
from spectraforge.metrics import f1_batch, macro_f1, per_class_f1
from spectraforge.outputs import atomic_write_text, git_revision

matplotlib.use("Agg")  # figures are built with the object API (no pyplot state) and saved as PNG

K = len(LABELS)
PROBA_COLUMNS = [f"p_{c}" for c in LABELS]
MINORITY = ("galaxy", "qso")
GENERATOR_KEYS = ("kind", "fd", "precision", "recall", "c2st", "nll_bpd", "nll_gain_bpd",
                  "n_synthetic", "rejected_fraction")
REQUIRED_KEYS = (("macro_f1", "macro_f1_ci_low", "macro_f1_ci_high")
                 + tuple(f"f1_{c}" for c in LABELS)
                 + tuple(f"confusion_{a}_{b}" for a in LABELS for b in LABELS))
CHUNK_ELEMENTS = 4_000_000  # drawn bootstrap indices held in memory at once

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       background: #fafafa; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 3rem; background: #fff; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.run { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.best td { background: #fff4c2; font-weight: 600; }
.ci { color: #666; font-weight: normal; font-size: 0.85em; }
.note { color: #777; font-style: italic; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 1rem; }
figure { margin: 0; text-align: center; }
figure img { max-width: 100%; border: 1px solid #eee; }
.stack figure { margin-bottom: 1rem; }
figcaption { font-size: 0.85rem; color: #555; }
"""


BEST = "best"  # report.baseline: the single variant with the best OOF macro-F1


@dataclass
class Variant:
    """Everything the report shows about one model variant."""

    name: str
    metrics: dict
    test_f1: dict[str, float] | None = None  # per class and "macro" on the mock test set
    delta: dict[str, float] = field(default_factory=dict)  # vs the baseline (empty for it, or if none)

    @property
    def confusion(self) -> np.ndarray:
        return np.array([[self.metrics[f"confusion_{a}_{b}"] for b in LABELS] for a in LABELS])


# ---------------------------------------------------------------- reading the run's outputs

def _read_json(path: Path, required: tuple[str, ...] = ()) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metrics file missing")
    data = json.loads(path.read_text())
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    return data


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions missing")
    frame = pd.read_parquet(path)
    frame["id"] = frame["id"].astype(str)
    return frame


def predicted_codes(frame: pd.DataFrame) -> np.ndarray:
    """Class codes predicted by a predictions frame: its ``type`` column if any, else the argmax."""
    if "type" in frame.columns:
        return label_index(frame["type"])
    return frame[PROBA_COLUMNS].to_numpy().argmax(axis=1)


def _read_truth(truth_csv: str | None) -> pd.DataFrame | None:
    if truth_csv is None:
        return None
    if not Path(truth_csv).is_file():
        raise FileNotFoundError(f"{truth_csv}: mock test truth file missing")
    return pd.read_csv(truth_csv, dtype=str)


def mock_test_scores(test: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Per-class and ("macro") macro-F1 of test predictions against the truth's ``id,type``."""
    merged = truth.merge(test.assign(pred=predicted_codes(test))[["id", "pred"]], on="id", how="left")
    if merged["pred"].isna().any():
        raise ValueError(f"{merged['pred'].isna().sum()} truth id(s) have no test prediction")
    y_true, y_pred = label_index(merged["type"]), merged["pred"].to_numpy(dtype=np.int64)
    return {**per_class_f1(y_true, y_pred), "macro": macro_f1(y_true, y_pred)}


# ---------------------------------------------------------------- paired bootstrap

def paired_delta(y_true: np.ndarray, pred: np.ndarray, pred_base: np.ndarray, n_boot: int, seed: int,
                 level: float = 0.95) -> dict[str, float]:
    """Δ = score(pred) − score(pred_base) on the same rows, with a paired percentile bootstrap.

    Each resample draws one set of rows for both predictions. Returns ``macro_f1``,
    ``macro_f1_low``, ``macro_f1_high``, the same for ``f1_<c>`` of each minority class and for
    ``minority_f1`` (their mean); resamples where a class is absent are left out of its interval.
    """
    m = y_true.size
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_ELEMENTS // m)
    deltas = []
    for start in range(0, n_boot, per_chunk):
        idx = rng.integers(0, m, size=(min(per_chunk, n_boot - start), m))
        deltas.append(_delta_columns(f1_batch(y_true[idx], pred[idx]), f1_batch(y_true[idx], pred_base[idx])))
    boot = np.concatenate(deltas)
    point = _delta_columns(f1_batch(y_true, pred), f1_batch(y_true, pred_base))
    tail = (1.0 - level) / 2.0
    low, high = np.nanquantile(boot, [tail, 1.0 - tail], axis=0)
    names = ["macro_f1"] + [f"f1_{c}" for c in MINORITY] + ["minority_f1"]
    out = {}
    for i, name in enumerate(names):
        out.update({name: float(point[i]), f"{name}_low": float(low[i]), f"{name}_high": float(high[i])})
    return out


def _delta_columns(f1: np.ndarray, f1_base: np.ndarray) -> np.ndarray:
    """(..., K) per-class F1 of both → (..., 2 + len(MINORITY)) Δ macro-F1, Δ F1 of each minority
    class and Δ of their mean (nan where a minority class is absent)."""
    macro = np.nanmean(f1, axis=-1) - np.nanmean(f1_base, axis=-1)
    cols = [LABELS.index(c) for c in MINORITY]
    minority = f1[..., cols].mean(axis=-1) - f1_base[..., cols].mean(axis=-1)
    return np.concatenate([macro[..., None], f1[..., cols] - f1_base[..., cols], minority[..., None]], axis=-1)


def _oof_pair(where, name: str, baseline: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth codes and both variants' OOF predictions, aligned on id (``where(name)``: its folder)."""
    oof, base = (_read_parquet(where(v) / "oof.parquet") for v in (name, baseline))
    pairs = oof.assign(pred=predicted_codes(oof)).merge(
        base.assign(pred=predicted_codes(base))[["id", "label", "pred"]], on="id", suffixes=("", "_base"))
    if len(pairs) != len(oof) or len(pairs) != len(base) or (pairs["label"] != pairs["label_base"]).any():
        raise ValueError(f"OOF predictions of {name!r} and baseline {baseline!r} cover different rows or labels")
    return label_index(pairs["label"]), pairs["pred"].to_numpy(), pairs["pred_base"].to_numpy()


# ---------------------------------------------------------------- figures

def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return _png_uri(buf.getvalue())


def confusion_figure(name: str, cm: np.ndarray) -> str:
    """Heatmap coloured by row fraction (recall), annotated with counts; a data URI."""
    fig = Figure(figsize=(3.4, 3.1))
    ax = fig.subplots()
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=9,
                color="white" if frac[i, j] > 0.55 else "black")
    ax.set_xticks(range(K), LABELS, fontsize=8, rotation=30)
    ax.set_yticks(range(K), LABELS, fontsize=8)
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("true", fontsize=9)
    ax.set_title(name, fontsize=10)
    return _figure_uri(fig)


def learning_curves(reports_dir: Path, name: str) -> dict[str, dict[str, pd.Series]]:
    """{metric: {fold: series}}: history.csv first (indexed by epoch, counted on across both
    phases), dvclive adds other metrics (indexed by its step, e.g. LightGBM's iteration)."""
    curves: dict[str, dict[str, pd.Series]] = {}
    history = reports_dir / "plots" / name / "history.csv"
    if history.is_file():
        frame = pd.read_csv(history)
        frame["step"] = frame.groupby("fold").cumcount()  # epochs run on across phases
        for metric in frame.columns.difference(["fold", "phase", "epoch", "step"]):
            curves[metric] = {f"fold{f}": g.set_index("step")[metric].rename_axis("epoch (both phases)")
                              for f, g in frame.groupby("fold")}
    for tsv in sorted((reports_dir / "live" / name).glob("fold*/plots/metrics/*.tsv")):
        metric, fold = tsv.stem, tsv.parents[2].name
        if metric not in curves or fold not in curves[metric]:
            series = pd.read_csv(tsv, sep="\t").set_index("step")[metric]
            curves.setdefault(metric, {})[fold] = series
    return curves


def curves_figure(name: str, curves: dict[str, dict[str, pd.Series]]) -> str:
    metrics = sorted(curves)
    fig = Figure(figsize=(4.2 * len(metrics), 3.0))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for fold, series in sorted(curves[metric].items()):
            ax.plot(series.index, series.to_numpy(), marker="." if len(series) <= 40 else None, lw=1.2, label=fold)
        ax.set_title(f"{name}: {metric}", fontsize=10)
        ax.set_xlabel(next(iter(curves[metric].values())).index.name or "step")  # history: epochs; dvclive: steps
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _figure_uri(fig)


# ---------------------------------------------------------------- HTML

def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, (bool, str)):
        return html.escape(str(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:+.3f}"


def _interval(low: float, high: float, signed: bool = False) -> str:
    text = _signed if signed else _fmt
    return f' <span class="ci">[{text(low)}, {text(high)}]</span>'


def _table(header: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """rows: (css class of the row, cells already escaped); the first cell is text, others numbers."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{cls}"><td>{cells[0]}</td>' + "".join(f'<td class="num">{c}</td>' for c in cells[1:]) + "</tr>"
        for cls, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _figure(uri: str, caption: str) -> str:
    return (f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def ablation_section(variants: list[Variant], best: str, baseline: str | None) -> str:
    has_test = any(v.test_f1 is not None for v in variants)
    header = ["variant", "OOF macro-F1 [95\u00a0% CI]"] + [f"F1 {c}" for c in LABELS]
    header += ["mock-test macro-F1"] if has_test else []
    header += ([f"Δ macro-F1 vs {baseline} [95\u00a0% CI]"] + [f"Δ F1 {c}" for c in MINORITY]) if baseline else []
    rows = []
    for v in variants:
        m = v.metrics
        cells = [html.escape(v.name), _fmt(m["macro_f1"]) + _interval(m["macro_f1_ci_low"], m["macro_f1_ci_high"])]
        cells += [_fmt(m[f"f1_{c}"]) for c in LABELS]
        cells += [_fmt(v.test_f1["macro"]) if v.test_f1 else ""] if has_test else []
        if v.name == baseline:
            cells += ["baseline"] + [""] * len(MINORITY)
        elif baseline:
            d = v.delta
            cells.append(_signed(d["macro_f1"]) + _interval(d["macro_f1_low"], d["macro_f1_high"], signed=True))
            cells += [_signed(d[f"f1_{c}"]) for c in MINORITY]
        rows.append(("best" if v.name == best else "", cells))
    parts = ["<h2>1. Ablation</h2>", _table(header, rows),
             _note("OOF scores over all cross-validation folds; the highlighted row has the best OOF macro-F1.")]
    if baseline:
        parts.append(_note("Δ: paired bootstrap over the same OOF rows for both variants (percentile 95 % interval)."))
    if has_test:
        test_rows = [("best" if v.name == best else "", [html.escape(v.name)] + [_fmt(v.test_f1[c]) for c in LABELS]
                      + [_fmt(v.test_f1["macro"])]) for v in variants]
        parts += ["<h3>Mock test set (held-apart labels)</h3>",
                  _table(["variant"] + [f"F1 {c}" for c in LABELS] + ["macro-F1"], test_rows)]
    return "\n".join(parts)


def confusion_section(variants: list[Variant]) -> str:
    figures = "".join(_figure(confusion_figure(v.name, v.confusion), f"{v.name}: OOF confusion") for v in variants)
    return ("<h2>2. Confusion matrices (OOF)</h2>"
            + _note("Counts; colour is the fraction of the true class (row).")
            + f'<div class="grid">{figures}</div>')


def curves_section(reports_dir: Path, names: list[str]) -> str:
    parts = ["<h2>3. Learning curves</h2>"]
    for name in names:
        curves = learning_curves(reports_dir, name)
        if curves:
            parts.append(_figure(curves_figure(name, curves), f"{name}: one line per fold"))
        else:
            parts.append(_note(f"{name}: no learning curves recorded."))
    return "\n".join(parts)


def generators_section(reports_dir: Path, generators: list[str]) -> str:
    if not generators:
        return "<h2>4. Generators</h2>" + _note("No generators in this run.")
    stats = {g: _read_json(reports_dir / "metrics" / f"generate_{g}.json") for g in generators}
    rows = [("", [html.escape(g)] + [_fmt(stats[g].get(k)) for k in GENERATOR_KEYS]) for g in generators]
    parts = ["<h2>4. Generators</h2>", _table(["generator", *GENERATOR_KEYS], rows),
             _note("fd, precision, recall, c2st: synthetic vs held-out real spectra (c2st 0.5 = indistinguishable); "
                   "nll in bits per dimension.")]
    for g in generators:
        pngs = _ordered_pngs(reports_dir / "plots" / f"generate_{g}")
        parts.append(f"<h3>{html.escape(g)}: real vs synthetic</h3>")
        if pngs:
            figs = "".join(_figure(_png_uri(p.read_bytes()), f"{g}: {p.stem}") for p in pngs)
            parts.append(f'<div class="stack">{figs}</div>')
        else:
            parts.append(_note(f"{g}: no real-vs-synthetic plots found."))
    return "\n".join(parts)


def _ordered_pngs(folder: Path) -> list[Path]:
    """PNGs of a folder, classes in LABELS order first, then the rest by name."""
    rank = {c: i for i, c in enumerate(LABELS)}
    return sorted(folder.glob("*.png"), key=lambda p: (rank.get(p.stem, K), p.name))


def _page(body: str) -> str:
    built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run = f"Built {built} · git revision {git_revision()['git_revision'][:7]}"
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>spectraforge run report</title><style>{CSS}</style></head>\n<body><main>"
            f'<h1>spectraforge run report</h1><p class="run">{html.escape(run)}</p>\n{body}\n</main></body></html>\n')


# ---------------------------------------------------------------- entry point

def load_variants(names: list[str], reports_dir: Path, where, truth: pd.DataFrame | None,
                  baseline: str | None, n_boot: int, seed: int, combined: frozenset = frozenset()
                  ) -> tuple[list[Variant], str | None]:
    """The variants with their metrics, mock test scores and paired Δ against ``baseline``
    (``BEST``: the best of those not in ``combined``, resolved from the metrics just read);
    returns them and the baseline's name."""
    variants = [Variant(n, _read_json(reports_dir / "metrics" / f"{n}.json", REQUIRED_KEYS)) for n in names]
    if baseline == BEST:
        baseline = best_single(variants, combined)
    for v in variants:
        if truth is not None:
            v.test_f1 = mock_test_scores(_read_parquet(where(v.name) / "test.parquet"), truth)
        if baseline and v.name != baseline:
            v.delta = paired_delta(*_oof_pair(where, v.name, baseline), n_boot=n_boot, seed=seed)
    return variants, baseline


def ablation_frame(variants: list[Variant], baseline: str | None = None) -> pd.DataFrame:
    """One row per variant; with a baseline, its name and each variant's paired Δ macro-F1
    against it (empty for the baseline itself)."""
    frame = pd.DataFrame({
        "variant": [v.name for v in variants],
        "macro_f1": [v.metrics["macro_f1"] for v in variants],
        "ci_low": [v.metrics["macro_f1_ci_low"] for v in variants],
        "ci_high": [v.metrics["macro_f1_ci_high"] for v in variants],
        "test_macro_f1": [v.test_f1["macro"] if v.test_f1 else np.nan for v in variants],
    })
    if baseline:
        frame["baseline"] = baseline
        for col, key in (("delta_macro_f1", "macro_f1"), ("delta_low", "macro_f1_low"), ("delta_high", "macro_f1_high")):
            frame[col] = [v.delta.get(key, np.nan) for v in variants]
    return frame


def best_single(variants: list[Variant], combined: frozenset) -> str:
    """The variant outside ``combined`` (the ensemble) with the best OOF macro-F1."""
    singles = [v for v in variants if v.name not in combined]
    if not singles:
        raise ValueError("report: baseline 'best' needs a variant that is not the ensemble")
    return max(singles, key=lambda v: v.metrics["macro_f1"]).name


def summary(variants: list[Variant], generators: list[str], best: Variant, baseline: str | None = None) -> dict:
    out: dict = {"n_variants": len(variants), "n_generators": len(generators),
                 "best_variant": best.name, "best_macro_f1": best.metrics["macro_f1"]}
    if baseline:
        out["baseline"] = baseline
    for v in variants:
        out[f"macro_f1_{v.name}"] = v.metrics["macro_f1"]
        if v.test_f1:
            out[f"test_macro_f1_{v.name}"] = v.test_f1["macro"]
        out.update({f"delta_{k}_{v.name}": val for k, val in v.delta.items()})
    return out


def build_report(variants: list[str], generators: list[str], *, reports_dir: str | Path = "reports",
                 predictions_dir: str | Path = "data/predictions", truth_csv: str | None = None,
                 baseline: str | None = None, out: str | Path = "reports/report.html", n_boot: int = 1000,
                 seed: int = 0, prediction_dirs: dict | None = None) -> dict:
    """Write the HTML report to ``out`` and ``<reports_dir>/plots/ablation.csv``; return summary numbers.

    A variant's predictions are read from ``predictions_dir/<name>`` unless
    ``prediction_dirs`` maps its name to another folder (the ensemble's ``data/ensemble``).

    Raises FileNotFoundError naming the file when a listed variant's or generator's metrics,
    a needed predictions file, or a given ``truth_csv`` is missing; ValueError for an empty
    variant list or a baseline that is not among the variants. ``baseline="best"`` is the
    variant with the best OOF macro-F1 among those read from ``predictions_dir`` (so not the
    ensemble): the Δ column then says what combining adds over the best single model.
    """
    if not variants:
        raise ValueError("report: no variants given")
    if baseline is not None and baseline != BEST and baseline not in variants:
        raise ValueError(f"report: baseline {baseline!r} is not among the variants {', '.join(variants)}")
    reports_dir, predictions_dir, other = Path(reports_dir), Path(predictions_dir), dict(prediction_dirs or {})

    def where(name: str) -> Path:
        return Path(other[name]) if name in other else predictions_dir / name

    loaded, baseline = load_variants(variants, reports_dir, where, _read_truth(truth_csv), baseline, n_boot, seed,
                                     frozenset(other))
    best = max(loaded, key=lambda v: v.metrics["macro_f1"])
    body = "\n".join([ablation_section(loaded, best.name, baseline), confusion_section(loaded),
                      curves_section(reports_dir, variants), generators_section(reports_dir, generators)])
    atomic_write_text(reports_dir / "plots" / "ablation.csv", ablation_frame(loaded, baseline).to_csv(index=False))
    atomic_write_text(Path(out), _page(body))
    return summary(loaded, generators, best, baseline)


@dataclass
class ReportParams:
    out: str = "reports/report.html"
    baseline: str | None = BEST  # a variant's name, "best" (the best single variant) or null
    truth: str | None = "data/truth/mock_test_labels.csv"
    n_boot: int = 1000
    OUTPUTS = ("out",)  # params.check_outputs: inside the project folder

    def validate(self, key: str = "report") -> None:
        from spectraforge.params import require

        require(self.n_boot >= 10, f"{key}.n_boot", f"must be >= 10, got {self.n_boot}")
        require(str(self.out).endswith(".html"), f"{key}.out", f"must end in .html, got {self.out}")


def load_report_params(path="params.yaml") -> ReportParams:
    from spectraforge.params import load_section

    return load_section("report", path, ReportParams)


def generator_names(path="params.yaml") -> list:
    """``generate.generators``: the generators whose outputs the report shows (the generate
    stage checks their settings; the report needs only the names)."""
    from spectraforge.params import load_params

    return list((load_params(path).get("generate") or {}).get("generators") or [])
