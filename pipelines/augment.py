"""Stage `augment@MODEL+SOURCE`: the classifier MODEL retrained per fold with the extra spectra of SOURCE."""
import sys

from spectraforge.augment import FoldExtras, load_augment_params
from spectraforge.compute import load_compute
from spectraforge.crossval import load_train_params, run_kfold, score_line
from spectraforge.params import load_section

name = sys.argv[1]
params = load_augment_params()
spec = params.variants[name]
train = load_train_params()
prepare = load_section("prepare")
extras = FoldExtras(name, spec, params.synthetic_dir, params.models_dir)
metrics = run_kfold(name, train, models_dir=params.models_dir, spec=train.variants[spec.model], extras=extras,
                    prepare_params={"grid": vars(prepare.grid), "normalise": prepare.normalise}, compute=load_compute())
print(score_line(name, metrics))
