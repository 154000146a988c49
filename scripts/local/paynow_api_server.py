r"""A local PayNow Management API: the webhook endpoints of PayNow's spec, over real HTTP.

The recovery tooling (``scripts/paynow-ops paynow ...``) is tested against it, the outage
drill (``scripts/proof/drill.py``) plays PayNow with it, and a developer can run it beside
``scripts/stack``:

    .venv/bin/python -m scripts.local.paynow_api_server \
        --webhook-url http://127.0.0.1:8080/ --failed 3

It answers as ``management-api.json`` describes: ``Authorization: APIKey <key>`` (401
otherwise), ``GET /v1/stores/{storeId}/webhooks`` (``WebhookSubscriptionDto``),
``GET .../webhooks/{webhookId}/history?page=&state=`` (``WebhookHistoryDto``, pages of
``page_size`` from page 0, newest first), ``POST .../webhooks/resend``
(``{"webhook_id"}``, 204), and a ``PayNowError`` body for every error (404 for an unknown
store, webhook or delivery). Like PayNow it also delivers: ``deliver`` posts an event to
its subscription's URL, signed with that subscription's secret, and keeps every attempt
(``executions``) in the history, failed when no attempt got a 2xx. ``fail_next`` makes the
next answers fail (429 with ``Retry-After``, a 5xx, a page that is not JSON) for the
client's tests.
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import json
import secrets
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from paynow.domain import payloads
from paynow.domain.events import EventType

from scripts.local import localstack

STATES = ("success", "pending", "failed", "all")
MAX_BODY = 64 * 1024
_ids = itertools.count(411486491630370816 + secrets.randbelow(10**9) * 1000)


def flake_id() -> str:
    """A PayNow-looking id (FlakeIds are 18-digit strings), unique in this process."""
    return str(next(_ids))


def enum_name(event_type: str) -> str:
    """PayNow's ``WebhookEventType`` of a webhook's ``event_type``: ON_ORDER_COMPLETED ->
    OnOrderCompleted."""
    return "".join(word.capitalize() for word in event_type.split("_"))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Subscription:
    id: str
    event: str  # WebhookEventType
    url: str
    secret: str
    type: str = "json_v1"

    def dto(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "secret": self.secret,
            "subscribed_to": self.event,
            "type": self.type,
            "discord_description_template": None,
            "discord_title": None,
            "discord_color": None,
        }


@dataclass
class Queued:
    """A ``QueuedWebhookDto``; ``payload`` as PayNow keeps it (an object, or a string)."""

    id: str
    webhook_id: str
    created_at: datetime
    state: str
    event: str
    payload: Any
    executions: list[dict[str, Any]] = field(default_factory=list)

    def dto(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "created_at": _iso(self.created_at),
            "state": self.state,
            "next_retry": None,
            "event": self.event,
            "payload": self.payload,
            "executions": list(self.executions),
        }


@dataclass
class Failure:
    status: int
    retry_after: str | None = None
    not_json: bool = False
    path: str = ""  # only requests whose path and query contain this


class PayNowApiServer:
    """The server and its state; ``close`` stops it. Thread-safe."""

    def __init__(
        self,
        api_key: str,
        store_id: str = "411486491630370816",
        *,
        page_size: int = 25,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.store_id = store_id
        self.page_size = page_size
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: dict[str, Queued] = {}
        self.calls: list[tuple[str, str, int]] = []  # (method, path with query, status)
        self.resent: list[str] = []
        self._failures: list[Failure] = []
        self._lock = threading.RLock()
        self._http = requests.Session()
        self._host = host
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    # --- what the tests and the drill set up -------------------------------------------

    def subscribe(
        self, event_type: str, url: str, secret: str | None = None, kind: str = "json_v1"
    ) -> Subscription:
        """A webhook subscription to one event type (ON_... or PayNow's enum name)."""
        event = enum_name(event_type) if event_type.startswith("ON_") else event_type
        sub = Subscription(flake_id(), event, url, secret or secrets.token_urlsafe(24), kind)
        with self._lock:
            self.subscriptions[sub.id] = sub
        return sub

    def queue(
        self,
        payload: dict[str, Any] | str,
        *,
        state: str = "failed",
        statuses: tuple[int, ...] = (503,),
        created_at: datetime | None = None,
        as_string: bool = False,
        subscription: Subscription | None = None,
    ) -> Queued:
        """Put a delivery in the history as if PayNow had tried it (``statuses``: its
        attempts' answers, 0 for no answer)."""
        sub = subscription or self._subscription_for(payload)
        created = created_at or datetime.now(UTC)
        kept: Any = payload
        if as_string and not isinstance(payload, str):
            kept = json.dumps(payload, separators=(",", ":"))
        queued = Queued(flake_id(), sub.id, created, state, sub.event, kept)
        for i, status in enumerate(statuses):
            queued.executions.append(_execution(created + timedelta(seconds=i), status, None))
        with self._lock:
            self.deliveries[queued.id] = queued
        return queued

    def deliver(self, payload: dict[str, Any], attempts: int = 1, timeout: float = 10.0) -> Queued:
        """Deliver as PayNow does: signed with the subscription's secret, ``attempts`` tries;
        success on the first 2xx, else failed (every attempt kept)."""
        sub = self._subscription_for(payload)
        queued = Queued(flake_id(), sub.id, datetime.now(UTC), "pending", sub.event, payload)
        with self._lock:
            self.deliveries[queued.id] = queued
        for _ in range(attempts):
            if self._attempt(queued, timeout):
                break
        return queued

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        not_json: bool = False,
        path: str = "",
    ) -> None:
        """The next ``times`` requests whose path and query contain ``path`` get this answer."""
        with self._lock:
            self._failures.extend(
                Failure(status, retry_after, not_json, path) for _ in range(times)
            )

    def history_states(self) -> dict[str, str]:
        with self._lock:
            return {d.id: d.state for d in self.deliveries.values()}

    # --- internals ------------------------------------------------------------------

    def _subscription_for(self, payload: dict[str, Any] | str) -> Subscription:
        doc = json.loads(payload) if isinstance(payload, str) else payload
        event = enum_name(str(doc.get("event_type", "")))
        with self._lock:
            for sub in self.subscriptions.values():
                if sub.event == event and sub.type == "json_v1":
                    return sub
        raise LookupError(f"no subscription to {event}")

    def _attempt(self, queued: Queued, timeout: float) -> bool:
        sub = self.subscriptions[queued.webhook_id]
        body = (
            queued.payload.encode()
            if isinstance(queued.payload, str)
            else payloads.encode(queued.payload)
        )
        sent, headers = payloads.signed(body, sub.secret)
        started = datetime.now(UTC)
        try:
            answer = self._http.post(sub.url, data=sent, headers=headers, timeout=timeout)
            status, text = answer.status_code, answer.text[:500]
        except requests.RequestException as exc:
            status, text = 0, type(exc).__name__
        with self._lock:
            queued.executions.append(_execution(started, status, text))
            queued.state = "success" if 200 <= status < 300 else "failed"
        return 200 <= status < 300

    def _take_failure(self, path: str) -> Failure | None:
        with self._lock:
            for i, failure in enumerate(self._failures):
                if failure.path in path:
                    return self._failures.pop(i)
        return None

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> _Answer:
        """One request: the answer PayNow's API would give."""
        parts = urlsplit(target)
        failure = self._take_failure(target)
        if failure is not None:
            if failure.not_json:
                return _Answer(failure.status, b"<html>gateway says hello</html>", "text/html")
            extra = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return _error(failure.status, "server-error", "injected failure", extra)
        given = str(headers.get("Authorization", "")).encode()
        if not hmac.compare_digest(given, f"APIKey {self.api_key}".encode()):
            return _error(401, "unauthorized", "a valid API key is required")
        segments = [s for s in parts.path.split("/") if s]
        if segments[:2] != ["v1", "stores"] or len(segments) < 4 or segments[3] != "webhooks":
            return _error(404, "not-found", "no such endpoint")
        if segments[2] != self.store_id:
            return _error(404, "not-found", "store not found")
        rest = segments[4:]
        query = parse_qs(parts.query)
        if method == "GET" and not rest:
            with self._lock:
                return _json(200, [s.dto() for s in self.subscriptions.values()])
        if method == "GET" and len(rest) == 2 and rest[1] == "history":
            return self._history(rest[0], query)
        if method == "POST" and rest == ["resend"]:
            return self._resend(body)
        return _error(404, "not-found", "no such endpoint")

    def _history(self, webhook_id: str, query: dict[str, list[str]]) -> _Answer:
        with self._lock:
            if webhook_id not in self.subscriptions:
                return _error(404, "not-found", "webhook not found")
        state = (query.get("state") or ["all"])[0]
        if state not in STATES:
            return _error(400, "bad-request", f"state must be one of {', '.join(STATES)}")
        try:
            page = int((query.get("page") or ["0"])[0])
        except ValueError:
            return _error(400, "bad-request", "page must be an integer")
        if page < 0:
            return _error(400, "bad-request", "page must not be negative")
        with self._lock:
            mine = [
                d
                for d in self.deliveries.values()
                if d.webhook_id == webhook_id and state in ("all", d.state)
            ]
            mine.sort(key=lambda d: d.created_at, reverse=True)
            chunk = mine[page * self.page_size : (page + 1) * self.page_size]
            return _json(200, {"page": page, "history": [d.dto() for d in chunk]})

    def _resend(self, body: bytes) -> _Answer:
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            return _error(400, "bad-request", "body is not JSON")
        delivery_id = doc.get("webhook_id") if isinstance(doc, dict) else None
        if not isinstance(delivery_id, str):
            return _error(400, "bad-request", "webhook_id is required")
        with self._lock:
            queued = self.deliveries.get(delivery_id)
            if queued is None:
                return _error(404, "not-found", "queued webhook not found")
            self.resent.append(delivery_id)
        self._attempt(queued, timeout=10.0)
        return _Answer(204, b"", None)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, doc: Any) -> _Answer:
    return _Answer(status, json.dumps(doc).encode(), "application/json")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> _Answer:
    doc = {"status": status, "code": code, "message": message, "trace_id": uuid.uuid4().hex}
    return _Answer(status, json.dumps(doc).encode(), "application/json", headers or {})


def _execution(started: datetime, status: int, response: str | None) -> dict[str, Any]:
    return {
        "id": flake_id(),
        "started_at": _iso(started),
        "finished_at": _iso(started),
        "status_code": status,
        "response": response,
    }


def _handler(server: PayNowApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                answer = _error(413, "payload-too-large", "body too large")
            else:
                body = self.rfile.read(length) if length else b""
                answer = server.handle(self.command, self.path, self.headers, body)
            with server._lock:
                server.calls.append((self.command, self.path, answer.status))
            self.send_response(answer.status)
            if answer.content_type:
                self.send_header("Content-Type", answer.content_type)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: requests carry the API key's header, and tests read ``calls``."""

    return Handler


# --- running it by hand ----------------------------------------------------------------

DEMO_API_KEY = "local-demo-paynow-api-key"  # the local server's own, never a real key
DEMO_STORE = "411486491630370816"
EVENT_TYPES = tuple(EventType)  # a subscription for every type the points rules handle


def demo_orders(count: int) -> Iterator[dict[str, Any]]:
    """Orders of the demo catalog, with fresh ids, for a history to backfill."""
    run = uuid.uuid4().hex[:8]
    for i in range(count):
        ids = (f"evt-{run}-{i}", f"order-{run}-{i}", f"cust-{run}-{i}", f"user-{run}-{i}")
        yield payloads.order_completed(*ids, [("gems-100", 1, 199)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a local PayNow Management API.")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--webhook-url", default="http://127.0.0.1:8080/")
    parser.add_argument("--secret", default=localstack.DEMO_SECRET, help="subscriptions' secret")
    parser.add_argument("--failed", type=int, default=0, help="failed deliveries to start with")
    args = parser.parse_args(argv)
    stop = {signal.SIGINT, signal.SIGTERM}
    # Blocked before any thread starts, so every thread leaves them to sigwait below.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    server = PayNowApiServer(DEMO_API_KEY, DEMO_STORE, port=args.port)
    for event_type in EVENT_TYPES:
        server.subscribe(event_type, args.webhook_url, args.secret)
    for doc in demo_orders(args.failed):
        server.queue(doc, statuses=(0, 0, 0))
    print(
        f"PayNow Management API on {server.url} (store {DEMO_STORE}), "
        f"{args.failed} failed deliveries to {args.webhook_url}\n"
        f"  export PAYNOW_API_URL={server.url} PAYNOW_STORE_ID={DEMO_STORE} "
        f"PAYNOW_API_KEY={DEMO_API_KEY}\n"
        "Ctrl-C stops it.",
        flush=True,
    )
    try:
        signal.sigwait(stop)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
