"""Stage `train@NAME`: K-fold training of one level-1 variant (cnn, lgbm, ...) with OOF predictions."""
import sys

from spectraforge.compute import load_compute
from spectraforge.crossval import load_train_params, run_kfold, score_line
from spectraforge.params import load_section

name = sys.argv[1]
params = load_train_params()
prepare = load_section("prepare")
metrics = run_kfold(name, params, prepare_params={"grid": vars(prepare.grid), "normalise": prepare.normalise},
                    compute=load_compute())
print(score_line(name, metrics))
