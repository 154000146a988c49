"""The bench's commands run to the end tiny (`--size tiny`, the load alternatives); numbers are not judged.

The bench starts its own emulators and functions, so this test needs no session fixture.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.proof.bench.alternatives import ALTERNATIVES
from scripts.proof.bench.run import QUEUE, QUEUE_FLOOR, RAW_QUEUE_POOL

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, *args: str) -> str:
    """Run one of the bench's commands to its end; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.mark.emulators
def test_tiny_bench_completes_and_writes_its_table(tmp_path: Path) -> None:
    _run("scripts.proof.bench", "--size", "tiny", "--out", str(tmp_path))
    table = (tmp_path / "results.md").read_text()
    assert "--size tiny" in table
    for row in ("queue answer p50", "sync answer p50", "worker events/s", "cold start"):
        assert f"| {row}" in table
    for chart in ("latency.png", "throughput.png"):
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG")


@pytest.mark.emulators
def test_the_load_alternatives_run_and_each_answers_every_request() -> None:
    out = _run(
        "scripts.proof.bench.alternatives", "--rounds", "1", "--requests", "16", "--levels", "4"
    )
    rows = {
        cells[1].strip(): cells[2].strip()
        for line in out.splitlines()
        if line.startswith("| ") and (cells := line.split("|"))
    }
    expected = [RAW_QUEUE_POOL, QUEUE_FLOOR, QUEUE, *(alt.name for alt in ALTERNATIVES)]
    assert list(rows)[1:] == expected, out
    for name in expected:
        assert "errors" not in rows[name]  # every request of every series was answered
        rate, ratio, _p99 = rows[name].split(", ")
        assert float(rate) > 0 and ratio.endswith("x"), rows[name]
