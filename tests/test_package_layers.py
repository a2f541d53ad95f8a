"""The package's layers import in one direction: no module-level import cycle anywhere in ``threadsched``.

Read statically from each module's top-level imports (``TYPE_CHECKING`` blocks excluded, since they never
run), so a cycle hidden by import order still fails here. Function-local imports are allowed: they are
how optional layers (dask, the engine from the CLI) stay lazy. The request layer is stricter: none of its
modules imports the engine, the report or the CLI, not even inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import threadsched

PACKAGE_ROOT = Path(threadsched.__file__).resolve().parent


def module_paths() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = ["threadsched", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


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
    known = module_paths()
    return {name: set(imported_modules(name, path, known)) for name, path in known.items()}


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


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_recipe_value_types_do_not_import_the_parsers() -> None:
    graph = import_graph()
    assert "threadsched.engine.recipe.values" in graph["threadsched.engine.recipe.parse"]  # the probe itself works
    assert "threadsched.engine.recipe.parse" not in graph["threadsched.engine.recipe.values"]
    assert "threadsched.engine.recipe.parse" not in graph["threadsched.engine.recipe.validation"]


# The layers above ``threadsched.requests``: they may import it, it must never import them.
ABOVE_REQUESTS = ("threadsched.engine", "threadsched.report", "threadsched.cli")


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


def upward_imports(module: str, source: str, *, is_package: bool = False) -> list[str]:
    return sorted(
        {
            f"{module}:{line} imports {target}"
            for line, target in every_import(module, source, is_package=is_package)
            if any(target == layer or target.startswith(layer + ".") for layer in ABOVE_REQUESTS)
        }
    )


def test_the_request_layer_never_imports_the_engine_report_or_cli() -> None:
    """Direction: engine -> requests, never the reverse (nor requests -> report or cli). The request
    layer (admission, executor, transports, the mock model and its server) is usable without the engine,
    and the engine builds on it; an import back up, even a function-local one, would tie them together."""
    requests_modules = {name: path for name, path in module_paths().items() if name.split(".")[:2] == ["threadsched", "requests"]}
    assert "threadsched.requests.executor" in requests_modules  # the scan covers the package
    found = [
        problem
        for name, path in sorted(requests_modules.items())
        for problem in upward_imports(name, path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py")
    ]
    assert found == [], "threadsched.requests must not import the layers above it:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from ..engine.recipe import Recipe",
        "from .. import engine",
        "import threadsched.engine.columns",
        "from threadsched.report import write_report",
        "def later():\n    from ..cli.commands import main\n",
        "if TYPE_CHECKING:\n    from threadsched.engine import Recipe\n",
        "import importlib\nimportlib.import_module('threadsched.engine')",
    ],
)
def test_the_upward_import_scan_finds_a_planted_import(source: str) -> None:
    found = upward_imports("threadsched.requests.planted", source)
    assert len(found) == 1 and found[0].startswith("threadsched.requests.planted:"), found


def test_the_upward_import_scan_ignores_lookalike_names() -> None:
    source = "from .engine_like import x\nimport threadsched.engineering\nfrom ..requests.outcomes import classify"
    assert upward_imports("threadsched.requests.planted", source) == []
