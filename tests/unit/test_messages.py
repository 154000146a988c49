"""Queue wire formats: the ids-only event message, push envelopes, dead letters."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paynow.domain import events as ev
from paynow.domain import payloads
from paynow.domain.errors import InvalidMessage
from paynow.domain.messages import (
    MAX_ERROR_MESSAGE,
    DeadLetter,
    PushDelivery,
    QueueMessage,
    decode_push,
    is_push_envelope,
    read_push,
)


def event_of(name: str) -> ev.PayNowEvent:
    return ev.normalize(ev.parse_envelope(payloads.encode(payloads.event(name))), "user_id")


def push_body(
    data: bytes | str | None = b'{"v":1}', message: dict[str, Any] | None = None, **outer: Any
) -> bytes:
    msg: dict[str, Any] = {"messageId": "m-1", "publishTime": "2026-11-24T00:09:55Z"}
    if data is not None:
        msg["data"] = base64.b64encode(data).decode() if isinstance(data, bytes) else data
    msg.update(message or {})
    return json.dumps(
        {"message": msg, "subscription": "projects/p/subscriptions/s", **outer}
    ).encode()


# --- QueueMessage --------------------------------------------------------------


def test_message_data_is_exactly_the_contract_keys_with_user() -> None:
    message = QueueMessage.for_event(event_of("ON_ORDER_COMPLETED"))
    assert json.loads(message.data()) == {
        "v": 1,
        "eventId": payloads.EVENT_IDS["ON_ORDER_COMPLETED"],
        "eventType": "ON_ORDER_COMPLETED",
        "customerId": payloads.IDS["customer"],
        "userId": "user-42",
    }


def test_message_data_has_no_user_id_key_when_unknown() -> None:
    message = QueueMessage.for_event(event_of("ON_REFUND"))
    assert json.loads(message.data()) == {
        "v": 1,
        "eventId": payloads.EVENT_IDS["ON_REFUND"],
        "eventType": "ON_REFUND",
        "customerId": payloads.IDS["customer"],
    }


def test_message_data_is_utf8_json() -> None:
    data = QueueMessage("e1", "ON_X", None).data()
    assert data.decode("utf-8") == '{"v":1,"eventId":"e1","eventType":"ON_X","customerId":null}'


@pytest.mark.parametrize("name", payloads.EVENT_TYPES)
def test_message_of_every_sample_carries_ids_only(name: str) -> None:
    doc = json.loads(QueueMessage.for_event(event_of(name)).data())
    assert set(doc) <= {"v", "eventId", "eventType", "customerId", "userId"}
    assert all(isinstance(v, str) for k, v in doc.items() if k != "v")


def test_attributes_are_event_id_and_type() -> None:
    message = QueueMessage("e1", "ON_REFUND", "cust-7", "user-1")
    assert message.attributes() == {"eventId": "e1", "eventType": "ON_REFUND"}


def test_ordering_key_is_customer_else_event_id() -> None:
    assert QueueMessage("e1", "ON_REFUND", "cust-7").ordering_key == "cust-7"
    assert QueueMessage("e1", "ON_REFUND", None).ordering_key == "e1"
    chargeback = QueueMessage.for_event(event_of("ON_CHARGEBACK"))
    assert chargeback.ordering_key == payloads.IDS["customer"]


@pytest.mark.parametrize(
    "message",
    [
        QueueMessage("e1", "ON_REFUND", "cust-7", "user-1"),
        QueueMessage("e1", "ON_REFUND", "cust-7"),
        QueueMessage("e1", "ON_SOMETHING", None),
    ],
)
def test_decode_round_trips(message: QueueMessage) -> None:
    assert QueueMessage.decode(message.data()) == message


def test_decode_drops_invalid_optional_ids() -> None:
    data = json.dumps(
        {"v": 1, "eventId": "e1", "eventType": "T", "customerId": "a/b", "userId": 5}
    ).encode()
    assert QueueMessage.decode(data) == QueueMessage("e1", "T", None, None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"not json",
        b"[" * 100_000,
        b"[]",
        b'"x"',
        b'{"eventId": "e1", "eventType": "T"}',
        b'{"v": 2, "eventId": "e1", "eventType": "T"}',
        b'{"v": "1", "eventId": "e1", "eventType": "T"}',
        b'{"v": 1, "eventType": "T"}',
        b'{"v": 1, "eventId": "a/b", "eventType": "T"}',
        b'{"v": 1, "eventId": 7, "eventType": "T"}',
        b'{"v": 1, "eventId": "e1"}',
        b'{"v": 1, "eventId": "e1", "eventType": ""}',
        b'{"v": 1, "eventId": "e1", "eventType": 3}',
    ],
)
def test_decode_errors_are_invalid_message(data: bytes) -> None:
    with pytest.raises(InvalidMessage) as info:
        QueueMessage.decode(data)
    assert info.value.code == "invalid_message"


# --- push envelopes ------------------------------------------------------------


def test_decode_push_reads_a_push_envelope() -> None:
    inner = QueueMessage("e1", "ON_REFUND", "cust-7").data()
    body = push_body(
        inner,
        {"attributes": {"eventId": "e1", "eventType": "ON_REFUND"}, "orderingKey": "cust-7"},
        deliveryAttempt=3,
    )
    delivery = decode_push(body)
    assert delivery == PushDelivery(
        message_id="m-1",
        data=inner,
        attributes={"eventId": "e1", "eventType": "ON_REFUND"},
        publish_time=datetime(2026, 11, 24, 0, 9, 55, tzinfo=UTC),
        delivery_attempt=3,
        ordering_key="cust-7",
    )
    assert QueueMessage.decode(delivery.data) == QueueMessage("e1", "ON_REFUND", "cust-7")


def test_decode_push_accepts_snake_case_fields() -> None:
    body = json.dumps(
        {
            "message": {
                "data": base64.b64encode(b"x").decode(),
                "message_id": "m-2",
                "publish_time": "2026-11-24T00:09:55.5Z",
                "ordering_key": "k",
            }
        }
    ).encode()
    delivery = decode_push(body)
    assert delivery.message_id == "m-2"
    assert delivery.ordering_key == "k"
    assert delivery.publish_time == datetime(2026, 11, 24, 0, 9, 55, 500000, tzinfo=UTC)


def test_decode_push_reads_nanosecond_publish_time() -> None:
    delivery = decode_push(push_body(message={"publishTime": "2026-11-24T00:09:55.123456789Z"}))
    assert delivery.publish_time is not None
    assert delivery.publish_time.astimezone(UTC) == datetime(
        2026, 11, 24, 0, 9, 55, 123456, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "publish_time",
    ["2026-11-24T00:09:55.1Z", "2026-11-24T00:09:55.123Z", "2026-11-24T00:09:55+00:00"],
)
def test_decode_push_reads_other_rfc3339_precisions(publish_time: str) -> None:
    delivery = decode_push(push_body(message={"publishTime": publish_time}))
    assert delivery.publish_time is not None
    assert delivery.publish_time.utcoffset() is not None


@pytest.mark.parametrize("publish_time", [None, 12345, "yesterday", ""])
def test_decode_push_tolerates_unreadable_publish_time(publish_time: object) -> None:
    assert decode_push(push_body(message={"publishTime": publish_time})).publish_time is None


def test_decode_push_defaults_for_missing_optional_fields() -> None:
    delivery = decode_push(json.dumps({"message": {}}).encode())
    assert delivery == PushDelivery("", b"", {}, None, None, None)


@pytest.mark.parametrize("attempt", ["3", True, 2.0, None])
def test_decode_push_ignores_a_non_integer_delivery_attempt(attempt: object) -> None:
    assert decode_push(push_body(deliveryAttempt=attempt)).delivery_attempt is None


def test_decode_push_stringifies_attributes_and_ignores_a_non_object() -> None:
    assert decode_push(push_body(message={"attributes": {"n": 1}})).attributes == {"n": "1"}
    assert decode_push(push_body(message={"attributes": ["x"]})).attributes == {}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[" * 100_000,
        b"[]",
        b'{"subscription": "s"}',
        b'{"message": "text"}',
        b'{"message": null}',
        push_body("***not base64***"),
        push_body("YWJ"),  # bad padding
        push_body(data=None, message={"data": 123}),
        push_body(data=None, message={"data": ["YQ=="]}),
    ],
)
def test_malformed_push_envelope_is_invalid_message(body: bytes) -> None:
    with pytest.raises(InvalidMessage):
        decode_push(body)


# --- dead letters ----------------------------------------------------------------


def test_dead_letter_attributes() -> None:
    letter = DeadLetter(
        data=b"{}",
        event_id="e1",
        error_code="unknown_product",
        error_message="product(s) not in pointsCatalog: x",
        attempts=3,
        source="worker",
    )
    assert letter.attributes() == {
        "eventId": "e1",
        "errorCode": "unknown_product",
        "errorMessage": "product(s) not in pointsCatalog: x",
        "attempts": "3",
        "source": "worker",
    }


def test_dead_letter_error_message_is_truncated() -> None:
    letter = DeadLetter(b"", "e1", "event_mismatch", "x" * 5000, 1, "webhook")
    assert letter.attributes()["errorMessage"] == "x" * MAX_ERROR_MESSAGE
    assert MAX_ERROR_MESSAGE == 500


def test_dead_letter_without_event_id_has_no_event_id_attribute() -> None:
    attributes = DeadLetter(b"raw", None, "invalid_payload", "m", 1, "webhook").attributes()
    assert "eventId" not in attributes
    assert attributes["source"] == "webhook"


def test_dead_letter_attributes_are_all_strings() -> None:
    letter = DeadLetter(b"", "e1", "c", "m", 10, "worker", extra={"origin": "x"})
    attributes = letter.attributes()
    assert attributes["origin"] == "x"
    assert all(isinstance(v, str) for v in attributes.values())


# --- both push forms -------------------------------------------------------------------

EVENT = QueueMessage("e1", "ON_REFUND", "cust-7", "user-42")
METADATA = {
    "X-Goog-Pubsub-Subscription-Name": "projects/p/subscriptions/push",
    "X-Goog-Pubsub-Message-Id": "2070443601311540",
    "X-Goog-Pubsub-Publish-Time": "2026-11-24T00:09:55.749Z",
    "X-Goog-Pubsub-Ordering-Key": "cust-7",
    "Eventid": "e1",
    "Eventtype": "ON_REFUND",
}


def test_read_push_reads_a_wrapped_envelope_as_decode_push_does() -> None:
    body = push_body(EVENT.data(), {"attributes": EVENT.attributes(), "orderingKey": "cust-7"})
    assert read_push(body) == decode_push(body)
    assert read_push(body, METADATA) == decode_push(body)  # headers never decide the form
    assert QueueMessage.decode(read_push(body).data) == EVENT


def test_read_push_reads_an_unwrapped_body_with_its_metadata_headers() -> None:
    delivery = read_push(EVENT.data(), METADATA)
    assert delivery == PushDelivery(
        message_id="2070443601311540",
        data=EVENT.data(),
        attributes={"eventId": "e1", "eventType": "ON_REFUND"},
        publish_time=datetime(2026, 11, 24, 0, 9, 55, 749000, tzinfo=UTC),
        delivery_attempt=None,  # Pub/Sub writes no delivery attempt on an unwrapped push
        ordering_key="cust-7",
    )
    assert QueueMessage.decode(delivery.data) == EVENT


def test_read_push_reads_an_unwrapped_body_without_metadata() -> None:
    delivery = read_push(EVENT.data(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert delivery == PushDelivery("", EVENT.data(), {}, None, None, None)


def test_unwrapped_metadata_in_quotes_is_read_without_them() -> None:
    quoted = {k: f'"{v}"' for k, v in METADATA.items()}
    assert read_push(EVENT.data(), quoted) == read_push(EVENT.data(), METADATA)


def test_unwrapped_headers_other_than_our_attributes_are_not_attributes() -> None:
    headers = {**METADATA, "Authorization": "Bearer token", "errorCode": "x", "User-Agent": "u"}
    assert read_push(EVENT.data(), headers).attributes == EVENT.attributes()


@pytest.mark.parametrize("publish_time", ["yesterday", "", "2026-13-40T00:00:00Z"])
def test_unwrapped_unreadable_publish_time_is_none(publish_time: str) -> None:
    headers = {**METADATA, "X-Goog-Pubsub-Publish-Time": publish_time}
    assert read_push(EVENT.data(), headers).publish_time is None


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"\xff\xfe",
        b"",
        b"{}",
        b"[]",
        b"null",
        b'{"subscription": "s"}',
        b'{"v": 1, "message": {"data": "e30="}, "eventId": "e1", "eventType": "T"}',
    ],
)
def test_a_body_that_is_not_an_envelope_is_unwrapped_data(body: bytes) -> None:
    """Not an envelope: the data itself, kept whole for the dead letter if it is not ours."""
    delivery = read_push(body, {"eventId": "e1"})
    assert (delivery.data, delivery.attributes) == (body, {"eventId": "e1"})


def test_an_envelope_is_told_from_an_event_message() -> None:
    assert is_push_envelope({"message": {}, "subscription": "s"})
    assert is_push_envelope({"message": None})  # envelope-shaped, then refused as malformed
    assert not is_push_envelope(json.loads(EVENT.data()))
    assert not is_push_envelope({"v": 1, "message": {}})
    assert not is_push_envelope([{"message": {}}])


@pytest.mark.parametrize("body", [b'{"message": "text"}', b'{"message": null}', push_body("***")])
def test_a_malformed_envelope_is_still_invalid_message(body: bytes) -> None:
    with pytest.raises(InvalidMessage):
        read_push(body, METADATA)


# What can travel as an HTTP header value: visible ASCII, no surrounding space.
header_safe = st.from_regex(r"[!-~]([ -~]{0,38}[!-~])?", fullmatch=True)


@given(
    event_id=header_safe.filter(ev.is_valid_id),
    event_type=header_safe,
    customer=st.none() | header_safe.filter(ev.is_valid_id),
)
def test_both_forms_of_any_event_message_read_the_same(
    event_id: str, event_type: str, customer: str | None
) -> None:
    message = QueueMessage(event_id, event_type, customer)
    wrapped = read_push(push_body(message.data(), {"attributes": message.attributes()}))
    bare = read_push(message.data(), message.attributes())
    assert QueueMessage.decode(wrapped.data) == QueueMessage.decode(bare.data) == message
    assert wrapped.attributes == bare.attributes == message.attributes()
