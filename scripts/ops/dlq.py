"""``dlq list``, ``dlq replay`` and ``dlq discard``: the dead-letter subscription's work.

Replay and discard go through the chosen messages page by page (see
``dead_letters``), deciding for each from its event's status, and acknowledge
a message only once what it stands for is done: republished, already done, or
discarded on purpose. Every message gets a row in the summary, so what was
left, and why, is always said.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from paynow.domain.records import DEAD_LETTERED, IGNORED, PROCESSED, RECEIVED

from scripts.ops.clients import Ops, problem
from scripts.ops.dead_letters import (
    DeadLetters,
    Selection,
    describe,
    error_code_of,
    event_id_of,
)
from scripts.ops.output import progress

REPUBLISH, ACKNOWLEDGE, LEAVE = "republish", "acknowledge", "leave"


@dataclass(frozen=True)
class Plan:
    """What a replay does with one message, and the words it reports it with."""

    action: str  # republish | acknowledge | leave
    outcome: str
    detail: str
    would: str = ""  # the outcome a dry run reports for an action it does not take


def replay_plan(event_id: str | None, status: str | None) -> Plan:
    """Decide one message's replay from its event's status (``None``: no record)."""
    if event_id is None:
        return Plan(
            LEAVE,
            "no_event_id",
            "no readable event id (a body the webhook could not read): nothing to replay; "
            "dlq discard it once looked at",
        )
    if status is None:
        return Plan(
            LEAVE,
            "event_not_found",
            "no webhookEvents record: nothing to replay (PayNow's retry stores it again); "
            "dlq discard it",
        )
    if status in (PROCESSED, IGNORED):
        return Plan(
            ACKNOWLEDGE,
            "already_done",
            f"event already {status}: nothing to redo, acknowledge",
            "would_ack",
        )
    if status in (DEAD_LETTERED, RECEIVED):
        return Plan(
            REPUBLISH,
            "republished",
            f"event {status}: reopen, publish again, acknowledge",
            "would_replay",
        )
    return Plan(LEAVE, "unexpected_status", f"event status {status!r}: left for a person")


# --- list ----------------------------------------------------------------------------


def dlq_list(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """What waits in the DLQ, counted by error code; everything is released again."""
    messages = []
    with ops.dead_letters(args.page_size) as dlq, progress("dlq list: messages") as advance:
        for page in dlq.pages():
            messages += [m.message for m in page]
            advance(len(page))
    return {
        "depth": len(messages),
        "byErrorCode": dict(Counter(error_code_of(m) for m in messages)),
        "messages": [describe(m) for m in messages],
    }, True


# --- replay and discard -------------------------------------------------------------


def dlq_replay(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Reopen, republish with the ordering key, and only then acknowledge each chosen message.

    An event already processed or ignored is acknowledged as done; one without a
    record or a readable id is left (``dlq discard`` removes it). ``--dry-run``
    reads the event's status and says what the replay would do, changing nothing.
    """

    def replay(dlq: DeadLetters, message: Any) -> dict[str, Any]:
        event_id = event_id_of(message)
        if args.dry_run:
            record = ops.store.event_status(event_id) if event_id else None
            plan = replay_plan(event_id, record.get("status") if record else None)
            return _row(message, plan, dry_run=True)
        reopened = ops.store.reopen(event_id) if event_id else None
        plan = replay_plan(event_id, reopened.status if reopened else None)
        if plan.action == REPUBLISH and reopened is not None:
            ops.publisher.publish(reopened.message).wait()
        if plan.action != LEAVE:
            dlq.ack(message.message_id)
        return _row(message, plan, dry_run=False)

    return _work_through(ops, args, "replay", replay)


def dlq_discard(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Acknowledge the chosen messages without replaying them (after saying which).

    For what cannot be replayed: no event record, no readable event id, a cause
    that will not be fixed. Each is named (ids and code, never its data) on
    stderr before it is acknowledged, and listed in the summary.
    """

    def discard(dlq: DeadLetters, message: Any) -> dict[str, Any]:
        plan = Plan(ACKNOWLEDGE, "discarded", "acknowledge without a replay", "would_discard")
        if args.dry_run:
            return _row(message, plan, dry_run=True)
        shown = describe(message)
        print(
            f"paynow-ops: discarding DLQ message {shown['messageId']} "
            f"(event {shown['eventId']}, errorCode {shown['errorCode']})",
            file=sys.stderr,
            flush=True,
        )
        dlq.ack(message.message_id)
        return _row(message, plan, dry_run=False)

    return _work_through(ops, args, "discard", discard)


def _row(message: Any, plan: Plan, *, dry_run: bool) -> dict[str, Any]:
    acts = plan.action != LEAVE
    return {
        "messageId": message.message_id,
        "eventId": event_id_of(message),
        "errorCode": error_code_of(message),
        "outcome": plan.would if dry_run and acts else plan.outcome,
        "acknowledged": acts and not dry_run,
        "detail": plan.detail,
    }


def _work_through(
    ops: Ops,
    args: argparse.Namespace,
    verb: str,
    handle: Callable[[DeadLetters, Any], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Run ``handle`` on every chosen message, each failure caught and reported as its row.

    Exit 1 when a chosen message is left in the DLQ (or, dry, would be), when
    ``--event-id`` chose nothing, or when reading the DLQ failed or was interrupted
    part way; the summary of what was done is returned in every case.
    """
    selection = Selection(args.event_id, args.error_code, args.all, datetime.now(UTC))
    rows: list[dict[str, Any]] = []
    error, later = None, 0
    try:
        with ops.dead_letters(args.page_size) as dlq, progress(f"dlq {verb}") as advance:
            for page in dlq.pages():
                for received in page:
                    if not selection.matches(received.message):
                        continue
                    if selection.arrived_during_run(received.message):
                        later += 1
                        continue
                    try:
                        rows.append(handle(dlq, received.message))
                    except Exception as exc:
                        failed = Plan(LEAVE, "failed", f"{problem(exc)}; run it again")
                        rows.append(_row(received.message, failed, dry_run=False))
                    advance(1)
                    dlq.keep_alive()
    except KeyboardInterrupt:
        error = "interrupted: the messages not reached are still in the DLQ"
    except Exception as exc:
        error = f"reading the DLQ failed part way: {problem(exc)}"
    done = sum(1 for r in rows if r["acknowledged"] or r["outcome"].startswith("would_"))
    summary: dict[str, Any] = {
        "selected": len(rows),
        "dryRun": args.dry_run,
        **Counter(r["outcome"] for r in rows),
        "acknowledged": sum(1 for r in rows if r["acknowledged"]),
        "left": len(rows) - done,
        "messages": rows,
    }
    if later:
        summary["arrivedDuringRun"] = later  # left for the next run (maybe this run's own)
    if args.event_id and not rows:
        summary["note"] = f"no DLQ message for event {args.event_id}"
    if error:
        summary["error"] = error
    return summary, error is None and done == len(rows) and not (args.event_id and not rows)
