"""Writing stage outputs so that a killed stage leaves nothing half-written, and resuming the
K-fold loops where a killed run stopped.

- :func:`atomic_write_text` / :func:`atomic_write_json`: a temporary file in the same folder,
  renamed into place (``os.replace`` is atomic on POSIX).
- :func:`staged_dir`: a stage fills ``.<name>.partial`` beside its output folder; only when the
  block finishes is the folder renamed into place. A run killed midway leaves the partial
  folder (removed by the next run), never a half-filled output for DVC to cache.
- :class:`FoldCheckpoints`: each finished fold of a K-fold stage is kept under
  ``.sf-checkpoints/<stage>/<key>/``, the key a hash of everything the fold depends on
  (settings, input fingerprints and the package's source code). A rerun after a kill reuses
  the finished folds (each fold is seeded on its own, so the result equals an uninterrupted
  run) and the stage deletes its checkpoints when it completes. ``SPECTRAFORGE_CHECKPOINTS``
  moves the folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np

PACKAGE = Path(__file__).resolve().parent


def atomic_write_text(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def atomic_write_json(path, obj, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def write_metrics(counts: dict, path) -> Path:
    """A stage's flat metrics JSON (sorted keys), for ``dvc metrics``."""
    return atomic_write_text(path, json.dumps(counts, indent=2, sort_keys=True) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@contextmanager
def staged_dir(final):
    """Yield an empty staging folder beside ``final``; rename it to ``final`` when the block ends
    without an exception (an older ``final`` is replaced). On an exception the staging folder is
    removed and ``final`` is left as it was."""
    final = Path(final)
    stage = final.with_name(f".{final.name}.partial")
    if stage.exists():  # left by a killed run
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    os.rename(stage, final)


def git_revision() -> dict:
    """``git_revision`` (full hash, "unknown" outside a repository) and ``git_dirty`` (tracked
    files modified; None when git cannot tell), recorded with submissions and reports."""
    def git(*args):
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_revision": rev or "unknown", "git_dirty": bool(status) if status is not None else None}


def file_fingerprint(path) -> str:
    """Content hash of a small file; size and modification time of a large one (> 64 MiB)."""
    path = Path(path)
    st = path.stat()
    if st.st_size > 64 << 20:
        return f"{st.st_size}:{st.st_mtime_ns}"
    return hashlib.md5(path.read_bytes()).hexdigest()


def tree_fingerprint(path) -> str:
    """Fingerprint of a file, or of every file under a folder (names and fingerprints)."""
    path = Path(path)
    if path.is_file():
        return file_fingerprint(path)
    h = hashlib.md5()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}={file_fingerprint(f)};".encode())
    return h.hexdigest()


def source_fingerprint() -> str:
    """Hash of the package's source: a code change invalidates every checkpoint."""
    h = hashlib.md5()
    for f in sorted(PACKAGE.rglob("*.py")):
        h.update(f.relative_to(PACKAGE).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


class FoldCheckpoints:
    """Finished folds of one K-fold stage: arrays (``fold<k>.npz``), a JSON record, and files."""

    def __init__(self, stage: str, key: dict, root=None):
        root = Path(root or os.environ.get("SPECTRAFORGE_CHECKPOINTS", ".sf-checkpoints"))
        blob = json.dumps({**key, "source": source_fingerprint()}, sort_keys=True, default=str)
        self.stage_dir = root / stage.replace("/", "_")
        self.dir = self.stage_dir / hashlib.sha1(blob.encode()).hexdigest()[:16]

    def _done_file(self, k: int) -> Path:
        return self.dir / f"fold{k}.done"

    def done(self, k: int) -> bool:
        """Whether fold k finished (without loading its arrays)."""
        return self._done_file(k).exists()

    def load(self, k: int) -> dict | None:
        """The saved fold k (arrays, record, ``files``: folder of its files), or None."""
        done = self._done_file(k)
        if not done.exists():
            return None
        with np.load(self.dir / f"fold{k}.npz") as z:
            arrays = {name: z[name] for name in z.files}
        return {**arrays, "record": json.loads(done.read_text()), "files": self.dir / f"fold{k}"}

    def files_dir(self, k: int) -> Path:
        """An empty folder for fold k's files (a model, learning curves), filled before :meth:`save`."""
        d = self.dir / f"fold{k}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def epochs_dir(self, k: int) -> Path:
        """Where an unfinished fold k keeps its state after each epoch (training.EpochState)."""
        return self.dir / f"fold{k}.epochs"

    def save(self, k: int, record: dict, **arrays) -> None:
        """Mark fold k finished; the ``.done`` record is written last, so a fold killed while
        saving is simply not finished."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".fold{k}.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, self.dir / f"fold{k}.npz")
        atomic_write_json(self._done_file(k), record)

    def clear(self) -> None:
        """Forget every checkpoint of this stage (all keys): called when the stage completes."""
        shutil.rmtree(self.stage_dir, ignore_errors=True)
