"""PayNow HMAC signatures: ``verify`` against ``sign``, tolerance, rotation, constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from paynow.domain import signature
from paynow.domain.errors import InvalidSignature, StaleTimestamp
from pytest_mock import MockerFixture

from tests.unit.helpers import NOW, NOW_MS, PREVIOUS_SECRET, SECRET

BODY = b'{"event_type":"ON_ORDER_COMPLETED","event_id":"e1","body":{}}'


def headers(body: bytes = BODY, secret: str = SECRET, ts_ms: int = NOW_MS) -> tuple[str, str]:
    h = signature.sign(body, secret, ts_ms)
    return h[signature.SIGNATURE_HEADER], h[signature.TIMESTAMP_HEADER]


def test_sign_matches_the_documented_formula() -> None:
    sig, ts = headers()
    mac = hmac.new(SECRET.encode(), f"{NOW_MS}.".encode() + BODY, hashlib.sha256).digest()
    assert ts == str(NOW_MS)
    assert sig == base64.b64encode(mac).decode()


def test_valid_signature_passes() -> None:
    sig, ts = headers()
    signature.verify(BODY, sig, ts, [SECRET], now=NOW)


def test_sign_without_timestamp_uses_now_and_round_trips(mocker: MockerFixture) -> None:
    mocker.patch("paynow.domain.signature.time.time", return_value=NOW)
    h = signature.sign(BODY, SECRET)
    assert h[signature.TIMESTAMP_HEADER] == str(NOW_MS)
    signature.verify(
        BODY, h[signature.SIGNATURE_HEADER], h[signature.TIMESTAMP_HEADER], [SECRET], now=NOW
    )


def test_verify_defaults_to_the_wall_clock(mocker: MockerFixture) -> None:
    mocker.patch("paynow.domain.signature.time.time", return_value=NOW + 301)
    sig, ts = headers()
    with pytest.raises(StaleTimestamp):
        signature.verify(BODY, sig, ts, [SECRET])


@pytest.mark.parametrize(
    "body",
    [
        BODY.replace(b"e1", b"e2"),
        BODY + b" ",
        b"",
    ],
)
def test_tampered_body_is_rejected(body: bytes) -> None:
    sig, ts = headers()
    with pytest.raises(InvalidSignature):
        signature.verify(body, sig, ts, [SECRET], now=NOW)


def test_signature_over_another_timestamp_is_rejected() -> None:
    sig, _ = headers(ts_ms=NOW_MS - 1000)
    with pytest.raises(InvalidSignature):
        signature.verify(BODY, sig, str(NOW_MS), [SECRET], now=NOW)


def test_wrong_secret_is_rejected() -> None:
    sig, ts = headers(secret="someone-else")
    with pytest.raises(InvalidSignature):
        signature.verify(BODY, sig, ts, [SECRET, PREVIOUS_SECRET], now=NOW)


def test_no_secret_at_all_rejects() -> None:
    sig, ts = headers()
    with pytest.raises(InvalidSignature):
        signature.verify(BODY, sig, ts, [], now=NOW)


def test_previous_secret_is_accepted_during_rotation() -> None:
    sig, ts = headers(secret=PREVIOUS_SECRET)
    signature.verify(BODY, sig, ts, [SECRET, PREVIOUS_SECRET], now=NOW)


def test_signature_with_surrounding_whitespace_is_accepted() -> None:
    sig, ts = headers()
    signature.verify(BODY, f"  {sig}\n", ts, [SECRET], now=NOW)


@pytest.mark.parametrize("offset_s", [-301, -3600, 301, 86400])
def test_timestamp_outside_the_window_is_stale(offset_s: int) -> None:
    ts_ms = NOW_MS + offset_s * 1000
    sig, ts = headers(ts_ms=ts_ms)
    with pytest.raises(StaleTimestamp) as info:
        signature.verify(BODY, sig, ts, [SECRET], tolerance_seconds=300, now=NOW)
    assert info.value.code == "stale_timestamp"
    assert info.value.status == 401


@pytest.mark.parametrize("offset_s", [-300, -299, 0, 299, 300])
def test_timestamp_inside_the_window_passes(offset_s: int) -> None:
    sig, ts = headers(ts_ms=NOW_MS + offset_s * 1000)
    signature.verify(BODY, sig, ts, [SECRET], tolerance_seconds=300, now=NOW)


def test_tolerance_is_configurable() -> None:
    sig, ts = headers(ts_ms=NOW_MS - 61_000)
    signature.verify(BODY, sig, ts, [SECRET], tolerance_seconds=120, now=NOW)
    with pytest.raises(StaleTimestamp):
        signature.verify(BODY, sig, ts, [SECRET], tolerance_seconds=60, now=NOW)


def test_stale_is_checked_before_the_signature() -> None:
    """A replayed old request is refused as stale even with a correct signature."""
    sig, ts = headers(ts_ms=NOW_MS - 10 * 60 * 1000)
    with pytest.raises(StaleTimestamp):
        signature.verify(BODY, sig, ts, [SECRET], now=NOW)


@pytest.mark.parametrize(
    ("sig", "ts"),
    [(None, str(NOW_MS)), ("", str(NOW_MS)), ("abc", None), ("abc", ""), (None, None)],
)
def test_missing_headers_are_invalid_signature(sig: str | None, ts: str | None) -> None:
    with pytest.raises(InvalidSignature) as info:
        signature.verify(BODY, sig, ts, [SECRET], now=NOW)
    assert info.value.code == "invalid_signature"
    assert info.value.status == 401


@pytest.mark.parametrize(
    "ts",
    [
        "abc",
        "1.8e12",
        "-1800000000000",
        " 1800000000000",
        "1800000000000.0",
        "١٨٠٠٠٠٠٠٠٠٠٠٠",  # Arabic-Indic digits: isdigit() but not ASCII
        "9" * 17,
    ],
)
def test_non_numeric_timestamp_is_invalid_signature(ts: str) -> None:
    with pytest.raises(InvalidSignature):
        signature.verify(BODY, "sig", ts, [SECRET], now=NOW)


def test_compare_digest_runs_for_every_secret_even_after_a_match(mocker: MockerFixture) -> None:
    spy = mocker.spy(hmac, "compare_digest")
    sig, ts = headers(secret=SECRET)
    signature.verify(BODY, sig, ts, [SECRET, PREVIOUS_SECRET, "third"], now=NOW)
    assert spy.call_count == 3
    assert all(c.args[1] == sig.encode() for c in spy.call_args_list)
    assert spy.spy_return_list == [True, False, False]


def test_compare_digest_runs_for_every_secret_on_a_mismatch(mocker: MockerFixture) -> None:
    spy = mocker.spy(hmac, "compare_digest")
    sig, ts = headers(secret="nobody")
    with pytest.raises(InvalidSignature):
        signature.verify(BODY, sig, ts, [SECRET, PREVIOUS_SECRET], now=NOW)
    assert spy.call_count == 2
    assert spy.spy_return_list == [False, False]


def test_non_ascii_signature_does_not_crash() -> None:
    _, ts = headers()
    with pytest.raises(InvalidSignature):
        signature.verify(BODY, "sïgnature\udcff", ts, [SECRET], now=NOW)
