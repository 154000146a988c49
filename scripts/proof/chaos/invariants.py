"""The invariants: one function each, from what the run saw to a verdict.

Each reads the ``Evidence`` (the scenario, the model, Firestore at the end, every webhook
answer, the DLQ topic's letters, the faults as fired) and returns a ``Verdict`` naming
every item that breaks it. ``INVARIANTS`` is their order in the table and the report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from scripts.proof.chaos.driver import Answer
from scripts.proof.chaos.faults import Fault
from scripts.proof.chaos.model import DEAD_LETTERED, FINAL, Model
from scripts.proof.chaos.scenario import Planned
from scripts.proof.chaos.world import World
from scripts.proof.verdicts import Verdict, verdict

OUTAGE_CODES = frozenset({"unavailable", "deadline_exceeded"})


@dataclass(frozen=True)
class Evidence:
    """Everything the invariants are checked against."""

    events: list[Planned]
    model: Model
    world: World
    answers: list[Answer]
    first_2xx: dict[str, float]  # event id -> when its first 2xx came
    dead_letters: dict[str, set[str]]  # event id -> the error codes of its dead letters
    plan: list[Fault]

    def users(self) -> list[str]:
        """Every user the model, the scenario or Firestore knows of."""
        return sorted(
            set(self.model.balances) | {e.user for e in self.events} | set(self.world.balances)
        )

    def ledger_sums(self) -> dict[str, int]:
        sums: dict[str, int] = defaultdict(int)
        for entries in self.world.ledger.values():
            for user, delta in entries:
                sums[user] += delta
        return sums


def every_event_got_a_2xx(ev: Evidence) -> Verdict:
    lost = [e.event_id for e in ev.events if e.event_id not in ev.first_2xx]
    return verdict("every event got a 2xx from the webhook", lost, len(ev.events), "events")


def every_accepted_event_is_final(ev: Evidence) -> Verdict:
    not_final = [
        f"{e}: {ev.world.events.get(e, {}).get('status', 'no record')}"
        for e in (p.event_id for p in ev.events)
        if e in ev.first_2xx and ev.world.events.get(e, {}).get("status") not in FINAL
    ]
    return verdict(
        "every accepted event is processed, ignored or dead_lettered",
        not_final,
        len(ev.first_2xx),
        "accepted events",
    )


def every_event_ended_as_modelled(ev: Evidence) -> Verdict:
    wrong = []
    for e in ev.events:
        record = ev.world.events.get(e.event_id, {})
        status = record.get("status")
        code = (record.get("lastError") or {}).get("code") if status == DEAD_LETTERED else None
        if (status, code) != (e.expect.status, e.expect.code):
            wrong.append(
                f"{e.event_id} {e.kind}: {status}/{code}, model {e.expect.status}/{e.expect.code}"
                f" (attempts {record.get('attempts')}, lastError {record.get('lastError')})"
            )
    return verdict("every event ended as the model says", wrong, len(ev.events), "events")


def _differ(
    balances: dict[str, int], other: dict[str, int], users: list[str], what: str
) -> list[str]:
    """Each user whose balance is not ``other``'s figure for them (``what`` names it)."""
    return [
        f"{u}: balance {balances.get(u, 0)}, {what} {other.get(u, 0)}"
        for u in users
        if balances.get(u, 0) != other.get(u, 0)
    ]


def balances_equal_the_model(ev: Evidence) -> Verdict:
    users = ev.users()
    off = _differ(ev.world.balances, ev.model.balances, users, "model")
    return verdict("every user's balance equals the model's", off, len(users), "users")


def balances_equal_ledger_sums(ev: Evidence) -> Verdict:
    sums = ev.ledger_sums()
    users = sorted(set(ev.users()) | set(sums))
    off = _differ(ev.world.balances, sums, users, "ledger sum")
    return verdict("every user's balance equals their ledger sum", off, len(users), "users")


def one_ledger_entry_per_event(ev: Evidence) -> Verdict:
    ledger = ev.world.ledger
    doubled = [f"{e}: {entries}" for e, entries in ledger.items() if len(entries) > 1]
    return verdict(
        "no event has more than one ledger entry", doubled, len(ledger), "ledger entries"
    )


def ledger_is_the_models(ev: Evidence) -> Verdict:
    expected = {e.event_id: e.expect.user for e in ev.events if e.expect.ledger}
    ledger = ev.world.ledger
    diff = [f"{e}: missing (model: one under {u})" for e, u in expected.items() if e not in ledger]
    diff += [
        f"{e}: entry under {entries[0][0]}, model: {expected.get(e, 'none')}"
        for e, entries in ledger.items()
        if expected.get(e) != entries[0][0]
    ]
    return verdict(
        "ledger entries are exactly the model's crediting events",
        diff,
        len(expected),
        "crediting events",
    )


def dead_letters_are_in_the_dlq(ev: Evidence) -> Verdict:
    records = ev.world.events
    dead = [e for e, r in records.items() if r.get("status") == DEAD_LETTERED]
    missing = [
        f"{e} ({(records[e].get('lastError') or {}).get('code')})"
        for e in dead
        if e not in ev.dead_letters
    ]
    return verdict(
        "every dead-lettered event is in the DLQ topic", missing, len(dead), "dead-lettered events"
    )


def no_5xx_after_a_2xx(ev: Evidence) -> Verdict:
    """A request started after the event's first 2xx must not get a 5xx; one that overlapped
    a cut is marked so in its line (it still fails)."""
    late: dict[str, list[Answer]] = defaultdict(list)
    for a in ev.answers:
        first = ev.first_2xx.get(a.event_id)
        if a.status >= 500 and first is not None and a.started > first:
            late[a.event_id].append(a)
    failures = []
    for event_id, answers in late.items():
        first = ev.first_2xx[event_id]
        kinds = Counter(f"{a.status} {a.outcome}" for a in answers)
        cuts = {_during_cut(a, ev.plan) for a in answers if a.outcome in OUTAGE_CODES} - {""}
        failures.append(
            f"{event_id}: {', '.join(f'{n}x {k}' for k, n in kinds.items())} from the "
            f"{'/'.join(sorted({a.mode for a in answers}))} webhook to its "
            f"{'/'.join(sorted({a.copy for a in answers}))} copy, "
            f"{min(a.started for a in answers) - first:.1f}-"
            f"{max(a.started for a in answers) - first:.1f}s after its first 2xx"
            + "".join(sorted(cuts))
        )
    count = sum(len(v) for v in late.values())
    detail = (
        f"{len(ev.answers)} webhook answers"
        if not failures
        else f"{count} answers to {len(failures)} events fail"
    )
    return Verdict("no 5xx to an event already answered 2xx", not failures, detail, failures)


def _during_cut(answer: Answer, plan: list[Fault]) -> str:
    """Which cut a request overlapped (clients reconnect within seconds after a restore)."""
    for f in plan:
        if (
            f.kind != "kill"
            and f.fired_at is not None
            and f.restored_at is not None
            and answer.started < f.restored_at + 5
            and answer.ended > f.fired_at
        ):
            return f"; during/just after the {f.kind} cut at event {f.trigger}"
    return ""


def orders_and_subscriptions_match(ev: Evidence) -> Verdict:
    diff = []
    for order_id, order in ev.model.orders.items():
        doc = ev.world.orders.get(order_id)
        want = (order.user, order.credited, order.refunded, order.reversed)
        got = (
            (
                doc.get("userId"),
                doc.get("pointsCredited"),
                doc.get("refundedAmount"),
                doc.get("pointsReversed"),
            )
            if doc
            else None
        )
        if got != want:
            diff.append(
                f"order {order_id}: {got}, model (user, credited, refunded, reversed) {want}"
            )
    for sub_id, sub in ev.model.subscriptions.items():
        doc = ev.world.subscriptions.get(sub_id)
        got_sub = (doc.get("userId"), doc.get("status")) if doc else None
        if got_sub != (sub.user, sub.status):
            diff.append(f"subscription {sub_id}: {got_sub}, model {(sub.user, sub.status)}")
    checked = len(ev.model.orders) + len(ev.model.subscriptions)
    return verdict("orders and subscriptions match the model", diff, checked, "records")


INVARIANTS: tuple[Callable[[Evidence], Verdict], ...] = (
    every_event_got_a_2xx,
    every_accepted_event_is_final,
    every_event_ended_as_modelled,
    balances_equal_the_model,
    balances_equal_ledger_sums,
    one_ledger_entry_per_event,
    ledger_is_the_models,
    dead_letters_are_in_the_dlq,
    no_5xx_after_a_2xx,
    orders_and_subscriptions_match,
)


def check(evidence: Evidence) -> list[Verdict]:
    return [invariant(evidence) for invariant in INVARIANTS]
