"""Signature checks under hostile headers: constant-time for any input, and never a crash.

tests/unit/test_signature.py already proves that ``hmac.compare_digest`` runs once per secret,
after a match and on a mismatch. This adds what it leaves open: a signature of any length,
alphabet or encoding still goes through ``compare_digest`` against every secret (no early
exit on length, prefix or base64 form that would make the time depend on how close a guess
is), and arbitrary header text only ever raises ``InvalidSignature`` or ``StaleTimestamp``.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from paynow.domain import signature
from paynow.domain.errors import InvalidSignature, StaleTimestamp

from tests.unit.helpers import NOW, NOW_MS, PREVIOUS_SECRET, SECRET

BODY = b'{"event_type":"ON_ORDER_COMPLETED","event_id":"e1","body":{}}'
SECRETS = (SECRET, PREVIOUS_SECRET, "third")
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=120)


@contextmanager
def compared() -> Iterator[list[tuple[bytes, bytes, bool]]]:
    """Every ``hmac.compare_digest`` call made inside the block: (expected, given, result)."""
    calls: list[tuple[bytes, bytes, bool]] = []
    real = hmac.compare_digest

    def record(a: bytes, b: bytes) -> bool:
        result = real(a, b)
        calls.append((a, b, result))
        return result

    with mock.patch.object(hmac, "compare_digest", side_effect=record):
        yield calls


def _good() -> str:
    return signature.sign(BODY, SECRET, NOW_MS)[signature.SIGNATURE_HEADER]


def _near_misses() -> list[str]:
    good = _good()
    return [
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # the last character off
        ("A" if good[0] != "A" else "B") + good[1:],  # the first character off
        good[:10],  # a prefix
        good + "A",  # one character more
        good.rstrip("="),  # unpadded
        base64.b64decode(good).hex(),  # the same digest, hex
        base64.urlsafe_b64encode(base64.b64decode(good)).decode(),  # url-safe alphabet
        good.lower(),
    ]


@given(sig=ANY_TEXT)
def test_any_signature_is_compared_against_every_secret_in_constant_time(sig: str) -> None:
    assume(sig.strip() and sig.strip() != _good())
    with compared() as calls, pytest.raises(InvalidSignature):
        signature.verify(BODY, sig, str(NOW_MS), SECRETS, now=NOW)
    assert len(calls) == len(SECRETS)
    for expected, given_, _ in calls:
        assert isinstance(expected, bytes) and isinstance(given_, bytes)
        assert given_ == sig.strip().encode("utf-8", "replace")


@pytest.mark.parametrize("sig", _near_misses())
def test_near_misses_take_the_same_path_as_wild_guesses(sig: str) -> None:
    with compared() as calls, pytest.raises(InvalidSignature):
        signature.verify(BODY, sig, str(NOW_MS), SECRETS, now=NOW)
    assert [result for _, _, result in calls] == [False] * len(SECRETS)


@given(sig=st.none() | ANY_TEXT, ts=st.none() | ANY_TEXT, body=st.binary(max_size=256))
def test_arbitrary_headers_raise_only_the_contract_rejections(
    sig: str | None, ts: str | None, body: bytes
) -> None:
    with pytest.raises((InvalidSignature, StaleTimestamp)):
        signature.verify(body, sig, ts, SECRETS, now=NOW)


@given(
    body=st.binary(max_size=512),
    secret=st.text(min_size=1, max_size=64),
    offset_ms=st.integers(-299_000, 299_000),
    position=st.integers(0, 43),
)
def test_only_the_exact_signature_passes(
    body: bytes, secret: str, offset_ms: int, position: int
) -> None:
    stamp = NOW_MS + offset_ms
    headers = signature.sign(body, secret, stamp)
    sig, ts = headers[signature.SIGNATURE_HEADER], headers[signature.TIMESTAMP_HEADER]
    signature.verify(body, sig, ts, [secret], now=NOW)
    i = position % len(sig)
    flipped = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1 :]
    with pytest.raises(InvalidSignature):
        signature.verify(body, flipped, ts, [secret], now=NOW)
    with pytest.raises(InvalidSignature):
        signature.verify(body + b" ", sig, ts, [secret], now=NOW)
