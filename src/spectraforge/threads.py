"""TensorFlow's thread pools, sized once per process: shared by the classifier stages
(``train``, ``augment``) and the generator stage (``generate``) without either importing the
other's code. TensorFlow is imported only when the pools are configured.
"""
from __future__ import annotations

import os


def configure_threads(n_threads: int, inter_op: int = 1) -> None:
    """Size TensorFlow's thread pools once, before any op runs.

    On a 2-core machine the defaults (one intra-op pool per core count plus an inter-op pool
    of the same size, plus OpenMP/MKL pools) oversubscribe the cores and the pools fight;
    a single intra-op pool of ``n_threads`` with ``inter_op`` (1) runs the convolutions at
    full width without contention. OMP/MKL variables cover oneDNN/BLAS builds that read
    them; they only take effect if set before those libraries start their pools.
    TensorFlow fixes its pools when its runtime starts: calling this later with other
    values raises RuntimeError; calling it again with the same values is a no-op.
    """
    if n_threads < 1 or inter_op < 1:
        raise ValueError(f"threads must be >= 1, got n_threads={n_threads}, inter_op={inter_op}")
    import tensorflow as tf

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n_threads))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as exc:
        raise RuntimeError(
            f"configure_threads({n_threads}, {inter_op}) came after TensorFlow started with "
            f"intra={tf.config.threading.get_intra_op_parallelism_threads()}, "
            f"inter={tf.config.threading.get_inter_op_parallelism_threads()}: call it before any "
            "model is built or tensor created"
        ) from exc
