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
import copy
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paynow.domain.errors import EventMismatch, InvalidMessage, InvalidPayload
from paynow.domain.events import normalize, parse_envelope
from paynow.domain.messages import QueueMessage, decode_push

from scripts import payloads

PII = ("jane.doe@example.com", "Jane Doe", "203.0.113.7")
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**53, 2**63, -(2**63) - 1, 10**30, 1_000_001]),
    st.floats(),
    st.sampled_from([math.nan, math.inf]),
    st.text(st.characters(exclude_categories=()), max_size=30),
    st.sampled_from(["", ".", "..", "a/b", "__x__", "\x00", "\ud800", "x" * 200]),
)
HOSTILE = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated_samples(draw: st.DrawFn) -> Any:
    doc: Any = payloads.sample(draw(st.sampled_from(payloads.SAMPLE_NAMES)))
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        value = copy.deepcopy(draw(HOSTILE))
        if not path:
            doc = value
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            parent[path[-1]] = value
        else:
            del parent[path[-1]]
    return doc


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
