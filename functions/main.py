"""Cloud Functions entry points (functions-framework targets).

Each one reads the request, calls one service, and maps the result to an
HTTP status and a JSON body from the contract. Configuration is validated
here, at import, so a bad value stops the instance before it serves.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import IO, Any

import flask
import functions_framework
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

MAX_BODY_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024
# After an answer, what is left of the request body is read and thrown away, up to this
# much or this long, so a client still sending at network pace gets to read the answer.
DRAIN_MAX_BYTES = 4 * MAX_BODY_BYTES
DRAIN_MAX_SECONDS = 3.0

SETTINGS = runtime.settings()


@functions_framework.http
def paynow_webhook(request: flask.Request) -> flask.Response:
    """PayNow's webhook: verify, record, then queue or process (``WEBHOOK_MODE``)."""
    started = time.perf_counter()
    if request.method != "POST":
        return _not_post()
    try:
        raw = _read_body(request)
        result = runtime.webhook().accept(
            raw, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        )
    except PipelineError as exc:
        status = _status_of(exc)
        log(
            "WARNING" if status < 500 else "ERROR",
            "webhook refused",
            metric=WEBHOOK_REJECTED,
            errorCode=exc.code,
            httpStatus=status,
            mode=SETTINGS.webhook_mode,
            latencyMs=elapsed_ms(started),
        )
        return _answer(status, {"error": exc.code, "message": exc.message})
    except Exception as exc:  # a bug: answer 500 so PayNow retries, never lose the event
        return _internal_error(exc, "paynow_webhook")
    body: dict[str, Any] = {"status": result.status, "eventId": result.event_id}
    if result.error:
        body["error"] = result.error
    log(
        "INFO",
        "webhook answered",
        metric=WEBHOOK_HANDLED,
        eventId=result.event_id,
        outcome=result.status,
        mode=SETTINGS.webhook_mode,
        latencyMs=elapsed_ms(started),
    )
    return _answer(200, body)


@functions_framework.http
def paynow_worker(request: flask.Request) -> flask.Response:
    """The push subscription's endpoint: 2xx acknowledges, 5xx has Pub/Sub redeliver."""
    if request.method != "POST":
        return _not_post()
    try:
        verifier = runtime.push_verifier()
        if verifier is not None:
            verifier.verify(request.headers.get("Authorization"))
        raw = _read_body(request)
        # An unwrapped push (--push-no-wrapper) carries its metadata in the headers.
        result = runtime.worker().handle(raw, dict(request.headers.items()))
    except PipelineError as exc:
        return _refusal(exc, "paynow_worker")
    except Exception as exc:  # a bug: answer 500 so Pub/Sub redelivers
        return _internal_error(exc, "paynow_worker")
    body: dict[str, Any] = {"status": result.status, "eventId": result.event_id}
    if result.error:
        body["error"] = result.error
    return _answer(200, body)


@functions_framework.http
def paynow_reconcile(request: flask.Request) -> flask.Response:
    """Cloud Scheduler's target: publish again the events stuck in ``received``."""
    if request.method != "POST":
        return _not_post()
    try:
        verifier = runtime.scheduler_verifier()
        if verifier is not None:
            verifier.verify(request.headers.get("Authorization"))
        report = runtime.reconciler().run()
    except PipelineError as exc:
        return _refusal(exc, "paynow_reconcile")
    except Exception as exc:  # a bug: 500, the scheduler runs again later
        return _internal_error(exc, "paynow_reconcile")
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


def _read_body(request: flask.Request) -> bytes:
    """Read at most ``MAX_BODY_BYTES``: a larger body is refused before it is held whole."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise BodyTooLarge(f"body is over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.stream.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)


def _status_of(exc: PipelineError) -> int:
    if isinstance(exc, Rejection):
        return exc.status
    if isinstance(exc, InvalidPayload):
        return 400
    if isinstance(exc, TransientError):
        return 503
    return 500


def _refusal(exc: PipelineError, target: str) -> flask.Response:
    """The answer of a worker or reconcile failure; a refused caller token is logged."""
    status = _status_of(exc)
    if status in (401, 403):
        log(
            "WARNING",
            "caller refused",
            metric=CALLER_REFUSED,
            errorCode=exc.code,
            httpStatus=status,
            target=target,
        )
    return _answer(status, {"error": exc.code, "message": exc.message})


def _not_post() -> flask.Response:
    return _answer(405, {"error": "method_not_allowed", "message": "use POST"})


def _internal_error(exc: Exception, target: str) -> flask.Response:
    # The exception's text may quote input; log its type only.
    log("ERROR", "unexpected error", target=target, errorType=type(exc).__name__)
    return _answer(500, {"error": "internal", "message": "unexpected error; retry later"})


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
