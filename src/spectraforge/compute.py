"""Where the work runs: this machine (joblib, in-process folds) or a Dask distributed cluster.

params.yaml ``compute``::

    compute:
      backend: local            # local | dask
      scheduler: null           # dask: the scheduler's address, e.g. tcp://10.0.0.5:8786
      folds: true               # dask: also send fold jobs (train, augment, generate) to the cluster
      timeout: 20               # seconds to wait for the scheduler

- ``prepare`` fans its chunks out through joblib: ``prepare.n_jobs`` local processes, or the
  cluster's workers through joblib's Dask backend (:func:`joblib_backend`).
- The K-fold stages run each unfinished fold as one job (:func:`run_jobs`): in this process,
  one after another, or one task per fold on the cluster, so K folds train side by side.
  A fold job writes its result into the stage's fold checkpoint folder and returns nothing
  large; the stage then assembles its outputs exactly as after a local run.

Workers must be started in the project folder, at the same path on a shared filesystem (as on
most clusters; stages pass the project's relative paths), and run one task at a time
(``dask worker --nthreads 1``): TensorFlow's thread
pools and seeds are per process. Results do not depend on the backend (each fold is seeded
on its own), so ``compute`` is deliberately not a dvc dependency of any stage: moving a run
onto a cluster does not invalidate the cache.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

from spectraforge.params import ParamsError, require

BACKENDS = ("local", "dask")


@dataclass
class ComputeParams:
    """params.yaml ``compute`` (see the module docstring)."""

    backend: str = "local"
    scheduler: str | None = None
    folds: bool = True
    timeout: float = 20.0  # seconds to wait for the scheduler before failing

    def validate(self, key: str = "compute") -> None:
        require(self.backend in BACKENDS, f"{key}.backend", f"'{self.backend}' is not one of: {', '.join(BACKENDS)}")
        if self.backend == "dask":
            require(isinstance(self.scheduler, str) and ":" in self.scheduler, f"{key}.scheduler",
                    f"backend dask needs the scheduler's address (e.g. tcp://host:8786), got {self.scheduler!r}")
        require(isinstance(self.folds, bool), f"{key}.folds", f"must be true or false, got {self.folds!r}")
        require(self.timeout > 0, f"{key}.timeout", f"must be > 0 seconds, got {self.timeout}")


def load_compute(path="params.yaml") -> ComputeParams:
    """The ``compute`` section (absent: local)."""
    from spectraforge.params import load_section

    return load_section("compute", path, cls=ComputeParams)


_CLIENTS: dict = {}


def get_client(compute: ComputeParams):
    """A distributed Client connected to the scheduler (one per address and process), or None."""
    if compute.backend != "dask":
        return None
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ParamsError("params: compute.backend: 'dask' needs the distributed package "
                          "(pip install distributed)") from exc
    client = _CLIENTS.get(compute.scheduler)
    if client is None or client.status != "running":
        try:
            client = Client(compute.scheduler, timeout=f"{compute.timeout}s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ParamsError(f"params: compute.scheduler: cannot reach the Dask scheduler at "
                              f"{compute.scheduler} ({exc})") from exc
        _CLIENTS[compute.scheduler] = client
    return client


def close_clients() -> None:
    for client in _CLIENTS.values():
        client.close()
    _CLIENTS.clear()


@contextmanager
def joblib_backend(compute: ComputeParams | None):
    """Inside the block, joblib.Parallel runs on the cluster's workers (dask) or as it is (local)."""
    client = get_client(compute) if compute is not None else None
    if client is None:
        yield
        return
    import joblib

    with client.as_current(), joblib.parallel_config(backend="dask"):
        yield


def dispatches_folds(compute: ComputeParams | None) -> bool:
    """Whether fold jobs go to a cluster (then each job loads its own data on the worker)."""
    return compute is not None and compute.backend == "dask" and compute.folds


def run_jobs(compute: ComputeParams | None, fn: Callable, jobs: Sequence, progress: str | None = None) -> list:
    """``[fn(job) for job in jobs]``: here, in order, or as one cluster task per job.

    On the cluster every job is submitted at once (the scheduler spreads them over the
    workers) and the results are gathered in job order; the first job that fails raises here
    with its own traceback after the others are cancelled.
    """
    client = get_client(compute) if dispatches_folds(compute) else None
    if client is None:
        return [fn(job) for job in jobs]
    futures = [client.submit(fn, job, pure=False, key=f"{progress or fn.__name__}-{i}") for i, job in enumerate(jobs)]
    try:
        return client.gather(futures)
    except BaseException:
        client.cancel(futures)
        raise
