"""The Dask backend (``threadsched.backends.dask``) on a two-process ``LocalCluster`` on loopback.

Functions that run on the cluster live in ``tests/support.py`` (module level: worker processes import
them). The cluster is shared by the module; the tests without ``distributed`` run whether it is installed
or not."""

from __future__ import annotations

import importlib
import json
import operator
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import support

from threadsched import Scheduler
from threadsched.backends.dask import DaskExecutor, as_executor, is_dask_client
from threadsched.cli import main
from threadsched.engine import builtin_recipe_text, parse_recipe, run_recipe, run_reference

TIMEOUT = 30.0  # generous, bounded: no test waits on the cluster without one


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=50
    )
    dask_client = distributed.Client(cluster, timeout=TIMEOUT)
    try:
        yield dask_client
    finally:
        dask_client.close()
        cluster.close()


@pytest.fixture
def scheduler(client: Any) -> Iterator[Scheduler]:
    executor = DaskExecutor(client)
    scheduler = Scheduler(executor=executor, name="dask-test")
    try:
        yield scheduler
    finally:
        assert scheduler.shutdown(wait=True, timeout=TIMEOUT).clean
        executor.shutdown(wait=True)


def _worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


def test_tasks_run_on_the_cluster_worker_processes(client: Any, scheduler: Scheduler) -> None:
    futures = [scheduler.submit(support.worker_pid, i) for i in range(12)]
    results = [future.result(timeout=TIMEOUT) for future in futures]
    assert [value for _pid, value in results] == list(range(12))
    pids = {pid for pid, _value in results}
    assert os.getpid() not in pids
    assert pids <= _worker_pids(client)
    counters = scheduler.snapshot().counters
    assert counters["completed"] == 12
    assert counters["hidden_waiters"] == 0


def test_capacity_defaults_to_the_cluster_worker_threads(client: Any, scheduler: Scheduler) -> None:
    assert DaskExecutor(client).max_workers == 4  # 2 workers x 2 threads
    assert scheduler.submit_capacity == 4
    explicit = Scheduler(3, executor=DaskExecutor(client), name="dask-explicit")
    try:
        assert explicit.submit_capacity == 3
    finally:
        explicit.shutdown(wait=True)


def test_a_raw_client_is_wrapped_and_executors_pass_through(client: Any) -> None:
    assert is_dask_client(client)
    assert isinstance(as_executor(client), DaskExecutor)
    with ThreadPoolExecutor(1) as pool:
        assert as_executor(pool) is pool
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        as_executor(object())
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        DaskExecutor(object())


def test_the_lease_is_released_only_on_the_remote_outcome(client: Any, scheduler: Scheduler) -> None:
    from distributed import Event

    started, release = f"started-{uuid.uuid4().hex}", f"release-{uuid.uuid4().hex}"
    future = scheduler.submit(support.wait_for_event, started, release, TIMEOUT)
    assert Event(started, client=client).wait(TIMEOUT), "the remote task did not start"
    assert future.running()
    assert future.cancel() is False  # running remotely: only its cooperative token is set
    assert not future.done()
    assert scheduler.snapshot().admission.active_lease_count == 1  # the cancel freed no capacity
    assert scheduler.snapshot().running == 1
    Event(release, client=client).set()
    pid = future.result(timeout=TIMEOUT)  # the remote task finished normally: its outcome stands
    assert pid in _worker_pids(client)
    assert scheduler.snapshot().admission.active_lease_count == 0  # released before the future resolved


def test_the_bridge_future_cannot_be_cancelled_once_submitted(client: Any) -> None:
    from distributed import Event

    executor = DaskExecutor(client)
    started, release = f"started-{uuid.uuid4().hex}", f"release-{uuid.uuid4().hex}"
    future = executor.submit(support.wait_for_event, started, release, TIMEOUT)
    assert Event(started, client=client).wait(TIMEOUT)
    assert future.cancel() is False
    assert executor.statistics()["pending"] == 1
    Event(release, client=client).set()
    assert future.result(timeout=TIMEOUT) in _worker_pids(client)
    executor.shutdown(wait=True)
    assert executor.statistics()["pending"] == 0
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(support.worker_pid, 1)


def test_exceptions_propagate_and_release_the_lease(client: Any, scheduler: Scheduler) -> None:
    future = scheduler.submit(support.fail, "remote boom")
    with pytest.raises(ValueError, match="remote boom"):
        future.result(timeout=TIMEOUT)
    plain = DaskExecutor(client).submit(support.fail, "plain boom")
    with pytest.raises(ValueError, match="plain boom"):
        plain.result(timeout=TIMEOUT)
    snapshot = scheduler.snapshot()
    assert snapshot.counters["failed"] == 1
    assert snapshot.admission.active_lease_count == 0


def test_keyword_arguments_named_like_client_submit_options_reach_the_function(client: Any, scheduler: Scheduler) -> None:
    future = scheduler.submit(support.keywords, key="k", workers="w", pure=True)
    assert future.result(timeout=TIMEOUT) == {"key": "k", "workers": "w", "pure": True}


def test_many_tasks_never_exceed_capacity_and_leave_no_hidden_waiter(scheduler: Scheduler) -> None:
    futures = [scheduler.submit(support.worker_pid, i) for i in range(60)]
    assert sorted(future.result(timeout=TIMEOUT)[1] for future in futures) == list(range(60))
    snapshot = scheduler.snapshot()
    assert snapshot.counters["hidden_waiters"] == 0
    assert snapshot.admission.active_lease_count == 0
    assert snapshot.running == 0


def _small_demo(records: int = 40) -> Any:
    text = re.sub(r"^records = \d+", f"records = {records}", builtin_recipe_text("demo"), flags=re.MULTILINE)
    return parse_recipe(text, source="demo-small")


def test_run_recipe_on_the_cluster_equals_the_reference(client: Any, tmp_path: Path) -> None:
    recipe = _small_demo()
    reference = run_reference(recipe, tmp_path / "reference")
    executor = DaskExecutor(client)
    result = run_recipe(recipe, tmp_path / "dask", workers=4, executor=executor)
    assert result.output_hash == reference.output_hash
    assert result.dropped == reference.dropped
    assert result.hidden_waiters == 0
    assert result.final_active_leases == 0
    assert executor.statistics()["submitted"] > 0  # it really went through the cluster
    assert executor.statistics()["pending"] == 0


def test_cli_run_with_dask_address_gives_the_reference_hash(client: Any, tmp_path: Path) -> None:
    recipe = tmp_path / "small.toml"
    recipe.write_text(re.sub(r"^records = \d+", "records = 40", builtin_recipe_text("demo"), flags=re.MULTILINE))
    address = client.scheduler.address
    assert main(["run", str(recipe), "--out", str(tmp_path / "dask"), "--dask", address, "--quiet", "--no-events"]) == 0
    assert main(["run", str(recipe), "--out", str(tmp_path / "reference"), "--reference", "--quiet"]) == 0
    dask_run = json.loads((tmp_path / "dask" / "run.json").read_text())
    assert dask_run["output_hash"] == json.loads((tmp_path / "reference" / "run.json").read_text())["output_hash"]
    plan = json.loads((tmp_path / "dask" / "capacity_plan.json").read_text())
    assert plan["configured"]["submission_capacity"]["value"] == 4  # the cluster's threads without --workers


def test_cli_dask_cannot_be_combined_with_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--dask", "local", "--reference"]) == 2
    assert "--dask cannot be combined with --reference" in capsys.readouterr().err


# -- without distributed --------------------------------------------------------------------------------


def test_everything_imports_without_distributed_and_the_adapter_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # "import distributed" now raises ImportError
    monkeypatch.delitem(sys.modules, "threadsched.backends.dask", raising=False)
    backend = importlib.import_module("threadsched.backends.dask")
    assert not backend.is_dask_client(object())
    with ThreadPoolExecutor(1) as pool:
        assert backend.as_executor(pool) is pool
    with pytest.raises(ImportError, match=re.escape("threadsched[dask]")):
        backend.DaskExecutor(object())
    with pytest.raises(ImportError, match=re.escape("threadsched[dask]")), backend.connect("local", threads=2):
        pass
    assert main(["demo", "--dask", "local", "--quiet"]) == 2
    assert "threadsched[dask]" in capsys.readouterr().err


def test_importing_threadsched_does_not_import_dask() -> None:
    code = (
        "import sys; import threadsched, threadsched.cli, threadsched.engine, threadsched.backends.dask; "
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert completed.stdout.strip() == "[]"


def test_cli_run_with_dask_local_starts_its_own_cluster(client: Any, tmp_path: Path) -> None:
    recipe = tmp_path / "small.toml"
    recipe.write_text(re.sub(r"^records = \d+", "records = 20", builtin_recipe_text("demo"), flags=re.MULTILINE))
    argv = ["run", str(recipe), "--out", str(tmp_path / "local"), "--dask", "local", "--workers", "2", "--quiet", "--no-events"]
    assert main(argv) == 0
    assert main(["run", str(recipe), "--out", str(tmp_path / "reference"), "--reference", "--quiet"]) == 0
    local = json.loads((tmp_path / "local" / "run.json").read_text())
    assert local["output_hash"] == json.loads((tmp_path / "reference" / "run.json").read_text())["output_hash"]


def test_scheduler_accepts_a_raw_client(client: Any) -> None:
    with Scheduler(executor=client, name="raw-client") as scheduler:
        assert scheduler.submit_capacity == 4
        assert scheduler.submit(operator.add, 2, 3).result(timeout=60) == 5


def test_leased_executor_runs_on_a_cluster(client: Any) -> None:
    from threadsched import LeasedExecutor

    with LeasedExecutor(executor=client) as pool:
        assert pool.max_workers == 4
        assert list(pool.map(operator.mul, [1, 2, 3], [4, 5, 6])) == [4, 10, 18]
    with pytest.raises(ValueError, match="initializer and initargs apply to the built-in pool"):
        LeasedExecutor(executor=client, initializer=print)
