"""No worker thread waits for scheduler capacity: every blocking ``acquire`` in ``threadsched`` is an allowed site.

The dispatcher leases a task's capacity (its worker slot and its resources, e.g. a model's concurrency) before it
hands the task to a worker, so a running worker already holds everything it needs. A worker that waited for capacity
instead would be a hidden waiter: it occupies a worker slot doing nothing, ready tasks whose capacity is free queue
behind it, and the scheduler's fairness and accounting never see the wait.

Read statically (``ast``, so line breaks, spacing, comments and docstrings change nothing) from every module of the
installed package:

* ``X.acquire(...)`` is non-blocking only when it passes ``blocking=False`` or a first positional ``False`` (literal
  ``False``). Anything else blocks: no arguments, ``timeout=``, ``blocking=True``, ``True``, ``0``, a variable,
  ``*args``/``**kwargs``.
* A blocking acquire is allowed only at a site in ``ALLOWED``: module, enclosing function, receiver and kind (a call
  or an uncalled reference), never a line number. A lambda or nested function is a scope of its own.
* In the admission controller (``NEVER_BLOCKS``: ``threadsched.core.admission``) nothing blocks, allow-list or not:
  it takes its BoundedSemaphores all-or-nothing with ``blocking=False``.
* An uncalled reference to ``.acquire`` (``take = sem.acquire``, a callback) and ``getattr(x, "acquire")`` escape
  the call rule, so they count as blocking.

Not read here: ``with lock:`` (the package's short critical sections), ``Condition.wait``/``Event.wait`` and
``queue.get``; the event-stream evidence (hidden waiters 0) and ``scripts/hidden_waiter_probe.py`` cover what a
worker actually waits on.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support import module_paths


@dataclass(frozen=True)
class Site:
    """Where an ``acquire`` is: module, enclosing scope (``Class.method``, ``<module>``), receiver (as written)
    and kind: ``call``, ``reference`` (``.acquire`` not called) or ``getattr`` (``getattr(x, "acquire")``)."""

    module: str
    scope: str
    receiver: str
    kind: str = "call"


ALLOWED: dict[Site, str] = {
    Site("threadsched.requests.executor", "ModelRequestExecutor._attempt", "self._admission"): (
        "a running task waits for a *request* permit (a provider's rate limit on one model call), never for scheduler "
        "capacity. The request controller's acquire waits on a Condition; it calls no acquire() itself."
    ),
    Site("threadsched.core.dispatcher", "DispatcherCore.__init__", "self._wake"): (
        "the dispatcher takes its brand-new wake lock (held while awake, released once to wake it): nobody else can "
        "hold it yet, so this never waits."
    ),
    Site("threadsched.core.dispatcher", "DispatcherCore._sleep", "self._wake"): (
        "the dispatcher thread (not a worker) sleeps on its own wake lock until it is woken or its next deadline, "
        "and takes back a wake-up release that raced with the timeout."
    ),
    Site("threadsched.core.leased_executor", "<module>", "_global_shutdown_lock", "reference"): (
        "os.register_at_fork(before=...): the thread calling fork() holds the interpreter-shutdown lock across the "
        "fork (as concurrent.futures.thread does), so a child never inherits it held; not a worker, not capacity."
    ),
}
"""Every place a blocking acquire may be, and why it is not a worker waiting for scheduler capacity."""

NEVER_BLOCKS = frozenset({"threadsched.core.admission"})
"""Modules where every acquire must be non-blocking, whatever ``ALLOWED`` says."""


@dataclass(frozen=True)
class Acquire:
    site: Site
    line: int
    text: str
    blocking: bool


def is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def is_non_blocking(call: ast.Call) -> bool:
    """``blocking=False`` or a first positional ``False``, both literal."""
    if any(keyword.arg == "blocking" and is_false(keyword.value) for keyword in call.keywords):
        return True
    return bool(call.args) and is_false(call.args[0])


class AcquireScanner(ast.NodeVisitor):
    """Every ``.acquire(...)`` call, uncalled ``.acquire`` reference and ``getattr(x, "acquire")`` in a module."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.called: set[int] = set()
        self.found: list[Acquire] = []

    def add(self, node: ast.expr, kind: str, receiver: ast.expr, blocking: bool) -> None:
        site = Site(self.module, ".".join(self.scope) or "<module>", ast.unparse(receiver), kind)
        self.found.append(Acquire(site, node.lineno, ast.unparse(node), blocking))

    def inside(self, name: str, body: list[ast.stmt] | ast.expr) -> None:
        self.scope.append(name)
        for node in body if isinstance(body, list) else [body]:
            self.visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # Decorators, defaults and annotations run in the enclosing scope; only the body is the function's.
        for outer in [*node.decorator_list, node.args, node.returns]:
            if outer is not None:
                self.visit(outer)
        self.inside(node.name, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        self.inside("<lambda>", node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for outer in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(outer)
        self.inside(node.name, node.body)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        if isinstance(function, ast.Attribute) and function.attr == "acquire":
            self.called.add(id(function))
            self.add(node, "call", function.value, not is_non_blocking(node))
        elif isinstance(function, ast.Name) and function.id == "getattr" and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and name.value == "acquire":
                self.add(node, "getattr", node.args[0], True)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "acquire" and isinstance(node.ctx, ast.Load) and id(node) not in self.called:
            self.add(node, "reference", node.value, True)
        self.generic_visit(node)


def acquires(module: str, source: str) -> list[Acquire]:
    scanner = AcquireScanner(module)
    scanner.visit(ast.parse(source))
    return scanner.found


def problems(module: str, source: str) -> list[str]:
    """One line per blocking acquire that is not allowed where it is."""
    found = []
    for acquire in acquires(module, source):
        where = f"{module}:{acquire.line} in {acquire.site.scope}: {acquire.text}"
        if acquire.blocking and module in NEVER_BLOCKS:
            found.append(f"{where} blocks inside the admission controller (it only takes blocking=False)")
        elif acquire.blocking and acquire.site not in ALLOWED:
            found.append(f"{where} may block, outside the allowed sites")
    return found


def package_sources() -> Iterator[tuple[str, str]]:
    for module, path in sorted(module_paths().items()):
        yield module, path.read_text(encoding="utf-8")


def test_no_blocking_acquire_in_the_package_outside_the_allowed_sites() -> None:
    sources = dict(package_sources())
    found = [problem for module, source in sources.items() for problem in problems(module, source)]
    assert found == [], "a worker waiting for scheduler capacity?\n" + "\n".join(found)
    # The scan reads the real package: it sees every allowed site (so none is stale, and an empty scan cannot
    # pass) and the controller's non-blocking semaphore acquires.
    seen = [acquire for module, source in sources.items() for acquire in acquires(module, source)]
    assert {acquire.site for acquire in seen if acquire.blocking} == set(ALLOWED)
    assert any(not acquire.blocking for acquire in seen if acquire.site.module == "threadsched.core.admission")


def test_the_allow_list_has_no_site_in_the_admission_controller() -> None:
    assert not [site for site in ALLOWED if site.module in NEVER_BLOCKS]


ELSEWHERE = "threadsched.core.launch"  # a module with no allowed site
CONTROLLER = "threadsched.core.admission"
DISPATCHER = "threadsched.core.dispatcher"
EXECUTOR = "threadsched.requests.executor"
FORK_HOOK = "threadsched.core.leased_executor"
SLEEP = "class DispatcherCore:\n    def _sleep(self, gate):\n        {}\n"
ATTEMPT = "class ModelRequestExecutor:\n    def _attempt(self, item):\n        {}\n"

BLOCKING = {
    "multi-line": (ELSEWHERE, "def run(gate):\n    (gate\n        .acquire(\n            timeout=1,\n        ))\n"),
    "multi-line-keyword": (ELSEWHERE, "def run(gate):\n    gate.acquire(\n        blocking = True\n    )\n"),
    "no-arguments": (ELSEWHERE, "gate.acquire()"),
    "true": (ELSEWHERE, "gate.acquire(True)"),
    "timeout": (ELSEWHERE, "gate.acquire(timeout=1)"),
    "zero-is-not-false": (ELSEWHERE, "gate.acquire(0)"),
    "non-literal-keyword": (ELSEWHERE, "gate.acquire(blocking=flag)"),
    "non-literal": (ELSEWHERE, "gate.acquire(flag)"),
    "starred": (ELSEWHERE, "gate.acquire(*args)"),
    "double-starred": (ELSEWHERE, "gate.acquire(**options)"),
    "call-receiver": (ELSEWHERE, "threading.Semaphore(2).acquire()"),
    "alias": (ELSEWHERE, "take = sem.acquire"),
    "callback": (ELSEWHERE, "Thread(target=sem.acquire).start()"),
    "partial": (ELSEWHERE, "take = functools.partial(sem.acquire, timeout=1)"),
    "getattr": (ELSEWHERE, 'getattr(sem, "acquire")()'),
    "getattr-default": (ELSEWHERE, 'getattr(sem, "acquire", None)'),
    "controller": (CONTROLLER, "def _grant_locked(semaphores):\n    semaphores['llm'].acquire()\n"),
    "controller-timeout": (CONTROLLER, "semaphore.acquire(timeout=0)"),
    "controller-wake-lock": (CONTROLLER, SLEEP.format("self._wake.acquire()")),
    "wake-lock-elsewhere": ("threadsched.core.scheduler", SLEEP.format("self._wake.acquire()")),
    "wake-lock-other-method": (DISPATCHER, "class DispatcherCore:\n    def spawn(self):\n        self._wake.acquire()\n"),
    "dispatcher-other-lock": (DISPATCHER, SLEEP.format("gate.acquire()")),
    "wake-lock-alias": (DISPATCHER, SLEEP.format("take = self._wake.acquire")),
    "wake-lock-in-lambda": (DISPATCHER, SLEEP.format("later = lambda: self._wake.acquire()")),
    "wake-lock-in-nested-function": (DISPATCHER, SLEEP.format("def later():\n            self._wake.acquire()")),
    "admission-in-engine": ("threadsched.engine.runner.run", "def cell(admission, item):\n    return admission.acquire(item)\n"),
    "request-permit-in-core": (ELSEWHERE, ATTEMPT.format("self._admission.acquire(item)")),
    "request-controller": ("threadsched.requests.controller", "def acquire(self, item):\n    self._admission.acquire(item)\n"),
    "request-other-method": (
        EXECUTOR,
        "class ModelRequestExecutor:\n    def _back_off(self):\n        self._admission.acquire(1)\n",
    ),
    "request-other-lock": (EXECUTOR, ATTEMPT.format("self._capacity.acquire()")),
    "fork-hook-called": (FORK_HOOK, "_global_shutdown_lock.acquire()"),
    "fork-hook-in-function": (FORK_HOOK, "def hook():\n    os.register_at_fork(before=_global_shutdown_lock.acquire)\n"),
}
"""Planted sources with one blocking acquire each that is not allowed where it is."""

PASSING = {
    "comments-and-docstrings": (
        ELSEWHERE,
        '# gate.acquire() would block here\ndef run(flag):\n    """Never gate.acquire() nor sem.acquire(timeout=1)."""\n'
        "    return flag.acquire(blocking=False)  # not gate.acquire()\n",
    ),
    "string": (ELSEWHERE, "text = 'sem.acquire()'"),
    "false": (ELSEWHERE, "flag.acquire(False)"),
    "spaced-keyword": (ELSEWHERE, "flag.acquire(blocking = False)"),
    "multi-line-non-blocking": (ELSEWHERE, "flag.acquire(\n    blocking=False,\n)"),
    "false-with-timeout": (ELSEWHERE, "flag.acquire(False, -1)"),
    "lookalike-names": (ELSEWHERE, "lease = controller.try_acquire(task, view)\nwhen = lease.acquired_at"),
    "definition": (ELSEWHERE, "class Gate:\n    def acquire(self):\n        return True\n"),
    "getattr-other-name": (ELSEWHERE, 'getattr(lock, "release")\ngetattr(lock, name)'),
    "assignment": (ELSEWHERE, "lock.acquire = fake"),
    "controller": (CONTROLLER, "def _take_units_locked(semaphore):\n    return semaphore.acquire(blocking=False)\n"),
    "dispatcher-sleep": (DISPATCHER, SLEEP.format("self._wake.acquire(timeout=1)")),
    "dispatcher-init": (DISPATCHER, "class DispatcherCore:\n    def __init__(self):\n        self._wake.acquire()\n"),
    "request-permit": (EXECUTOR, ATTEMPT.format("self._admission.acquire(item, timeout=2)")),
    "fork-hook": (FORK_HOOK, "os.register_at_fork(before=_global_shutdown_lock.acquire)"),
}
"""Planted sources that mention acquire only in text, acquire without blocking, or block at an allowed site."""


@pytest.mark.parametrize(("module", "source"), list(BLOCKING.values()), ids=list(BLOCKING))
def test_a_planted_blocking_acquire_fails(module: str, source: str) -> None:
    found = problems(module, source)
    assert len(found) == 1 and found[0].startswith(f"{module}:"), found


@pytest.mark.parametrize(("module", "source"), list(PASSING.values()), ids=list(PASSING))
def test_non_blocking_acquires_mentions_and_allowed_sites_pass(module: str, source: str) -> None:
    assert problems(module, source) == []


def test_a_multi_line_call_is_reported_at_its_first_line_with_its_whole_text() -> None:
    source = "def run(gate):\n    return gate.acquire(\n        timeout=1,\n    )\n"
    assert problems(ELSEWHERE, source) == [f"{ELSEWHERE}:2 in run: gate.acquire(timeout=1) may block, outside the allowed sites"]


def test_a_blocking_acquire_in_the_controller_is_named_as_such() -> None:
    (found,) = problems(CONTROLLER, "semaphore.acquire()")
    assert "inside the admission controller" in found
