"""PayNow webhook signatures: ``verify`` and its twin ``sign``, and the secrets they use.

Signature = base64(HMAC-SHA256(key=secret UTF-8, msg="{timestamp}.{raw body}")),
timestamp in Unix milliseconds. Tests and ``scripts/ops/send_webhook.py`` sign with
``sign`` so the signer can never drift from the verifier.

PayNow signs each webhook subscription (one per event type) with its own secret,
so a store holds several: ``parse_secrets`` reads the one-per-line format of
``PAYNOW_WEBHOOK_SECRET``, ``PAYNOW_WEBHOOK_SECRET_PREVIOUS`` and the Secret
Manager value, and ``SigningSecrets`` says which of them are in force at a time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from paynow.domain.errors import InvalidSignature, StaleTimestamp

SIGNATURE_HEADER = "PayNow-Signature"
TIMESTAMP_HEADER = "PayNow-Timestamp"
DEFAULT_TOLERANCE_SECONDS = 300
# Every request is compared against every secret in force: this bounds that work.
MAX_SECRETS = 32


class SecretListError(ValueError):
    """A one-per-line secrets value that cannot be used. The message never quotes a secret."""


def parse_secrets(value: str | None) -> tuple[str, ...]:
    """The secrets of a one-per-line value, in order, each once; () for None or blank.

    Each line is one secret without its surrounding whitespace, so CRLF line ends
    and the trailing newline that editors, ``echo`` and ``gcloud`` leave change
    nothing. Blank lines before the first secret or after the last are ignored; a
    blank line between two secrets is refused (most likely a secret lost in
    copying), as are more than ``MAX_SECRETS`` secrets.
    """
    if value is None:
        return ()
    lines = [line.strip() for line in value.split("\n")]
    first = next((i for i, line in enumerate(lines) if line), len(lines))
    last = max((i for i, line in enumerate(lines) if line), default=-1)
    for number in range(first, last + 1):
        if not lines[number]:
            raise SecretListError(
                f"line {number + 1} is empty: put one secret on each line, "
                "with no blank line between two"
            )
    secrets = tuple(dict.fromkeys(lines[first : last + 1]))
    _check_count(len(secrets))
    return secrets


def _check_count(count: int) -> None:
    if count > MAX_SECRETS:
        raise SecretListError(f"{count} secrets; at most {MAX_SECRETS} are accepted")


@dataclass(frozen=True)
class SigningSecrets:
    """The secrets a signature may match: the current ones always, the previous ones
    (a rotation's) until ``previous_until`` when it is set. At most ``MAX_SECRETS`` in all."""

    current: tuple[str, ...]
    previous: tuple[str, ...] = ()
    previous_until: datetime | None = None

    def __post_init__(self) -> None:
        if self.previous_until is not None and self.previous_until.tzinfo is None:
            raise ValueError("previous_until must be timezone-aware")
        _check_count(len(set(self.current) | set(self.previous)))

    def in_force(self, now: float, replaced: Iterable[str] = ()) -> tuple[str, ...]:
        """Every secret a signature may match at ``now`` (Unix seconds), current ones first.

        ``replaced`` are current secrets an adapter has just seen replaced (an older
        Secret Manager value): a previous kind, accepted as long as the previous
        ones are. Past ``previous_until`` only the current secrets remain.
        """
        if self.previous_until is not None and now > self.previous_until.timestamp():
            return self.current
        return tuple(dict.fromkeys((*self.current, *replaced, *self.previous)))


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
