"""Cloud Functions entry points (functions-framework targets).

Each one reads the request, calls one service, and maps the result to an
HTTP status and a JSON body from the contract. Configuration is validated
here, at import, so a bad value stops the instance before it serves.

The webhook is an ASGI function (``functions_framework.aio``: functions-framework serves
it with uvicorn on an event loop, no flag needed): queue mode's fast path awaits the
record's create and the publish on that loop, and everything else (sync mode, errors,
dead letters) runs the same service on the webhook's threads. The worker and reconcile
are WSGI functions (Flask, gunicorn threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import IO, Any

import flask
import functions_framework
import functions_framework.aio
from paynow import runtime
from paynow.domain.errors import (
    BodyTooLarge,
    InvalidPayload,
    PipelineError,
    Rejection,
    TransientError,
)
from paynow.domain.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from paynow.observability import (
    CALLER_REFUSED,
    WEBHOOK_HANDLED,
    WEBHOOK_REJECTED,
    elapsed_ms,
    log,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

MAX_BODY_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024
# After an answer, what is left of the request body is read and thrown away, up to this
# much or this long, so a client still sending at network pace gets to read the answer.
DRAIN_MAX_BYTES = 4 * MAX_BODY_BYTES
DRAIN_MAX_SECONDS = 3.0

SETTINGS = runtime.settings()


@functions_framework.aio.http
async def paynow_webhook(request: Request) -> Response:
    """PayNow's webhook: verify, record, then queue or process (``WEBHOOK_MODE``)."""
    started = time.perf_counter()
    if request.method != "POST":
        return _answer_async(*NOT_POST, early=True)
    try:
        raw = await _read_body_async(request)
        sig, stamp = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        service = runtime.webhook()
        event = service.queueable(raw, sig, stamp)
        if event is not None:
            result = await runtime.async_queue().run(service.enqueue_steps(event))
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                runtime.webhook_threads(), service.accept, raw, sig, stamp
            )
    except PipelineError as exc:
        status, body = _error(exc)
        log(
            "WARNING" if status < 500 else "ERROR",
            "webhook refused",
            metric=WEBHOOK_REJECTED,
            errorCode=exc.code,
            httpStatus=status,
            mode=SETTINGS.webhook_mode,
            latencyMs=elapsed_ms(started),
        )
        unread = isinstance(exc, BodyTooLarge) and not request.state.ended
        return _answer_async(status, body, early=unread)
    except Exception as exc:  # a bug: answer 500 so PayNow retries, never lose the event
        return _answer_async(*_internal_error(exc, "paynow_webhook"))
    log(
        "INFO",
        "webhook answered",
        metric=WEBHOOK_HANDLED,
        eventId=result.event_id,
        outcome=result.status,
        mode=SETTINGS.webhook_mode,
        latencyMs=elapsed_ms(started),
    )
    return _answer_async(200, _result_body(result.status, result.event_id, result.error))


@functions_framework.http
def paynow_worker(request: flask.Request) -> flask.Response:
    """The push subscription's endpoint: 2xx acknowledges, 5xx has Pub/Sub redeliver."""
    if request.method != "POST":
        return _answer(*NOT_POST)
    try:
        verifier = runtime.push_verifier()
        if verifier is not None:
            verifier.verify(request.headers.get("Authorization"))
        raw = _read_body(request)
        # An unwrapped push (--push-no-wrapper) carries its metadata in the headers.
        result = runtime.worker().handle(raw, dict(request.headers.items()))
    except PipelineError as exc:
        return _answer(*_refusal(exc, "paynow_worker"))
    except Exception as exc:  # a bug: answer 500 so Pub/Sub redelivers
        return _answer(*_internal_error(exc, "paynow_worker"))
    return _answer(200, _result_body(result.status, result.event_id, result.error))


@functions_framework.http
def paynow_reconcile(request: flask.Request) -> flask.Response:
    """Cloud Scheduler's target: publish again the events stuck in ``received``."""
    if request.method != "POST":
        return _answer(*NOT_POST)
    try:
        verifier = runtime.scheduler_verifier()
        if verifier is not None:
            verifier.verify(request.headers.get("Authorization"))
        report = runtime.reconciler().run()
    except PipelineError as exc:
        return _answer(*_refusal(exc, "paynow_reconcile"))
    except Exception as exc:  # a bug: 500, the scheduler runs again later
        return _answer(*_internal_error(exc, "paynow_reconcile"))
    return _answer(
        200,
        {
            "status": "reconciled",
            "found": report.found,
            "republished": report.republished,
            "failed": report.failed,
            "olderThanSeconds": report.older_than_seconds,
        },
    )


Answer = tuple[int, dict[str, Any]]
NOT_POST: Answer = (405, {"error": "method_not_allowed", "message": "use POST"})


class _Body:
    """A request body taken in chunks, refused once it passes ``MAX_BODY_BYTES`` (or says
    it will), before it is held whole."""

    def __init__(self, declared: int | None) -> None:
        if declared is not None and declared > MAX_BODY_BYTES:
            raise BodyTooLarge(f"body is over {MAX_BODY_BYTES} bytes")
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"body is over {MAX_BODY_BYTES} bytes")
        self._chunks.append(chunk)

    def whole(self) -> bytes:
        return b"".join(self._chunks)


def _read_body(request: flask.Request) -> bytes:
    body = _Body(request.content_length)
    while chunk := request.stream.read(_READ_CHUNK):
        body.add(chunk)
    return body.whole()


async def _read_body_async(request: Request) -> bytes:
    """As ``_read_body``, from the event loop, message by message: ``request.state.ended``
    says whether the client sent the body's end, so a 413 drains only what is still coming."""
    request.state.ended = False
    declared = request.headers.get("content-length")
    body = _Body(int(declared) if declared and declared.isdigit() else None)
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        request.state.ended = not message.get("more_body", False)
        body.add(message.get("body", b""))
        if request.state.ended:
            return body.whole()


def _result_body(status: str, event_id: str | None, error: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "eventId": event_id}
    if error:
        body["error"] = error
    return body


def _status_of(exc: PipelineError) -> int:
    if isinstance(exc, Rejection):
        return exc.status
    if isinstance(exc, InvalidPayload):
        return 400
    if isinstance(exc, TransientError):
        return 503
    return 500


def _error(exc: PipelineError) -> Answer:
    return _status_of(exc), {"error": exc.code, "message": exc.message}


def _refusal(exc: PipelineError, target: str) -> Answer:
    """The answer of a worker or reconcile failure; a refused caller token is logged."""
    status, body = _error(exc)
    if status in (401, 403):
        log(
            "WARNING",
            "caller refused",
            metric=CALLER_REFUSED,
            errorCode=exc.code,
            httpStatus=status,
            target=target,
        )
    return status, body


def _internal_error(exc: Exception, target: str) -> Answer:
    # The exception's text may quote input; log its type only.
    log("ERROR", "unexpected error", target=target, errorType=type(exc).__name__)
    return 500, {"error": "internal", "message": "unexpected error; retry later"}


def _answer_async(status: int, body: dict[str, Any], *, early: bool = False) -> Response:
    """The webhook's JSON answer; ``early``: given before the request body was read to its
    end (405, 413), so it drains the rest, bounded, as ``_answer`` does."""
    headers = {"Cache-Control": "no-store"}
    if early:
        return _DrainingJSON(body, status_code=status, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


class _DrainingJSON(JSONResponse):
    """JSON sent whole, then the request's unread rest drained (``_drain_async``) before the
    response ends and the connection closes (``Connection: close``).

    uvicorn reads and discards what a finished response left unread, without a bound, so
    an endless sender would be fed for as long as it sends. Holding the end of the response
    until the drain is over keeps the bounds in our hands: the client has its answer (the
    length is sent) while the drain reads, and the close after it cuts an endless sender off.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [*self.raw_headers, (b"connection", b"close")]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        await _drain_async(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _drain_async(receive: Any) -> None:
    """Read and discard the request body's unread rest, as ``_drain``: ``DRAIN_MAX_BYTES``
    or ``DRAIN_MAX_SECONDS``, whichever comes first, or until the client is gone."""
    left = DRAIN_MAX_BYTES
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_MAX_SECONDS):
            while left > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return
                left -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _answer(status: int, body: dict[str, Any]) -> flask.Response:
    """The JSON answer, always as a streamed response that drains the request after it.

    functions-framework reads whatever is left of a request after a non-streamed
    answer, whole and unbounded, before it sends the answer. A streamed one skips
    that, so an answer given before the body was read (405, 413, a refused token, an
    unexpected error) goes out at once; ``_drain`` then reads the rest, bounded, before
    the connection is reused or closed. The length is still sent.
    """
    response = flask.jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    request = flask.request
    response.response = _then_drain(
        response.get_data(), request.stream, request.environ.get("gunicorn.socket")
    )
    return response


def _then_drain(answer: bytes, stream: IO[bytes], sock: Any) -> Iterator[bytes]:
    yield answer
    _drain(stream, sock)


def _drain(stream: IO[bytes], sock: Any) -> None:
    """Read and discard the unread rest of the request body: ``DRAIN_MAX_BYTES`` or
    ``DRAIN_MAX_SECONDS``, whichever comes first.

    Closing a connection with request bytes still arriving makes the kernel reset it,
    and a reset discards the answer before the client (which reads only once it has
    sent everything) sees it; gunicorn's own drain stops after 64 KiB. Reading on lets a
    client still sending a body of a few MiB at network pace get its 413, and the bound
    keeps an endless or trickling sender from holding a worker thread. A body already
    read to its end costs one empty read. The time bound needs the socket (gunicorn's
    ``gunicorn.socket``); without it only the byte bound applies.
    """
    deadline = time.monotonic() + DRAIN_MAX_SECONDS
    left = DRAIN_MAX_BYTES
    prior = sock.gettimeout() if sock is not None else None
    try:
        while left > 0 and (remaining := deadline - time.monotonic()) > 0:
            if sock is not None:
                sock.settimeout(remaining)
            chunk = stream.read(min(_READ_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
    except Exception:  # noqa: S110 - a timeout, a reset, a malformed chunk: the answer is out
        pass  # and gunicorn closes a connection whose body could not be read
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(prior)
