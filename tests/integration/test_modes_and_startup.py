"""Rollback between modes, start-up validation, and what the logs may never contain."""

from __future__ import annotations

import time

import pytest
from paynow.domain import payloads

from scripts.local import localstack
from tests.integration.conftest import SECRET, balance, ledger, send, status_of, wait_for

LINES = [("gems-550", 2, 1998)]  # 1100 points


def test_switch_queue_to_sync_with_messages_in_flight_loses_and_doubles_nothing(stack, db, ids):
    events = [
        payloads.order_completed(ids(f"e{i}"), ids(f"o{i}"), ids(f"c{i}"), ids(f"u{i}"), LINES)
        for i in range(6)
    ]
    with stack.worker_firestore.down():
        # Queue mode accepts them; the worker cannot process them yet (in flight).
        for doc in events:
            assert send(stack.webhook_queue, doc).json()["status"] == "accepted"
        # Rolled back to sync: PayNow's retries of half of them are processed inline.
        for doc in events[:3]:
            assert send(stack.webhook_sync, doc).json()["status"] == "processed"
    for i in range(6):
        wait_for(lambda i=i: status_of(db, ids(f"e{i}")) == "processed", timeout=120)
    time.sleep(2)  # late redeliveries must find the events final
    for i in range(6):
        assert balance(db, ids(f"u{i}")) == 1100
        assert list(ledger(db, ids(f"u{i}"))) == [ids(f"e{i}")]
    # And back to queue: a retry of an event handled in sync mode is a duplicate.
    assert send(stack.webhook_queue, events[0]).json()["status"] == "duplicate"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOK_MODE", "fast"),
        ("MAX_DELIVERY_ATTEMPTS", "many"),
        ("PUSH_AUTH", "none"),
    ],
)
def test_bad_configuration_stops_the_function_naming_the_variable(emulators, variable, value):
    env = localstack.function_env(
        pubsub_host=emulators.pubsub_host, firestore_host=emulators.firestore_host
    )
    env[variable] = value
    if variable == "PUSH_AUTH":
        env.pop("PUBSUB_EMULATOR_HOST")  # PUSH_AUTH=none outside the emulator must refuse
    with pytest.raises(RuntimeError) as failure:
        localstack.start_function(
            f"bad-config-{variable}", "paynow_worker", localstack.free_port(), env
        )
    assert variable in str(failure.value)
    assert "exited" in str(failure.value)


def test_logs_hold_no_secret_signature_email_name_or_ip(stack, db, ids, dlq):
    sent = []
    for webhook in (stack.webhook_sync, stack.webhook_queue):
        for doc in (
            payloads.order_completed(ids("ok"), ids("o"), ids("c"), ids("u"), LINES),
            payloads.order_completed(
                ids("nouser") + webhook[-6:-1], ids("o2"), ids("c"), None, LINES
            ),
            payloads.refund(ids("r") + webhook[-6:-1], ids("rr"), "missing", ids("c"), 5),
        ):
            _, headers = payloads.signed(doc, SECRET)
            sent.append(headers["PayNow-Signature"])
            send(webhook, doc)
    send(stack.webhook_sync, b"not json at all")
    send(
        stack.webhook_sync,
        payloads.order_completed(ids("bad"), "o", "c", "u", LINES),
        secret="wrong",
    )
    time.sleep(3)
    text = "".join(p.log.read_text(errors="replace") for p in stack.processes.values())
    assert ids("ok") in text  # the logs are there and carry event ids
    sample = payloads.event("ON_ORDER_COMPLETED")["body"]
    forbidden = [
        SECRET,
        sample["billing_email"],
        sample["billing_name"],
        sample["customer_ip"],
        *sent,
    ]
    for needle in forbidden:
        assert needle not in text, f"log leaks {needle[:6]}..."
