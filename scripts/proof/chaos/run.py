"""The run: the scenario sent through a stack being broken, then checked and reported.

``run`` starts the stack, sends every event while the faults fire and the mode switches,
lets the pipeline settle (reconcile once, then quiet), and checks the invariants against
the model; ``main`` is the command line.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from scripts.local import localstack
from scripts.proof.chaos.driver import Driver
from scripts.proof.chaos.faults import Fault, Faults, Switch, fault_plan, run_switch
from scripts.proof.chaos.invariants import Evidence, check
from scripts.proof.chaos.report import Figures, Outcome, report, summary, table
from scripts.proof.chaos.scenario import generate
from scripts.proof.chaos.stack import ChaosStack
from scripts.proof.chaos.world import DeadLetters, read_world, wait_quiescent
from scripts.proof.verdicts import Verdict, say, write_report

PROGRESS_EVERY = 250  # events released between progress lines


def _say(message: str) -> None:
    say("chaos", message)


@dataclass
class Sent:
    """What sending left: the driver's record, the switch, the fault threads' errors."""

    driver: Driver
    switch: Switch
    fault_errors: list[str]


def _send(
    stack: ChaosStack,
    queue_webhook: localstack.Process,
    driver: Driver,
    plan: list[Fault],
    db: Any,
) -> Sent:
    """Every event delivered (and answered) while the faults fire and the mode switches."""
    faults = Faults(plan, stack, driver, db)
    switch = Switch()
    switch_thread = threading.Thread(
        target=run_switch, args=(stack, driver, queue_webhook, db, switch), daemon=True
    )
    total = len(driver.events)

    def on_release(n: int) -> None:
        if n == total // 2:
            switch_thread.start()
        if n % PROGRESS_EVERY == 0:
            _say(f"released {n}/{total}, accepted {len(driver.first_2xx)}")

    driver.on_release = on_release
    driver.before_close = switch_thread.join
    faults.start()
    sending = time.monotonic()
    driver.run()
    faults.join()
    _say(f"all deliveries answered in {time.monotonic() - sending:.0f}s")
    return Sent(driver, switch, faults.errors)


def _settle(
    reconciler: localstack.Process, db: Any, dlq: DeadLetters, events: int
) -> tuple[dict[str, Any], Verdict | None]:
    """Reconcile once, then wait until nothing is ``received`` and the totals hold still;
    the reconcile report, and a failed verdict when the pipeline did not go quiet."""
    _say("running reconcile")
    reconciled: dict[str, Any] = requests.post(reconciler.address, json={}, timeout=120).json()
    _say(f"reconcile: {reconciled}; waiting for quiescence")
    quiet, waited = wait_quiescent(db, timeout=120 + events * 0.1)
    _say(f"{'quiescent' if quiet else 'NOT quiescent'} after {waited:.0f}s; checking")
    for _ in range(3):  # the DLQ thread's last pulls
        if not dlq.pull_once():
            break
    loud = None if quiet else Verdict("the pipeline went quiet", False, f"after {waited:.0f}s")
    return reconciled, loud


def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    tag = f"{args.seed}-{os.getpid()}"
    events, model = generate(args.seed, args.events, args.customers, args.duplicates)
    plan = fault_plan(
        args.seed, args.events, args.kills, args.firestore_cuts, args.pubsub_cuts, args.cut_seconds
    )
    _say(
        f"seed {args.seed}: {len(events)} events over {args.customers} customers; "
        f"{len(plan)} faults planned; starting the stack"
    )
    with localstack.LocalRun(stamped=True) as local:
        stack = ChaosStack.start(tag, args.max_delivery_attempts, local)
        with stack.emulators.env():
            from google.cloud import firestore

            db = firestore.Client(project=stack.emulators.project)
            dlq = DeadLetters(tag)
            try:
                queue_webhook, reconciler = stack.start_functions()
                _say(f"stack up in {time.monotonic() - began:.0f}s; sending at {args.rate}/s")
                driver = Driver(events, queue_webhook.address, args.rate, args.seed)
                sent = _send(stack, queue_webhook, driver, plan, db)
                reconciled, loud = _settle(reconciler, db, dlq, len(events))
            finally:
                dlq.close()
            evidence = Evidence(
                events,
                model,
                read_world(db),
                driver.answers,
                driver.first_2xx,
                dlq.event_ids(),
                plan,
            )
        verdicts = check(evidence)
        if loud is not None:
            verdicts.append(loud)
        harness = (
            sent.fault_errors + driver.lost + ([sent.switch.error] if sent.switch.error else [])
        )
        if harness:
            verdicts.append(
                Verdict("every planned fault and delivery happened", False, "", harness)
            )
        outcome = Outcome(
            args,
            evidence,
            Figures.of(evidence, sent.switch),
            sent.switch,
            reconciled,
            verdicts,
            time.monotonic() - began,
            stack.logs(),
        )
        write_report(args.report, report(outcome))
    lines = [*table(outcome), "", f"report: {args.report}", "", summary(outcome)]
    print("\n".join(lines), flush=True)
    return 0 if all(v.ok for v in verdicts) else 1


def _seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX seconds, got {text!r}") from None
    if not 0 < bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return bounds


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with the defaults that depend on the run's size filled in."""
    parser = argparse.ArgumentParser(
        prog="scripts/proof/chaos",
        description="Chaos run of the PayNow pipeline on the local emulators.",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="events released per second")
    parser.add_argument("--duplicates", type=float, default=0.25, help="share delivered twice")
    parser.add_argument("--kills", type=int, default=None, help="default: events / 160, >= 2")
    parser.add_argument("--firestore-cuts", type=int, default=None)
    parser.add_argument("--pubsub-cuts", type=int, default=None)
    parser.add_argument(
        "--cut-seconds",
        type=_seconds_range,
        default=None,
        help="how long a cut lasts, MIN-MAX (default 2-5, 1.5-2.5 under 1000 events)",
    )
    parser.add_argument("--max-delivery-attempts", type=int, default=10)
    parser.add_argument(
        "--report", type=Path, default=None, help="default .local/chaos/chaos-SEED.json"
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    if args.customers < 1 or args.events < args.customers:
        parser.error("need at least one customer and as many events as customers")
    args.kills = max(2, round(args.events / 160)) if args.kills is None else args.kills
    cuts = max(1, min(4, args.events // 600))
    args.firestore_cuts = cuts if args.firestore_cuts is None else args.firestore_cuts
    args.pubsub_cuts = cuts if args.pubsub_cuts is None else args.pubsub_cuts
    if args.cut_seconds is None:
        args.cut_seconds = (1.5, 2.5) if args.events < 1000 else (2.0, 5.0)
    if args.report is None:
        args.report = localstack.LOCAL / "chaos" / f"chaos-{args.seed}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every invariant held, 1 when one failed, 2 when the run could not complete."""
    args = parse(argv)
    try:
        return run(args)
    except Exception as exc:  # the harness, not the pipeline: 2, never the verdicts' 1
        _say(f"the chaos run could not complete: {type(exc).__name__}: {exc}")
        return 2
