"""Edge inputs that once reached Firestore or the clock and came back as 5xx."""

from __future__ import annotations

import base64
import json

import pytest
from paynow.adapters import oidc
from paynow.domain import events as ev
from paynow.domain import payloads
from paynow.domain.errors import Unauthenticated
from paynow.domain.messages import decode_push


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_publish_time_at_the_edge_of_the_calendar_is_unknown_not_a_crash(stamp: str) -> None:
    body = {"message": {"data": base64.b64encode(b"{}").decode(), "publishTime": stamp}}
    assert decode_push(json.dumps(body).encode()).publish_time is None


@pytest.mark.parametrize("value", ["__x__", "__name__", "__"])
def test_ids_firestore_reserves_are_not_valid_ids(value: str) -> None:
    assert not ev.is_valid_id(value)


def test_a_lone_surrogate_in_subscription_text_is_dropped() -> None:
    doc = payloads.event("ON_SUBSCRIPTION_RENEWED")
    doc["body"]["status"] = "\ud800"
    doc["body"]["current_period_end"] = "x\udfff"
    raw = json.dumps(doc).encode()  # ASCII escapes, as a sender would send them
    event = ev.normalize(ev.parse_envelope(raw), "user_id")
    data = event.record_data()
    assert data["status"] == "" and data["currentPeriodEnd"] is None
    json.dumps(data).encode("utf-8")  # storable


def test_a_token_whose_claims_make_google_auth_raise_type_error_is_unauthenticated(mocker) -> None:
    mocker.patch("google.oauth2.id_token.verify_token", side_effect=TypeError("exp is text"))
    verifier = oidc.OidcVerifier("aud", "sa@example.iam.gserviceaccount.com", "http://127.0.0.1:9/")
    with pytest.raises(Unauthenticated):
        verifier.verify("Bearer a.b.c")
