"""PayNow webhook signatures: ``verify`` and its twin ``sign``, side by side.

Signature = base64(HMAC-SHA256(key=secret UTF-8, msg="{timestamp}.{raw body}")),
timestamp in Unix milliseconds. Tests and ``scripts/send_webhook.py`` sign with
``sign`` so the signer can never drift from the verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable

from paynow.domain.errors import InvalidSignature, StaleTimestamp

SIGNATURE_HEADER = "PayNow-Signature"
TIMESTAMP_HEADER = "PayNow-Timestamp"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(body: bytes, secret: str, timestamp_ms: int | None = None) -> dict[str, str]:
    """The two headers PayNow would send with ``body``."""
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    return {
        SIGNATURE_HEADER: _digest(body, secret, str(timestamp_ms)),
        TIMESTAMP_HEADER: str(timestamp_ms),
    }


def verify(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    secrets: Iterable[str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Return if ``signature`` signs ``body`` with one of ``secrets``; raise otherwise.

    The timestamp must lie within ``tolerance_seconds`` of now in either
    direction (PayNow's advice is 5 minutes). Every candidate secret is
    compared in constant time, and all of them are tried, so the time taken
    says nothing about which one (if any) nearly matched.
    """
    if not signature or not timestamp:
        raise InvalidSignature("PayNow-Signature and PayNow-Timestamp headers are required")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 16:
        raise InvalidSignature("PayNow-Timestamp must be Unix milliseconds")
    now = time.time() if now is None else now
    if abs(now - int(timestamp) / 1000) > tolerance_seconds:
        raise StaleTimestamp(f"PayNow-Timestamp is outside the {tolerance_seconds}s window")
    given = signature.strip().encode("utf-8", "replace")
    matched = False
    for secret in secrets:
        expected = _digest(body, secret, timestamp).encode("ascii")
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise InvalidSignature("signature does not match the body")


def _digest(body: bytes, secret: str, timestamp: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")
