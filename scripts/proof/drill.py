r"""The outage drill: a worker outage and a webhook outage, recovered with the operator's tools.

    .venv/bin/python scripts/proof/drill.py --seed 1 --customers 40    # the run in docs/chaos.md
    .venv/bin/python scripts/proof/drill.py --seed 3 --customers 6     # CI's (tests/integration)

It starts its own emulators, a worker and a webhook in queue mode, and a local PayNow
(``scripts/local/paynow_api_server.py``) whose webhook subscriptions point at the webhook and
which delivers every event itself, keeping each attempt in its history. Then:

1. normal: a third of the events are delivered and processed;
2. worker down: the worker stops and the push subscription loses its endpoint; the webhook
   keeps accepting, the messages wait, and then Pub/Sub's dead-letter policy takes them:
   the emulator cannot run that policy (it crashes on ordered messages), so the drill does
   what the policy does, moving each waiting message to ``paynow-events-dlq`` with
   Pub/Sub's own attributes; the records stay ``received``;
3. webhook down: the webhook stops too, and PayNow's deliveries of the next events find
   nobody (connection refused) or, after a bad secret rotation, get 401; they end
   ``failed`` in PayNow's history, never recorded here. A few events of step 1 also have
   a failed delivery there (PayNow's attempt that timed out after the webhook took it).

After recovery (both functions back, the right secret) the operator's commands run as an
operator runs them: ``paynow-ops reconcile``, ``dlq replay --all``,
``paynow backfill --yes``; then ``ledger verify``, and the backfill and the replay once
more, which must change nothing. Every balance is checked against the chaos run's model of
the points rules (``scripts/proof/chaos/model.py``). It starts everything through
``scripts.local.localstack`` (function logs stamped with the monotonic clock), prints the
figures and one PASS/FAIL line per invariant, writes a JSON report (``--report``: the
verdicts and the figures in numbers, which its test reads), and exits 1 when an invariant
fails (2 when it cannot run).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from paynow.domain import payloads

from scripts.local import localstack
from scripts.local.paynow_api_server import PayNowApiServer
from scripts.proof import verdicts
from scripts.proof.chaos.model import FINAL, PROCESSED, Model
from scripts.proof.chaos.scenario import CATALOG, PACKS, SUBSCRIPTION_PRODUCT
from scripts.proof.verdicts import Verdict

API_KEY = "drill-paynow-api-key"
STORE = "411486491630370816"
# PayNow gives each subscription a secret of its own; one secret for all of them here, as
# the webhook reads PAYNOW_WEBHOOK_SECRET as a single value today.
SECRET = "drill-signing-secret"  # noqa: S105 - the drill's own, never a real one
PUBSUB_MAX_DELIVERY_ATTEMPTS = 15  # what the cloud subscription's policy is set to
NORMAL, WORKER_DOWN, WEBHOOK_DOWN, WEBHOOK_401 = "normal", "worker_down", "webhook_down", "401"
RESTART_TRIES = 5  # a function started again on its port may find it not yet released


def say(message: str) -> None:
    verdicts.say("drill", message)


@dataclass
class Planned:
    event_id: str
    user: str
    phase: str
    doc: dict[str, Any]
    lost_answer: bool = False  # processed, but PayNow's history also holds a failed attempt


def plan(rng: random.Random, customers: int) -> tuple[list[Planned], Model]:
    """Three events per customer, one per phase, each crediting points; the model (the
    chaos run's, ``scripts/proof/chaos/model.py``) says what every balance must become."""
    run = f"{rng.getrandbits(32):08x}"
    model = Model(CATALOG)
    events: list[Planned] = []
    for c in range(customers):
        customer, user = f"cust-{run}-{c}", f"user-{run}-{c}"
        last = WEBHOOK_DOWN if c % 2 == 0 else WEBHOOK_401
        for n, phase in enumerate((NORMAL, WORKER_DOWN, last)):
            event_id = f"evt-{run}-{c}-{n}"
            if rng.random() < 0.3:
                kind, sub_id = "activated" if n == 0 else "renewed", f"sub-{run}-{c}"
                doc = payloads.subscription(
                    kind, event_id, sub_id, customer, user, SUBSCRIPTION_PRODUCT
                )
                model.subscription(kind, sub_id, user, SUBSCRIPTION_PRODUCT)
            else:
                lines = [
                    (rng.choice(PACKS), rng.randint(1, 3), 499) for _ in range(rng.randint(1, 3))
                ]
                order_id = f"order-{run}-{c}-{n}"
                doc = payloads.order_completed(event_id, order_id, customer, user, lines)
                model.order(order_id, customer, user, lines)
            lost = phase == NORMAL and rng.random() < 0.25
            events.append(Planned(event_id, user, phase, doc, lost))
    return events, model


@dataclass
class Stack:
    """Emulators, the worker and the webhook on ports of this run, and a local PayNow whose
    webhook subscriptions point at the webhook; every process in ``local``."""

    local: localstack.LocalRun
    emulators: localstack.Emulators
    paynow: PayNowApiServer
    db: Any
    worker_port: int = field(default_factory=localstack.free_port)
    webhook_port: int = field(default_factory=localstack.free_port)
    worker: localstack.Process | None = None
    webhook: localstack.Process | None = None

    @classmethod
    def start(cls, local: localstack.LocalRun, paynow: PayNowApiServer) -> Stack:
        from google.cloud import firestore

        emulators = local.emulators()
        with emulators.env():
            db = firestore.Client(project=emulators.project)
        stack = cls(local, emulators, paynow, db)
        emulators.provision(stack.worker_url, CATALOG)
        for event_type in ("ORDER_COMPLETED", "SUBSCRIPTION_ACTIVATED", "SUBSCRIPTION_RENEWED"):
            paynow.subscribe(f"ON_{event_type}", stack.webhook_url, SECRET)
        stack.start_worker()
        stack.start_webhook(SECRET)
        return stack

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/"

    def env(self, **extra: str) -> dict[str, str]:
        return localstack.function_env(
            pubsub_host=self.emulators.pubsub_host,
            firestore_host=self.emulators.firestore_host,
            mode="queue",
            extra=extra,
        )

    def _serve(self, role: str, target: str, port: int, env: dict[str, str]) -> localstack.Process:
        starts = sum(1 for p in self.local.processes if p.name.startswith(f"drill-{role}-"))
        name = f"drill-{role}-{starts}"
        return self.local.function(name, target, port, env, tries=RESTART_TRIES)

    def start_worker(self) -> None:
        self.worker = self._serve("worker", "paynow_worker", self.worker_port, self.env())

    def start_webhook(self, secrets: str) -> None:
        env = self.env(PAYNOW_WEBHOOK_SECRET=secrets)
        self.webhook = self._serve("webhook", "paynow_webhook", self.webhook_port, env)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def stop_webhook(self) -> None:
        if self.webhook is not None:
            self.webhook.stop()


# --- the outage ---------------------------------------------------------------------------


def push_endpoint(url: str) -> None:
    """Point the push subscription at ``url`` ("" makes it a pull subscription: no consumer)."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(localstack.PROJECT, localstack.PUSH_SUBSCRIPTION)
    subscriber.modify_push_config(subscription=path, push_config={"push_endpoint": url})


def dead_letter_policy(expected: int, timeout: float = 60.0) -> int:
    """Do what Pub/Sub's dead-letter policy does after its attempts: move every message
    waiting on the push subscription to the DLQ topic with the original data and
    attributes plus Pub/Sub's own, and acknowledge it. Returns how many moved."""
    from google.cloud import pubsub_v1

    subscriber, publisher = pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient()
    path = subscriber.subscription_path(localstack.PROJECT, localstack.PUSH_SUBSCRIPTION)
    dlq = publisher.topic_path(localstack.PROJECT, localstack.DLQ_TOPIC)
    moved, deadline = 0, time.monotonic() + timeout
    while moved < expected and time.monotonic() < deadline:
        request = {"subscription": path, "max_messages": 100, "return_immediately": True}
        received = list(subscriber.pull(request=request, timeout=30).received_messages)
        if not received:
            time.sleep(0.2)
            continue
        for m in received:
            attributes = {
                **dict(m.message.attributes),
                "CloudPubSubDeadLetterSourceDeliveryCount": str(PUBSUB_MAX_DELIVERY_ATTEMPTS),
                "CloudPubSubDeadLetterSourceSubscription": localstack.PUSH_SUBSCRIPTION,
                "CloudPubSubDeadLetterSourceSubscriptionProject": localstack.PROJECT,
            }
            publisher.publish(dlq, m.message.data, **attributes).result(timeout=30)
        subscriber.acknowledge(
            request={"subscription": path, "ack_ids": [m.ack_id for m in received]}
        )
        moved += len(received)
    return moved


def statuses(db: Any, event_ids: list[str]) -> dict[str, str | None]:
    refs = [db.collection("webhookEvents").document(e) for e in event_ids]
    found = {s.id: s.get("status") for s in db.get_all(refs, field_paths=["status"]) if s.exists}
    return {e: found.get(e) for e in event_ids}


def wait_until(db: Any, event_ids: list[str], wanted: frozenset[str], timeout: float) -> float:
    """Seconds until every event's status is in ``wanted``; raises after ``timeout``."""
    started = time.monotonic()
    while True:
        now = statuses(db, event_ids)
        if all(s in wanted for s in now.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            left = Counter(str(s) for s in now.values() if s not in wanted)
            raise RuntimeError(f"events not {sorted(wanted)} after {timeout:.0f}s: {dict(left)}")
        time.sleep(0.3)


# --- the operator's commands ---------------------------------------------------------------


def paynow_ops(stack: Stack, *args: str) -> tuple[int, dict[str, Any], float]:
    """``scripts/paynow-ops --json ARGS`` as an operator runs it: (exit code, JSON, seconds)."""
    env = {
        "WEBHOOK_MODE": "queue",
        "RECONCILE_AFTER_SECONDS": "1",
        "PAYNOW_API_URL": stack.paynow.url,
        "PAYNOW_API_KEY": API_KEY,
        "PAYNOW_STORE_ID": STORE,
    }
    started = time.monotonic()
    done = localstack.paynow_ops(stack.emulators, *args, env=env, timeout=300)
    took = time.monotonic() - started
    if done.returncode == 2 or not done.stdout.strip():
        raise RuntimeError(f"paynow-ops {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.returncode, json.loads(done.stdout), took


# --- the run --------------------------------------------------------------------------------


@dataclass
class Figures:
    """The table's rows (label, text) and, for the JSON report, the same in numbers."""

    rows: list[tuple[str, object]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)

    def add(self, label: str, value: object, **counts: Any) -> None:
        self.rows.append((label, value))
        self.counts.update(counts)
        say(f"{label}: {value}")

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.verdicts.append(Verdict(name, ok, detail))


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)  # noqa: S311 - replayable by seed, no security role
    events, model = plan(rng, args.customers)
    figures = Figures()
    started = time.monotonic()
    paynow = PayNowApiServer(API_KEY, STORE)
    try:
        with localstack.LocalRun(stamped=True) as local:
            stack = Stack.start(local, paynow)
            with stack.emulators.env():
                _drill(args, stack, events, model, figures, started)
    except Exception as exc:
        say(f"the drill could not run: {type(exc).__name__}: {exc}")
        return 2
    finally:
        paynow.close()
    return _report(args, figures, time.monotonic() - started)


def _drill(
    args: argparse.Namespace,
    stack: Stack,
    events: list[Planned],
    model: Model,
    figures: Figures,
    started: float,
) -> None:
    """The three outage phases, the recovery, and the checks (into ``figures``)."""
    paynow, db = stack.paynow, stack.db
    by_phase = {p: [e for e in events if e.phase == p] for p in (NORMAL, WORKER_DOWN)}
    lost = [e for e in events if e.phase in (WEBHOOK_DOWN, WEBHOOK_401)]
    figures.add("events (customers x 3)", f"{len(events)} ({args.customers})", events=len(events))

    # 1. normal
    for e in by_phase[NORMAL]:
        paynow.deliver(e.doc)
    took = wait_until(db, [e.event_id for e in by_phase[NORMAL]], FINAL, 120)
    for e in by_phase[NORMAL]:
        if e.lost_answer:  # PayNow saw a timeout although the webhook had taken it
            paynow.queue(e.doc, statuses=(0,))
    normal = len(by_phase[NORMAL])
    figures.add("1 normal: delivered and processed", f"{normal} ({took:.1f}s)", normal=normal)
    lost_answers = sum(e.lost_answer for e in events)
    figures.add("  of them also failed in PayNow's history", lost_answers, lostAnswers=lost_answers)

    # 2. the worker is down: the webhook accepts, the messages wait, then are dead-lettered
    stack.stop_worker()
    push_endpoint("")
    accepted = Counter(paynow.deliver(e.doc).state for e in by_phase[WORKER_DOWN])
    moved = dead_letter_policy(len(by_phase[WORKER_DOWN]))
    figures.add(
        "2 worker down: accepted by the webhook",
        accepted.get("success", 0),
        workerDownAccepted=accepted.get("success", 0),
    )
    figures.add("  moved to the DLQ by the dead-letter policy", moved, movedToDlq=moved)

    # 3. the webhook is down, then back with a wrongly rotated secret
    stack.stop_webhook()
    refused = [paynow.deliver(e.doc, attempts=3) for e in lost if e.phase == WEBHOOK_DOWN]
    stack.start_webhook("a-secret-rotated-wrongly")
    rejected = [paynow.deliver(e.doc, attempts=3) for e in lost if e.phase == WEBHOOK_401]
    no_answer = sum(1 for q in refused if q.state == "failed")
    refused_401 = sum(1 for q in rejected if q.state == "failed")
    figures.add("3 webhook down: failed in PayNow (no answer)", no_answer, failedNoAnswer=no_answer)
    figures.add("  webhook answering 401: failed in PayNow", refused_401, failed401=refused_401)
    outage = time.monotonic() - started

    # recovery: both functions back, the right secret; then the operator's commands
    stack.stop_webhook()
    stack.start_webhook(SECRET)
    stack.start_worker()
    push_endpoint(stack.worker_url)
    recovery = time.monotonic()
    for step in ("dlq", "reconcile") if args.replay_first else ("reconcile", "dlq"):
        _recover(stack, figures, step)
    _, failed, _ = paynow_ops(stack, "paynow", "failed", "--since", "1h")
    figures.add(
        "paynow failed: deliveries / not recorded here",
        f"{failed['count']} / {failed['notRecorded']}",
        failed={"count": failed["count"], "notRecorded": failed["notRecorded"]},
    )
    _, backfill, took = paynow_ops(stack, "paynow", "backfill", "--since", "1h", "--yes")
    figures.add(
        "paynow backfill: accepted / duplicate / failed",
        f"{backfill['accepted']} / {backfill['duplicate']} / {backfill['failed']} ({took:.1f}s)",
        backfill={k: backfill[k] for k in ("accepted", "duplicate", "failed")},
    )
    wait_until(db, [e.event_id for e in events], FINAL, 180)
    figures.add(
        "recovery: commands start to every event final", f"{time.monotonic() - recovery:.1f}s"
    )
    balances_after = _balances(db, events)
    verify_code, verified, _ = paynow_ops(stack, "ledger", "verify")
    _, again, _ = paynow_ops(stack, "paynow", "backfill", "--since", "1h", "--yes")
    _, replay2, _ = paynow_ops(stack, "dlq", "replay", "--all")
    time.sleep(2)  # anything the second runs published has had time to be processed
    figures.add(
        "second backfill: duplicate / anything else",
        f"{again['duplicate']} / {again['deliveries'] - again['duplicate']}",
    )
    _check(figures, db, events, model, balances_after, verified, verify_code, again, replay2)
    figures.add("outage phases", f"{outage:.1f}s")


def _recover(stack: Stack, figures: Figures, step: str) -> None:
    """One of the two commands that bring back what the worker outage left."""
    if step == "reconcile":
        _, reconciled, took = paynow_ops(stack, "reconcile")
        figures.add(
            "reconcile: found / republished",
            f"{reconciled['found']} / {reconciled['republished']} ({took:.1f}s)",
            reconcile={k: reconciled[k] for k in ("found", "republished")},
        )
        return
    _, replay, took = paynow_ops(stack, "dlq", "replay", "--all")
    figures.add(
        "dlq replay --all: selected / republished / already done / left",
        f"{replay['selected']} / {replay.get('republished', 0)} / "
        f"{replay.get('already_done', 0)} / {replay['left']} ({took:.1f}s)",
        replay={
            "selected": replay["selected"],
            "republished": replay.get("republished", 0),
            "alreadyDone": replay.get("already_done", 0),
            "left": replay["left"],
        },
    )


def _balances(db: Any, events: list[Planned]) -> dict[str, int | None]:
    users = sorted({e.user for e in events})
    refs = [db.collection("users").document(u) for u in users]
    found = {s.id: s.get("points") for s in db.get_all(refs) if s.exists}
    return {u: found.get(u) for u in users}


def _check(
    figures: Figures,
    db: Any,
    events: list[Planned],
    model: Model,
    balances_after: dict[str, int | None],
    verified: dict[str, Any],
    verify_code: int,
    again: dict[str, Any],
    replay2: dict[str, Any],
) -> None:
    expected = model.balances
    wrong = [u for u, points in balances_after.items() if points != expected.get(u, 0)]
    figures.check(
        "every balance equals the model's",
        not wrong,
        f"{len(balances_after) - len(wrong)}/{len(balances_after)} users"
        + (
            f"; first wrong: {wrong[0]} {balances_after[wrong[0]]} != {expected.get(wrong[0], 0)}"
            if wrong
            else ""
        ),
    )
    final = statuses(db, [e.event_id for e in events])
    not_processed = [e for e, s in final.items() if s != PROCESSED]
    figures.check(
        "every event processed, none left received",
        not not_processed,
        f"{len(final) - len(not_processed)}/{len(final)} processed",
    )
    entries: Counter[str] = Counter()
    for e in events:
        ledger = db.collection("users").document(e.user).collection("pointsLedger")
        entries[e.event_id] = 1 if ledger.document(e.event_id).get().exists else 0
    doubled = verified.get("eventsWithSeveralEntries") or {}
    figures.check(
        "every event credited exactly once (one ledger entry, none doubled)",
        set(entries.values()) == {1} and not doubled,
        f"{sum(entries.values())} entries for {len(events)} events, {len(doubled)} doubled",
    )
    figures.check(
        "ledger verify passes",
        verify_code == 0 and bool(verified.get("ok")),
        f"{verified.get('usersChecked')} users, {verified.get('entriesChecked')} entries",
    )
    unchanged = _balances(db, events) == balances_after
    changes = again["deliveries"] - again["duplicate"]
    figures.check(
        "a second backfill and replay change nothing",
        unchanged and changes == 0 and replay2["selected"] == 0,
        f"backfill: {again['duplicate']} duplicate, {changes} other; "
        f"replay: {replay2['selected']} selected; balances unchanged: {unchanged}",
    )


def _report(args: argparse.Namespace, figures: Figures, seconds: float) -> int:
    width = max(len(label) for label, _ in figures.rows) + 2
    order = "dlq replay, then reconcile" if args.replay_first else "reconcile, then dlq replay"
    print(f"outage drill: seed {args.seed}, {args.customers} customers, queue mode, {order}\n")
    for label, value in figures.rows:
        print(f"  {label:<{width}} {value}")
    print("\ninvariants")
    for v in figures.verdicts:
        print(v.line())
    ok = all(v.ok for v in figures.verdicts)
    replay = (
        f"scripts/proof/drill.py --seed {args.seed} --customers {args.customers}"
        f"{' --replay-first' if args.replay_first else ''}"
    )
    report = Path(args.report or localstack.LOCAL / "drill" / f"drill-{args.seed}.json")
    verdicts.write_report(
        report,
        {
            "seed": args.seed,
            "customers": args.customers,
            "replayFirst": args.replay_first,
            "pass": ok,
            "held": sum(v.ok for v in figures.verdicts),
            "invariants": len(figures.verdicts),
            "seconds": round(seconds, 1),
            "counts": figures.counts,
            "figures": [{"label": label, "value": str(v)} for label, v in figures.rows],
            "verdicts": [asdict(v) for v in figures.verdicts],
        },
    )
    print(f"\nDRILL {verdicts.held(figures.verdicts)} in {seconds:.0f}s (replay: {replay})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the outage drill on its own local stack.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=40, help="three events each")
    parser.add_argument("--report", help="JSON report (default .local/drill/drill-SEED.json)")
    parser.add_argument(
        "--replay-first", action="store_true", help="dlq replay before reconcile (default after)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.customers <= 500:
        parser.error("--customers must be from 1 to 500")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
