"""Stage `submit`: the ensemble's test labels as a validated Tianchi submission, with its sidecar JSON."""
from spectraforge.params import load_params
from spectraforge.submission import load_submit_params, run_submit

side = run_submit(load_submit_params(), load_params())
print(f"submissions/{side['file']} ({side['n_rows']} rows, {side['n_filled']} filled) -> submissions/latest.csv"
      + (f"; mock test macro-F1 {side['test_macro_f1']:.4f}" if "test_macro_f1" in side else ""))
