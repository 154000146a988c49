"""``paynow-ops paynow ...`` and ``events list`` against the stack and a local PayNow API.

The CLI runs as an operator runs it (a subprocess, ``--json``), its Management API client
talks real HTTP to ``scripts/local/paynow_api_server.py``, and backfill writes through the
emulators with the webhook's own path, in sync mode (processed by the CLI) and in queue
mode (published, processed by the stack's worker).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from paynow.domain import payloads

from scripts.local.paynow_api_server import PayNowApiServer
from tests.integration.conftest import (
    SECRET,
    balance,
    event,
    find_event,
    ledger,
    send,
    status_of,
    wait_for,
)
from tests.integration.test_ops import ops_run

KEY = "integration-paynow-api-key"
STORE = "411486491630370816"


@pytest.fixture
def paynow(stack) -> Iterator[PayNowApiServer]:
    """A PayNow of this test alone, subscribed to orders with the stack's sync webhook."""
    server = PayNowApiServer(KEY, STORE, page_size=4)
    server.subscribe("ON_ORDER_COMPLETED", stack.webhook_sync, SECRET)
    server.subscribe("ON_SUBSCRIPTION_ACTIVATED", stack.webhook_sync, SECRET)
    yield server
    server.close()


def cli(stack, paynow: PayNowApiServer, *args: str, mode: str = "sync", **env: str) -> Any:
    """``paynow-ops --json ARGS`` with the PayNow settings; (exit code, JSON, stderr)."""
    settings = {
        "PAYNOW_API_URL": paynow.url,
        "PAYNOW_API_KEY": KEY,
        "PAYNOW_STORE_ID": STORE,
        "WEBHOOK_MODE": mode,
        **env,
    }
    done = ops_run(stack, *args, **settings)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout else None, done.stderr


def order(ids: Callable[[str], str], n: int, points_product: str = "gems-100") -> dict[str, Any]:
    return payloads.order_completed(
        ids(f"evt{n}"), ids(f"order{n}"), ids("cust"), ids("user"), [(points_product, 1, 199)]
    )


def test_webhooks_lists_subscriptions_without_their_secrets(stack, paynow):
    code, out, _ = cli(stack, paynow, "paynow", "webhooks")
    assert code == 0 and out["subscriptions"] == 2
    assert {w["event"] for w in out["webhooks"]} == {"OnOrderCompleted", "OnSubscriptionActivated"}
    assert all(w["url"] == stack.webhook_sync for w in out["webhooks"])
    assert SECRET not in json.dumps(out)


def test_failed_lists_what_paynow_could_not_deliver_since_when_asked(stack, paynow, ids):
    old = paynow.queue(order(ids, 0), created_at=datetime.now(UTC) - timedelta(days=3))
    failed = paynow.queue(order(ids, 1), statuses=(0, 503, 401))
    pending = paynow.queue(order(ids, 2), state="pending", statuses=(503,))
    paynow.queue(order(ids, 3), state="success", statuses=(200,))
    code, out, _ = cli(stack, paynow, "paynow", "failed")
    assert code == 0
    assert [d["deliveryId"] for d in out["deliveries"]] == [failed.id, pending.id]
    first = out["deliveries"][0]
    assert (first["eventId"], first["eventType"], first["attempts"], first["lastStatus"]) == (
        ids("evt1"),
        "ON_ORDER_COMPLETED",
        3,
        401,
    )
    assert first["recorded"] == "no" and out["notRecorded"] == 2
    assert out["byState"] == {"failed": 1, "pending": 1}
    _, week, _ = cli(stack, paynow, "paynow", "failed", "--since", "7d", "--state", "failed")
    assert [d["deliveryId"] for d in week["deliveries"]] == [old.id, failed.id]
    _, every, _ = cli(stack, paynow, "paynow", "failed", "--state", "all")
    assert every["count"] == 3


def test_backfill_in_sync_mode_credits_once_and_a_second_run_changes_nothing(
    stack, db, paynow, ids
):
    paynow.queue(order(ids, 1), created_at=datetime.now(UTC) - timedelta(minutes=30))
    paynow.queue(order(ids, 2, "gems-550"), created_at=datetime.now(UTC) - timedelta(minutes=20))
    paynow.queue(order(ids, 3), as_string=True, state="pending")  # payload kept as a string
    code, dry, _ = cli(stack, paynow, "paynow", "backfill", "--dry-run")
    assert code == 0 and dry["would_backfill"] == 3 and find_event(db, ids("evt1")) is None
    code, out, _ = cli(stack, paynow, "paynow", "backfill")
    assert code == 0, out
    assert [(e["eventId"], e["outcome"]) for e in out["events"]] == [
        (ids("evt1"), "processed"),
        (ids("evt2"), "processed"),
        (ids("evt3"), "processed"),
    ]
    assert (out["mode"], out["processed"], out["failed"]) == ("sync", 3, 0)
    assert balance(db, ids("user")) == 100 + 550 + 100
    record = event(db, ids("evt2"))
    assert (record["source"], record["mode"], record["status"]) == ("backfill", "sync", "processed")
    # again: every event is a duplicate, nothing moves
    code, again, _ = cli(stack, paynow, "paynow", "backfill")
    assert code == 0 and again["duplicate"] == 3 and again["processed"] == 0
    assert balance(db, ids("user")) == 750
    assert sorted(ledger(db, ids("user"))) == sorted(ids(f"evt{n}") for n in (1, 2, 3))
    # and PayNow's own late retry of one of them is a duplicate at the webhook too
    assert send(stack.webhook_sync, order(ids, 1)).json()["status"] == "duplicate"
    _, shown, _ = cli(stack, paynow, "paynow", "failed")
    assert {d["recorded"] for d in shown["deliveries"]} == {"processed"}


def test_backfill_in_queue_mode_publishes_and_the_worker_credits(stack, db, paynow, ids):
    paynow.queue(order(ids, 1))
    paynow.queue(order(ids, 2))
    code, out, _ = cli(stack, paynow, "paynow", "backfill", mode="queue")
    assert code == 0 and out["accepted"] == 2 and out["mode"] == "queue"
    wait_for(lambda: status_of(db, ids("evt2")) == "processed" == status_of(db, ids("evt1")))
    assert balance(db, ids("user")) == 200
    assert (event(db, ids("evt1"))["source"], event(db, ids("evt1"))["mode"]) == (
        "backfill",
        "queue",
    )
    code, again, _ = cli(stack, paynow, "paynow", "backfill", mode="queue")
    assert code == 0 and again["duplicate"] == 2
    assert balance(db, ids("user")) == 200


def test_backfill_of_payloads_that_are_not_events_fails_them_and_does_the_rest(
    stack, db, paynow, ids
):
    paynow.queue('{"event_type": "ON_ORDER_COMPLETED", "body": {}}')  # no event_id
    mismatch = order(ids, 2)
    del mismatch["body"]["lines"]  # an order without lines: event_mismatch
    paynow.queue(mismatch)
    paynow.queue(order(ids, 3))
    code, out, stderr = cli(stack, paynow, "paynow", "backfill")
    assert code == 1, stderr
    outcomes = [(e["eventId"], e["outcome"]) for e in out["events"]]
    assert outcomes == [
        (None, "failed"),
        (ids("evt2"), "dead_lettered"),
        (ids("evt3"), "processed"),
    ]
    assert out["events"][0]["detail"].startswith("invalid_payload: event_id")
    assert out["events"][1]["detail"] == "event_mismatch"
    assert balance(db, ids("user")) == 100


def test_resend_has_paynow_deliver_again_to_the_webhook(stack, db, paynow, ids):
    queued = paynow.queue(order(ids, 1), statuses=(0, 0))
    code, out, _ = cli(stack, paynow, "paynow", "resend", queued.id)
    assert code == 0 and out == {"deliveryId": queued.id, "resent": True}
    assert status_of(db, ids("evt1")) == "processed"  # delivered, signed, to the sync webhook
    assert paynow.history_states()[queued.id] == "success"
    assert record_source(db, ids("evt1")) == "webhook"
    code, out, stderr = cli(stack, paynow, "paynow", "resend", "123")
    assert code == 2 and "queued webhook not found" in stderr


def record_source(db, event_id: str) -> str:
    return str(event(db, event_id)["source"])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PAYNOW_API_KEY": "wrong-key-00000000"}, "answered 401 unauthorized"),
        ({"PAYNOW_STORE_ID": "12345"}, "answered 404 not-found: store not found"),
        ({"PAYNOW_STORE_ID": ""}, "PAYNOW_STORE_ID must name the PayNow store"),
        ({"PAYNOW_API_KEY": ""}, "PAYNOW_API_KEY or PAYNOW_API_KEY_SECRET_ID must be set"),
        ({"PAYNOW_API_URL": "paynow.gg"}, "PAYNOW_API_URL must be an http(s) URL"),
    ],
)
def test_a_bad_key_store_or_setting_is_one_line_exit_2_and_nothing_written(
    stack, db, paynow, ids, env, message
):
    paynow.queue(order(ids, 1))
    code, out, stderr = cli(stack, paynow, "paynow", "backfill", **env)
    assert code == 2
    target, *error = stderr.strip().splitlines()  # the target line, then one line: the error
    assert target.startswith("paynow-ops: target: ") and len(error) == 1, stderr
    assert message in error[0], stderr
    assert out["ok"] is False
    assert "wrong-key" not in stderr
    assert find_event(db, ids("evt1")) is None


def test_a_history_page_that_is_not_json_stops_before_anything_is_written(stack, db, paynow, ids):
    for n in range(6):  # two pages of four: the second is broken
        paynow.queue(order(ids, n))
    paynow.fail_next(200, not_json=True, path="history?page=1")
    code, out, stderr = cli(stack, paynow, "paynow", "backfill")
    assert code == 2 and "body that is not JSON" in stderr, stderr
    assert out["ok"] is False
    assert all(find_event(db, ids(f"evt{n}")) is None for n in range(6))


# --- events list -----------------------------------------------------------------------


def test_events_list_filters_and_shows_the_newest_first(stack, db, paynow, ids):
    for n in range(3):
        assert send(stack.webhook_sync, order(ids, n)).json()["status"] == "processed"
    bad = order(ids, 3, "not-in-catalog")
    assert send(stack.webhook_sync, bad).json()["status"] == "dead_lettered"
    code, out, _ = cli(stack, paynow, "events", "list", "--user", ids("user"))
    assert code == 0
    assert [e["eventId"] for e in out["events"]] == [ids(f"evt{n}") for n in (3, 2, 1, 0)]
    assert out["events"][0]["error"] == "unknown_product"
    _, dead, _ = cli(
        stack, paynow, "events", "list", "--customer", ids("cust"), "--status", "dead_lettered"
    )
    assert [e["eventId"] for e in dead["events"]] == [ids("evt3")]
    _, typed, _ = cli(
        stack, paynow, "events", "list", "--user", ids("user"), "--type", "on_order_completed"
    )
    assert typed["count"] == 4 and typed["filters"]["eventType"] == "ON_ORDER_COMPLETED"
    _, two, _ = cli(stack, paynow, "events", "list", "--user", ids("user"), "--limit", "2")
    assert [e["eventId"] for e in two["events"]] == [ids("evt3"), ids("evt2")]
    _, none, _ = cli(stack, paynow, "events", "list", "--user", ids("user"), "--type", "ON_REFUND")
    assert none["count"] == 0
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    _, future, _ = cli(stack, paynow, "events", "list", "--user", ids("user"), "--since", later)
    assert future["count"] == 0
    _, recent, _ = cli(stack, paynow, "events", "list", "--user", ids("user"), "--since", "10m")
    assert recent["count"] == 4
    code, _, stderr = cli(stack, paynow, "events", "list", "--user", "a/b")
    assert code == 2 and "not an id" in stderr
