"""TensorFlow's start-up notices, filtered out of stderr; one clear line on what it runs on instead.

On a CPU-only machine TensorFlow writes, at import and at its first device query, lines such as
"oneDNN custom operations are on", "Could not find cuda drivers" and "failed call to cuInit:
CUDA error". They come from C++ code that logs before absl's logging is set up, so
``TF_CPP_MIN_LOG_LEVEL`` does not reach them, and a new user reads the last one as a failure.
:func:`install` (called by the package's ``__init__``) adds an import hook: the first
``import tensorflow`` runs with the process's stderr file descriptor captured, TensorFlow's
physical devices are listed inside the capture (that is where CUDA is probed), and every captured
line that is not one of the known notices is written back to stderr, so real errors still show.
:func:`runtime_line` is the one line a stage prints instead.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile

# start-up notices that say nothing is wrong (substrings of TensorFlow's own lines)
NOTICES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "cpu_feature_guard.cc",
    "To enable the following instructions:",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory", "Unable to register cuBLAS factory",
    "computation placer already registered",
)


def is_notice(line: str) -> bool:
    return any(n in line for n in NOTICES)


@contextlib.contextmanager
def filtered_stderr():
    """Capture file descriptor 2 (C++ code writes there directly) and replay all but the notices."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured by a test runner)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines(keepends=True) if not is_notice(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self.loader.exec_module(module)
            # the CUDA probe happens at the first device query: do it here, inside the filter
            # (it lists devices only; thread pools can still be configured afterwards)
            module.config.list_physical_devices()


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        uninstall()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Filter TensorFlow's start-up notices at its first import (no effect once it is imported,
    or when SPECTRAFORGE_TF_NOTICES=1 asks to see them)."""
    if "tensorflow" in sys.modules or os.environ.get("SPECTRAFORGE_TF_NOTICES") == "1":
        return
    if not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlow)]


def runtime_line() -> str:
    """What TensorFlow computes on, in one line: the GPUs, or the CPU and its thread pools."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus)
        return f"TensorFlow {tf.__version__} on {len(gpus)} GPU(s): {names}"
    intra = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    inter = tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()
    return (f"TensorFlow {tf.__version__} on the CPU ({os.cpu_count()} cores; {intra} intra-op, "
            f"{inter} inter-op threads); no GPU found")
