"""Verifying the OIDC token Pub/Sub push (or Cloud Scheduler) attaches to each request.

google-auth checks the signature against the certificates at ``certs_url``
(Google's by default; tests serve their own), expiry and audience; we add the
issuer, the expected service account ``email`` and ``email_verified``.
Certificates are fetched through a CacheControl session, which honours
Google's Cache-Control max-age, so a request does not pay a certs round trip.
"""

from __future__ import annotations

from typing import Any

import cachecontrol
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import id_token

from paynow.domain.errors import DependencyUnavailable, Forbidden, Unauthenticated

GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
CLOCK_SKEW_SECONDS = 10


class OidcVerifier:
    def __init__(self, audience: str, email: str, certs_url: str) -> None:
        self._audience = audience
        self._email = email
        self._certs_url = certs_url
        self._request = google.auth.transport.requests.Request(
            session=cachecontrol.CacheControl(requests.Session())
        )

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """Return the token's claims, or raise ``Unauthenticated`` / ``Forbidden``."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("a Bearer token is required")
        try:
            claims = dict(
                id_token.verify_token(
                    token.strip(),
                    self._request,
                    audience=self._audience,
                    certs_url=self._certs_url,
                    clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
                )
            )
        except google.auth.exceptions.TransportError as exc:
            raise DependencyUnavailable("token certificates could not be fetched") from exc
        except (ValueError, TypeError, google.auth.exceptions.GoogleAuthError) as exc:
            # TypeError: google-auth on a signed token whose claims have the wrong types.
            raise Unauthenticated(f"token rejected: {_reason(exc)}") from exc
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthenticated("token issuer is not Google")
        if claims.get("email") != self._email:
            raise Forbidden("token is not from the expected service account")
        if claims.get("email_verified") is not True:
            raise Forbidden("token email is not verified")
        return claims


def _reason(exc: Exception) -> str:
    """A short reason without echoing the token back."""
    text = str(exc).split(":")[0]
    return text[:80] or type(exc).__name__
