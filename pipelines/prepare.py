"""Stage `prepare`: read every input in parallel, resample onto the grid, mask, normalise."""
from spectraforge.params import load_section
from spectraforge.prepare import run_prepare, write_metrics

params = load_section("prepare")
counts = run_prepare(params)
write_metrics(counts, "reports/metrics/prepare.json")
print(" ".join(f"{k}={v}" for k, v in counts.items()))
