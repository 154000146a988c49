"""Every row of the contract's HTTP table, over real HTTP into functions-framework."""

from __future__ import annotations

import json
import time

import pytest
import requests
from paynow.domain import payloads

from tests.integration.conftest import (
    PREVIOUS_SECRET,
    PUSH_SA,
    SECRET,
    balance,
    push_envelope,
    send,
    status_of,
)

LINES = [("gems-100", 1, 199)]


def _order(ids):
    return payloads.order_completed(ids("evt"), ids("order"), ids("cust"), ids("user"), LINES)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_not_post_is_405(stack, method):
    answer = requests.request(method, stack.webhook_queue, timeout=10)
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"


def test_missing_signature_is_401_and_stores_nothing(stack, db, ids):
    body = payloads.encode(_order(ids))
    answer = requests.post(stack.webhook_sync, data=body, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_signature"
    assert status_of(db, ids("evt")) is None


def test_wrong_secret_is_401(stack, db, ids):
    answer = send(stack.webhook_sync, _order(ids), secret="not-the-secret")
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_signature"
    assert status_of(db, ids("evt")) is None


def test_tampered_body_is_401(stack, db, ids):
    body, headers = payloads.signed(_order(ids), SECRET)
    tampered = body.replace(b'"quantity":1', b'"quantity":9')
    answer = requests.post(stack.webhook_sync, data=tampered, headers=headers, timeout=10)
    assert answer.status_code == 401
    assert status_of(db, ids("evt")) is None


@pytest.mark.parametrize("offset_s", [-301, 301])
def test_timestamp_outside_window_is_401(stack, db, ids, offset_s):
    stamp = int((time.time() + offset_s) * 1000)
    body, headers = payloads.signed(_order(ids), SECRET, stamp)
    answer = requests.post(stack.webhook_sync, data=body, headers=headers, timeout=10)
    assert answer.status_code == 401 and answer.json()["error"] == "stale_timestamp"
    assert status_of(db, ids("evt")) is None


def test_previous_secret_is_accepted_during_rotation(stack, db, ids):
    answer = send(stack.webhook_sync, _order(ids), secret=PREVIOUS_SECRET)
    assert answer.status_code == 200 and answer.json()["status"] == "processed"


def test_body_over_one_mib_is_413_before_reading(stack, db):
    body = b"{" + b" " * (1024 * 1024) + b"}"
    _, headers = payloads.signed(b"{}", SECRET)
    answer = requests.post(stack.webhook_sync, data=body, headers=headers, timeout=30)
    assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"


def test_chunked_body_over_one_mib_is_413(stack):
    def chunks():
        for _ in range(20):
            yield b" " * (64 * 1024)

    _, headers = payloads.signed(b"{}", SECRET)
    answer = requests.post(stack.webhook_sync, data=chunks(), headers=headers, timeout=30)
    assert answer.status_code == 413


def test_signed_non_event_is_400_and_kept_once_in_dlq(stack, dlq, ids):
    body = json.dumps({"hello": ids("junk")}).encode()
    first = send(stack.webhook_sync, body)
    second = send(stack.webhook_queue, body)
    assert first.status_code == second.status_code == 400
    assert first.json()["error"] == "invalid_payload"
    assert "event_id" in first.json()["message"]
    time.sleep(1.5)
    kept = [m for m in dlq.pull() if m.data == body]
    assert len(kept) == 1
    assert kept[0].attributes["errorCode"] == "invalid_payload"
    assert "eventId" not in kept[0].attributes


def test_signed_bad_json_is_400(stack):
    answer = send(stack.webhook_sync, b"{not json")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_payload"


@pytest.mark.parametrize("webhook", ["webhook_sync", "webhook_queue"])
def test_unknown_event_type_is_ignored_and_recorded(stack, db, ids, webhook):
    doc = {"event_type": "ON_SOMETHING_NEW", "event_id": ids("evt"), "body": {"x": 1}}
    answer = send(getattr(stack, webhook), doc)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ignored", "eventId": ids("evt")}
    assert status_of(db, ids("evt")) == "ignored"


@pytest.mark.parametrize("webhook", ["webhook_sync", "webhook_queue"])
def test_payload_not_matching_its_type_is_dead_lettered(stack, db, ids, dlq, webhook):
    doc = {"event_type": "ON_ORDER_COMPLETED", "event_id": ids("evt"), "body": {"id": "o"}}
    answer = send(getattr(stack, webhook), doc)
    assert answer.status_code == 200
    assert answer.json()["status"] == "dead_lettered"
    assert answer.json()["error"] == "event_mismatch"
    assert status_of(db, ids("evt")) == "dead_lettered"
    (letter,) = dlq.for_event(ids("evt"))
    assert letter.attributes["errorCode"] == "event_mismatch"


def test_error_bodies_are_json_with_a_reason(stack):
    answer = requests.post(stack.webhook_sync, data=b"x", timeout=10)
    assert answer.headers["Content-Type"].startswith("application/json")
    assert set(answer.json()) == {"error", "message"}
    assert answer.json()["message"]


# --- worker authentication ------------------------------------------------


def _token(stack, key=None, **claims):
    base = {"aud": stack.worker_oidc, "email": PUSH_SA, "email_verified": True}
    base.update(claims)
    return (key or stack.issuer).token(**base)


def _push(stack, token, message=None):
    envelope = push_envelope(message or {"v": 1, "eventId": "nope", "eventType": "X"})
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(stack.worker_oidc, json=envelope, headers=headers, timeout=30)


def test_worker_accepts_a_valid_push_token(stack, db, ids):
    doc = _order(ids)
    assert send(stack.webhook_sync, doc).json()["status"] == "processed"
    message = {
        "v": 1,
        "eventId": ids("evt"),
        "eventType": "ON_ORDER_COMPLETED",
        "customerId": ids("cust"),
    }
    answer = _push(stack, _token(stack), message)
    assert answer.status_code == 200 and answer.json()["status"] == "duplicate"
    assert balance(db, ids("user")) == 100


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"aud": "https://elsewhere.example/"}, 401),
        ({"exp": int(time.time()) - 600, "iat": int(time.time()) - 4000}, 401),
        ({"iss": "https://evil.example"}, 401),
        ({"email": "someone@demo-paynow.iam.gserviceaccount.com"}, 403),
        ({"email_verified": False}, 403),
        ({"email_verified": None}, 403),
    ],
    ids=[
        "wrong-audience",
        "expired",
        "wrong-issuer",
        "wrong-email",
        "unverified",
        "no-verified-claim",
    ],
)
def test_worker_refuses_a_wrong_token(stack, claims, status):
    answer = _push(stack, _token(stack, **claims))
    assert answer.status_code == status
    assert answer.json()["error"] in {"unauthenticated", "forbidden"}


def test_worker_refuses_a_token_signed_by_another_key(stack):
    assert _push(stack, _token(stack, key=stack.stranger)).status_code == 401


def test_worker_refuses_no_token(stack):
    assert _push(stack, None).status_code == 401
    assert _push(stack, "garbage.token.here").status_code == 401


def test_worker_dead_letters_a_message_it_cannot_read(stack, dlq):
    envelope = {"message": {"data": "!!not base64!!", "messageId": "m1"}}
    answer = requests.post(stack.worker, json=envelope, timeout=30)
    assert answer.status_code == 200
    assert (
        answer.json()["status"] == "dead_lettered" and answer.json()["error"] == "invalid_message"
    )
