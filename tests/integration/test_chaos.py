"""CI's chaos run: ``scripts/proof/chaos`` on a small seed, as a subprocess, must hold every
invariant; the facts are read from its JSON report.

A few hundred events over its own emulator stack, with duplicated webhooks, two worker
SIGKILLs, one Firestore and one Pub/Sub cut, and the queue -> sync switch halfway. The full
run (2,000 events, docs/chaos.md) is the same command with bigger numbers. A failure shows
the run's table; replay it with the seed in its last line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import run_proof_tool

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
        "scripts/proof/chaos",
        *("--seed", str(SEED), "--events", str(EVENTS), "--customers", str(CUSTOMERS)),
        *("--kills", "2", "--firestore-cuts", "1", "--pubsub-cuts", "1"),
    ]
    out, report = run_proof_tool(argv, tmp_path / "chaos.json", BUDGET_SECONDS)
    verdicts = {v["name"]: v["ok"] for v in report["verdicts"]}
    for name in INVARIANTS:
        assert verdicts.get(name) is True, f"no PASS for {name}"
    assert all(verdicts.values()), [name for name, ok in verdicts.items() if not ok]
    figures = report["figures"]
    assert figures["kills"] == 2, "fault missing: worker SIGKILL + restart on the same port"
    assert figures["cuts"] == {"firestore": 1, "pubsub": 1}, "fault missing: a cut"
    assert figures["switches"] == 1, "fault missing: the switch queue -> sync"
    assert figures["delivered_twice_percent"] >= 20.0
    assert (report["pass"], report["held"], report["invariants"]) == (True, 10, 10)
    assert out.rstrip().splitlines()[-1].startswith("CHAOS PASS: 10/10 invariants held")
