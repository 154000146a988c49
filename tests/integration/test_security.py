"""Security properties over real HTTP to the stack: logs, request body bounds, worker tokens.

This adds to, and does not repeat:
- test_modes_and_startup.py::test_logs_hold_no_secret_signature_email_name_or_ip (webhook logs);
- test_http_contract.py: 413 for an over-size body sent whole or chunked, the worker's token
  claims (audience, expiry, issuer, email, email_verified), another key, no token;
- tests/unit/test_signature.py (hmac.compare_digest for every secret, also after a match) and
  tests/unit/test_hostile_signature.py (any length, any text, no early exit);
- tests/unit/test_oidc.py (claims, key ids, a tampered payload, no token echoed back).

The body-bound tests use raw sockets, because an HTTP client sends the whole body before it
reads the answer, which hides whether the server read it (finding 1 of docs/security.md:
functions-framework reads the rest of every request after a non-streamed answer, so the
refusals the entry points answer before reading the body are streamed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import select
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from paynow.domain import payloads

from scripts.local import localstack
from tests.integration.conftest import (
    PUSH_SA,
    SECRET,
    Stack,
    push_envelope,
    send,
    status_of,
    wait_for,
)

MIB = 1024 * 1024
CHUNK = 64 * 1024


# --- logs ----------------------------------------------------------------------------------------


def _token(stack: Stack, key: Any = None, **claims: Any) -> str:
    base = {"aud": stack.worker_oidc, "email": PUSH_SA, "email_verified": True}
    base.update(claims)
    return str((key or stack.issuer).token(**base))


def _push(stack: Stack, authorization: str | None, message: dict[str, Any]) -> requests.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return requests.post(
        stack.worker_oidc, json=push_envelope(message), headers=headers, timeout=30
    )


def test_worker_logs_hold_no_token_email_or_personal_data(stack, db, ids):
    # Real events through the queue: the push worker handles payloads that carry PII.
    lines = [("gems-100", 1, 199)]
    docs = [
        payloads.order_completed(ids("evt"), ids("ord"), ids("cus"), ids("usr"), lines),
        payloads.order_completed(ids("nouser"), ids("ord2"), ids("cus"), None, lines),
    ]
    for doc in docs:
        assert send(stack.webhook_queue, doc).status_code == 200
    wait_for(lambda: status_of(db, ids("evt")) == "processed")
    wait_for(lambda: status_of(db, ids("nouser")) == "dead_lettered")
    # Tokens, good and bad, at the OIDC worker.
    message = {"v": 1, "eventId": ids("evt"), "eventType": "ON_ORDER_COMPLETED"}
    tokens = [
        _token(stack),
        _token(stack, aud="https://elsewhere.example/"),
        _token(stack, email="someone@demo-paynow.iam.gserviceaccount.com"),
        _token(stack, exp=int(time.time()) - 600, iat=int(time.time()) - 4000),
        _token(stack, key=stack.stranger),
        _forged(stack, {"alg": "none", "typ": "JWT", "kid": stack.issuer.kid}, b""),
    ]
    answers = [_push(stack, f"Bearer {t}", message).status_code for t in tokens]
    assert answers == [200, 401, 403, 401, 401, 401]
    _push(stack, "Bearer not.a.token", message)
    _push(stack, "Basic " + base64.b64encode(b"user:password").decode(), message)
    text = "".join(
        stack.processes[name].log.read_text(errors="replace")
        for name in ("worker", "worker_oidc", "webhook_queue")
    )
    assert ids("evt") in text  # the logs are there
    sample = payloads.event("ON_ORDER_COMPLETED")["body"]
    forbidden = {
        "signing secret": SECRET,
        "push service account": PUSH_SA,
        "billing email": sample["billing_email"],
        "billing name": sample["billing_name"],
        "customer ip": sample["customer_ip"],
        "basic credentials": base64.b64encode(b"user:password").decode(),
    }
    for i, token in enumerate(tokens):
        _, claims, signature = token.split(".")
        forbidden[f"token {i}"] = token
        forbidden[f"token {i} claims"] = claims
        if signature:
            forbidden[f"token {i} signature"] = signature
    leaks = [name for name, needle in forbidden.items() if needle in text]
    assert leaks == [], f"logs hold: {leaks}"


# --- body bounds, over raw sockets -----------------------------------------------------------------


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _head(url: str, headers: dict[str, str]) -> bytes:
    host = urlsplit(url).netloc
    lines = ["POST / HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, Any]] | None:
    """The status and JSON body of an HTTP/1.1 answer, or None if none arrives in time."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        fields = dict(
            line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line
        )
        fields = {k.lower(): v for k, v in fields.items()}
        length = int(fields.get("content-length", "-1"))
        while length >= 0 and len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        if fields.get("transfer-encoding", "").lower() == "chunked":
            while not body.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            body = _dechunk(body)
    except (TimeoutError, ConnectionError):
        return None
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def _signed_headers() -> dict[str, str]:
    _, headers = payloads.signed(b"{}", SECRET)
    return headers


TARGETS = {"webhook_sync": "webhook_sync", "worker": "worker"}


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_declared_10_mib_body_is_refused_before_it_is_sent(stack, target):
    url = getattr(stack, target)
    headers = {"Content-Type": "application/json", "Content-Length": str(10 * MIB)}
    if target == "webhook_sync":
        headers.update(_signed_headers())
    with _connect(url) as sock:
        sock.sendall(_head(url, headers))  # the headers only: not one byte of the body
        answer = _read_answer(sock, timeout=3)
    assert answer is not None, "no answer while the body was never sent: the server waits for it"
    assert answer == (413, {"error": "body_too_large", "message": answer[1]["message"]})


@pytest.mark.parametrize("target", list(TARGETS))
def test_an_endless_chunked_body_is_cut_after_one_mib(stack, target):
    url = getattr(stack, target)
    pid = localstack.gunicorn_worker_pid(stack.processes[target], timeout=0)
    before = localstack.rss_bytes(pid)
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    if target == "webhook_sync":
        headers.update(_signed_headers())
    frame = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n"
    sent = 0
    with _connect(url) as sock:
        sock.sendall(_head(url, headers))
        # Never the terminating chunk: a server that waits for the end never answers.
        while sent < 16 * MIB:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except OSError:  # the server closed after answering: what we want
                break
            sent += CHUNK
        answer = _read_answer(sock, timeout=3)
    grown = localstack.rss_bytes(pid) - before
    assert answer is not None, f"no answer after {sent // MIB} MiB: the server waits for the end"
    assert answer[0] == 413 and answer[1]["error"] == "body_too_large", answer
    assert grown < 4 * MIB, f"the server's memory grew {grown // MIB} MiB"


def test_one_mib_is_the_bound_for_a_signed_event(stack, db):
    event_id = f"evt-{uuid.uuid4().hex[:12]}"
    raw = payloads.encode(
        payloads.order_completed(event_id, "o-" + event_id, "c", "u", [("gems-100", 1, 1)])
    )
    exact = raw[:-1] + b" " * (MIB - len(raw)) + b"}"
    assert len(exact) == MIB
    answer = requests.post(
        stack.webhook_sync, data=exact, headers=payloads.signed(exact, SECRET)[1], timeout=30
    )
    assert answer.status_code == 200 and answer.json()["status"] == "processed", answer.text


# --- early answers reach a client that is still sending ---------------------------------------------
# A client on a real network sends its body at network pace and reads the answer only after.
# The server answers 413/401/405 before it has read the body; it must go on reading (bounded)
# or its close resets the connection and the client never sees the answer.

PACE_BYTES = 16 * 1024
PACE_SECONDS = 0.002


def _send_paced(sock: socket.socket, total: int, chunked: bool = False) -> int:
    """``total`` bytes, 16 KiB every 2 ms; how many went out before the server stopped reading."""
    piece = b" " * PACE_BYTES
    frame = b"%x\r\n" % PACE_BYTES + piece + b"\r\n" if chunked else piece
    sent = 0
    try:
        while sent < total:
            sock.sendall(frame)
            sent += PACE_BYTES
            time.sleep(PACE_SECONDS)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    return sent


EARLY_ANSWERS = {
    "413 by Content-Length": ("webhook_sync", "POST", False, True, 413, "body_too_large"),
    "413 by counting (chunked)": ("webhook_sync", "POST", True, True, 413, "body_too_large"),
    "401 before the body (worker token)": (
        "worker_oidc",
        "POST",
        False,
        False,
        401,
        "unauthenticated",
    ),
    "405 (PUT)": ("webhook_sync", "PUT", False, False, 405, "method_not_allowed"),
}


@pytest.mark.parametrize("case", list(EARLY_ANSWERS))
def test_an_early_answer_reaches_a_client_still_sending_at_network_pace(stack, case):
    target, method, chunked, signed, status, error = EARLY_ANSWERS[case]
    url, total = getattr(stack, target), 2 * MIB
    headers = {"Content-Type": "application/json"}
    headers.update({"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)})
    if signed:
        headers.update(_signed_headers())
    with _connect(url) as sock:
        sock.sendall(_head(url, headers).replace(b"POST ", method.encode() + b" ", 1))
        sent = _send_paced(sock, total, chunked)
        answer = _read_answer(sock, timeout=10)
    assert sent == total, f"the server stopped reading after {sent} of {total} bytes"
    assert answer is not None, "the connection was reset before the answer could be read"
    assert answer[0] == status and answer[1]["error"] == error, answer


@pytest.fixture(scope="module")
def one_thread_webhook(stack) -> Iterator[str]:
    """A webhook served by one gunicorn thread: a request held by a drain would block the next."""
    port = localstack.free_port()
    env = localstack.function_env(
        pubsub_host=stack.emulators.pubsub_host,
        firestore_host=stack.emulators.firestore_host,
        extra={"PAYNOW_WEBHOOK_SECRET": SECRET, "THREADS": "1"},
    )
    with localstack.LocalRun() as run:
        yield run.function("it-webhook-one-thread", "paynow_webhook", port, env).address


def _answers_at_once(url: str) -> float:
    """Seconds the server takes to answer a GET (405): it has a free thread if it is quick."""
    started = time.monotonic()
    assert requests.get(url, timeout=5).status_code == 405
    return time.monotonic() - started


def _send_until_cut(
    sock: socket.socket, piece: bytes, pause: float, limit: float
) -> tuple[int, float]:
    """Send ``piece`` every ``pause`` seconds until the server cuts the connection (or ``limit``
    seconds pass): the bytes it took and the seconds until the cut."""
    started, sent = time.monotonic(), 0
    try:
        while time.monotonic() - started < limit:
            sock.sendall(piece)
            sent += len(piece)
            time.sleep(pause)
    except OSError:  # reset: the server closed while this was still sending
        pass
    return sent, time.monotonic() - started


@pytest.mark.parametrize(
    ("piece", "pause", "bound"),
    [(b" " * CHUNK, 0.0, "bytes"), (b" " * 1024, 0.02, "seconds")],
    ids=["as fast as it can: the byte bound", "a trickle: the time bound"],
)
def test_a_sender_that_never_stops_is_cut_off_after_the_bound(
    one_thread_webhook, piece, pause, bound
):
    import main

    url = one_thread_webhook
    headers = {"Content-Type": "application/json", "Content-Length": str(1024 * MIB)}
    headers.update(_signed_headers())
    with _connect(url) as sock:
        sock.sendall(_head(url, headers))  # answered 413 at once: the drain starts there
        sent, seconds = _send_until_cut(sock, piece, pause, limit=60)
    # After the drain's own bound come gunicorn's (64 KiB or 5 s, then a lingering close of
    # 64 KiB or 2 s); the bytes include what the two kernels' socket buffers took.
    if bound == "bytes":
        assert main.DRAIN_MAX_BYTES <= sent < main.DRAIN_MAX_BYTES + 24 * MIB, sent
        assert seconds < main.DRAIN_MAX_SECONDS, f"cut after {seconds:.1f} s, not by bytes"
    else:
        assert main.DRAIN_MAX_SECONDS <= seconds < main.DRAIN_MAX_SECONDS + 7 + 5, seconds
        assert sent < main.DRAIN_MAX_BYTES, f"{sent} bytes taken: cut by bytes, not by time"
    assert _answers_at_once(url) < 2, "the one thread is still held"


# --- worker tokens -------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(stack: Stack, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": stack.worker_oidc,
        "email": PUSH_SA,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        "sub": "1234567890",
    }
    claims.update(overrides)
    return claims


def _forged(stack: Stack, header: dict[str, Any], signature: bytes, **claims: Any) -> str:
    payload = _b64(json.dumps(_claims(stack, **claims)).encode())
    return f"{_b64(json.dumps(header).encode())}.{payload}.{_b64(signature)}"


def _hs256_with_the_certificate(stack: Stack) -> str:
    """The classic key confusion: HMAC keyed with the issuer's public certificate."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": stack.issuer.kid}).encode())
    payload = _b64(json.dumps(_claims(stack)).encode())
    mac = hmac.new(stack.issuer.cert_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(mac.digest())}"


def _resigned(stack: Stack, header: dict[str, Any]) -> str:
    """A token the issuer really signed, with its header swapped for ``header``."""
    _, payload, signature = _token(stack).split(".")
    return f"{_b64(json.dumps(header).encode())}.{payload}.{signature}"


FORGERIES = {
    "aud-list-with-the-worker": lambda s: _token(s, aud=[s.worker_oidc]),
    "aud-list-with-another": lambda s: _token(s, aud=[s.worker_oidc, "https://elsewhere/"]),
    "aud-of-reconcile": lambda s: _token(s, aud=s.reconcile),
    "no-exp": lambda s: s.issuer.token(**{**_claims(s), "exp": None}),
    "no-iat": lambda s: s.issuer.token(**{**_claims(s), "iat": None}),
    "alg-none": lambda s: _forged(s, {"alg": "none", "typ": "JWT", "kid": s.issuer.kid}, b""),
    "alg-none-no-kid": lambda s: _forged(s, {"alg": "none", "typ": "JWT"}, b""),
    "hs256-keyed-with-the-certificate": _hs256_with_the_certificate,
    "es256-header-on-rs256": lambda s: _resigned(
        s, {"alg": "ES256", "typ": "JWT", "kid": s.issuer.kid}
    ),
    "empty-signature": lambda s: _token(s).rsplit(".", 1)[0] + ".",
    "two-segments": lambda s: _token(s).rsplit(".", 1)[0],
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_worker_refuses_a_forged_or_misaddressed_token(stack, db, forgery):
    token = FORGERIES[forgery](stack)
    event_id = f"evt-{uuid.uuid4().hex[:12]}"
    message = {"v": 1, "eventId": event_id, "eventType": "ON_ORDER_COMPLETED"}
    answer = _push(stack, f"Bearer {token}", message)
    # 401, not the 503 event_not_visible the message itself would get: refused before reading.
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "unauthenticated"
    for part in token.split("."):
        if len(part) > 8:
            assert part not in answer.text
    assert status_of(db, event_id) is None


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_worker_refuses_a_signed_token_with_a_text_time(stack, claim):
    """Finding 5 (fixed in 2b22915): google-auth raised TypeError on it and the worker 500."""
    claims = _claims(stack)
    claims[claim] = str(claims[claim])
    message = {"v": 1, "eventId": f"evt-{uuid.uuid4().hex[:12]}", "eventType": "X"}
    answer = _push(stack, f"Bearer {stack.issuer.token(**claims)}", message)
    assert (answer.status_code, answer.json()["error"]) == (401, "unauthenticated")
