"""Smoke test of a deployed pipeline (``scripts/ops/smoke_test.sh`` runs it after a deploy).

Checks, each printed as ok / FAIL, exit status 1 if any fails:
1. a signed SMOKE_TEST event is answered 200 ``ignored`` by the webhook;
2. its ``webhookEvents/{eventId}`` record exists with status ``ignored`` (Firestore REST);
3. the same body with a wrong signature is refused with 401;
4. each ``--protected-url`` (worker, reconcile) refuses a request without a token: 401 or
   403 from the function or Cloud Run's IAM, or 404 from Cloud Run's ingress (internal-only
   refuses what comes from outside the project);
5. with ``--mode queue``, the whole queue path: a signed ``ON_SUBSCRIPTION_CANCELED`` of a
   smoke subscription (it moves no points and needs no catalog entry) is answered
   ``accepted``, published, pushed by Pub/Sub to the worker with its OIDC token, and its
   record reaches ``processed`` (``--queue-timeout`` seconds, a cold worker included).
Then the documents it wrote are deleted (``webhookEvents`` records and the smoke
subscription); a queued event that did not get processed is left as it is, to be looked
at (``paynow-ops event show``), and its ids printed.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))

from paynow.domain.payloads import signed, subscription
from paynow.domain.signature import SecretListError, parse_secrets

SMOKE_EVENT_TYPE = "SMOKE_TEST"
FIRESTORE_URL = "https://firestore.googleapis.com"
REFUSED = {401: "no token", 403: "not allowed", 404: "refused by ingress"}


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Firestore:
    """The few Firestore REST calls the smoke test makes (read a document, delete one)."""

    def __init__(self, url: str, project: str, token: str, timeout: float) -> None:
        self._base = f"{url.rstrip('/')}/v1/projects/{project}/databases/(default)/documents"
        self._token = token
        self._timeout = timeout

    def _url(self, collection: str, doc_id: str) -> str:
        return f"{self._base}/{collection}/{urllib.parse.quote(doc_id, safe='')}"

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """The document's fields as plain values, or None while it does not exist."""
        return _fields(self._url(collection, doc_id), self._token, self._timeout)

    def delete(self, collection: str, doc_id: str) -> bool:
        """Delete the document (gone already counts as done)."""
        request = urllib.request.Request(  # noqa: S310
            self._url(collection, doc_id),
            headers={"Authorization": f"Bearer {self._token}"},
            method="DELETE",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout):  # noqa: S310
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 404

    def wait_for(self, event_id: str, done: set[str], timeout: float) -> dict[str, Any] | None:
        """``webhookEvents/{event_id}`` once its status is in ``done`` (or the last seen)."""
        deadline = time.monotonic() + timeout
        record = None
        while time.monotonic() < deadline:
            record = self.get("webhookEvents", event_id)
            if record is not None and record.get("status") in done:
                break
            time.sleep(1)
        return record


def _fields(url: str, token: str, timeout: float) -> dict[str, Any] | None:
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
    parser.add_argument("--mode", choices=("sync", "queue"), default="sync")
    parser.add_argument("--queue-timeout", type=float, default=180.0)
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

    store = Firestore(args.firestore_url, args.project, token, args.timeout)
    stamp = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    event_id = f"smoke-{stamp}"
    doc = {
        "event_type": SMOKE_EVENT_TYPE,
        "event_id": event_id,
        "body": {"note": "deploy smoke test; ignored by design"},
    }
    body = send_signed(
        args, doc, secret, "ignored", f"webhook accepts a signed event ({event_id})", check
    )

    record = store.wait_for(event_id, {"ignored", "processed", "dead_lettered"}, args.timeout)
    check(
        "event recorded in webhookEvents",
        record is not None and record.get("status") == "ignored",
        f"record {record!r}",
    )

    _, bad_headers = signed(doc, secret + "-wrong")
    status, _ = post(args.webhook_url, body, bad_headers, args.timeout)
    check("webhook refuses a wrong signature", status == 401, f"HTTP {status}")

    for url in args.protected_url:
        status, _ = post(url, b"{}", {"Content-Type": "application/json"}, args.timeout)
        check(
            f"{url} refuses a caller without a token ({REFUSED.get(status, 'not refused')})",
            status in REFUSED,
            f"HTTP {status}",
        )

    written = [("webhookEvents", event_id)]
    if args.mode == "queue":
        queued = through_the_queue(args, secret, store, stamp, check)
        written += queued or []
    cleaned = all(store.delete(collection, doc_id) for collection, doc_id in written)
    check(f"cleaned up {len(written)} smoke document(s)", cleaned, "a delete was refused")

    print("smoke test passed" if not failures else f"smoke test FAILED ({failures} checks)")
    return 1 if failures else 0


def send_signed(
    args: argparse.Namespace, doc: dict[str, Any], secret: str, want: str, name: str, check: Any
) -> bytes:
    """POST ``doc`` signed to the webhook and check it answers 200 with status ``want``;
    the body sent (to send again with other headers)."""
    body, headers = signed(doc, secret)
    status, answer = post(args.webhook_url, body, headers, args.timeout)
    check(
        name,
        status == 200 and json.loads(answer or b"{}").get("status") == want,
        f"HTTP {status} {answer[:200]!r}",
    )
    return body


def through_the_queue(
    args: argparse.Namespace,
    secret: str,
    store: Firestore,
    stamp: str,
    check: Any,
) -> list[tuple[str, str]] | None:
    """Step 5: an event through publish, push (OIDC) and the worker. Returns the documents it
    wrote, to delete, or None when it was not processed (they are left to look at)."""
    event_id, sub_id, customer = f"smoke-q-{stamp}", f"smoke-sub-{stamp}", f"smoke-cust-{stamp}"
    doc = subscription("canceled", event_id, sub_id, customer, None)
    send_signed(args, doc, secret, "accepted", f"webhook queues a signed event ({event_id})", check)
    record = store.wait_for(event_id, {"processed", "dead_lettered", "ignored"}, args.queue_timeout)
    processed = record is not None and record.get("status") == "processed"
    check(
        "the worker processed it (published, pushed with its OIDC token, credited nothing)",
        processed and record is not None and record.get("mode") == "queue",
        f"record {record!r} after {args.queue_timeout:.0f} s",
    )
    if not processed:
        print(f"     left for a look: scripts/paynow-ops event show {event_id}")
        return None
    return [
        ("webhookEvents", event_id),
        ("paynowSubscriptions", sub_id),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
