"""Stage `train@NAME`: K-fold training of one level-1 variant (cnn, lgbm, ...) with OOF predictions."""
import sys

from spectraforge.crossval import load_train_params, run_kfold
from spectraforge.params import load_section

name = sys.argv[1]
params = load_train_params()
prepare = load_section("prepare")
metrics = run_kfold(name, params, prepare_params={"grid": vars(prepare.grid), "normalise": prepare.normalise})
print(f"{name}: OOF macro-F1 {metrics['macro_f1']:.4f} "
      f"[{metrics['macro_f1_ci_low']:.4f}, {metrics['macro_f1_ci_high']:.4f}]  "
      + "  ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.startswith("f1_")))
