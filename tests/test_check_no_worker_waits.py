"""scripts/check_no_worker_waits.sh: passes on the package, and can fail (on planted offences)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_no_worker_waits.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="check_no_worker_waits.sh needs bash")


def run(root: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(SCRIPT)] + ([str(root)] if root is not None else [])
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_the_package_is_clean() -> None:
    completed = run()
    assert completed.returncode == 0, completed.stderr
    assert "check_no_worker_waits: ok" in completed.stdout


def planted(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    (root / "core").mkdir(parents=True)
    (root / "core" / "admission.py").write_text("def take(s):\n    return s.acquire(blocking=False)\n")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_a_blocking_acquire_outside_the_controller_fails(tmp_path: Path) -> None:
    completed = run(planted(tmp_path, {"worker.py": "def run(gate):\n    gate.acquire()\n"}))
    assert completed.returncode == 1
    assert "blocking acquire() outside the admission controller" in completed.stderr


def test_a_blocking_acquire_inside_the_controller_fails(tmp_path: Path) -> None:
    root = planted(tmp_path, {})
    (root / "core" / "admission.py").write_text("def take(s):\n    return s.acquire(timeout=1)\n")
    completed = run(root)
    assert completed.returncode == 1 and "inside the controller" in completed.stderr


def test_non_blocking_acquires_and_comments_pass(tmp_path: Path) -> None:
    text = "# gate.acquire() would block here\ndef run(flag):\n    return flag.acquire(blocking=False)\n"
    completed = run(planted(tmp_path, {"lease.py": text}))
    assert completed.returncode == 0, completed.stderr


def test_request_permits_and_the_dispatcher_wake_lock_pass(tmp_path: Path) -> None:
    root = planted(tmp_path, {"dispatcher.py": "def sleep(self):\n    self._wake.acquire(timeout=1)\n"})
    (root / "requests").mkdir()
    (root / "requests" / "executor.py").write_text("def attempt(self):\n    return self._admission.acquire(key)\n")
    completed = run(root)
    assert completed.returncode == 0, completed.stderr


def test_a_blocking_acquire_elsewhere_in_the_dispatcher_fails(tmp_path: Path) -> None:
    completed = run(planted(tmp_path, {"dispatcher.py": "def spawn(self, gate):\n    gate.acquire()\n"}))
    assert completed.returncode == 1 and "dispatcher.py" in completed.stderr
