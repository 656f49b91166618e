"""The mock and prepare stages compute with CPU-independent numpy and OpenBLAS kernels."""
import ast
import subprocess
import sys

import pytest

PROBE = """
from spectraforge.portable import pin_kernels
pin_kernels()
import numpy as np
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
active = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
print(active, np.logspace(np.log10(3690), np.log10(9100), 2600).tobytes().hex()[:64])
"""


def _probe(env_extra):
    import os

    env = {**os.environ, **env_extra}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return done.stdout.split(" ", 1)


def test_pinned_kernels_ignore_the_cpu_and_the_environment():
    """Whatever the CPU offers (here emulated with numpy's own switch), the pinned process
    dispatches to no CPU-specific kernel, and the grid prepare writes is the same bytes."""
    pytest.importorskip("numpy._core._multiarray_umath")
    native = _probe({})
    emulated_avx2 = _probe({"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
                            "OPENBLAS_CORETYPE": "Haswell"})
    assert native[0] == emulated_avx2[0] == "[]"
    assert native[1] == emulated_avx2[1]


def test_pin_after_numpy_is_refused():
    import numpy  # noqa: F401  (loaded by this test session anyway)

    from spectraforge.portable import pin_kernels

    with pytest.raises(RuntimeError, match="before numpy"):
        pin_kernels()


@pytest.mark.parametrize("stage", ["mock", "prepare"])
def test_stage_scripts_pin_before_anything_imports_numpy(repo_root, stage):
    tree = ast.parse((repo_root / "pipelines" / f"{stage}.py").read_text())
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    first, second = body[0], body[1]
    assert isinstance(first, ast.ImportFrom) and first.module == "spectraforge.portable"
    assert isinstance(second, ast.Expr) and ast.unparse(second) == "pin_kernels()"
