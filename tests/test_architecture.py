"""The codebase's shape: module and function sizes, private names, import cycles and the direction
of dependencies between the packages (docs/architecture.md).

The source is parsed with ast, never imported, so that a module which fails to import is still
checked and no rule depends on what importing something happens to pull in. Every import counts,
at module level or inside a function, under `if TYPE_CHECKING:` too: a dependency that only runs
later, or only for the type checker, is still one a reader has to follow.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "cli", "model", "training", "migrations", "tests", "bench")
CODE = ("app", "cli", "model", "training")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# What each package may not import. Only the worker's training and calibration jobs reach into
# training/, so that a server never loads the training code; the one exception is the
# calibration's numerics (numpy, no torch), which weigh every search's evidence.
FORBIDDEN = {"model": ("app", "cli", "training"), "training": ("app", "cli"), "app": ("cli",)}
APP_TRAINING_GATES = ("app/jobs/training.py", "app/jobs/calibration.py")
SHARED_WITH_APP = "training.calibration"
TRAINING_ONLY = ("training.calibration.fitting",)


@dataclass(frozen=True)
class Module:
    name: str  # dotted: app.serving.index; a package is named by its folder
    file: str  # relative to the repository root
    tree: ast.Module
    lines: int


@dataclass(frozen=True)
class Edge:
    source: str  # the importing module
    file: str
    line: int
    target: str  # the project module imported

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


@functools.cache
def modules() -> dict[str, Module]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            file = path.relative_to(ROOT).as_posix()
            parts = file.removesuffix(".py").removesuffix("/__init__").split("/")
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text, file)
            found[".".join(parts)] = Module(".".join(parts), file, tree, len(text.splitlines()))
    return found


def in_packages(packages: tuple[str, ...]) -> list[Module]:
    return [m for m in modules().values() if m.name.split(".")[0] in packages]


def is_package(module: Module) -> bool:
    return module.file.endswith("/__init__.py")


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def imported_from(module: Module, node: ast.ImportFrom) -> str:
    """The absolute name of the module a `from ... import` reads from."""
    if node.level == 0:
        return node.module or ""
    parts = module.name.split(".")
    base = parts if is_package(module) else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def deepest_module(dotted: str) -> str | None:
    """The longest prefix of a dotted name that is one of the project's modules."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules():
            return ".".join(parts[:end])
    return None


def imports(module: Module) -> list[tuple[int, str, str]]:
    """(line, project module imported, full dotted name imported) for every import of one of the
    project's modules; `from pkg import mod` is an import of the submodule when mod is one."""
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := deepest_module(alias.name)) is not None:
                    found.append((node.lineno, target, alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = imported_from(module, node)
            for alias in node.names:
                dotted = f"{base}.{alias.name}"
                if dotted in modules():
                    found.append((node.lineno, dotted, dotted))
                elif base in modules():
                    found.append((node.lineno, base, dotted))
    return found


@functools.cache
def edges(packages: tuple[str, ...] = PACKAGES) -> list[Edge]:
    """One per (importing module, line, imported module); a package's __init__ importing its own
    submodules is how a package presents itself, not a dependency."""
    found = {}
    for module in in_packages(packages):
        for line, target, _ in imports(module):
            own_submodule = is_package(module) and target.startswith(module.name + ".")
            if target != module.name and not own_submodule:
                found[Edge(module.name, module.file, line, target)] = None
    return list(found)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for following in graph.get(todo.pop(), ()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The components with a cycle: modules that each reach all the others (and themselves)."""
    reach = {name: reachable(graph, name) for name in graph}
    components = {
        frozenset(other for other in reach[name] if name in reach.get(other, ()))
        for name in graph
        if name in reach[name]
    }
    return sorted((set(c) for c in components), key=sorted)


def report(rule: str, offenders: list[str]) -> str:
    return f"{rule} ({len(offenders)}):\n  " + "\n  ".join(offenders)


def test_no_long_modules_in_app():
    offenders = [
        f"{m.file}: {m.lines} lines" for m in in_packages(("app",)) if m.lines > MAX_MODULE_LINES
    ]
    assert not offenders, report(f"modules in app/ over {MAX_MODULE_LINES} lines", offenders)


def test_no_long_functions():
    offenders = []
    for module in in_packages((*CODE, "migrations")):
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                offenders.append(f"{module.file}:{node.lineno} {node.name}: {length} lines")
    assert not offenders, report(f"functions over {MAX_FUNCTION_LINES} lines", offenders)


def test_no_imports_of_private_names():
    offenders = [
        f"{module.file}:{line} imports {dotted}"
        for module in in_packages(PACKAGES)
        for line, _, dotted in imports(module)
        if any(is_private(part) for part in dotted.split("."))
    ]
    assert not offenders, report("imports of another module's private name", offenders)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for edge in edges():
        graph.setdefault(edge.source, set()).add(edge.target)
    offenders = []
    for cycle in strongly_connected(graph):
        within = [f"\n    {e}" for e in edges() if e.source in cycle and e.target in cycle]
        offenders.append(" <-> ".join(sorted(cycle)) + "".join(within))
    assert not offenders, report("import cycles", offenders)


def _app_may_import(edge: Edge) -> bool:
    shared = edge.target.startswith(SHARED_WITH_APP) and not edge.target.startswith(TRAINING_ONLY)
    return shared or edge.file in APP_TRAINING_GATES


def test_dependency_direction():
    offenders = []
    for edge in edges(CODE):
        source, target = edge.source.split(".")[0], edge.target.split(".")[0]
        if target in FORBIDDEN.get(source, ()):
            offenders.append(f"{edge} ({source} may not import {target})")
        elif (source, target) == ("app", "training") and not _app_may_import(edge):
            offenders.append(
                f"{edge} (app imports training only in {', '.join(APP_TRAINING_GATES)}, and "
                f"the numerics of {SHARED_WITH_APP} anywhere)"
            )
    assert not offenders, report("imports against the dependency direction", offenders)
