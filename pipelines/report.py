"""Stage `report`: reports/report.html (ablation table, confusion matrices, learning curves, spectra)."""
from spectraforge.ensemble import load_ensemble_params
from spectraforge.report import build_report, generator_names, load_report_params

params = load_report_params()
ensemble = load_ensemble_params()
summary = build_report([*ensemble.inputs, "ensemble"], generator_names(), out=params.out,
                       predictions_dir=ensemble.predictions_dir, prediction_dirs={"ensemble": "data/ensemble"},
                       truth_csv=params.truth, baseline=params.baseline, n_boot=params.n_boot)
print(f"{params.out}: {summary['n_variants']} variants, best {summary['best_variant']} "
      f"(OOF macro-F1 {summary['best_macro_f1']:.4f})")
