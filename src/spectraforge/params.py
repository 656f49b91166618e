"""Typed, strict access to ``params.yaml``: one dataclass per stage section.

A stage asks for its section with :func:`load_section`; unknown or misspelt keys and
out-of-range values fail at once with a message naming the key and what is allowed,
before any work starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spectraforge.labels import LABELS


class ParamsError(ValueError):
    """params.yaml holds a key or value the stage cannot use."""


def require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ParamsError(f"params: {key}: {msg}")


_NOT_OUTPUTS = (".git", ".dvc")  # the project's own bookkeeping: never a stage output


def output_path(value, key: str, root) -> Path:
    """The output path ``value`` (params key ``key``) resolved in the project folder ``root``,
    or a ParamsError unless it lies strictly inside ``root``.

    ``root`` is the folder holding params.yaml, where stages run and relative paths resolve.
    Refused: a path that climbs out with ``..`` (also through a symlink), an absolute path
    elsewhere, the project folder itself (a stage replaces its output folder as a whole), and
    anything under .git or .dvc. Checked before a stage writes anything, so no file lands
    outside the project even when DVC would have refused the output later.
    """
    require(isinstance(value, str) and value.strip() != "", key, f"must name an output path, got {value!r}")
    root = Path(root).resolve()
    target = Path(os.path.normpath(root / value))  # lexical: 'a/../../x' climbs out here
    inside = target.is_relative_to(root) and target != root
    if inside and ".." in Path(value).parts:  # 'link/..' leaves through a symlink the lexical view misses
        real = (root / value).resolve()
        inside = real.is_relative_to(root) and real != root
    elif not inside and Path(value).is_absolute():  # /abs/path spelt through a symlink to the project
        real = Path(value).resolve()
        inside, target = real.is_relative_to(root) and real != root, real
    require(inside, key, f"'{value}' is not inside the project folder {root}: every output must stay in it")
    require(target.relative_to(root).parts[0] not in _NOT_OUTPUTS, key,
            f"'{value}' is inside {target.relative_to(root).parts[0]}, which no stage may write")
    return target


def check_outputs(obj, key: str, root) -> None:
    """Every output path a params section names (its dataclass's OUTPUTS) must lie inside
    the project folder ``root`` (output_path)."""
    for name in getattr(type(obj), "OUTPUTS", ()):
        output_path(getattr(obj, name), f"{key}.{name}", root)


@dataclass
class MockParams:
    """The embedded mock survey (stage ``mock``)."""

    seed: int = 2018
    n_train: int = 6000
    n_test: int = 2000
    class_mix: dict[str, float] = field(
        default_factory=lambda: {"star": 0.80, "unknown": 0.13, "galaxy": 0.05, "qso": 0.02}
    )
    fits_fraction: float = 0.1  # share of training spectra written as LAMOST FITS, not Tianchi txt
    repeat_fraction: float = 0.2  # share of FITS objects observed a second time (grouped folds)
    snr_range: list = field(default_factory=lambda: [1.0, 80.0])
    out_dir: str = "data/raw/mock"
    truth_csv: str = "data/truth/mock_test_labels.csv"
    OUTPUTS = ("out_dir", "truth_csv")  # checked by check_outputs: inside the project folder

    def validate(self, key: str = "mock") -> None:
        require(self.n_train >= 8, f"{key}.n_train", f"needs at least 8 spectra, got {self.n_train}")
        require(self.n_test >= 1, f"{key}.n_test", f"needs at least 1 spectrum, got {self.n_test}")
        _check_mix(self.class_mix, f"{key}.class_mix")
        require(0.0 <= self.fits_fraction <= 1.0, f"{key}.fits_fraction", f"must be in [0, 1], got {self.fits_fraction}")
        require(0.0 <= self.repeat_fraction <= 1.0, f"{key}.repeat_fraction", f"must be in [0, 1], got {self.repeat_fraction}")
        require(
            len(self.snr_range) == 2 and 0 < self.snr_range[0] < self.snr_range[1],
            f"{key}.snr_range", f"must be [low, high] with 0 < low < high, got {self.snr_range}",
        )


def _check_mix(mix: dict, key: str) -> None:
    require(isinstance(mix, dict) and mix, key, "must map labels to shares")
    for label, share in mix.items():
        require(label in LABELS, f"{key}.{label}", f"unknown label; valid labels: {', '.join(LABELS)}")
        require(float(share) >= 0, f"{key}.{label}", f"share must be >= 0, got {share}")
    require(sum(float(s) for s in mix.values()) > 0, key, "shares sum to zero")


@dataclass
class InputSpec:
    """One source of spectra for ``prepare``.

    kind: ``tianchi`` (index CSV + folder or zip of <id>.txt) or ``fits`` (a folder searched
    recursively for LAMOST / SDSS FITS, gzipped or not, or a single file).
    split: ``train`` (labels required) or ``test``.
    """

    kind: str
    split: str
    path: str
    index: str | None = None

    def validate(self, key: str) -> None:
        require(self.kind in ("tianchi", "fits"), f"{key}.kind", f"'{self.kind}' is not one of: tianchi, fits")
        require(self.split in ("train", "test"), f"{key}.split", f"'{self.split}' is not one of: train, test")
        if self.kind == "tianchi":
            require(bool(self.index), f"{key}.index", "a tianchi input needs its index CSV")


@dataclass
class GridParams:
    """The common wavelength grid (Å, vacuum)."""

    wave_min: float = 3690.0
    wave_max: float = 9100.0
    n_pix: int = 2600
    spacing: str = "log"

    def validate(self, key: str = "prepare.grid") -> None:
        require(0 < self.wave_min < self.wave_max, f"{key}.wave_min", f"need 0 < wave_min < wave_max, got {self.wave_min}, {self.wave_max}")
        require(self.n_pix >= 16, f"{key}.n_pix", f"needs at least 16 pixels, got {self.n_pix}")
        require(self.spacing in ("log", "linear"), f"{key}.spacing", f"'{self.spacing}' is not one of: log, linear")


@dataclass
class PrepareParams:
    """Stage ``prepare``: read, resample, mask, normalise."""

    raw_dir: str = "data/raw/mock"  # the stage's data dependency: every input lies under it
    inputs: list[InputSpec] = field(default_factory=list)
    grid: GridParams = field(default_factory=GridParams)
    normalise: str = "median"
    max_bad_fraction: float = 0.9  # a spectrum with more bad grid pixels than this is quarantined
    n_jobs: int = 2
    chunk_size: int = 256
    out_dir: str = "data/prepared"
    OUTPUTS = ("out_dir",)

    def validate(self, key: str = "prepare") -> None:
        require(len(self.inputs) > 0, f"{key}.inputs", "lists no input")
        raw = Path(self.raw_dir).resolve()
        # the stage replaces out_dir as a whole: it must not hold the inputs
        require(not raw.is_relative_to(Path(self.out_dir).resolve()), f"{key}.out_dir",
                f"'{self.out_dir}' holds prepare.raw_dir '{self.raw_dir}': the stage would delete its inputs")
        for i, spec in enumerate(self.inputs):
            spec.validate(f"{key}.inputs[{i}]")
            for name in ("path", "index"):
                value = getattr(spec, name)
                # an input outside raw_dir would be invisible to `dvc status`
                require(
                    value is None or Path(value).resolve().is_relative_to(raw),
                    f"{key}.inputs[{i}].{name}",
                    f"'{value}' is not under prepare.raw_dir '{self.raw_dir}' (the stage's dependency)",
                )
        self.grid.validate(f"{key}.grid")
        require(self.normalise in NORMALISERS, f"{key}.normalise", f"'{self.normalise}' is not one of: {', '.join(NORMALISERS)}")
        require(0.0 < self.max_bad_fraction <= 1.0, f"{key}.max_bad_fraction", f"must be in (0, 1], got {self.max_bad_fraction}")
        require(self.n_jobs == -1 or self.n_jobs >= 1, f"{key}.n_jobs", f"must be >= 1 or -1 (all cores), got {self.n_jobs}")
        require(self.chunk_size >= 1, f"{key}.chunk_size", f"must be >= 1, got {self.chunk_size}")


NORMALISERS = ("median", "zscore", "l2", "none")


@dataclass
class FoldsParams:
    """Stage ``folds``: stratified, object-grouped K folds."""

    k: int = 5
    seed: int = 2018
    prepared_dir: str = "data/prepared"
    out: str = "data/folds.csv"
    OUTPUTS = ("out",)

    def validate(self, key: str = "folds") -> None:
        require(self.k >= 2, f"{key}.k", f"needs at least 2 folds, got {self.k}")


SECTIONS = {"mock": MockParams, "prepare": PrepareParams, "folds": FoldsParams}
# every top-level section params.yaml may hold (the others' schemas live with their stages)
STAGE_SECTIONS = ("mock", "prepare", "folds", "train", "generate", "augment", "ensemble", "submit", "report",
                  "compute")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping",
               list: "a list", tuple: "a list"}


def check_type(value, hint, key: str):
    """``value`` as the field annotation ``hint`` asks, or a :class:`ParamsError` naming ``key``.

    int is a real integer (not a bool, float or string), float accepts an integer (returned
    as given), bool only true/false; ``X | None`` also accepts null; ``list[X]`` and
    ``dict[K, V]`` check every item; a dataclass is built from its mapping. Other annotations
    (arrays, callables) are not params values and pass unchecked.
    """
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, key)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return check_type(value, option, key)
            except ParamsError as exc:  # the right kind of value, wrong inside: say where
                if str(exc).startswith((f"params: {key}.", f"params: {key}[")):
                    raise
        wanted = " or ".join(_TYPE_NAMES.get(typing.get_origin(a) or a, getattr(a, "__name__", str(a)))
                             for a in options)
        raise ParamsError(f"params: {key}: expected {wanted}{' or null' if type(None) in args else ''}, "
                          f"got {_shown(value)}")
    base = origin or hint
    if base not in _TYPE_NAMES:
        return value
    ok = (isinstance(value, bool) if base is bool
          else isinstance(value, int) and not isinstance(value, bool) if base is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) if base is float
          else isinstance(value, (list, tuple)) if base in (list, tuple)
          else isinstance(value, base))
    if not ok:
        raise ParamsError(f"params: {key}: expected {_TYPE_NAMES[base]}, got {_shown(value)}")
    if base is list and args:
        return [check_type(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if base is dict and len(args) == 2:
        return {check_type(k, args[0], f"{key}.{k}"): check_type(v, args[1], f"{key}.{k}") for k, v in value.items()}
    return value


def _shown(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def build_dataclass(cls, data, key: str):
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys with suggestions and
    values of the wrong type (:func:`check_type`, from the field annotations)."""
    if not isinstance(data, dict):
        raise ParamsError(f"params: {key}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ParamsError(
                f"params: {key}.{name}: unknown key{hint}; valid keys: {', '.join(fields)}"
            )
        kwargs[name] = check_type(value, hints[name], f"{key}.{name}")
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ParamsError(f"params: {key}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded above
        raise ParamsError(f"params: {key}: {exc}") from exc


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of stage sections")
    for name in data:
        if name not in STAGE_SECTIONS:
            close = difflib.get_close_matches(str(name), STAGE_SECTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ParamsError(f"params: {name}: unknown section{hint}; valid sections: {', '.join(STAGE_SECTIONS)}")
    return data


def require_variants(names, variants: dict, key: str, list_key: str) -> None:
    """Every name in ``key.list_key`` must have a section under ``key.variants``."""
    for name in names:
        require(name in variants, f"{key}.{list_key}", f"'{name}' has no section under {key}.variants")


def load_with_variants(section: str, params_cls, spec_cls, path: str | Path = "params.yaml"):
    """A section whose ``variants`` map names to specs of one dataclass (``train``, ``generate``).

    The section's own keys build ``params_cls``, each variant a ``spec_cls``; both are
    validated (a spec only if it has ``validate``), errors naming the full key.
    """
    data = dict(load_params(path).get(section, {}) or {})
    variants = data.pop("variants", {}) or {}
    if not isinstance(variants, dict):
        raise ParamsError(f"params: {section}.variants: expected a mapping of names to settings")
    params = build_dataclass(params_cls, data, section)
    params.variants = {n: build_dataclass(spec_cls, v, f"{section}.variants.{n}") for n, v in variants.items()}
    params.validate(section)
    check_outputs(params, section, Path(path).parent)
    for n, spec in params.variants.items():
        if hasattr(spec, "validate"):
            spec.validate(f"{section}.variants.{n}")
    return params


def load_section(name: str, path: str | Path = "params.yaml", cls=None):
    """The validated params of one stage section (``cls``: its dataclass, for sections whose
    schema lives with their stage's module)."""
    if cls is None and name not in SECTIONS:
        raise ParamsError(f"params: no section schema '{name}'; known: {', '.join(SECTIONS)}")
    data = load_params(path).get(name, {}) or {}
    obj = build_dataclass(cls or SECTIONS[name], data, name)
    obj.validate(name)
    check_outputs(obj, name, Path(path).parent)
    return obj
