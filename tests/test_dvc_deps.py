"""`dvc status` tells the truth: every package file a stage's script runs is one of its deps.

For each stage in dvc.yaml, the package modules its script imports are followed
transitively through every ``import`` and ``from ... import`` statement, those inside
functions (lazy imports) included, with the ``__init__.py`` of every package on the way
(Python runs them on import). Each such file must lie under one of the stage's ``deps``;
and each package dep must cover at least one of them (no dep that only causes reruns).
"""
import ast
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "spectraforge"


def _module_file(name: str) -> Path | None:
    """The file of module ``name`` (a .py or a package's __init__.py) under src/, or None."""
    base = SRC.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` → a, a.b, a.b.c: importing a module runs each enclosing package's __init__."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@lru_cache(maxsize=None)
def _imports(path: Path) -> frozenset:
    """The package modules one file imports, anywhere in it (module level or in functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path) if path.is_relative_to(SRC) else ""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                base = here.split(".") if is_pkg else here.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            names = [module] + [f"{module}.{a.name}" for a in node.names if _module_file(f"{module}.{a.name}")]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                found.update(n for n in _with_parents(name) if _module_file(n))
    return frozenset(found)


def closure(script: Path) -> set[Path]:
    """Every package file that running ``script`` can import, transitively."""
    todo, seen = list(_imports(script)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += _imports(_module_file(name))
    return {_module_file(n).relative_to(ROOT) for n in seen}


def _stages():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        script = next(w for w in body["cmd"].split() if w.startswith("pipelines/") and w.endswith(".py"))
        deps = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])]
        yield name, ROOT / script, [d.split("#")[0].strip().rstrip("/") for d in deps]


STAGES = list(_stages())


def _covered(path: Path, deps) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


@pytest.mark.parametrize("stage, script, deps", STAGES, ids=[s[0] for s in STAGES])
def test_every_file_a_stage_imports_is_a_dependency(stage, script, deps):
    assert script.relative_to(ROOT).as_posix() in deps, f"{stage}: its script {script.name} is not a dep"
    missing = sorted(str(f) for f in closure(script) if not _covered(f, deps))
    assert not missing, f"dvc.yaml stage '{stage}' runs but does not depend on: " + ", ".join(missing)


@pytest.mark.parametrize("stage, script, deps", STAGES, ids=[s[0] for s in STAGES])
def test_every_package_dependency_of_a_stage_is_imported(stage, script, deps):
    files = closure(script)
    unused = [d for d in deps if d.startswith("src/") and not any(_covered(f, [d]) for f in files)]
    assert not unused, f"dvc.yaml stage '{stage}' depends on package code it never imports: {', '.join(unused)}"


def test_the_import_walk_follows_lazy_and_relative_imports(tmp_path):
    files = closure(ROOT / "pipelines" / "train.py")
    # crossval imports the registry at module level, the registry the CNN wrapper, which
    # imports training.py only inside its methods; io/__init__ imports its readers relatively
    assert Path("src/spectraforge/training.py") in files
    assert Path("src/spectraforge/models/__init__.py") in files
    assert Path("src/spectraforge/__init__.py") in files
    assert Path("src/spectraforge/io/tianchi.py") in closure(ROOT / "pipelines" / "prepare.py")


def test_the_import_graph_has_no_cycle_through_module_level_imports():
    """Module-level imports only (lazy ones may close a loop on purpose): no module imports,
    through other modules, itself."""
    def top_level(path: Path) -> set:
        tree = ast.parse(path.read_text())
        out = set()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mod = node.module if isinstance(node, ast.ImportFrom) and not node.level else None
                if isinstance(node, ast.Import):
                    out.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
                elif mod and mod.startswith(PACKAGE + "."):
                    subs = {f"{mod}.{a.name}" for a in node.names if _module_file(f"{mod}.{a.name}")}
                    out.update(subs)  # `from pkg import sub` needs pkg.sub, not what pkg/__init__ holds
                    if len(subs) < len(node.names):
                        out.add(mod)
        return {n for n in out if _module_file(n)}

    graph = {_module_name(p): top_level(p) for p in (SRC / PACKAGE).rglob("*.py")}
    state: dict = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_a_clone_shows_the_design_cards_layout():
    """data/ and submissions/ are in git (their README only); what the stages write there is not."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(ROOT), "ls-files", "data", "submissions"], capture_output=True,
                              text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    assert done.stdout.split() == ["data/README.md", "submissions/README.md"]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "data/prepared/train.npy",
                              "submissions/latest.csv", "data/folds.csv"], capture_output=True, text=True)
    assert len(ignored.stdout.split()) == 3
