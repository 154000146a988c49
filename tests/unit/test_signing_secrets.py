"""Several signing secrets: the one-per-line format, the limit, the previous ones' deadline."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from paynow.domain import signature
from paynow.domain.errors import InvalidSignature
from paynow.domain.signature import MAX_SECRETS, SecretListError, SigningSecrets, parse_secrets
from pytest_mock import MockerFixture

from tests.unit.helpers import NOW, NOW_MS

BODY = b'{"event_type":"ON_REFUND","event_id":"e1","body":{}}'
UNTIL = datetime.fromtimestamp(NOW, UTC)


# --- parse_secrets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "secrets"),
    [
        ("one", ("one",)),
        ("one\ntwo\nthree", ("one", "two", "three")),
        ("one\r\ntwo\r\n", ("one", "two")),  # CRLF, as Windows editors save it
        ("one\ntwo\n", ("one", "two")),  # the trailing newline of echo and most editors
        ("\n\none\ntwo\n\n\n", ("one", "two")),  # blank lines around the list
        ("  one \n\ttwo\t", ("one", "two")),  # whitespace around each secret
        ("one\ntwo\none", ("one", "two")),  # a repeat counts once
        ("with inner space", ("with inner space",)),
    ],
)
def test_one_secret_per_line(value: str, secrets: tuple[str, ...]) -> None:
    assert parse_secrets(value) == secrets


@pytest.mark.parametrize("value", [None, "", "\n", " \r\n \n"])
def test_nothing_is_no_secret(value: str | None) -> None:
    assert parse_secrets(value) == ()


@pytest.mark.parametrize(
    ("value", "line"),
    [("s3cr-a\n\ns3cr-b", 2), ("s3cr-a\r\n\r\ns3cr-b", 2), ("\ns3cr-a\ns3cr-b\n \ns3cr-c\n", 4)],
)
def test_a_blank_line_between_two_secrets_is_refused(value: str, line: int) -> None:
    with pytest.raises(SecretListError) as info:
        parse_secrets(value)
    assert str(info.value).startswith(f"line {line} is empty")
    assert "s3cr" not in str(info.value)


def test_at_most_32_secrets() -> None:
    assert MAX_SECRETS == 32
    assert len(parse_secrets("\n".join(f"s{i}" for i in range(32)))) == 32
    with pytest.raises(SecretListError) as info:
        parse_secrets("\n".join(f"secret-{i}" for i in range(33)))
    assert str(info.value) == "33 secrets; at most 32 are accepted"
    assert "secret-" not in str(info.value)


def test_repeats_do_not_count_towards_the_limit() -> None:
    assert len(parse_secrets("\n".join(f"s{i % 32}" for i in range(64)))) == 32


# --- SigningSecrets ----------------------------------------------------------------------


def test_current_and_previous_are_in_force_without_a_deadline() -> None:
    secrets = SigningSecrets(("a", "b"), ("p",))
    assert secrets.in_force(NOW) == ("a", "b", "p")
    assert secrets.in_force(NOW + 10 * 365 * 86400) == ("a", "b", "p")


@pytest.mark.parametrize(
    ("offset", "in_force"),
    [(-1.0, ("a", "p")), (-0.001, ("a", "p")), (0.0, ("a", "p")), (0.001, ("a",)), (1.0, ("a",))],
)
def test_previous_ones_end_after_previous_until(offset: float, in_force: tuple[str, ...]) -> None:
    """At the deadline itself still accepted; any moment after it, refused."""
    secrets = SigningSecrets(("a",), ("p",), UNTIL)
    assert secrets.in_force(NOW + offset) == in_force


def test_the_deadline_is_a_moment_whatever_its_offset() -> None:
    paris = UNTIL.astimezone(timezone(timedelta(hours=1)))
    secrets = SigningSecrets(("a",), ("p",), paris)
    assert secrets.in_force(NOW) == ("a", "p")
    assert secrets.in_force(NOW + 1) == ("a",)


def test_replaced_secrets_are_previous_ones_too() -> None:
    secrets = SigningSecrets(("new",), ("p",), UNTIL)
    assert secrets.in_force(NOW, replaced=("old",)) == ("new", "old", "p")
    assert secrets.in_force(NOW + 1, replaced=("old",)) == ("new",)


def test_a_secret_in_both_lists_is_tried_once() -> None:
    assert SigningSecrets(("a", "b"), ("b", "c")).in_force(NOW, ("a",)) == ("a", "b", "c")


def test_at_most_32_secrets_in_all() -> None:
    current = tuple(f"c{i}" for i in range(20))
    SigningSecrets(current, tuple(f"p{i}" for i in range(12)))
    SigningSecrets(current, current[:15])  # shared ones count once
    with pytest.raises(SecretListError) as info:
        SigningSecrets(current, tuple(f"p{i}" for i in range(13)))
    assert str(info.value) == "33 secrets; at most 32 are accepted"


def test_a_naive_deadline_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SigningSecrets(("a",), ("p",), datetime(2030, 1, 1))


# --- verify with many secrets ----------------------------------------------------------------


SIX = tuple(f"subscription-secret-{n}" for n in range(6))


@pytest.mark.parametrize("which", range(6))
def test_a_signature_of_any_subscription_secret_passes(which: int) -> None:
    headers = signature.sign(BODY, SIX[which], NOW_MS)
    signature.verify(BODY, headers[signature.SIGNATURE_HEADER], str(NOW_MS), SIX, now=NOW)


def test_all_32_secrets_are_compared_whichever_matches(mocker: MockerFixture) -> None:
    """Constant time across the list: the first, the last or no match do the same work."""
    secrets = parse_secrets("\n".join(f"secret-{i}" for i in range(MAX_SECRETS)))
    spy = mocker.spy(hmac, "compare_digest")
    for signer in (secrets[0], secrets[-1], "not-in-the-list"):
        spy.reset_mock()
        spy.spy_return_list.clear()
        sig = signature.sign(BODY, signer, NOW_MS)[signature.SIGNATURE_HEADER]
        matched = signer in secrets
        try:
            signature.verify(BODY, sig, str(NOW_MS), secrets, now=NOW)
        except InvalidSignature:
            assert not matched
        else:
            assert matched
        assert spy.call_count == MAX_SECRETS
        assert spy.spy_return_list.count(True) == int(matched)


def test_previous_secret_past_its_deadline_is_invalid_signature() -> None:
    secrets = SigningSecrets(("current",), ("previous",), UNTIL)
    sig = signature.sign(BODY, "previous", NOW_MS)[signature.SIGNATURE_HEADER]
    signature.verify(BODY, sig, str(NOW_MS), secrets.in_force(NOW), now=NOW)
    with pytest.raises(InvalidSignature):
        signature.verify(BODY, sig, str(NOW_MS), secrets.in_force(NOW + 1), now=NOW + 1)
