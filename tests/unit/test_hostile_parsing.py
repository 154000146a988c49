"""The domain's readers under hostile input: only their declared errors, and no personal data out.

Fast companions of tests/integration/test_hostile_input.py (which sends the same kind of input
through the real app and emulators): here thousands of cases cost seconds, so the parsers'
own contracts are checked directly. ``parse_envelope`` raises only ``InvalidPayload``,
``normalize`` only ``EventMismatch``, the push and queue readers only ``InvalidMessage``; what
``normalize`` keeps (the stored record data and the queue message) never holds an email, a name
or an IP from the payload.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paynow.domain import payloads
from paynow.domain.errors import EventMismatch, InvalidMessage, InvalidPayload
from paynow.domain.events import normalize, parse_envelope
from paynow.domain.messages import QueueMessage, decode_push

from tests.support import hostile

PII = ("jane.doe@example.com", "Jane Doe", "203.0.113.7")
# Smaller values than the integration run's (no strings of 100,000s of characters): thousands
# of cases here must cost seconds.
HOSTILE = hostile.nested(hostile.scalars(max_text=30), max_size=3, max_key=6, max_leaves=6)


@st.composite
def mutated_samples(draw: st.DrawFn) -> Any:
    doc = payloads.event(draw(st.sampled_from(payloads.EVENT_TYPES)))
    ops = ("replace", "replace", "delete", "delete", "add")
    return draw(hostile.mutated(doc, values=HOSTILE, max_ops=4, ops=ops))


def _encode(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8", "surrogatepass")


BODIES = st.one_of(
    st.binary(max_size=300),
    mutated_samples().map(_encode),
    st.sampled_from([1, 500, 990, 5_000, 50_000]).map(lambda d: b"[" * d + b"]" * d),
)


@given(raw=BODIES)
def test_parse_envelope_raises_only_invalid_payload(raw: bytes) -> None:
    with contextlib.suppress(InvalidPayload):
        parse_envelope(raw)


@given(doc=mutated_samples(), key=st.sampled_from(["user_id", "uid", ""]))
def test_normalize_raises_only_event_mismatch_and_keeps_no_personal_data(
    doc: Any, key: str
) -> None:
    try:
        envelope = parse_envelope(_encode(doc))
    except InvalidPayload:
        return
    try:
        event = normalize(envelope, key)
    except EventMismatch:
        return
    kept = json.dumps(event.record_data()) + QueueMessage.for_event(event).data().decode()
    for needle in PII:
        assert needle not in kept


def _push(data: bytes, envelope: Any) -> bytes:
    body = {"message": {"data": base64.b64encode(data).decode(), "messageId": "1"}}
    if isinstance(envelope, dict):
        body["message"].update(envelope)
    return json.dumps(body).encode("utf-8", "surrogatepass")


MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "v": st.just(1) | HOSTILE,
        "eventId": st.just("evt-1") | HOSTILE,
        "eventType": st.just("ON_REFUND") | HOSTILE,
        "customerId": HOSTILE,
        "userId": HOSTILE,
    },
)


@given(
    data=st.binary(max_size=200) | MESSAGES.map(_encode),
    extra=st.dictionaries(
        st.sampled_from(["attributes", "publishTime", "orderingKey", "data", "messageId"]),
        HOSTILE,
        max_size=3,
    ),
    whole=st.none() | st.binary(max_size=200),
)
def test_push_and_queue_readers_raise_only_invalid_message(
    data: bytes, extra: dict[str, Any], whole: bytes | None
) -> None:
    with contextlib.suppress(InvalidMessage):
        delivery = decode_push(whole if whole is not None else _push(data, extra))
        QueueMessage.decode(delivery.data)


@pytest.mark.parametrize(
    "doc",
    [
        {"event_id": "evt-1\n", "event_type": "ON_ORDER_COMPLETED", "body": {}},
        {"event_id": "evt-1", "event_type": "ON_ORDER_COMPLETED\n", "body": {}},
    ],
    ids=["event-id", "event-type"],
)
def test_a_trailing_newline_is_not_part_of_an_id_or_a_type(doc: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        parse_envelope(_encode(doc))
