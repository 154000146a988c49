"""`python -m scripts.proof.bench --size tiny` runs to the end and writes its report; its numbers are not judged.

The bench starts its own emulators and functions, so this test needs no session fixture.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.emulators
def test_tiny_bench_completes_and_writes_its_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.proof.bench", "--size", "tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    table = (tmp_path / "results.md").read_text()
    assert "--size tiny" in table
    for row in ("queue answer p50", "sync answer p50", "worker events/s", "cold start"):
        assert f"| {row}" in table
    for chart in ("latency.png", "throughput.png"):
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG")
