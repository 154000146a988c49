"""Smoke test of a deployed pipeline (``scripts/smoke_test.sh`` runs it after a deploy).

Checks, each printed as ok / FAIL, exit status 1 if any fails:
1. a signed SMOKE_TEST event is answered 200 ``ignored`` by the webhook;
2. its ``webhookEvents/{eventId}`` record exists with status ``ignored`` (Firestore REST);
3. the same body with a wrong signature is refused with 401;
4. each ``--protected-url`` (worker, reconcile) refuses a request without a token (401/403).

The signing secret comes from ``PAYNOW_WEBHOOK_SECRET`` (the Secret Manager value: one
secret per line, the first signs) and the Firestore access token from
``SMOKE_ACCESS_TOKEN``; neither is ever printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "functions"))

from paynow.domain.payloads import signed
from paynow.domain.signature import SecretListError, parse_secrets

SMOKE_EVENT_TYPE = "SMOKE_TEST"
FIRESTORE_URL = "https://firestore.googleapis.com"


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def event_record(
    firestore_url: str, project: str, event_id: str, token: str, timeout: float
) -> dict[str, Any] | None:
    """The record's fields as plain values, or None while it does not exist."""
    path = f"projects/{project}/databases/(default)/documents/webhookEvents/{event_id}"
    url = f"{firestore_url.rstrip('/')}/v1/{urllib.parse.quote(path)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    fields: dict[str, dict[str, Any]] = doc.get("fields", {})
    return {name: next(iter(value.values()), None) for name, value in fields.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--protected-url", action="append", default=[])
    parser.add_argument("--firestore-url", default=FIRESTORE_URL)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:  # the secret holds one per PayNow webhook subscription: any one signs
        secrets = parse_secrets(os.environ.get("PAYNOW_WEBHOOK_SECRET"))
    except SecretListError as exc:
        print(f"PAYNOW_WEBHOOK_SECRET: {exc}", file=sys.stderr)
        return 2
    secret = secrets[0] if secrets else ""
    token = os.environ.get("SMOKE_ACCESS_TOKEN", "")
    if not secret or not token:
        print("PAYNOW_WEBHOOK_SECRET and SMOKE_ACCESS_TOKEN must be set", file=sys.stderr)
        return 2

    failures = 0

    def check(name: str, ok: bool, detail: str = "") -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}{f': {detail}' if detail and not ok else ''}")

    event_id = f"smoke-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    doc = {
        "event_type": SMOKE_EVENT_TYPE,
        "event_id": event_id,
        "body": {"note": "deploy smoke test; ignored by design"},
    }
    body, headers = signed(doc, secret)
    status, answer = post(args.webhook_url, body, headers, args.timeout)
    check(
        f"webhook accepts a signed event ({event_id})",
        status == 200 and json.loads(answer or b"{}").get("status") == "ignored",
        f"HTTP {status} {answer[:200]!r}",
    )

    deadline = time.monotonic() + args.timeout
    record = None
    while time.monotonic() < deadline:
        record = event_record(args.firestore_url, args.project, event_id, token, args.timeout)
        if record is not None:
            break
        time.sleep(1)
    check(
        "event recorded in webhookEvents",
        record is not None and record.get("status") == "ignored",
        f"record {record!r}",
    )

    _, bad_headers = signed(doc, secret + "-wrong")
    status, answer = post(args.webhook_url, body, bad_headers, args.timeout)
    check("webhook refuses a wrong signature", status == 401, f"HTTP {status}")

    for url in args.protected_url:
        status, _ = post(url, b"{}", {"Content-Type": "application/json"}, args.timeout)
        check(f"{url} refuses a caller without a token", status in (401, 403), f"HTTP {status}")

    print("smoke test passed" if not failures else f"smoke test FAILED ({failures} checks)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
