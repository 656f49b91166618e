"""Stage `folds`: stratified K folds, grouped by object, with a fixed seed."""
from spectraforge.data import load_prepared, make_folds
from spectraforge.outputs import atomic_write_text, write_metrics
from spectraforge.params import load_section

params = load_section("folds")
folds = make_folds(load_prepared(params.prepared_dir).train_meta, params.k, params.seed)
atomic_write_text(params.out, folds.to_csv(index=False))
table = folds.groupby(["fold", "label"]).size().unstack(fill_value=0)
write_metrics({f"fold{f}_{c}": int(n) for f, row in table.iterrows() for c, n in row.items()},
              "reports/metrics/folds.json")
print(table.to_string())
