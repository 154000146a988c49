"""CI's outage drill: ``scripts/proof/drill.py`` on a tiny run, as a subprocess, must hold every
invariant, with the replay before and after reconcile; the facts are read from its JSON report.

Six customers, three events each: one delivered normally, one accepted while the worker
is down and then dead-lettered as Pub/Sub's policy does, one PayNow could not deliver
(webhook down, or answering 401). The documented run (docs/chaos.md) is the same script
with more customers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import run_proof_tool

BUDGET_SECONDS = 150
INVARIANTS = (
    "every balance equals the model's",
    "every event processed, none left received",
    "every event credited exactly once (one ledger entry, none doubled)",
    "ledger verify passes",
    "a second backfill and replay change nothing",
)


@pytest.mark.emulators
@pytest.mark.chaos
@pytest.mark.parametrize("order", [[], ["--replay-first"]], ids=["reconcile-first", "replay-first"])
def test_a_tiny_outage_drill_recovers_every_balance(tmp_path: Path, order: list[str]) -> None:
    argv = ["scripts/proof/drill.py", "--seed", "3", "--customers", "6", *order]
    out, report = run_proof_tool(argv, tmp_path / "drill.json", BUDGET_SECONDS)
    verdicts = {v["name"]: v["ok"] for v in report["verdicts"]}
    assert verdicts == dict.fromkeys(INVARIANTS, True)
    counts = report["counts"]
    assert counts["movedToDlq"] == 6, "figure: moved to the DLQ by the dead-letter policy"
    assert counts["failedNoAnswer"] == 3, "figure: 3 webhook down: failed in PayNow (no answer)"
    assert counts["failed401"] == 3, "figure: webhook answering 401: failed in PayNow"
    backfill = counts["backfill"]
    assert (backfill["accepted"], backfill["failed"]) == (6, 0), f"figure: backfill {backfill}"
    assert (report["pass"], report["held"], report["invariants"]) == (True, 5, 5)
    assert out.rstrip().splitlines()[-1].startswith("DRILL PASS: 5/5 invariants held")
