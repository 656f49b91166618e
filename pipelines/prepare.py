"""Stage `prepare`: read every input in parallel, resample onto the grid, mask, normalise."""
from spectraforge.portable import pin_kernels

pin_kernels()  # before numpy: the same bytes on every x86-64 machine

from spectraforge.compute import load_compute
from spectraforge.params import load_section
from spectraforge.outputs import write_metrics
from spectraforge.prepare import run_prepare

params = load_section("prepare")
counts = run_prepare(params, compute=load_compute())
write_metrics(counts, "reports/metrics/prepare.json")
print(" ".join(f"{k}={v}" for k, v in counts.items()))
