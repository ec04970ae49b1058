"""The import rule of docs/architecture.md, checked on the source: a module of ``engine`` imports
only from its own floor or the floors below it, never from a floor above.

Every import counts, also one inside a function (a lazy import is still a dependency; it only
moves when the module is loaded), except those under ``if TYPE_CHECKING:``, which are for
annotations. The package itself (``engine/__init__.py``: ``__version__`` and the lazy
``score_batch`` facade for notebooks) is the one module outside the floors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"

# Bottom first. A module belongs to the floor of the longest prefix that names it
# (``storage.spark`` is an engine's, the rest of ``storage`` is engine-free).
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base: the exception surface and the typed conf", ("errors", "conf")),
    ("engine-free core: Delta storage, definitions, suites, trainers' types, MOJO files",
     ("storage", "features", "validation", "training", "scoring", "lineage", "summary")),
    ("the process: its environment, the engines' sessions, what a run was made with",
     ("environment", "session", "manifest")),
    ("engine implementations: one module per concern and engine",
     ("storage.spark", "storage.dask", "features.spark", "features.spark_expressions",
      "features.dask", "features.dask_expressions", "validation.spark", "validation.dask",
      "scoring.spark", "scoring.dask", "scoring.flavor", "training.h2o_trainer",
      "training.mllib_trainer", "training.carried")),
    ("the backend protocol and the backends composing the implementations",
     ("backend", "backends")),
    ("the run: its context, the policies that drive a backend, what a run reports",
     ("run_context", "policies", "metrics", "openlineage", "demo_data")),
    ("the stages", ("pipeline",)),
    ("what runs stages: replay, score_batch, the jobs' shared CLI", ("replay", "model_scoring", "cli")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    """The floor of ``module`` (relative to ``engine``): its longest matching prefix's."""
    best, floor = -1, None
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), index
    if floor is None:
        raise AssertionError(f"engine.{module} is on no floor: add it to FLOORS and docs/architecture.md")
    return floor


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def engine_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module relative to ``engine``) of each import of an engine module in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = type_checking_nodes(tree)
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["engine", *package][:len(package) + 2 - node.level]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from engine.storage import batch`` imports the module engine.storage.batch
            names = [f"{target}.{alias.name}" if (ENGINE.parent / f"{target}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()
                     else target for alias in node.names]
        else:
            continue
        found += [(node.lineno, name[len("engine."):]) for name in names if name.startswith("engine.")]
    return found


MODULES = sorted(p for p in ENGINE.rglob("*.py") if p != ENGINE / "__init__.py")


def test_every_module_is_on_a_floor():
    for path in MODULES:
        floor_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_from_a_floor_above_its_own(path):
    module = module_name(path)
    own = floor_of(module)
    upward = [f"line {line}: engine.{target} ({FLOORS[floor_of(target)][0]})"
              for line, target in engine_imports(path) if floor_of(target) > own]
    assert not upward, (f"engine.{module} ({FLOORS[own][0]}) imports from a floor above: "
                        + "; ".join(upward))


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check itself can fail: an engine-free module importing the pipeline is reported."""
    source = "def f():\n    from engine.pipeline import build_features\n"
    fake = ENGINE / "storage" / "_upward_probe.py"
    try:
        fake.write_text(source)
        (line, target), = engine_imports(fake)
        assert (line, target) == (2, "pipeline")
        assert floor_of(target) > floor_of(module_name(fake))
    finally:
        fake.unlink()
