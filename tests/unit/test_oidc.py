"""``OidcVerifier`` with google-auth's real verification against a local issuer."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from paynow.adapters.oidc import OidcVerifier
from paynow.domain.errors import DependencyUnavailable, Forbidden, Unauthenticated

from tests.support.oidc import CertsServer, KeyPair

AUDIENCE = "https://worker.example/paynow_worker"
EMAIL = "push-invoker@demo.iam.gserviceaccount.com"
NOW = int(time.time())


@pytest.fixture(scope="module")
def issuer() -> KeyPair:
    return KeyPair("issuer-key")


@pytest.fixture(scope="module")
def stranger() -> KeyPair:
    return KeyPair("stranger-key")


@pytest.fixture(scope="module")
def impostor() -> KeyPair:
    """A different private key that claims the issuer's key id."""
    return KeyPair("issuer-key")


@pytest.fixture(scope="module")
def certs(issuer: KeyPair) -> Iterator[CertsServer]:
    server = CertsServer(issuer)
    yield server
    server.close()


@pytest.fixture
def verifier(certs: CertsServer) -> OidcVerifier:
    """A fresh verifier per test: its certificate cache starts empty."""
    return OidcVerifier(AUDIENCE, EMAIL, certs.url)


def good_claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {"aud": AUDIENCE, "email": EMAIL, "email_verified": True}
    claims.update(overrides)
    return claims


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_valid_token_passes_and_returns_claims(verifier: OidcVerifier, issuer: KeyPair) -> None:
    claims = verifier.verify(bearer(issuer.token(**good_claims())))
    assert claims["email"] == EMAIL
    assert claims["aud"] == AUDIENCE
    assert claims["iss"] == "https://accounts.google.com"


def test_bearer_scheme_is_case_insensitive(verifier: OidcVerifier, issuer: KeyPair) -> None:
    verifier.verify(f"bearer {issuer.token(**good_claims())}")


def test_issuer_without_scheme_is_accepted(verifier: OidcVerifier, issuer: KeyPair) -> None:
    verifier.verify(bearer(issuer.token(**good_claims(iss="accounts.google.com"))))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": "https://other.example"}, id="wrong-audience"),
        pytest.param({"aud": None}, id="no-audience"),
        pytest.param(
            {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, id="expired"
        ),
        pytest.param({"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200}, id="future"),
        pytest.param({"iss": "https://evil.example"}, id="wrong-issuer"),
        pytest.param({"iss": None}, id="no-issuer"),
    ],
)
def test_bad_claims_are_unauthenticated(
    verifier: OidcVerifier, issuer: KeyPair, overrides: dict[str, object]
) -> None:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(bearer(issuer.token(**good_claims(**overrides))))
    assert info.value.status == 401


def test_token_of_an_unknown_key_is_unauthenticated(
    verifier: OidcVerifier, stranger: KeyPair
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(bearer(stranger.token(**good_claims())))


def test_token_of_another_key_with_the_same_kid_is_unauthenticated(
    verifier: OidcVerifier, impostor: KeyPair
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(bearer(impostor.token(**good_claims())))


def test_tampered_payload_is_unauthenticated(verifier: OidcVerifier, issuer: KeyPair) -> None:
    header, payload, sig = issuer.token(**good_claims()).split(".")
    other = issuer.token(**good_claims(email="attacker@evil.example")).split(".")[1]
    assert other != payload
    with pytest.raises(Unauthenticated):
        verifier.verify(bearer(f"{header}.{other}.{sig}"))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"email": "someone@else.iam.gserviceaccount.com"}, id="wrong-email"),
        pytest.param({"email": None}, id="no-email"),
        pytest.param({"email_verified": False}, id="unverified"),
        pytest.param({"email_verified": None}, id="verified-missing"),
        pytest.param({"email_verified": "true"}, id="verified-string"),
    ],
)
def test_wrong_identity_is_forbidden(
    verifier: OidcVerifier, issuer: KeyPair, overrides: dict[str, object]
) -> None:
    with pytest.raises(Forbidden) as info:
        verifier.verify(bearer(issuer.token(**good_claims(**overrides))))
    assert info.value.status == 403


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", "token", "Bearer garbage"],
)
def test_missing_or_garbage_header_is_unauthenticated(
    verifier: OidcVerifier, header: str | None
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(header)


def test_rejection_message_does_not_echo_the_token(
    verifier: OidcVerifier, stranger: KeyPair
) -> None:
    token = stranger.token(**good_claims())
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(bearer(token))
    for part in token.split("."):
        assert part not in info.value.message


def test_certs_are_fetched_once_for_several_verifications(
    verifier: OidcVerifier, certs: CertsServer, issuer: KeyPair, stranger: KeyPair
) -> None:
    before = certs.requests
    for _ in range(3):
        verifier.verify(bearer(issuer.token(**good_claims())))
    with pytest.raises(Forbidden):
        verifier.verify(bearer(issuer.token(**good_claims(email="x@y"))))
    assert certs.requests == before + 1


def test_unreachable_certs_url_is_a_transient_failure(issuer: KeyPair) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    verifier = OidcVerifier(AUDIENCE, EMAIL, f"http://127.0.0.1:{port}/certs")
    with pytest.raises(DependencyUnavailable):
        verifier.verify(bearer(issuer.token(**good_claims())))
