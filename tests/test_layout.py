"""Every test module says what it tests: its name is the module's, or it is a listed cross-cutting suite.

``tests/test_<name>.py`` (optionally ``test_<name>_properties.py``, a property suite) tests the module whose
dotted path, with dots as underscores, is ``<name>``: ``threadsched.core.queue`` is ``test_core_queue.py``, a
package's ``__init__`` is ``init`` (``test_init.py`` is ``threadsched/__init__.py``, ``test_report_init.py`` is
``threadsched/report/__init__.py``), and ``bench/X.py`` is ``test_bench_X.py``. A suite that tests no one
module (a behaviour across modules, a contract, the repository's own structure) is listed in ``CROSS_CUTTING``
with what it covers.
"""

from __future__ import annotations

from pathlib import Path

from support import PACKAGE_ROOT

TESTS_DIR = Path(__file__).resolve().parent
BENCH_DIR = TESTS_DIR.parent / "bench"
PROPERTY_SUFFIX = "_properties"
DUNDER_NAMES = {"__init__": "init", "__main__": "main"}

CROSS_CUTTING: dict[str, str] = {
    # Behaviour suites run against the stdlib and threadsched alike, or against third-party callers.
    "test_executor_contract.py": "LeasedExecutor and ThreadPoolExecutor pass one Executor behaviour suite",
    "test_compat_asyncio.py": "asyncio's default executor and to_thread on a LeasedExecutor",
    "test_compat_dask.py": "Dask's local threaded scheduler with a LeasedExecutor as its pool",
    "test_compat_openai_sdk.py": "the official openai SDK against the mock provider over HTTP",
    # Paths through several core modules at once.
    "test_completion.py": "completion outcomes (Execution.finish -> DispatcherCore.complete) under unusual executors",
    "test_faults.py": "regressions of the core, each named after the fault it pins",
    "test_numeric_arguments.py": "every numeric argument of the core's constructors and of shutdown: NaN, inf, bools, huge",
    "test_examples.py": "the recipes in examples/ against the single-threaded reference",
    # Static checks of the package and the repository.
    "test_lazy_imports.py": "what `import threadsched` loads, in a fresh interpreter",
    "test_package_layers.py": "the layers' import rules, and no import cycles",
    "test_no_worker_waits.py": "no blocking acquire outside the named sites",
    "test_layout.py": "this file: every test module names what it tests",
    # A script outside the package and bench/.
    "test_hidden_waiter_probe.py": "scripts/hidden_waiter_probe.py (py-spy finds no worker blocked on a semaphore)",
}


def modules_by_test_name() -> dict[str, Path]:
    """``<name>`` of ``test_<name>.py`` -> the source file it tests, for every module of the package and bench/."""
    names: dict[str, Path] = {}
    sources = [(path, path.relative_to(PACKAGE_ROOT).with_suffix("").parts) for path in PACKAGE_ROOT.rglob("*.py")]
    sources += [(path, ("bench", path.stem)) for path in BENCH_DIR.glob("*.py")]
    for path, parts in sources:
        name = "_".join(DUNDER_NAMES.get(part, part) for part in parts)
        assert name not in names, f"{path} and {names[name]} would both be tested by test_{name}.py"
        names[name] = path
    return names


def module_under_test(test_file: str, modules: dict[str, Path]) -> Path | None:
    name = test_file.removeprefix("test_").removesuffix(".py")
    return modules.get(name) or modules.get(name.removesuffix(PROPERTY_SUFFIX))


def test_every_test_module_names_the_module_it_tests_or_is_a_listed_cross_cutting_suite() -> None:
    modules = modules_by_test_name()
    unnamed = [
        path.name
        for path in sorted(TESTS_DIR.glob("test_*.py"))
        if path.name not in CROSS_CUTTING and module_under_test(path.name, modules) is None
    ]
    assert unnamed == [], "test modules that name no module (rename them, or list them in CROSS_CUTTING):\n" + "\n".join(unnamed)


def test_the_cross_cutting_list_holds_only_existing_suites_that_name_no_module() -> None:
    modules = modules_by_test_name()
    stale = [name for name in CROSS_CUTTING if not (TESTS_DIR / name).is_file()]
    named = [name for name in CROSS_CUTTING if module_under_test(name, modules) is not None]
    assert stale == [] and named == [], f"not test files: {stale}; name a module, so need no entry: {named}"


def test_the_name_rule_maps_the_documented_examples() -> None:
    modules = modules_by_test_name()
    expected = {
        "test_core_queue.py": PACKAGE_ROOT / "core" / "queue.py",
        "test_init.py": PACKAGE_ROOT / "__init__.py",
        "test_report_init.py": PACKAGE_ROOT / "report" / "__init__.py",
        "test_core_scheduler_properties.py": PACKAGE_ROOT / "core" / "scheduler.py",
        "test_engine_runner_rows.py": PACKAGE_ROOT / "engine" / "runner" / "rows.py",
        "test_bench_run.py": BENCH_DIR / "run.py",
    }
    assert {name: module_under_test(name, modules) for name in expected} == expected
    assert module_under_test("test_core_nowhere.py", modules) is None
    assert module_under_test("test_queue.py", modules) is None  # the package path is part of the name
