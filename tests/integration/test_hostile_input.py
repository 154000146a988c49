"""Hostile input, property-based: the webhook and the worker never answer outside the contract.

For every generated request: never a 5xx (the one contract-correct exception is the worker's
503 ``event_not_visible`` for a readable message whose event has no record, asserted as such),
never a crash, a JSON body with ``status`` or ``error`` + ``message`` and the contract's codes,
and nothing stored or published for a request that is not correctly signed.

Inputs are the real PayNow samples mutated field by field (None, numbers, bools, lists, dicts,
long strings, unicode with lone surrogates, deep JSON, negative and huge ints, deleted and extra
keys), re-encoded (UTF-16, BOM, truncated, trailing bytes), signed right or wrong, sent with a
length or chunked. Most cases go through the real WSGI app in this process
(``functions_framework.create_app`` on ``functions/main.py``, the real adapters, the session's
emulators), each test in a Firestore/Pub/Sub project of its own so that what it stores, or must
not store, is its alone; a smaller run goes over real HTTP to the ``stack`` processes.

Counts follow the Hypothesis profile of tests/conftest.py: a few hundred cases in CI, over
10,000 with ``HYPOTHESIS_PROFILE=full``. The tests at the end pin the findings of
docs/security.md that these properties found, each at its minimal input.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import functions_framework
import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import firestore, pubsub_v1
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from paynow import runtime
from paynow.domain import payloads
from paynow.domain.events import EventType

from scripts.local import localstack
from tests.integration.conftest import (
    PREVIOUS_SECRET,
    SECRET,
    WORKER_MAX_ATTEMPTS,
    Stack,
    balance,
    find_event,
    ledger,
    pull_acked,
)
from tests.support import hostile
from tests.support.asgi import AsgiClient

MAX_BODY = 1024 * 1024
SOURCE = str(localstack.FUNCTIONS / "main.py")
MAX_ATTEMPTS = WORKER_MAX_ATTEMPTS  # the in-process worker is configured like the stack's
GRACE_SECONDS = 600  # the worker's event-visibility grace (service/worker.py)
TAG = "@TAG@"  # replaced by a fresh id per example, so examples never share events
DEEP = "@@deep-json@@"  # replaced by deeply nested JSON once serialized
DATA = "@@push-data@@"  # replaced by the encoded queue message in a push envelope
UNKNOWN_TYPE = "ON_HOSTILE_PROBE"
HANDLED_TYPES = frozenset(EventType)
# a refund that is not completed, a close the store did not win: handled, and ignored
MAY_BE_IGNORED = frozenset({EventType.REFUND, EventType.CHARGEBACK_CLOSED})
PII = payloads.PII
WEBHOOK_STATUSES = {
    "sync": {"processed", "duplicate", "ignored", "dead_lettered"},
    "queue": {"accepted", "duplicate", "ignored", "dead_lettered"},
}
WEBHOOK_TERMINAL = {
    "no_user_id",
    "unknown_product",
    "order_not_found",
    "chargeback_not_found",
    "event_mismatch",
}
WORKER_STATUSES = {"processed", "ignored", "duplicate", "dead_lettered"}
WORKER_TERMINAL = WEBHOOK_TERMINAL | {"invalid_message", "event_not_found", "attempts_exhausted"}
REFUSALS = {
    400: {"invalid_payload"},
    401: {"invalid_signature", "stale_timestamp"},
    405: {"method_not_allowed"},
    413: {"body_too_large"},
}
RECORD_STATUS = {
    "processed": "processed",
    "ignored": "ignored",
    "dead_lettered": "dead_lettered",
    "accepted": "received",
}
LINES = [("gems-100", 2, 398), ("gems-550", 1, 999)]
PROJECTS = {
    "sync": "demo-hostile-sync",
    "queue": "demo-hostile-queue",
    "unsigned": "demo-hostile-unsigned",
    "worker": "demo-hostile-worker",
}


def budget(share: float) -> int:
    """A test's example count: ``share`` of the active profile's (100 in CI, 3,000 in full)."""
    return max(10, round(settings().max_examples * share))


# --- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    content_type: str

    @classmethod
    def parse(cls, status: int, content_type: str, data: bytes, method: str = "POST") -> Answer:
        if method == "HEAD":
            return cls(status, {}, content_type)
        assert content_type.startswith("application/json"), (status, content_type, data[:200])
        body = json.loads(data)
        assert isinstance(body, dict), body
        return cls(status, body, content_type)

    def outcome(self) -> str:
        """A short label for Hypothesis' statistics (``--hypothesis-show-statistics``)."""
        label = self.body.get("status") or self.body.get("error") or ""
        error = self.body.get("error") if "status" in self.body else None
        return f"{self.status} {label}" + (f" {error}" if error else "")

    def refusal(self) -> str:
        """The error code of a 4xx, checked against the contract's table."""
        assert self.status in REFUSALS, self
        assert set(self.body) == {"error", "message"}, self
        assert isinstance(self.body["message"], str) and self.body["message"], self
        assert self.body["error"] in REFUSALS[self.status], self
        return str(self.body["error"])


def read_json(raw: bytes) -> tuple[Any, bool]:
    """The document a body holds, read the plain way; ``ok`` is False when it is not JSON."""
    try:
        return json.loads(raw.decode("utf-8")), True
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, False


# --- strategies --------------------------------------------------------------------------------

SPECIAL_STRINGS = [*hostile.SPECIAL_STRINGS, DEEP]
SCALARS = hostile.scalars(max_text=40, strings=SPECIAL_STRINGS, long_text=True)
HOSTILE = hostile.nested(SCALARS, max_size=4, max_key=8, max_leaves=8)
# Strings an id check must sort out: the id alphabet at every length, and the specials above.
ID_TEXT = st.text("AZaz09_-:.@+=", min_size=1, max_size=130)
FOCUSED = st.one_of(st.sampled_from(SPECIAL_STRINGS), ID_TEXT, SCALARS, HOSTILE)
DEPTHS = st.sampled_from([2, 50, 500, 990, 1_000, 5_000, 100_000])
# Header text: printable ASCII over HTTP (clients refuse the rest), latin-1 in process too.
ASCII_HEADER = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
LATIN1_HEADER = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


def mutated(doc: Any, max_ops: int = 3) -> st.SearchStrategy[Any]:
    """``doc`` with up to ``max_ops`` fields replaced by hostile values, deleted or added."""
    return hostile.mutated(doc, values=HOSTILE, focused_values=FOCUSED, max_ops=max_ops)


def retag(node: Any, tag: str) -> Any:
    """A copy of ``node`` with the placeholder ids made unique to one example."""
    if isinstance(node, str):
        return node.replace(TAG, tag)
    if isinstance(node, dict):
        return {retag(k, tag): retag(v, tag) for k, v in node.items()}
    if isinstance(node, list):
        return [retag(v, tag) for v in node]
    return node


def sample_doc(kind: str) -> dict[str, Any]:
    """A PayNow sample with placeholder ids: evt-, ord-, rev-, sub-, cus-, usr- + TAG."""
    i = {k: f"{k}-{TAG}" for k in ("evt", "ord", "rev", "sub", "cus", "usr")}
    if kind == EventType.ORDER_COMPLETED:
        return payloads.order_completed(i["evt"], i["ord"], i["cus"], i["usr"], LINES)
    if kind in (EventType.REFUND, EventType.CHARGEBACK):
        build = payloads.refund if kind == EventType.REFUND else payloads.chargeback
        return build(i["evt"], i["rev"], i["ord"], i["cus"], 398)
    if kind == EventType.CHARGEBACK_CLOSED:
        return payloads.chargeback_closed(i["evt"], i["rev"], i["ord"], i["cus"])
    if kind.startswith("ON_SUBSCRIPTION_"):
        sub_kind = kind.removeprefix("ON_SUBSCRIPTION_").lower()
        return payloads.subscription(sub_kind, i["evt"], i["sub"], i["cus"], i["usr"])
    if kind in payloads.EVENT_TYPES:  # one of PayNow's types the rules do not handle
        ids = {"order": i["ord"], "customer": i["cus"], "user": i["usr"]}
        return payloads.event(kind, i["evt"], ids=ids)
    doc = payloads.order_completed(i["evt"], i["ord"], i["cus"], i["usr"], LINES)
    doc["event_type"] = UNKNOWN_TYPE
    return doc


@dataclass(frozen=True)
class Encoding:
    """How a document becomes bytes: the plain way, or one of the ways a sender can get it wrong."""

    how: str = "compact"
    depth: int = 2
    extra: bytes = b""
    cut: float = 0.5

    def encode(self, doc: Any) -> bytes:
        if self.how == "utf8":
            text = json.dumps(doc, ensure_ascii=False)
        elif self.how == "pretty":
            text = json.dumps(doc, indent=2)
        else:
            text = json.dumps(doc, separators=(",", ":"))
        text = text.replace(json.dumps(DEEP), "[" * self.depth + "]" * self.depth)
        if self.how == "utf16":
            return text.encode("utf-16", "surrogatepass")
        raw = text.encode("utf-8", "surrogatepass")
        if self.how == "bom":
            return b"\xef\xbb\xbf" + raw
        if self.how == "trailing":
            return raw + self.extra
        if self.how == "truncated":
            return raw[: int(len(raw) * self.cut)]
        return raw


ENCODINGS = st.builds(
    Encoding,
    how=st.sampled_from(
        ["compact"] * 6 + ["pretty", "utf8", "bom", "utf16", "trailing", "truncated"]
    ),
    depth=DEPTHS,
    extra=st.sampled_from([b"\x00", b"\xff", b"}", b" trailing", b"\n\n", b"\xc3"]),
    cut=st.floats(0, 0.99),
)


@dataclass(frozen=True)
class WebhookCase:
    """One webhook request: a body (a mutated sample or raw bytes) and how it is signed and sent."""

    kind: str
    doc: Any
    encoding: Encoding
    raw: bytes | None  # raw bytes instead of a document
    signing: str
    offset_s: int
    garbage: tuple[str, str]
    pad: str
    method: str
    chunked: bool
    precreate: bool

    @property
    def signed(self) -> bool:
        return self.signing in ("current", "previous")

    def body(self, tag: str) -> bytes:
        return self.raw if self.raw is not None else self.encoding.encode(retag(self.doc, tag))

    def headers(self, body: bytes, now: float) -> dict[str, str]:
        stamp = int((now + self.offset_s) * 1000)
        secret = PREVIOUS_SECRET if self.signing == "previous" else SECRET
        _, good = payloads.signed(body, secret, stamp)
        sig, ts = good["PayNow-Signature"], good["PayNow-Timestamp"]
        digest = base64.b64decode(sig)
        s = self.signing
        if s == "wrong-secret":
            _, wrong = payloads.signed(body, SECRET + self.garbage[0] + "x", stamp)
            sig = wrong["PayNow-Signature"]
        elif s == "tampered":  # signed, then the body changes: see WebhookCase.sent_body
            pass
        elif s == "other-timestamp":
            ts = str(stamp + 1 + abs(self.offset_s))
        elif s == "hex":
            sig = digest.hex()
        elif s == "unpadded":
            sig = sig.rstrip("=")
        elif s == "garbage":
            sig, ts = self.garbage
        headers = {"Content-Type": "application/json"}
        if s != "missing-signature" and s != "missing-both":
            headers["PayNow-Signature"] = self.pad + sig + self.pad
        if s != "missing-timestamp" and s != "missing-both":
            headers["PayNow-Timestamp"] = ts
        return headers

    def sent_body(self, body: bytes) -> bytes:
        """The bytes on the wire: for ``tampered``, the signed body with one byte changed."""
        if self.signing != "tampered":
            return body
        if not body:
            return b" "
        i = len(body) // 2
        return body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]


RAW_BODIES = st.one_of(
    st.binary(max_size=512),
    st.sampled_from([0, 1, MAX_BODY - 1, MAX_BODY, MAX_BODY + 1, 10 * MAX_BODY]).map(
        lambda n: b"{" * n
    ),
    DEPTHS.map(lambda d: b"[" * d + b"]" * d),
    HOSTILE.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
)
UNSIGNED = [
    "missing-both",
    "missing-signature",
    "missing-timestamp",
    "wrong-secret",
    "tampered",
    "other-timestamp",
    "hex",
    "unpadded",
    "garbage",
    "stale",
]


@st.composite
def webhook_cases(
    draw: st.DrawFn, *, signed: bool, header_text: st.SearchStrategy[str], max_body: int
) -> WebhookCase:
    kind = draw(st.sampled_from([*payloads.EVENT_TYPES, "unknown", "raw"]), label="kind")
    raw = draw(RAW_BODIES.filter(lambda b: len(b) <= max_body)) if kind == "raw" else None
    doc = None if raw is not None else draw(mutated(sample_doc(kind)))
    if signed:
        signing = draw(st.sampled_from(["current", "current", "current", "previous"]))
        offset = draw(st.integers(-290, 290))
    else:
        signing = draw(st.sampled_from(UNSIGNED), label="signing")
        offset = (
            draw(st.integers(301, 10**9) | st.integers(-(10**9), -301))
            if signing == "stale"
            else draw(st.integers(-290, 290))
        )
    method = "POST" if signed else draw(st.sampled_from(["POST"] * 10 + ["GET", "PUT", "HEAD"]))
    return WebhookCase(
        kind=kind,
        doc=doc,
        encoding=draw(ENCODINGS)
        if draw(st.sampled_from([False, False, False, True]))
        else Encoding(),
        raw=raw,
        signing=signing,
        offset_s=offset,
        garbage=(draw(header_text), draw(header_text)),
        pad=draw(st.sampled_from(["", "", "", " "])) if header_text is LATIN1_HEADER else "",
        method=method,
        chunked=draw(st.booleans()),
        precreate=kind in ("refund", "chargeback") and draw(st.booleans()),
    )


# --- the in-process app ------------------------------------------------------------------------


class InProcess:
    """functions/main.py under ``functions_framework.create_app``, configured per project+mode.

    The runtime's per-process caches (settings, clients, services) are reset on each switch, as
    a fresh instance would start; the environment is restored when the module ends.
    """

    def __init__(self, emulators: localstack.Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
        self.emulators = emulators
        self.env = monkeypatch
        self.current: tuple[str, str] | None = None
        self.webhook: Any = None
        self.worker: Any = None
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.dbs: dict[str, firestore.Client] = {}
        self.provisioned: set[str] = set()

    def use(self, project: str, mode: str) -> InProcess:
        if self.current != (project, mode):
            self._provision(project)
            for name, value in {
                "GOOGLE_CLOUD_PROJECT": project,
                "WEBHOOK_MODE": mode,
                "PAYNOW_WEBHOOK_SECRET": SECRET,
                "PAYNOW_WEBHOOK_SECRET_PREVIOUS": PREVIOUS_SECRET,
                "PUSH_AUTH": "none",
                "MAX_DELIVERY_ATTEMPTS": str(MAX_ATTEMPTS),
                "PUBSUB_EMULATOR_HOST": self.emulators.pubsub_host,
                "FIRESTORE_EMULATOR_HOST": self.emulators.firestore_host,
            }.items():
                self.env.setenv(name, value)
            for name in ("FUNCTION_TARGET", "PAYNOW_WEBHOOK_SECRET_ID", "PUSH_AUDIENCE"):
                self.env.delenv(name, raising=False)
            reset_runtime()
            if self.webhook is not None:
                self.webhook.close()
            self.webhook = AsgiClient(functions_framework.create_app("paynow_webhook", SOURCE))
            self.worker = functions_framework.create_app("paynow_worker", SOURCE).test_client()
            self.current = (project, mode)
        return self

    def db(self, project: str) -> firestore.Client:
        if project not in self.dbs:
            self.dbs[project] = firestore.Client(project=project)
        return self.dbs[project]

    def _provision(self, project: str) -> None:
        if project in self.provisioned:
            return
        for topic in (localstack.TOPIC, localstack.DLQ_TOPIC):
            with contextlib.suppress(gexc.AlreadyExists):
                self.publisher.create_topic(name=self.publisher.topic_path(project, topic))
        # Pull subscriptions only where a test reads them: the queue test delivers what the
        # webhook published; the unsigned test proves nothing at all was published.
        subscriptions = {"queue": ["events"], "unsigned": ["events", "dlq"], "worker": []}
        role = next(k for k, v in PROJECTS.items() if v == project)
        for name in subscriptions.get(role, []):
            topic = localstack.TOPIC if name == "events" else localstack.DLQ_TOPIC
            with contextlib.suppress(gexc.AlreadyExists):
                self.subscriber.create_subscription(
                    request={
                        "name": self.subscription(project, name),
                        "topic": self.publisher.topic_path(project, topic),
                    }
                )
        if role != "unsigned":
            localstack.seed_catalog(project=project)
        self.provisioned.add(project)

    def subscription(self, project: str, name: str) -> str:
        return str(self.subscriber.subscription_path(project, f"hostile-{name}"))

    def pull(self, project: str, name: str) -> list[Any]:
        subscription = self.subscription(project, name)
        return pull_acked(
            self.subscriber, subscription, max_messages=50, timeout=10, return_immediately=True
        )

    def post(
        self, client: Any, body: bytes, headers: dict[str, str], method: str, chunked: bool
    ) -> Answer:
        if isinstance(client, AsgiClient):  # the webhook: uvicorn's way
            answered = client.request(method, body, headers, chunked=chunked)
            kind = answered.headers.get("content-type", "")
            return Answer.parse(answered.status, kind, answered.body, method)
        headers = dict(headers)
        environ: dict[str, Any] = {}
        if chunked:  # no length: the app reads the stream to its end, as behind gunicorn
            headers["Transfer-Encoding"] = "chunked"
            environ["wsgi.input_terminated"] = True
        response = client.open(
            "/",
            method=method,
            input_stream=io.BytesIO(body),
            headers=headers,
            environ_overrides=environ,
        )
        return Answer.parse(
            response.status_code, response.content_type or "", response.get_data(), method
        )


def reset_runtime() -> None:
    for value in vars(runtime).values():
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()


@pytest.fixture(scope="module")
def inprocess(emulators: localstack.Emulators) -> Iterator[InProcess]:
    import sys

    saved_main = sys.modules.get("main")
    with pytest.MonkeyPatch.context() as monkeypatch:
        stack = InProcess(emulators, monkeypatch)
        yield stack
    if stack.webhook is not None:
        stack.webhook.close()
    reset_runtime()
    if saved_main is None:
        sys.modules.pop("main", None)
    else:
        sys.modules["main"] = saved_main


# --- checks shared by the in-process and the HTTP runs -------------------------------------------


def check_balance(db: firestore.Client, user_id: object) -> None:
    """The contract's invariant: a user's points equal the sum of their ledger."""
    if not isinstance(user_id, str) or not user_id:
        return
    points = balance(db, user_id, missing=0)
    deltas = [entry["delta"] for entry in ledger(db, user_id).values()]
    assert points == sum(deltas), (user_id, points, deltas)


def check_signed_answer(
    mode: str, db: firestore.Client, body: bytes, answer: Answer, original_event_id: str
) -> None:
    """What a correctly signed request may be answered, and what it must leave stored."""
    event(f"signed {mode}: {answer.outcome()}")
    doc, is_json = read_json(body)
    if len(body) > MAX_BODY:
        assert answer.refusal() == "body_too_large"
        return
    event_id = doc.get("event_id") if isinstance(doc, dict) else None
    event_type = doc.get("event_type") if isinstance(doc, dict) else None
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        assert answer.refusal() == "invalid_payload"
        return
    if event_id == original_event_id and event_type in HANDLED_TYPES | {UNKNOWN_TYPE}:
        assert answer.status == 200, answer  # a PayNow event: never refused
    if answer.status != 200:
        assert answer.refusal() == "invalid_payload"
        return
    assert is_json
    assert set(answer.body) <= {"status", "eventId", "error"}, answer
    status = answer.body["status"]
    assert answer.body["eventId"] == event_id, answer
    assert status in WEBHOOK_STATUSES[mode], answer
    if event_type not in HANDLED_TYPES:
        assert status in ("ignored", "duplicate"), answer
    elif event_type not in MAY_BE_IGNORED:
        assert status != "ignored", answer
    if status == "dead_lettered":
        allowed = {"event_mismatch"} if mode == "queue" else WEBHOOK_TERMINAL
        assert answer.body.get("error") in allowed, answer
    else:
        assert "error" not in answer.body, answer
    record = find_event(db, event_id)
    assert record is not None, f"answered {status} but no record webhookEvents/{event_id}"
    if status == "duplicate":
        assert record["status"] in ("processed", "ignored", "dead_lettered", "received")
    else:
        assert record["status"] == RECORD_STATUS[status], (answer, record)
    stored = json.dumps(record, default=str)
    for needle in PII:
        assert needle not in stored, f"record of {event_id} holds personal data"
    if record["status"] == "processed":
        check_balance(db, record.get("userId"))


def check_refused_unsigned(case: WebhookCase, body: bytes, answer: Answer) -> None:
    event(f"unsigned ({case.signing}): {answer.outcome()}")
    if case.method != "POST":
        assert answer.status == 405, answer
        if case.method != "HEAD":
            assert answer.refusal() == "method_not_allowed"
        return
    if len(body) > MAX_BODY:
        assert answer.refusal() == "body_too_large"
        return
    code = answer.refusal()
    assert answer.status == 401, answer
    if case.signing == "stale":
        assert code == "stale_timestamp", answer
    elif case.signing != "garbage":
        assert code == "invalid_signature", answer


# --- webhook, in process -------------------------------------------------------------------------


def _drive_worker(app: InProcess, project: str, event_id: str) -> Answer:
    """Deliver the message the queue-mode webhook published for ``event_id``, as push would."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in app.pull(project, "events"):
            if message.attributes.get("eventId") != event_id:
                continue  # an extra copy from a duplicate delivery: harmless, dropped here
            envelope = {
                "message": {
                    "data": base64.b64encode(message.data).decode(),
                    "attributes": dict(message.attributes),
                    "messageId": message.message_id,
                    "publishTime": message.publish_time.isoformat(),
                    "orderingKey": message.ordering_key,
                },
                "subscription": app.subscription(project, "events"),
            }
            return app.post(
                app.worker, json.dumps(envelope).encode(), {}, method="POST", chunked=False
            )
        time.sleep(0.05)
    raise AssertionError(f"accepted {event_id} but published no message for it")


def _send_signed(app: InProcess, mode: str, project: str, case: WebhookCase, tag: str) -> None:
    db = app.db(project)
    if case.precreate:  # the order a refund or chargeback reverses, credited first
        order = retag(sample_doc(EventType.ORDER_COMPLETED), tag)
        order["event_id"] = f"evt-{tag}-order"
        raw, headers = payloads.signed(order, SECRET)
        first = app.post(app.webhook, raw, headers, "POST", chunked=False)
        assert first.status == 200, first
        if mode == "queue":
            credited = _drive_worker(app, project, f"evt-{tag}-order")
            assert credited.body["status"] == "processed", credited
    body = case.body(tag)
    headers = case.headers(body, time.time())
    answer = app.post(app.webhook, body, headers, "POST", case.chunked)
    note(f"answer: {answer.status} {answer.body}")
    assert answer.status < 500, answer
    check_signed_answer(mode, db, body, answer, f"evt-{tag}")
    if mode == "queue" and answer.status == 200 and answer.body["status"] == "accepted":
        event_id = answer.body["eventId"]
        delivered = _drive_worker(app, project, event_id)
        note(f"worker: {delivered.status} {delivered.body}")
        event(f"then the worker: {delivered.outcome()}")
        assert delivered.status == 200, delivered
        assert delivered.body["status"] in ("processed", "duplicate", "dead_lettered"), delivered
        if delivered.body["status"] == "dead_lettered":
            assert delivered.body["error"] in WEBHOOK_TERMINAL, delivered
        record = find_event(db, event_id)
        assert record is not None and record["status"] in ("processed", "dead_lettered")
        check_balance(db, record.get("userId"))


SIGNED_IN_PROCESS = webhook_cases(signed=True, header_text=LATIN1_HEADER, max_body=10 * MAX_BODY)
UNSIGNED_IN_PROCESS = webhook_cases(signed=False, header_text=LATIN1_HEADER, max_body=10 * MAX_BODY)


@settings(max_examples=budget(1.0))
@given(case=SIGNED_IN_PROCESS)
def test_signed_hostile_webhooks_sync(inprocess, case):
    project = PROJECTS["sync"]
    _send_signed(inprocess.use(project, "sync"), "sync", project, case, uuid.uuid4().hex[:12])


@settings(max_examples=budget(0.6))
@given(case=SIGNED_IN_PROCESS)
def test_signed_hostile_webhooks_queue_then_worker(inprocess, case):
    project = PROJECTS["queue"]
    _send_signed(inprocess.use(project, "queue"), "queue", project, case, uuid.uuid4().hex[:12])


@pytest.mark.parametrize("mode", ["sync", "queue"])
@settings(max_examples=budget(0.5))
@given(case=UNSIGNED_IN_PROCESS)
def test_unsigned_webhooks_store_and_publish_nothing(inprocess, mode, case):
    project = PROJECTS["unsigned"]
    app = inprocess.use(project, mode)
    body = case.body(uuid.uuid4().hex[:12])
    headers = case.headers(body, time.time())
    answer = app.post(app.webhook, case.sent_body(body), headers, case.method, case.chunked)
    note(f"answer: {answer.status} {answer.body}")
    check_refused_unsigned(case, case.sent_body(body), answer)
    # The project belongs to this test: any document or message at all is a leak.
    assert [c.id for c in app.db(project).collections()] == []
    assert app.pull(project, "events") == []
    assert app.pull(project, "dlq") == []


# --- worker, in process ------------------------------------------------------------------------


@dataclass(frozen=True)
class PushCase:
    """A push delivery: an envelope around a queue message, both possibly mutated."""

    target: str  # missing | received | final | garbage
    message: Any
    envelope: Any
    data_encoding: Encoding
    data_b64: str
    body_encoding: Encoding
    age_s: int | None
    attempt: int | None
    garbage: bytes
    clean: bool

    def body(self, tag: str) -> bytes:
        if self.target == "garbage":
            return self.garbage
        data = self.data_encoding.encode(retag(self.message, tag))
        encoded = {
            "std": base64.b64encode(data).decode(),
            "urlsafe": base64.urlsafe_b64encode(data).decode(),
            "unpadded": base64.b64encode(data).decode().rstrip("="),
            "spaced": " ".join(base64.b64encode(data).decode()),
        }[self.data_b64]
        envelope = retag(self.envelope, tag)
        text = self.body_encoding.encode(envelope)
        return text.replace(json.dumps(DATA).encode(), json.dumps(encoded).encode())


def _publish_time(age_s: int | None) -> str | None:
    if age_s is None:
        return None
    return (datetime.now(UTC) - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@st.composite
def push_cases(draw: st.DrawFn) -> PushCase:
    target = draw(st.sampled_from(["missing"] * 3 + ["received"] * 2 + ["final", "garbage"]))
    age = draw(st.sampled_from([None, 0, 30, GRACE_SECONDS + 1, 10**6, -60, -(10**6)]), label="age")
    attempt = draw(st.sampled_from([None, None, 1, MAX_ATTEMPTS - 1, MAX_ATTEMPTS, 10**6]))
    message = {
        "v": 1,
        "eventId": f"evt-{TAG}",
        "eventType": "ON_ORDER_COMPLETED",
        "customerId": f"cus-{TAG}",
        "userId": f"usr-{TAG}",
    }
    envelope: dict[str, Any] = {
        "message": {
            "data": DATA,
            "attributes": {"eventId": f"evt-{TAG}", "eventType": "ON_ORDER_COMPLETED"},
            "messageId": "1234567890",
            "orderingKey": f"cus-{TAG}",
        },
        "subscription": "projects/demo-hostile-worker/subscriptions/paynow-events-push",
    }
    if age is not None:
        envelope["message"]["publishTime"] = _publish_time(age)
    if attempt is not None:
        envelope["deliveryAttempt"] = attempt
    # Each layer is left intact or broken on its own, so a mutated message inside a readable
    # envelope reaches the processing code as often as a broken envelope is refused.
    broken = {
        layer: draw(st.sampled_from([False, False, False, True]), label=f"break {layer}")
        for layer in ("message", "envelope", "data encoding", "base64", "body encoding")
    }
    if broken["message"]:
        message = draw(mutated(message))
    if broken["envelope"]:
        envelope = draw(mutated(envelope))
    garbage = draw(RAW_BODIES.filter(lambda b: len(b) <= MAX_BODY)) if target == "garbage" else b""
    return PushCase(
        target=target,
        message=message,
        envelope=envelope,
        data_encoding=draw(ENCODINGS) if broken["data encoding"] else Encoding(),
        data_b64=draw(st.sampled_from(["urlsafe", "unpadded", "spaced"]))
        if broken["base64"]
        else "std",
        body_encoding=draw(ENCODINGS) if broken["body encoding"] else Encoding(),
        age_s=age,
        attempt=attempt,
        garbage=garbage,
        clean=not any(broken.values()),
    )


def named_event(body: bytes) -> str | None:
    """The event id a push body names, read the plain way."""
    try:
        envelope = json.loads(body)
        data = json.loads(base64.b64decode(envelope["message"]["data"], validate=True))
        event_id = data["eventId"]
        return event_id if isinstance(event_id, str) else None
    except (ValueError, KeyError, TypeError, RecursionError, binascii.Error):
        return None


def clean_expectation(case: PushCase) -> tuple[int, str, str | None]:
    """(status, outcome, error) for an unmutated delivery, from the contract and the worker's rules."""
    if case.target == "garbage":
        return 200, "dead_lettered", "invalid_message"
    if case.target == "received":
        return 200, "processed", None
    if case.target == "final":
        return 200, "duplicate", None
    if case.age_s is not None and case.age_s > GRACE_SECONDS:
        return 200, "dead_lettered", "event_not_found"
    if case.attempt is not None and case.attempt >= MAX_ATTEMPTS:
        return 200, "dead_lettered", "attempts_exhausted"
    return 503, "retry", "event_not_visible"


def check_worker_answer(
    db: firestore.Client, case: PushCase, body: bytes, answer: Answer, event_id: str
) -> None:
    event(f"push ({case.target}, {'clean' if case.clean else 'mutated'}): {answer.outcome()}")
    if len(body) > MAX_BODY:  # the same 1 MiB bound as the webhook's
        assert answer.refusal() == "body_too_large"
        return
    named = named_event(body)
    if case.clean:
        expected = clean_expectation(case)
        if expected[0] == 503:
            assert (answer.status, answer.body.get("error")) == (503, "event_not_visible"), answer
        else:
            got = (answer.status, answer.body.get("status"), answer.body.get("error"))
            assert got == expected, (answer, expected)
    if answer.status == 503:
        # Retry is right only for a readable message whose event has no record (yet).
        assert set(answer.body) == {"error", "message"}, answer
        assert answer.body["error"] == "event_not_visible", answer
        assert named is not None, f"503 for a message naming no event: {answer}"
        assert find_event(db, named) is None, f"503 although {named} has a record"
        return
    assert answer.status == 200, answer
    assert set(answer.body) <= {"status", "eventId", "error"}, answer
    assert answer.body["status"] in WORKER_STATUSES, answer
    if answer.body["status"] == "dead_lettered":
        assert answer.body.get("error") in WORKER_TERMINAL, answer
    record = find_event(db, event_id)
    if case.target in ("missing", "garbage"):
        assert record is None, f"the worker created a record for {event_id}: {record}"
    elif record is not None and record["status"] == "processed":
        check_balance(db, record.get("userId"))


def _create_event(app: InProcess, project: str, tag: str, final: bool) -> None:
    order = retag(sample_doc(EventType.ORDER_COMPLETED), tag)
    raw, headers = payloads.signed(order, SECRET)
    answer = app.post(app.webhook, raw, headers, "POST", chunked=False)
    assert (answer.status, answer.body.get("status")) == (200, "accepted"), answer
    if final:
        message = {"v": 1, "eventId": f"evt-{tag}", "eventType": "ON_ORDER_COMPLETED"}
        envelope = {"message": {"data": base64.b64encode(json.dumps(message).encode()).decode()}}
        done = app.post(app.worker, json.dumps(envelope).encode(), {}, "POST", chunked=False)
        assert done.body.get("status") == "processed", done


@settings(max_examples=budget(1.0))
@given(case=push_cases())
def test_hostile_push_deliveries(inprocess, case):
    project = PROJECTS["worker"]
    app = inprocess.use(project, "queue")
    db = app.db(project)
    tag = uuid.uuid4().hex[:12]
    if case.target in ("received", "final"):
        _create_event(app, project, tag, final=case.target == "final")
    body = case.body(tag)
    answer = app.post(app.worker, body, {}, "POST", chunked=False)
    note(f"answer: {answer.status} {answer.body}")
    check_worker_answer(db, case, body, answer, f"evt-{tag}")


# --- over real HTTP, against the stack ---------------------------------------------------------

# Bodies over 1 MiB are left to the in-process run and to test_security.py's raw sockets:
# a client that keeps sending after the server has answered 413 may see the connection reset.
HTTP_CASES = st.one_of(
    webhook_cases(signed=True, header_text=ASCII_HEADER, max_body=MAX_BODY),
    webhook_cases(signed=False, header_text=ASCII_HEADER, max_body=MAX_BODY),
)


def _http(method: str, url: str, body: bytes, headers: dict[str, str], chunked: bool) -> Answer:
    data: Any = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    response = requests.request(method, url, data=data, headers=headers, timeout=60)
    return Answer.parse(
        response.status_code,
        response.headers.get("Content-Type", ""),
        response.content,
        method,
    )


@settings(max_examples=budget(0.1))
@given(case=HTTP_CASES, target=st.sampled_from(["webhook_sync", "webhook_queue"]))
def test_hostile_webhooks_over_http(stack: Stack, db, case, target):
    mode = "sync" if target == "webhook_sync" else "queue"
    tag = uuid.uuid4().hex[:12]
    case = replace(case, precreate=False)
    body = case.body(tag)
    headers = case.headers(body, time.time())
    sent = case.sent_body(body)
    # The stack's project is shared with the other tests: compare before and after.
    rejection = db.collection("rejectedPayloads").document(hashlib.sha256(sent).hexdigest())
    kept_before = rejection.get().exists
    answer = _http(case.method, getattr(stack, target), sent, headers, case.chunked)
    note(f"answer: {answer.status} {answer.body}")
    if case.signed:
        assert answer.status < 500, answer
        check_signed_answer(mode, db, body, answer, f"evt-{tag}")
    else:
        check_refused_unsigned(case, sent, answer)
        assert find_event(db, f"evt-{tag}") is None
        assert rejection.get().exists == kept_before


@settings(max_examples=budget(0.1))
@given(case=push_cases().filter(lambda c: c.target != "received"))
def test_hostile_push_deliveries_over_http(stack: Stack, db, case):
    tag = uuid.uuid4().hex[:12]
    if case.target == "final":
        order = retag(sample_doc(EventType.ORDER_COMPLETED), tag)
        raw, headers = payloads.signed(order, SECRET)
        done = requests.post(stack.webhook_sync, data=raw, headers=headers, timeout=60)
        assert done.json()["status"] == "processed", done.text
    body = case.body(tag)
    answer = _http("POST", stack.worker, body, {"Content-Type": "application/json"}, False)
    note(f"answer: {answer.status} {answer.body}")
    check_worker_answer(db, case, body, answer, f"evt-{tag}")


# --- deterministic edges -----------------------------------------------------------------------


def test_a_signed_event_of_exactly_one_mib_is_processed(inprocess):
    project = PROJECTS["sync"]
    app = inprocess.use(project, "sync")
    tag = uuid.uuid4().hex[:12]
    raw = payloads.encode(retag(sample_doc(EventType.ORDER_COMPLETED), tag))
    body = raw[:-1] + b" " * (MAX_BODY - len(raw)) + b"}"
    assert len(body) == MAX_BODY
    _, headers = payloads.signed(body, SECRET)
    answer = app.post(app.webhook, body, headers, "POST", chunked=True)
    assert (answer.status, answer.body["status"]) == (200, "processed"), answer
    over = body[:-1] + b" }"
    _, headers = payloads.signed(over, SECRET)
    for chunked in (False, True):
        assert app.post(app.webhook, over, headers, "POST", chunked).refusal() == "body_too_large"


# --- the findings, each at its minimal input (docs/security.md, fixed in 2b22915) ------------


@pytest.mark.parametrize(
    ("field_name", "expected"),
    [
        ("event_id", (400, "invalid_payload")),
        ("order_id", (200, "event_mismatch")),
        ("product_id", (200, "event_mismatch")),
        ("user_id", (200, "no_user_id")),
    ],
)
def test_a_firestore_reserved_id_is_not_an_id(inprocess, field_name, expected):
    """Finding 2: ``__x__`` passed the id check and Firestore refused it: 503 on every retry."""
    project = PROJECTS["sync"]
    app = inprocess.use(project, "sync")
    tag = uuid.uuid4().hex[:12]
    ids = {
        "event_id": f"evt-{tag}",
        "order_id": f"ord-{tag}",
        "product_id": "gems-100",
        "user_id": f"usr-{tag}",
    }
    ids[field_name] = "__x__"
    doc = payloads.order_completed(
        ids["event_id"], ids["order_id"], f"cus-{tag}", ids["user_id"], [(ids["product_id"], 1, 1)]
    )
    raw, headers = payloads.signed(doc, SECRET)
    answer = app.post(app.webhook, raw, headers, "POST", chunked=False)
    assert (answer.status, answer.body.get("error")) == expected, answer


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("event_type", (400, "invalid_payload")),
        ("status", (200, "processed")),
        ("current_period_end", (200, "processed")),
    ],
)
def test_a_lone_surrogate_is_never_stored(inprocess, where, expected):
    """Finding 3: JSON ``"\\ud800"`` reached Firestore, which cannot encode it: 503 forever."""
    project = PROJECTS["sync"]
    app = inprocess.use(project, "sync")
    tag = uuid.uuid4().hex[:12]
    doc = payloads.subscription("activated", f"evt-{tag}", f"sub-{tag}", f"cus-{tag}", "usr-1")
    if where == "event_type":
        doc["event_type"] = "\ud800"
    else:
        doc["body"][where] = "\ud800"
    raw, headers = payloads.signed(doc, SECRET)
    answer = app.post(app.webhook, raw, headers, "POST", chunked=False)
    assert (answer.status, answer.body.get("status") or answer.body.get("error")) == expected
    if expected[0] == 200:
        record = find_event(app.db(project), f"evt-{tag}")
        assert record is not None and "\\ud800" not in json.dumps(record, default=str)


@pytest.mark.parametrize("publish_time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_a_publish_time_utc_cannot_hold_is_unknown(inprocess, publish_time):
    """Finding 4: the worker answered 500 moving such a time to UTC; now it is no time at all."""
    app = inprocess.use(PROJECTS["worker"], "queue")
    message = {"v": 1, "eventId": f"evt-{uuid.uuid4().hex[:12]}", "eventType": "ON_REFUND"}
    envelope = {
        "message": {
            "data": base64.b64encode(json.dumps(message).encode()).decode(),
            "publishTime": publish_time,
        }
    }
    answer = app.post(app.worker, json.dumps(envelope).encode(), {}, "POST", chunked=False)
    assert (answer.status, answer.body.get("error")) == (503, "event_not_visible"), answer
