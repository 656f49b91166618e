"""Stage `generate@NAME`: per fold, fit generator NAME on the training part and sample the rare classes."""
import sys

from spectraforge.compute import load_compute
from spectraforge.generative.stage import load_generate_params, run_generate
from spectraforge.threads import configure_threads

name = sys.argv[1]
params = load_generate_params()
configure_threads(params.threads)
m = run_generate(name, params, compute=load_compute())
nll = (f"held-out NLL {m['nll_bpd']:.3f} bits/dim (Gaussian baseline {m['nll_bpd_gauss']:.3f})  "
       if "nll_bpd" in m else "")
print(f"generate@{name}: {m['n_synthetic']} synthetic spectra over the folds  {nll}"
      f"FD {m.get('fd', float('nan')):.2f}  precision {m.get('precision', float('nan')):.2f}  "
      f"recall {m.get('recall', float('nan')):.2f}  real-vs-synthetic accuracy {m.get('c2st', float('nan')):.2f}")
