"""The package's layers import in one direction, and nothing in ``threadsched`` imports in a circle.

Read statically from every import of every module: top level, inside functions (how optional layers
stay lazy) and in ``TYPE_CHECKING`` blocks (which never run, but still tie the modules together), and
``importlib.import_module`` calls with a literal name. The layers, bottom up:

* ``core`` — the scheduler. Inside it, each module has a rank (``CORE_RANKS``) and imports only modules
  of a lower rank: value types at the bottom, the stateful parts above them, the front doors on top.
* ``requests``, ``report``, ``backends`` — built on the core only, and only on its value modules.
* ``policies`` (on the core's value types, and the request layer for provider pressure), ``mock``.
* ``engine``, then ``cli``; the package root (``threadsched/__init__.py``, ``__main__``) is the top.

A package imports only layers below its own, never a peer of the same rank.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from support import module_paths


def absolute_base(package: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from, relative levels resolved against ``package``."""
    if not node.level:
        return node.module or ""
    anchor = package
    for _ in range(node.level - 1):
        anchor = anchor.rpartition(".")[0]
    return f"{anchor}.{node.module}" if node.module else anchor


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(package, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if submodule in known else base
                if target in known and target != name:
                    yield target


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at its top level (what runs at import time)."""
    known = module_paths()
    return {name: set(imported_modules(name, path, known)) for name, path in known.items()}


def resolve(target: str, known: Collection[str]) -> str | None:
    """The package module an imported name belongs to: itself, or the longest known prefix of it."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def module_imports(name: str, source: str, known: Collection[str], *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, imported package module) for every import of ``source`` (see ``every_import``)."""
    for line, target in every_import(name, source, is_package=is_package):
        module = resolve(target, known)
        if module is not None and module != name:
            yield line, module


def is_init(path: Path) -> bool:
    return path.name == "__init__.py"


def full_import_graph() -> dict[str, set[str]]:
    """Module -> every package module it imports anywhere: top level, functions, ``TYPE_CHECKING``."""
    known = module_paths()
    return {
        name: {
            module
            for _, module in module_imports(name, path.read_text(encoding="utf-8"), known, is_package=path.name == "__init__.py")
        }
        for name, path in known.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_level_import_cycle_in_the_package() -> None:
    assert cycles(import_graph()) == []


def test_no_import_cycle_at_all_not_even_in_functions_or_type_checking_blocks() -> None:
    assert cycles(full_import_graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_recipe_value_types_do_not_import_the_parsers() -> None:
    graph = import_graph()
    assert "threadsched.engine.recipe.values" in graph["threadsched.engine.recipe.parse"]  # the probe itself works
    assert "threadsched.engine.recipe.parse" not in graph["threadsched.engine.recipe.values"]
    assert "threadsched.engine.recipe.parse" not in graph["threadsched.engine.recipe.validation"]


def every_import(module: str, source: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute name) for every import anywhere in a module: top level, in functions, in
    ``TYPE_CHECKING`` blocks, and ``importlib.import_module``/``__import__`` calls with a literal name.
    ``from X import y`` yields ``X.y``: ``y`` may be a submodule, and a prefix test on ``X.y`` covers ``X``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(package, node)
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def test_lookalike_names_are_not_layers() -> None:
    source = "from .engine_like import x\nfrom ..requests.outcomes import classify"
    assert layer_problems("threadsched.requests.planted", source, {*module_paths(), "threadsched.requests.planted"}) == []


# -- layers ------------------------------------------------------------------------------------------

PACKAGE_RANKS = {
    "threadsched.core": 0,
    "threadsched.requests": 1,
    "threadsched.report": 1,
    "threadsched.backends": 1,
    "threadsched.policies": 2,
    "threadsched.mock": 2,
    "threadsched.engine": 3,
    "threadsched.cli": 4,
}
ROOT_MODULES = ("threadsched", "threadsched.__main__")  # the public face: may import any layer

CORE_RANKS = {
    "threadsched.core.contracts": 0,
    "threadsched.core.futures": 0,
    "threadsched.core.retry": 0,
    "threadsched.core.events": 0,
    "threadsched.core.values": 1,
    "threadsched.core.context": 1,
    "threadsched.core.event_log": 1,
    "threadsched.core.outcomes": 1,
    "threadsched.core.errors": 2,
    "threadsched.core.policy": 2,
    "threadsched.core.records": 2,
    "threadsched.core.queue": 3,
    "threadsched.core.deadlines": 3,
    "threadsched.core.launch": 3,
    "threadsched.core.emitter": 3,
    "threadsched.core.admission": 4,
    "threadsched.core.dispatcher": 5,
    "threadsched.core.scheduler": 6,
    "threadsched.core.leased_executor": 7,
}
# What the layers above the core may use of it: the request layer runs inside tasks and needs only their
# context and the value types; a policy sees values, never the queue or the controller it is consulted by.
CORE_VALUES = frozenset(
    f"threadsched.core.{name}" for name in ("contracts", "values", "context", "futures", "events", "retry", "errors")
)
MAY_USE_OF_THE_CORE = {
    "threadsched.requests": CORE_VALUES,
    "threadsched.report": CORE_VALUES | {"threadsched.core.event_log"},
    "threadsched.policies": frozenset({"threadsched.core.contracts", "threadsched.core.values", "threadsched.core.policy"}),
}


def package_of(module: str) -> str | None:
    for package in PACKAGE_RANKS:
        if module == package or module.startswith(package + "."):
            return package
    return None


def layer_problem(module: str, target: str) -> str | None:
    """Why ``module`` may not import ``target`` (both package modules), or None when it may."""
    if module in ROOT_MODULES:
        return None
    if target in ROOT_MODULES:
        return "imports the package root (the public face sits on top of every layer)"
    source, destination = package_of(module), package_of(target)
    if source is None or destination is None:
        return f"is outside every layer ({source or module} / {destination or target}): add it to PACKAGE_RANKS"
    if source != destination:
        if PACKAGE_RANKS[destination] >= PACKAGE_RANKS[source]:
            ranks = f"{source} rank {PACKAGE_RANKS[source]} -> {destination} rank {PACKAGE_RANKS[destination]}"
            return f"points up or sideways ({ranks})"
        allowed = MAY_USE_OF_THE_CORE.get(source)
        if destination == "threadsched.core" and allowed is not None and target not in allowed:
            return f"reaches into the core beyond its value types ({', '.join(sorted(allowed))})"
        return None
    if source == "threadsched.core" and module != "threadsched.core":
        if module not in CORE_RANKS or target not in CORE_RANKS:
            return "is a core module without a rank: add it to CORE_RANKS"
        if CORE_RANKS[target] >= CORE_RANKS[module]:
            return f"points up or sideways inside the core (rank {CORE_RANKS[module]} -> rank {CORE_RANKS[target]})"
    return None


# The root's version string is metadata (setup.cfg reads it there too), not a layer: ``--version`` may read it.
ROOT_CONSTANTS = frozenset({"threadsched.__version__"})


def layer_problems(module: str, source: str, known: Collection[str], *, is_package: bool = False) -> list[str]:
    return sorted(
        {
            f"{module}:{line} imports {target}: {problem}"
            for line, name in every_import(module, source, is_package=is_package)
            if name not in ROOT_CONSTANTS and (target := resolve(name, known)) is not None and target != module
            if (problem := layer_problem(module, target)) is not None
        }
    )


def test_every_import_points_down_the_layers() -> None:
    known = module_paths()
    assert set(CORE_RANKS) == {name for name in known if name.startswith("threadsched.core.")}, "rank every core module"
    found = [
        problem
        for name, path in sorted(known.items())
        for problem in layer_problems(name, path.read_text(encoding="utf-8"), known, is_package=path.name == "__init__.py")
    ]
    assert found == [], "imports that do not point down the layers:\n" + "\n".join(found)


PLANTED_MODULES = (
    *CORE_RANKS,
    "threadsched.core",
    "threadsched.policies",
    "threadsched.policies.planted",
    "threadsched.requests.planted",
    "threadsched.report.planted",
    "threadsched.report.metrics",
    "threadsched.report.requests",
    "threadsched.engine.planted",
    "threadsched.mock.planted",
    "threadsched.backends.planted",
    "threadsched",
)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        # the execution record reaching up to the controller for a value type
        ("threadsched.core.records", "from threadsched.core.admission import TaskAdmissionLease"),
        # the request layer reading its context variables out of the scheduler's records
        ("threadsched.requests.planted", "from threadsched.core.records import current_task_correlation"),
        # the policy protocol importing the controller that consults it, even only for type checking
        ("threadsched.core.policy", "if TYPE_CHECKING:\n    from threadsched.core.admission import TaskAdmissionView"),
        # the core importing the policies layer built on it
        ("threadsched.core.admission", "from threadsched.policies import StrictFairPolicy"),
        # a policy reaching into the queue or the controller instead of their views
        ("threadsched.policies.planted", "def later():\n    from threadsched.core.queue import FairTaskQueue\n"),
        ("threadsched.policies.planted", "from threadsched.core.admission import TaskAdmissionController"),
        # a value type calling back into the queue it describes
        ("threadsched.core.values", "if TYPE_CHECKING:\n    from threadsched.core.queue import FairTaskQueue"),
        # the core loading a backend (it takes any Executor; the package root wires the Dask adapter)
        ("threadsched.core.scheduler", "def adapt():\n    from threadsched.backends.dask import as_executor\n"),
        # peers of one rank and upward arrows between packages
        ("threadsched.report.planted", "from threadsched.requests.contracts import RequestDomain"),
        ("threadsched.requests.planted", "import threadsched.engine.columns"),
        ("threadsched.mock.planted", "from threadsched.engine import Recipe"),
        ("threadsched.engine.planted", "from threadsched.cli.commands import main"),
        ("threadsched.engine.planted", "from threadsched import Scheduler"),
        ("threadsched.engine.planted", "import importlib\nimportlib.import_module('threadsched.cli')"),
    ],
)
def test_the_layer_check_finds_a_planted_import(module: str, source: str) -> None:
    found = layer_problems(module, source, {*module_paths(), *PLANTED_MODULES})
    assert len(found) == 1 and found[0].startswith(f"{module}:"), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("threadsched.core.records", "from threadsched.core.values import TaskAdmissionLease"),
        ("threadsched.requests.planted", "from threadsched.core.context import current_task_correlation"),
        (
            "threadsched.policies.planted",
            "from threadsched.core.values import QueueView\nfrom threadsched.requests import RequestDomain",
        ),
        (
            "threadsched.engine.planted",
            "from threadsched.core.scheduler import Scheduler\nfrom threadsched.mock.model import MockModelEndpoint",
        ),
        ("threadsched", "from threadsched.cli import main"),
        ("threadsched.cli.planted", "from threadsched import __version__"),
    ],
)
def test_the_layer_check_lets_downward_imports_pass(module: str, source: str) -> None:
    assert layer_problems(module, source, {*module_paths(), *PLANTED_MODULES}) == []


def test_a_cycle_through_a_type_checking_import_is_found() -> None:
    """report.metrics imported report.requests, which imported metrics back for a type annotation."""
    known = {"threadsched.report.metrics", "threadsched.report.requests"}
    sources = {
        "threadsched.report.metrics": "from threadsched.report.requests import request_metrics",
        "threadsched.report.requests": "if TYPE_CHECKING:\n    from threadsched.report.metrics import GroupMetrics",
    }
    graph = {name: {target for _, target in module_imports(name, source, known)} for name, source in sources.items()}
    assert cycles(graph) == [sorted(known)]
