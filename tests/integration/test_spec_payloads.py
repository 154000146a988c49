"""PayNow's 19 event types as its spec defines them, over real HTTP, in both modes.

Every type is sent twice per mode, as its canonical event and as its minimal variant (only
the fields processing reads), each with ids of its own; then any body the spec allows,
signed, must get 200 and leave its record ``processed``, ``ignored`` or ``dead_lettered``:
never a 4xx/5xx, never ``received`` (in queue mode, once the worker had its bounded time).
Bodies come from ``paynow.domain.payloads`` (canonical, minimal, the builders) and
``tests/support/spec_bodies`` (anything the spec allows, ids from small pools so that
events refer to each other). Example counts follow the Hypothesis profile.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from paynow.domain import payloads as p

from tests.integration.conftest import Stack, balance, find_event, send, wait_for
from tests.support import spec_bodies as sb

FINAL = frozenset({"processed", "ignored", "dead_lettered"})
ANSWERS = {
    # No duplicates: every delivery here has a new event id.
    "sync": FINAL | {"accepted"},  # accepted: behind an earlier event still queued
    "queue": frozenset({"accepted", "ignored", "dead_lettered"}),
}
WORKER_TIMEOUT = 30.0  # seconds a queued event may take to leave `received`
POOL = sb.pools(100_000 + uuid.uuid4().int % 900_000)  # this session's linked ids
CATALOG_POINTS = (10, 25, 60)
CANONICAL_POINTS = {p.IDS["product"]: 100, p.IDS["product2"]: 550, p.IDS["plan"]: 300}
HANDLED = (
    "ON_ORDER_COMPLETED",
    "ON_SUBSCRIPTION_ACTIVATED",
    "ON_SUBSCRIPTION_RENEWED",
    "ON_SUBSCRIPTION_CANCELED",
    "ON_REFUND",
    "ON_CHARGEBACK",
    "ON_CHARGEBACK_CLOSED",
)
STORY = HANDLED + tuple(t for t in p.EVENT_TYPES if t not in HANDLED)  # order first

EXPECTED = {t: "ignored" for t in p.EVENT_TYPES} | {
    "ON_ORDER_COMPLETED": "processed",
    "ON_SUBSCRIPTION_ACTIVATED": "processed",
    "ON_SUBSCRIPTION_RENEWED": "processed",
    "ON_SUBSCRIPTION_CANCELED": "processed",
    "ON_REFUND": "processed",
    "ON_CHARGEBACK": "processed",
    "ON_CHARGEBACK_CLOSED": "processed",
}
# The canonical story's close is `won`, after a full refund and a chargeback that found
# nothing left: it gives back nothing, but it is processed (its ledger entry says so).


def flake_id() -> str:
    """A new 18-digit flake id: every delivery and story of this module is its own."""
    return str(10**17 + uuid.uuid4().int % (9 * 10**17))


def url(stack: Stack, mode: str) -> str:
    return stack.webhook_sync if mode == "sync" else stack.webhook_queue


def final_status(db: firestore.Client, event_id: str) -> str | None:
    record = find_event(db, event_id)
    status = record.get("status") if record else None
    return status if status in FINAL else None


@pytest.fixture(scope="module")
def spec_catalog(stack: Stack, db: firestore.Client) -> Iterator[None]:
    """pointsCatalog entries for the canonical products and the pool's, all flake ids."""
    batch = db.batch()
    entries = dict(CANONICAL_POINTS)
    entries |= dict(zip(POOL.of("product"), CATALOG_POINTS, strict=True))
    for product_id, points in entries.items():
        batch.set(db.collection("pointsCatalog").document(product_id), {"points": points})
    batch.commit()
    yield


@pytest.mark.parametrize("mode", ["sync", "queue"])
def test_every_type_canonical_and_minimal_ends_final(stack, db, spec_catalog, mode):
    sent: list[tuple[str, str, str]] = []
    users: dict[str, str] = {}
    for variant in ("canonical", "minimal"):
        roles = {r: flake_id() for r in ("order", "customer", "payment", "refund")}
        roles |= {"subscription": flake_id(), "user": f"user-{uuid.uuid4().hex[:12]}"}
        users[variant] = roles["user"]
        for event_type in STORY:
            doc = p.event(event_type, flake_id(), ids=roles)
            if variant == "minimal":
                doc = p.minimal(doc)
            answer = send(url(stack, mode), doc)
            assert answer.status_code == 200, (variant, event_type, answer.text)
            assert answer.json()["status"] in ANSWERS[mode], (variant, event_type, answer.text)
            sent.append((variant, event_type, doc["event_id"]))
    statuses = {
        (variant, event_type): wait_for(lambda e=event_id: final_status(db, e), WORKER_TIMEOUT)
        for variant, event_type, event_id in sent
    }
    expected = {(v, t): EXPECTED[t] for v, t, _ in sent}
    assert statuses == expected
    for _, _, event_id in sent:
        stored = json.dumps(find_event(db, event_id), default=str)
        assert not [v for v in p.PII if v in stored], event_id
    # The canonical story: the order credited then refunded in full, the chargeback finding
    # nothing left, the subscription credited on activation and on renewal.
    assert balance(db, users["canonical"]) == 2 * CANONICAL_POINTS[p.IDS["plan"]]


def spec_examples() -> int:
    """Per mode: half the profile's count (50 in CI, 1,500 in the full run)."""
    return max(10, settings().max_examples // 2)


@st.composite
def spec_events(draw: st.DrawFn) -> dict[str, Any]:
    """Half anything at all, half the builders' linked events (a pool order is credited, a
    later refund or chargeback of it finds it, a close follows its chargeback). Drawn in
    two steps: ``one_of`` would weigh each of the 24 kinds alike."""
    linked = draw(st.booleans())
    return draw(sb.linked_event(POOL) if linked else sb.any_event(POOL))


@pytest.mark.parametrize("mode", ["sync", "queue"])
@settings(max_examples=spec_examples())
@given(doc=spec_events())
def test_any_spec_valid_body_signed_gets_200_and_ends_final(
    stack: Stack, db: firestore.Client, spec_catalog: None, mode: str, doc: dict[str, Any]
):
    doc = {**doc, "event_id": flake_id()}  # a new delivery each time, even when shrinking
    answer = send(url(stack, mode), doc)
    note(f"answer: {answer.status_code} {answer.text}")
    assert answer.status_code == 200
    said = answer.json()["status"]
    assert said in ANSWERS[mode]
    status = wait_for(lambda: final_status(db, doc["event_id"]), WORKER_TIMEOUT, interval=0.05)
    if said in FINAL:
        assert status == said  # what the webhook answered is what it recorded
    error = (find_event(db, doc["event_id"]) or {}).get("lastError") or {}
    event(f"{mode}: {doc['event_type']} -> {status} {error.get('code', '')}".rstrip())
