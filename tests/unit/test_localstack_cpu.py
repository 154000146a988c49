"""localstack's CPU readings from /proc: a process group's and the whole machine's."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scripts.local import localstack

SPIN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"


def test_a_group_s_cpu_counts_its_busy_process_and_the_machine_s_at_least_that(
    tmp_path: Path,
) -> None:
    machine = localstack.machine_cpu_seconds()
    ready = tmp_path / "ready"
    script = SPIN + f"open({str(ready)!r}, 'w').close()\ntime.sleep(30)\n"
    proc = localstack.spawn("cpu-spin", [sys.executable, "-c", script], logs=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline, "the spinning child never finished its spin"
            time.sleep(0.05)
        spent = localstack.group_cpu_seconds(proc)
        assert 0.5 <= spent < 5.0
        assert localstack.machine_cpu_seconds() - machine >= 0.5
    finally:
        localstack.stop_all([proc])


def test_a_group_with_no_living_process_has_spent_nothing(tmp_path: Path) -> None:
    proc = localstack.spawn("cpu-none", [sys.executable, "-c", "pass"], logs=tmp_path)
    proc.popen.wait(timeout=20)
    assert localstack.group_cpu_seconds(proc) == 0.0
