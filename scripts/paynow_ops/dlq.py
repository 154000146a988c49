"""``dlq list`` and ``dlq replay``: the dead-letter subscription, read and replayed."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from paynow.adapters import documents
from paynow.domain.errors import InvalidMessage
from paynow.domain.messages import QueueMessage
from paynow.service.ports import RECEIVED

from scripts.paynow_ops.clients import Ops


def _event_id_of(message: Any) -> str | None:
    """The event a DLQ message is about: the worker's attribute, or the original data."""
    event_id = message.attributes.get("eventId")
    if event_id:
        return str(event_id)
    try:
        return QueueMessage.decode(message.data).event_id
    except InvalidMessage:
        return None


def _error_code_of(message: Any) -> str:
    code = message.attributes.get("errorCode")
    if code:
        return str(code)
    if message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount"):
        return "pubsub_max_delivery_attempts"
    return "unknown"


def dlq_list(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    messages = [m.message for m in ops.peek_dlq()]
    by_code = Counter(_error_code_of(m) for m in messages)
    return {
        "depth": len(messages),
        "byErrorCode": dict(by_code),
        "messages": [
            {
                "eventId": _event_id_of(m),
                "errorCode": _error_code_of(m),
                "source": m.attributes.get("source", "pubsub"),
                "attempts": m.attributes.get("attempts")
                or m.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount"),
                "publishTime": m.publish_time.isoformat() if m.publish_time else None,
            }
            for m in messages
        ],
    }, True


def dlq_replay(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Reset, republish with the ordering key, and only then acknowledge the DLQ message."""
    from tqdm import tqdm

    held = ops.pull_for_replay()
    chosen = [
        m
        for m in held
        if args.all
        or (args.event_id and _event_id_of(m.message) == args.event_id)
        or (args.error_code and _error_code_of(m.message) == args.error_code)
    ]
    others = [m.ack_id for m in held if m not in chosen]
    if others:  # release what this replay does not touch
        ops.subscriber.modify_ack_deadline(
            request={"subscription": ops.dlq_path, "ack_ids": others, "ack_deadline_seconds": 0}
        )
    results: Counter[str] = Counter()
    for received in tqdm(chosen, disable=len(chosen) < 20 or args.json, desc="replay"):
        event_id = _event_id_of(received.message)
        if event_id is None:
            results["not_replayable"] += 1
            continue
        if args.dry_run:
            results["would_replay"] += 1
            continue
        status = ops.store.reopen(event_id)
        if status == RECEIVED:
            record = ops.store.event_status(event_id) or {}
            ops.publisher.publish(documents.queue_message(event_id, record)).wait()
            results["republished"] += 1
        elif status is None:
            results["not_found"] += 1
            continue
        else:
            results["already_final"] += 1
        ops.subscriber.acknowledge(
            request={"subscription": ops.dlq_path, "ack_ids": [received.ack_id]}
        )
    if args.dry_run and chosen:
        ops.subscriber.modify_ack_deadline(
            request={
                "subscription": ops.dlq_path,
                "ack_ids": [m.ack_id for m in chosen],
                "ack_deadline_seconds": 0,
            }
        )
    return {"selected": len(chosen), "dryRun": args.dry_run, **results}, True
