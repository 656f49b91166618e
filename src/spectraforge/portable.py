"""Bit-identical data on every x86-64 machine: pin the CPU-specific kernels of numpy and OpenBLAS.

At import, numpy picks SIMD kernels for its transcendental functions (exp, log, log10, power,
arctan, ... in float64; exp, log, sin, cos, tanh in float32) from the CPU's features, and
OpenBLAS picks its matrix-product kernels the same way. AVX-512, AVX2 and SSE kernels agree
to the last bit or two, not bit for bit, so the mock survey simulated on an AVX-512 Xeon
differs from the one simulated on an AVX2-only EPYC (measured: different ``train.npy`` for
each of 5 kernel choices on one machine; benchmarks/RESULTS.md, "Determinism").

:func:`pin_kernels` sets the environment that makes both libraries use their baseline
kernels (x86-64-v2, which numpy 2.4 requires anyway): the ``mock`` and ``prepare`` stages call
it before numpy is imported, and their worker processes inherit it. A Dask cluster's workers
need the same two variables in their environment for the same bytes. This module must not
import numpy.
"""
from __future__ import annotations

import os
import sys

# every numpy dispatch target above the x86-64-v2 baseline (numpy 2.4 names, then the older
# ones; numpy ignores, with an ImportWarning, the names it does not dispatch on)
_NUMPY_FEATURES = ("X86_V3 X86_V4 AVX512_ICL AVX512_SPR "
                   "SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2 AVX512F AVX512CD AVX512_KNL AVX512_KNM "
                   "AVX512_SKX AVX512_CLX AVX512_CNL")
PORTABLE_ENV = {
    "NPY_DISABLE_CPU_FEATURES": _NUMPY_FEATURES,
    "OPENBLAS_CORETYPE": "Nehalem",  # SSE4.2 kernels: present on every CPU numpy 2.4 runs on
}


def pin_kernels() -> None:
    """Make numpy and OpenBLAS, imported after this call, use CPU-independent kernels."""
    loaded = [m for m in ("numpy", "scipy") if m in sys.modules]
    if loaded:
        raise RuntimeError(f"pin_kernels() must run before {', '.join(loaded)} is imported: the kernels "
                           "are chosen at import")
    os.environ.update(PORTABLE_ENV)
