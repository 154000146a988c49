"""CI's outage drill: ``scripts/proof/drill.py`` on a tiny run, as a subprocess, must hold every
invariant, with the replay before and after reconcile.

Six customers, three events each: one delivered normally, one accepted while the worker
is down and then dead-lettered as Pub/Sub's policy does, one PayNow could not deliver
(webhook down, or answering 401). The documented run (docs/chaos.md) is the same script
with more customers.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUDGET_SECONDS = 150
INVARIANTS = (
    "every balance equals the model's",
    "every event processed, none left received",
    "every event credited exactly once",
    "ledger verify passes",
    "a second backfill and replay change nothing",
)


@pytest.mark.emulators
@pytest.mark.chaos
@pytest.mark.parametrize("order", [[], ["--replay-first"]], ids=["reconcile-first", "replay-first"])
def test_a_tiny_outage_drill_recovers_every_balance(tmp_path: Path, order: list[str]) -> None:
    argv = [sys.executable, "scripts/proof/drill.py", "--seed", "3", "--customers", "6", *order]
    argv += ["--report", str(tmp_path / "drill.json")]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=BUDGET_SECONDS, check=False
    )
    out = done.stdout
    assert done.returncode == 0, f"{out[-4000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
    for name in INVARIANTS:
        assert re.search(rf"^  PASS  {re.escape(name)}", out, re.M), f"no PASS for {name}"
    assert "FAIL" not in out
    figures = {
        "moved to the DLQ by the dead-letter policy": r"6",
        "3 webhook down: failed in PayNow (no answer)": r"3",
        "webhook answering 401: failed in PayNow": r"3",
        "paynow backfill: accepted / duplicate / failed": r"6 / \d+ / 0",
    }
    for label, value in figures.items():
        assert re.search(rf"^\s+{re.escape(label)}\s+{value}\b", out, re.M), f"figure: {label}"
    assert out.rstrip().splitlines()[-1].startswith("DRILL PASS: 5/5 invariants held")
    assert (tmp_path / "drill.json").is_file()
