"""The report: the table the run prints, and the JSON report its test reads.

Both are built from the same figures (``Figures``): what the table says in words, the JSON
says in numbers, with every answer and fault as evidence.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from scripts.proof.chaos.faults import Switch
from scripts.proof.chaos.invariants import Evidence
from scripts.proof.chaos.model import DEAD_LETTERED
from scripts.proof.verdicts import Verdict, held

COMMAND = "scripts/proof/chaos"
CUT_KINDS = (("firestore", "Firestore"), ("pubsub", "Pub/Sub"))
FAILURES_SHOWN = 10  # per invariant in the table; the report has all of them


@dataclass(frozen=True)
class Figures:
    """What was done to the pipeline, counted."""

    accepted: int  # events with a 2xx
    copies: dict[str, int]  # copies sent: concurrent | later | switch
    delivered_twice: int  # events delivered twice or more
    delivered_twice_percent: float
    sender_retries: int  # attempts after an answer >= 300 or none
    kills: int
    cuts: dict[str, int]  # firestore | pubsub: cuts fired
    cut_seconds: dict[str, float]
    switches: int
    in_flight_at_switch: int

    @classmethod
    def of(cls, ev: Evidence, switch: Switch) -> Figures:
        firsts = [a for a in ev.answers if a.attempt == 1]
        per_event = Counter(a.event_id for a in firsts)
        twice = sum(1 for e in ev.events if per_event[e.event_id] >= 2)
        fired = [f for f in ev.plan if f.fired_at is not None]
        cuts = {kind: [f for f in fired if f.kind == kind] for kind, _ in CUT_KINDS}
        return cls(
            accepted=len(ev.first_2xx),
            copies=dict(Counter(a.copy for a in firsts if a.copy != "original")),
            delivered_twice=twice,
            delivered_twice_percent=round(100 * twice / max(1, len(ev.events)), 1),
            sender_retries=sum(1 for a in ev.answers if a.attempt > 1),
            kills=sum(1 for f in fired if f.kind == "kill"),
            cuts={kind: len(faults) for kind, faults in cuts.items()},
            cut_seconds={
                kind: round(sum((f.restored_at or 0) - (f.fired_at or 0) for f in faults), 1)
                for kind, faults in cuts.items()
            },
            switches=1 if switch.flipped else 0,
            in_flight_at_switch=switch.in_flight,
        )


@dataclass(frozen=True)
class Outcome:
    """A finished run, as the table and the report show it."""

    args: argparse.Namespace
    evidence: Evidence
    figures: Figures
    switch: Switch
    reconcile: dict[str, Any]
    verdicts: list[Verdict]
    elapsed: float
    logs: list[str]


def _row(label: str, *cells: object) -> str:
    return f"  {label:<52}" + "".join(f"{c!s:>12}" for c in cells)


def replay_command(args: argparse.Namespace) -> str:
    return f"{COMMAND} --seed {args.seed} --events {args.events} --customers {args.customers}"


def summary(run: Outcome) -> str:
    """The last line: the verdict, the run in numbers, and how to replay it."""
    args, figures = run.args, run.figures
    return (
        f"CHAOS {held(run.verdicts)}; seed {args.seed}, {args.events} events, "
        f"{figures.kills} kills, {sum(figures.cuts.values())} cuts, "
        f"{figures.delivered_twice} events delivered twice, {run.elapsed:.0f}s "
        f"(replay: {replay_command(args)})"
    )


def _faults(ev: Evidence, figures: Figures, switch: Switch, reconcile: dict[str, Any]) -> list[str]:
    kills = [f for f in ev.plan if f.kind == "kill" and f.fired_at is not None]
    out = [
        "faults injected",
        _row(
            "webhook copy sent with the original (concurrent)", figures.copies.get("concurrent", 0)
        ),
        _row("webhook copy sent after the original's 2xx", figures.copies.get("later", 0)),
        _row("first-half events retried to the sync webhook", figures.copies.get("switch", 0)),
        _row(
            "events delivered twice or more",
            f"{figures.delivered_twice} ({figures.delivered_twice_percent:.1f}%)",
        ),
        _row("sender retries after an answer >= 300 / no answer", figures.sender_retries),
        _row("worker SIGKILL + restart on the same port", figures.kills),
        *(_row(f"  kill at event {f.trigger}", f.note) for f in kills),
    ]
    for kind, label in CUT_KINDS:
        count, seconds = figures.cuts[kind], figures.cut_seconds[kind]
        out.append(_row(f"{label} connections cut (all functions)", f"{count} ({seconds:.1f}s)"))
    return [
        *out,
        _row(
            "switch queue -> sync, events still in flight",
            f"{figures.switches} ({switch.in_flight})",
        ),
        _row(
            "reconcile run once: found / republished",
            f"{reconcile.get('found')}/{reconcile.get('republished')}",
        ),
    ]


def _outcomes(ev: Evidence) -> list[str]:
    def key(status: str | None, code: str | None) -> str:
        return f"{status}" + (f": {code}" if code else "")

    def actual(event_id: str) -> str:
        record = ev.world.events.get(event_id, {})
        status = record.get("status", "no record")
        code = (record.get("lastError") or {}).get("code") if status == DEAD_LETTERED else None
        return key(status, code)

    want = Counter(key(e.expect.status, e.expect.code) for e in ev.events)
    got = Counter(actual(e.event_id) for e in ev.events)
    return [
        "events by outcome" + " " * 37 + f"{'model':>12}{'actual':>12}",
        *(_row(k, want[k], got[k]) for k in sorted(set(want) | set(got))),
    ]


def _reversals(ev: Evidence) -> list[str]:
    bodies = [e.doc.get("body") or {} for e in ev.events]
    reversals = [(e, b) for e, b in zip(ev.events, bodies, strict=True) if "order_id" in b]
    statuses = Counter(b.get("status") for e, b in reversals if e.doc["event_type"] == "ON_REFUND")
    closes = Counter(
        b.get("chargeback_status")
        for e, b in reversals
        if e.doc["event_type"] == "ON_CHARGEBACK_CLOSED"
    )
    return [
        "PayNow's reversals as its spec sends them",
        _row("refunds by status", ", ".join(f"{k} {n}" for k, n in sorted(statuses.items()))),
        _row(
            "chargeback closes by outcome", ", ".join(f"{k} {n}" for k, n in sorted(closes.items()))
        ),
        _row(
            "refunds, chargebacks, closes with customer null",
            sum(1 for _, b in reversals if b.get("customer") is None),
        ),
        _row(
            "one refund id under another event id",
            sum(1 for e in ev.events if e.kind == "refund_again"),
        ),
    ]


def _answers(ev: Evidence) -> list[str]:
    answers = Counter((a.mode, a.status, a.outcome) for a in ev.answers)
    return [
        "webhook answers",
        *(
            _row(f"{mode:<6}{status or 'none'} {outcome}", n)
            for (mode, status, outcome), n in sorted(answers.items())
        ),
    ]


def _verdicts(figures: Figures, verdicts: list[Verdict]) -> list[str]:
    out = [f"invariants ({figures.accepted} events accepted)"]
    for v in verdicts:
        out.append(v.line())
        out.extend(f"          {line}" for line in v.failures[:FAILURES_SHOWN])
        if len(v.failures) > FAILURES_SHOWN:
            out.append(f"          ... {len(v.failures) - FAILURES_SHOWN} more in the report")
    return out


def table(run: Outcome) -> list[str]:
    """Every section of the printed table, a blank line between them (no summary line)."""
    ev, switch = run.evidence, run.switch
    head = (
        f"chaos run: seed {run.args.seed}, {len(ev.events)} events, {run.args.customers} "
        f"customers, queue mode, switch to sync at event {switch.at_event}"
    )
    sections = [
        [head],
        _faults(ev, run.figures, switch, run.reconcile),
        _outcomes(ev),
        _reversals(ev),
        _answers(ev),
        _verdicts(run.figures, run.verdicts),
    ]
    return [line for n, section in enumerate(sections) for line in (*([""] if n else []), *section)]


def report(run: Outcome) -> dict[str, Any]:
    """The JSON report: the verdict and figures first, then every answer and fault."""
    verdicts = run.verdicts
    return {
        "seed": run.args.seed,
        "args": vars(run.args),
        "pass": all(v.ok for v in verdicts),
        "held": sum(v.ok for v in verdicts),
        "invariants": len(verdicts),
        "elapsedSeconds": round(run.elapsed, 1),
        "figures": asdict(run.figures),
        "replay": replay_command(run.args),
        "switch": asdict(run.switch),
        "reconcile": run.reconcile,
        "verdicts": [asdict(v) for v in verdicts],
        "faults": [asdict(f) for f in run.evidence.plan],
        "answers": [asdict(a) for a in run.evidence.answers],
        "logs": run.logs,
    }
