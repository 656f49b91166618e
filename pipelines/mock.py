"""Stage `mock`: simulate the embedded LAMOST-like survey and write it in the real formats."""
from spectraforge.portable import pin_kernels

pin_kernels()  # before numpy: the same bytes on every x86-64 machine

from spectraforge.mock.survey import build_survey
from spectraforge.params import load_section
from spectraforge.outputs import write_metrics

params = load_section("mock")
counts = build_survey(params)
write_metrics(counts, "reports/metrics/mock.json")
print(" ".join(f"{k}={v}" for k, v in counts.items()))
