"""Stage `ensemble`: weighted average and stacker on the OOF predictions, per-class decision weights."""
from spectraforge.ensemble import load_ensemble_params, run_ensemble

metrics = run_ensemble(load_ensemble_params())
print(f"ensemble ({metrics['method']}, {metrics['n_inputs']} inputs): OOF macro-F1 {metrics['macro_f1']:.4f} "
      f"[{metrics['macro_f1_ci_low']:.4f}, {metrics['macro_f1_ci_high']:.4f}]  "
      f"average {metrics['average_macro_f1']:.4f}  stack {metrics['stack_macro_f1']:.4f}")
