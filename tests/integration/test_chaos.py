"""CI's chaos run: `scripts/proof/chaos.py` on a small seed, as a subprocess, must hold every invariant.

A few hundred events over its own emulator stack, with duplicated webhooks, two worker
SIGKILLs, one Firestore and one Pub/Sub cut, and the queue -> sync switch halfway. The full
run (2,000 events, docs/chaos.md) is the same script with bigger numbers. A failure prints
the script's table; replay it with the seed in its last line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED, EVENTS, CUSTOMERS = 7, 300, 40
BUDGET_SECONDS = 230  # the whole test stays under four minutes on the 2-core CI machine
INVARIANTS = (
    "every event got a 2xx from the webhook",
    "every accepted event is processed, ignored or dead_lettered",
    "every event ended as the model says",
    "every user's balance equals the model's",
    "every user's balance equals their ledger sum",
    "no event has more than one ledger entry",
    "ledger entries are exactly the model's crediting events",
    "every dead-lettered event is in the DLQ topic",
    "no 5xx to an event already answered 2xx",
    "orders and subscriptions match the model",
)


@pytest.mark.emulators
@pytest.mark.chaos
def test_small_chaos_run_holds_every_invariant(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "scripts/proof/chaos.py",
        *("--seed", str(SEED), "--events", str(EVENTS), "--customers", str(CUSTOMERS)),
        *("--kills", "2", "--firestore-cuts", "1", "--pubsub-cuts", "1"),
        *("--report", str(tmp_path / "chaos.json")),
    ]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=BUDGET_SECONDS, check=False
    )
    out = done.stdout
    assert done.returncode == 0, f"{out[-6000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
    for name in INVARIANTS:
        assert re.search(rf"^  PASS  {re.escape(name)} \(", out, re.M), f"no PASS for {name}"
    assert "FAIL" not in out
    faults = {
        "worker SIGKILL + restart on the same port": r"\s+2$",
        "Firestore connections cut (all functions)": r"\s+1 \(",
        "Pub/Sub connections cut (all functions)": r"\s+1 \(",
        "switch queue -> sync, events still in flight": r"\s+1 \(",
    }
    for label, count in faults.items():
        assert re.search(rf"^  {re.escape(label)}{count}", out, re.M), f"fault missing: {label}"
    twice = re.search(r"events delivered twice or more\s+\d+ \((\d+\.\d)%\)", out)
    assert twice and float(twice.group(1)) >= 20.0
    assert out.rstrip().splitlines()[-1].startswith("CHAOS PASS: 11/11 invariants held")
