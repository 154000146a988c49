"""The entry points: HTTP statuses and JSON bodies of the contract, services faked."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import time
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import flask
import pytest
from paynow import runtime
from paynow.adapters.secrets import StaticSecrets
from paynow.domain import payloads
from paynow.domain.errors import (
    AwaitingEarlierEvent,
    DependencyUnavailable,
    Forbidden,
    Unauthenticated,
)
from paynow.service.async_queue import AsyncQueue
from paynow.service.reconcile import ReconcileReport
from paynow.service.webhook import WebhookService
from paynow.service.worker import Handled
from pytest_mock import MockerFixture

from tests.support.asgi import Answered, AsgiClient, of_function
from tests.unit.fakes import FakeAsyncPublisher, FakeAsyncRecords, FakePublisher, FakeStore
from tests.unit.helpers import CATALOG, NOW, SECRET, settings

ONE_MIB = 1024 * 1024


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    for name in ("FUNCTION_TARGET", "PUSH_AUTH", "WEBHOOK_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-unit")
    runtime.settings.cache_clear()
    yield importlib.import_module("main")
    runtime.settings.cache_clear()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> WebhookService:
    service = WebhookService(
        settings(WEBHOOK_MODE="sync"),
        FakeStore(CATALOG),
        FakePublisher(),
        StaticSecrets(SECRET),
        clock=lambda: NOW,
    )
    monkeypatch.setattr(runtime, "webhook", lambda: service)
    return service


def call(
    function: Any,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    **environ: Any,
) -> tuple[int, dict[str, Any], flask.Response]:
    app = flask.Flask("unit")
    with app.test_request_context("/", method=method, data=body, headers=headers or {}, **environ):
        response = function(flask.request)
        # Every answer is streamed, so functions-framework never reads a request body after
        # it (_answer), and it still carries its length.
        assert response.is_streamed
        return response.status_code, json.loads(response.get_data()), response


def call_webhook(
    main: ModuleType,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    pieces: list[bytes] | None = None,
) -> tuple[int, dict[str, Any], Answered]:
    """The ASGI webhook called as uvicorn calls it (``pieces``: a chunked upload)."""
    client = AsgiClient(of_function(main.paynow_webhook))
    try:
        answered = client.request(method, body, headers, pieces=pieces)
    finally:
        client.close()
    return answered.status, json.loads(answered.body), answered


def signed_order(event_id: str = "e1", product: str = "gems-100") -> tuple[bytes, dict[str, str]]:
    doc = payloads.order_completed(event_id, "o1", "cust-7", "user-42", [(product, 1, 199)])
    return payloads.signed(doc, SECRET, int(NOW * 1000))


# --- paynow_webhook ------------------------------------------------------------------


def test_webhook_refuses_other_methods(main: ModuleType, webhook: WebhookService) -> None:
    status, body, _ = call_webhook(main, method="GET")
    assert status == 405
    assert body["error"] == "method_not_allowed"


def test_webhook_processed(main: ModuleType, webhook: WebhookService) -> None:
    status, body, response = call_webhook(main, *signed_order())
    assert status == 200
    assert body == {"status": "processed", "eventId": "e1"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.body)


def test_webhook_duplicate(main: ModuleType, webhook: WebhookService) -> None:
    call_webhook(main, *signed_order())
    status, body, _ = call_webhook(main, *signed_order())
    assert (status, body["status"]) == (200, "duplicate")


def test_webhook_dead_lettered_names_the_error(main: ModuleType, webhook: WebhookService) -> None:
    status, body, _ = call_webhook(main, *signed_order(product="mystery"))
    assert status == 200
    assert body == {"status": "dead_lettered", "eventId": "e1", "error": "unknown_product"}


def test_webhook_bad_signature_is_401(main: ModuleType, webhook: WebhookService) -> None:
    raw, headers = signed_order()
    headers["PayNow-Signature"] = "AAAA"
    status, body, _ = call_webhook(main, raw, headers)
    assert status == 401
    assert body["error"] == "invalid_signature"


def test_webhook_stale_is_401(main: ModuleType, webhook: WebhookService) -> None:
    doc = payloads.order_completed("e1", "o1", "cust-7", "user-42", [("gems-100", 1, 199)])
    raw, headers = payloads.signed(doc, SECRET, int(NOW * 1000) - 3_600_000)
    status, body, _ = call_webhook(main, raw, headers)
    assert (status, body["error"]) == (401, "stale_timestamp")


def test_webhook_invalid_payload_is_400(main: ModuleType, webhook: WebhookService) -> None:
    status, body, _ = call_webhook(main, *payloads.signed(b"nope", SECRET, int(NOW * 1000)))
    assert (status, body["error"]) == (400, "invalid_payload")


def test_webhook_declared_oversize_body_is_413(main: ModuleType, webhook: WebhookService) -> None:
    raw, headers = signed_order()
    big = raw + b" " * ONE_MIB
    status, body, _ = call_webhook(main, big, headers)
    assert (status, body["error"]) == (413, "body_too_large")


def test_webhook_streamed_oversize_body_is_413(main: ModuleType, webhook: WebhookService) -> None:
    status, body, answered = call_webhook(main, pieces=[b"x" * ONE_MIB, b"x", b"never read"])
    assert (status, body["error"]) == (413, "body_too_large")
    assert answered.headers["connection"] == "close"  # the rest drained, then closed


def test_a_413_on_the_body_s_last_piece_does_not_wait_for_more(
    main: ModuleType, webhook: WebhookService
) -> None:
    """The client sent the end: nothing is left to drain, so the answer ends at once rather
    than waiting out the drain's time bound for a body that will not come."""
    status, body, answered = call_webhook(main, pieces=[b"x" * ONE_MIB, b"x"])
    assert (status, body["error"]) == (413, "body_too_large")
    assert "connection" not in answered.headers


def test_webhook_body_of_exactly_one_mib_is_read(main: ModuleType, webhook: WebhookService) -> None:
    raw = b" " * ONE_MIB
    status, body, _ = call_webhook(main, *payloads.signed(raw, SECRET, int(NOW * 1000)))
    assert (status, body["error"]) == (400, "invalid_payload")


def test_webhook_transient_is_503(
    main: ModuleType, webhook: WebhookService, mocker: MockerFixture
) -> None:
    mocker.patch.object(webhook, "accept", side_effect=DependencyUnavailable("Firestore down"))
    status, body, _ = call_webhook(main, *signed_order())
    assert (status, body["error"]) == (503, "unavailable")


def test_webhook_bug_is_500_without_details(
    main: ModuleType, webhook: WebhookService, mocker: MockerFixture
) -> None:
    mocker.patch.object(webhook, "accept", side_effect=KeyError("secret detail"))
    status, body, _ = call_webhook(main, *signed_order())
    assert status == 500
    assert body["error"] == "internal"
    assert "secret detail" not in json.dumps(body)


def _queue_mode(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeStore, FakePublisher]:
    store = FakeStore(CATALOG)
    publisher = FakePublisher(store.journal)
    service = WebhookService(
        settings(WEBHOOK_MODE="queue"), store, publisher, StaticSecrets(SECRET), clock=lambda: NOW
    )
    queue = AsyncQueue(FakeAsyncRecords(store), FakeAsyncPublisher(publisher))
    monkeypatch.setattr(runtime, "webhook", lambda: service)
    monkeypatch.setattr(runtime, "async_queue", lambda: queue)
    return store, publisher


def test_a_queued_webhook_is_recorded_and_published_on_the_loop_with_no_thread(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture
) -> None:
    store, _ = _queue_mode(monkeypatch)
    threads = mocker.patch.object(runtime, "webhook_threads")
    status, body, _ = call_webhook(main, *signed_order())
    assert (status, body) == (200, {"status": "accepted", "eventId": "e1"})
    assert store.journal == ["publisher.publish:e1", "store.record_received:e1"]
    threads.assert_not_called()


def test_a_queued_webhook_s_publish_failure_is_503(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, publisher = _queue_mode(monkeypatch)
    publisher.publish_error = DependencyUnavailable("Pub/Sub down")
    status, body, _ = call_webhook(main, *signed_order())
    assert (status, body["error"]) == (503, "unavailable")


def test_a_queued_webhook_with_a_bad_signature_is_refused_by_accept_on_a_thread(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _queue_mode(monkeypatch)
    raw, headers = signed_order()
    headers["PayNow-Signature"] = "AAAA"
    status, body, _ = call_webhook(main, raw, headers)
    assert (status, body["error"]) == (401, "invalid_signature")
    assert store.journal == []


# --- the drain after an answer ------------------------------------------------------------


def _unread_after_answer(main: ModuleType, body: bytes, method: str = "POST") -> int:
    """Bytes of ``body`` still unread once the worker's answer has been sent whole (the
    WSGI functions drain; the webhook's server, uvicorn, discards the rest itself)."""
    app = flask.Flask("unit")
    with app.test_request_context("/", method=method, data=body):
        response = main.paynow_worker(flask.request)
        response.get_data()  # the server sends the answer: the drain runs after it
        return len(flask.request.stream.read())


def test_an_early_answer_reads_the_rest_of_the_body(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "push_verifier", lambda: None)
    assert _unread_after_answer(main, b"x" * (2 * ONE_MIB)) == 0  # 413 by Content-Length
    assert _unread_after_answer(main, b"x" * ONE_MIB, method="PUT") == 0  # 405


def test_the_drain_stops_at_its_byte_bound(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "push_verifier", lambda: None)
    left = _unread_after_answer(main, b"x" * (main.DRAIN_MAX_BYTES + ONE_MIB + 7))
    assert left == ONE_MIB + 7


class _Trickle(io.RawIOBase):
    """A body that never ends, one byte every 10 ms."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        time.sleep(0.01)
        buffer[0:1] = b"x"
        return 1


class _Socket:
    """What the drain asks of gunicorn's socket: its read timeout, set and given back."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def gettimeout(self) -> float | None:
        return None

    def settimeout(self, value: float | None) -> None:
        self.timeouts.append(value)


def test_the_drain_stops_at_its_time_bound_and_gives_the_socket_back(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "DRAIN_MAX_SECONDS", 0.2)
    sock = _Socket()
    started = time.monotonic()
    main._drain(_Trickle(), sock)
    assert 0.2 <= time.monotonic() - started < 1.0
    *reads, restored = sock.timeouts
    seconds = [t for t in reads if t is not None]
    assert seconds == reads and all(0 < t <= 0.2 for t in seconds)
    assert seconds == sorted(seconds, reverse=True) and restored is None


def test_a_failing_read_ends_the_drain_quietly(main: ModuleType) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise TimeoutError("timed out")

    sock = _Socket()
    main._drain(Broken(), sock)
    assert sock.timeouts[-1] is None


def _endless(chunk: bytes, every: float = 0.0) -> tuple[Any, list[int]]:
    """An ASGI ``receive`` that never ends its body; the list counts the bytes it gave."""
    given = [0]

    async def receive() -> dict[str, Any]:
        if every:
            await asyncio.sleep(every)
        given[0] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    return receive, given


def test_the_webhook_s_drain_stops_at_its_byte_bound(main: ModuleType) -> None:
    receive, given = _endless(b"x" * 65536)
    asyncio.run(main._drain_async(receive))
    assert given[0] == main.DRAIN_MAX_BYTES


def test_the_webhook_s_drain_stops_at_its_time_bound(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "DRAIN_MAX_SECONDS", 0.2)
    receive, given = _endless(b"x", every=0.01)
    started = time.monotonic()
    asyncio.run(main._drain_async(receive))
    assert 0.2 <= time.monotonic() - started < 1.0
    assert 0 < given[0] < main.DRAIN_MAX_BYTES


def test_the_webhook_s_drain_ends_when_the_client_is_gone_or_the_body_ends(
    main: ModuleType,
) -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": False},
        {"type": "http.request", "body": b"never read", "more_body": True},
    ]
    gone: list[dict[str, Any]] = [
        {"type": "http.disconnect"},
        {"type": "http.request", "body": b"never read"},
    ]
    for queue in (messages, gone):
        left = list(queue)

        async def receive(left: list[dict[str, Any]] = left) -> dict[str, Any]:
            return left.pop(0)

        asyncio.run(main._drain_async(receive))
        assert len(left) == 1


def test_an_early_webhook_answer_is_whole_before_the_drain_and_closes(main: ModuleType) -> None:
    status, body, answered = call_webhook(main, b"x" * 100, method="PUT")
    assert (status, body["error"]) == (405, "method_not_allowed")
    assert answered.headers["connection"] == "close"
    assert answered.headers["content-length"] == str(len(answered.body))


# --- paynow_worker ---------------------------------------------------------------------


class Verifier:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.headers: list[str | None] = []

    def verify(self, authorization: str | None) -> dict[str, Any]:
        self.headers.append(authorization)
        if self.error is not None:
            raise self.error
        return {}


class Worker:
    def __init__(self, result: Handled | Exception) -> None:
        self.result = result
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []

    def handle(self, body: bytes, headers: Mapping[str, str] | None = None) -> Handled:
        self.bodies.append(body)
        self.headers.append(dict(headers or {}))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def wire(monkeypatch: pytest.MonkeyPatch, verifier: Verifier | None, worker: Worker) -> None:
    monkeypatch.setattr(runtime, "push_verifier", lambda: verifier)
    monkeypatch.setattr(runtime, "worker", lambda: worker)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [(Unauthenticated("no token"), 401, "unauthenticated"), (Forbidden("who"), 403, "forbidden")],
)
def test_worker_refuses_bad_tokens_before_reading(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int, code: str
) -> None:
    verifier, worker = Verifier(error), Worker(Handled("processed", "e1"))
    wire(monkeypatch, verifier, worker)
    got, body, _ = call(main.paynow_worker, b"{}", {"Authorization": "Bearer t"})
    assert (got, body["error"]) == (status, code)
    assert verifier.headers == ["Bearer t"]
    assert worker.bodies == []


@pytest.mark.parametrize(
    "result",
    [
        Handled("processed", "e1"),
        Handled("duplicate", "e1"),
        Handled("ignored", "e1"),
        Handled("dead_lettered", None, "invalid_message"),
    ],
)
def test_worker_acknowledges_handled_deliveries(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch, result: Handled
) -> None:
    worker = Worker(result)
    wire(monkeypatch, Verifier(), worker)
    status, body, _ = call(main.paynow_worker, b'{"message": {}}')
    assert status == 200
    assert body["status"] == result.status
    assert body["eventId"] == result.event_id
    assert body.get("error") == result.error
    assert worker.bodies == [b'{"message": {}}']


def test_worker_passes_the_headers_of_an_unwrapped_push(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(Handled("processed", "e1"))
    wire(monkeypatch, Verifier(), worker)
    metadata = {"x-goog-pubsub-message-id": "42", "eventId": "e1"}
    status, _, _ = call(main.paynow_worker, b'{"v": 1}', metadata)
    assert status == 200
    [headers] = worker.headers
    lowered = {k.lower(): v for k, v in headers.items()}
    assert (lowered["x-goog-pubsub-message-id"], lowered["eventid"]) == ("42", "e1")


def test_worker_transient_is_503(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    wire(monkeypatch, Verifier(), Worker(AwaitingEarlierEvent("later")))
    status, body, _ = call(main.paynow_worker, b"{}")
    assert (status, body["error"]) == (503, "awaiting_earlier_event")


def test_worker_without_verifier_handles(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    wire(monkeypatch, None, Worker(Handled("processed", "e1")))
    status, _, _ = call(main.paynow_worker, b"{}")
    assert status == 200


def test_worker_refuses_other_methods(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = Worker(Handled("processed", "e1"))
    wire(monkeypatch, Verifier(), worker)
    status, _, _ = call(main.paynow_worker, method="GET")
    assert status == 405
    assert worker.bodies == []


def test_worker_bug_is_500(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    wire(monkeypatch, Verifier(), Worker(RuntimeError("boom")))
    status, body, _ = call(main.paynow_worker, b"{}")
    assert (status, body["error"]) == (500, "internal")


# --- paynow_reconcile ------------------------------------------------------------------


class Reconciler:
    def __init__(self, result: ReconcileReport | Exception) -> None:
        self.result = result
        self.runs = 0

    def run(self) -> ReconcileReport:
        self.runs += 1
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def wire_reconcile(
    monkeypatch: pytest.MonkeyPatch, verifier: Verifier | None, reconciler: Reconciler
) -> None:
    monkeypatch.setattr(runtime, "scheduler_verifier", lambda: verifier)
    monkeypatch.setattr(runtime, "reconciler", lambda: reconciler)


def test_reconcile_reports_its_run(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    reconciler = Reconciler(ReconcileReport(3, 2, 1, 300, ["a", "b"]))
    wire_reconcile(monkeypatch, Verifier(), reconciler)
    status, body, _ = call(main.paynow_reconcile, b"", {"Authorization": "Bearer t"})
    assert status == 200
    assert body == {
        "status": "reconciled",
        "found": 3,
        "republished": 2,
        "failed": 1,
        "olderThanSeconds": 300,
    }
    assert reconciler.runs == 1


@pytest.mark.parametrize(
    ("error", "status"), [(Unauthenticated("no token"), 401), (Forbidden("who"), 403)]
)
def test_reconcile_refuses_bad_tokens(
    main: ModuleType, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    reconciler = Reconciler(ReconcileReport(0, 0, 0, 300))
    wire_reconcile(monkeypatch, Verifier(error), reconciler)
    got, _, _ = call(main.paynow_reconcile)
    assert got == status
    assert reconciler.runs == 0


def test_reconcile_transient_is_503(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    wire_reconcile(monkeypatch, None, Reconciler(DependencyUnavailable("Firestore down")))
    status, body, _ = call(main.paynow_reconcile)
    assert (status, body["error"]) == (503, "unavailable")


def test_reconcile_refuses_other_methods(main: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    reconciler = Reconciler(ReconcileReport(0, 0, 0, 300))
    wire_reconcile(monkeypatch, Verifier(), reconciler)
    assert call(main.paynow_reconcile, method="GET")[0] == 405
    assert reconciler.runs == 0
