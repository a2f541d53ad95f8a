from __future__ import annotations

import json
import subprocess
import sys

import pytest

from threadsched.cli import main


def test_demo_plain_prints_table_and_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scale", "small", "--plain", "--workers", "4"]) == 0
    out = capsys.readouterr().out
    assert "heavy-model" in out and "light-a" in out
    assert "hidden waiters (workers started before their lease): 0" in out
    assert "final active leases: 0" in out


def test_demo_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scale", "small", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["hidden_waiters"] == 0
    assert payload["final_active_leases"] == 0
    assert {row["group"] for row in payload["rows"]} == {"heavy-model", "light-a", "light-b", "light-c"}


def test_bad_workers_value_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workers", "0"]) == 2
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err


def test_python_dash_m_entry_point() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "threadsched", "demo", "--scale", "small", "--json"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["hidden_waiters"] == 0
