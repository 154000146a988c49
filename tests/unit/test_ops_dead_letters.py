"""``paynow-ops`` DLQ reading and replay, on a mocked subscriber (no emulator).

``FakeSubscription`` behaves like a Pub/Sub pull subscription where it matters
here: a pulled message is held until its ack deadline, a deadline of 0 gives it
back, an expired ack id acknowledges nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.pubsub_v1.types import PubsubMessage, PullResponse, ReceivedMessage
from paynow.domain.errors import DependencyUnavailable
from paynow.domain.messages import QueueMessage
from paynow.domain.records import Reopened
from pytest_mock import MockerFixture

from scripts.ops import cli, health
from scripts.ops import dlq as dlq_commands
from scripts.ops.clients import Ops
from scripts.ops.dead_letters import DeadLetters
from tests.unit import helpers

pytestmark = pytest.mark.usefixtures("emulator_target")

PATH = "projects/demo-unit/subscriptions/paynow-events-dlq-sub"
PUBLISHED = datetime.now(UTC) - timedelta(minutes=5)  # before any run of the tests below


class FakeSubscription:
    """A pull subscription with a clock tests move: hold, deadline, release, acknowledge."""

    def __init__(self, messages: list[PubsubMessage], ack_deadline: int = 60) -> None:
        self.now = 0.0
        self.ack_deadline = ack_deadline
        self.waiting = {m.message_id: m for m in messages}
        self.held_until: dict[str, float] = {}
        self.current_ack: dict[str, str] = {}  # message id -> the ack id of its last delivery
        self.deliveries = 0
        self.pulls = 0
        self.expired_acks = 0

    def clock(self) -> float:
        return self.now

    def pull(self, request: dict[str, Any], timeout: float) -> PullResponse:
        self.pulls += 1
        free = [m for i, m in self.waiting.items() if self.held_until.get(i, -1.0) <= self.now][
            : request["max_messages"]
        ]
        out = []
        for m in free:
            self.deliveries += 1
            ack_id = f"ack-{m.message_id}-{self.deliveries}"
            self.current_ack[m.message_id] = ack_id
            self.held_until[m.message_id] = self.now + self.ack_deadline
            out.append(ReceivedMessage(ack_id=ack_id, message=m))
        if not out:
            raise gexc.DeadlineExceeded("no messages")  # what real Pub/Sub may do
        return PullResponse(received_messages=out)

    def _valid(self, ack_id: str) -> str | None:
        message_id = ack_id.split("-")[1]
        live = self.current_ack.get(message_id) == ack_id
        if not live or self.held_until.get(message_id, -1.0) <= self.now:
            self.expired_acks += 1
            return None
        return message_id

    def modify_ack_deadline(self, request: dict[str, Any]) -> None:
        for ack_id in request["ack_ids"]:
            if (message_id := self._valid(ack_id)) is not None:
                self.held_until[message_id] = self.now + request["ack_deadline_seconds"]

    def acknowledge(self, request: dict[str, Any]) -> None:
        for ack_id in request["ack_ids"]:
            if (message_id := self._valid(ack_id)) is not None:
                del self.waiting[message_id]

    def held(self) -> int:
        return sum(1 for i in self.waiting if self.held_until.get(i, -1.0) > self.now)


def message(n: int, **attributes: str) -> PubsubMessage:
    attrs = {"eventId": f"evt-{n}", "errorCode": "unknown_product", "source": "worker"}
    return PubsubMessage(
        message_id=str(n),
        data=json.dumps(
            {"v": 1, "eventId": f"evt-{n}", "eventType": "ON_ORDER_COMPLETED"}
        ).encode(),
        attributes={**attrs, **attributes},
        publish_time=PUBLISHED,
    )


def raw_body() -> PubsubMessage:
    """What the webhook keeps of a signed body it could not read: no event id, maybe PII."""
    return PubsubMessage(
        message_id="raw",
        data=b'{"event_type": "x", "body": {"billing_email": "alice@example.com"}}',
        attributes={"errorCode": "invalid_payload", "source": "webhook"},
        publish_time=PUBLISHED,
    )


def make_ops(mocker: MockerFixture, subscriber: Any) -> Any:
    """``Ops`` on mocks (typed ``Any``: tests set and check the mocks through it)."""
    store = mocker.MagicMock()
    store.reopen.side_effect = lambda event_id: Reopened(
        "received", QueueMessage(event_id, "ON_ORDER_COMPLETED", f"cust-of-{event_id}", None)
    )
    store.event_status.return_value = {"status": "received", "eventType": "ON_ORDER_COMPLETED"}
    ops = Ops(
        settings=helpers.settings(),
        db=mocker.MagicMock(),
        store=store,
        publisher=mocker.MagicMock(),
        subscriber=subscriber,
    )
    fake = isinstance(subscriber, FakeSubscription)

    def dead_letters(page_size: int = 100) -> DeadLetters:
        if fake:
            return DeadLetters(subscriber, PATH, page_size, clock=subscriber.clock)
        return DeadLetters(subscriber, PATH, page_size)

    mocker.patch.object(ops, "dead_letters", side_effect=dead_letters)
    return ops


def run(ops: Ops, mocker: MockerFixture, capsys: pytest.CaptureFixture[str], *argv: str):
    """``paynow-ops --json ARGV`` in this process, on ``ops``: (exit code, parsed stdout)."""
    mocker.patch.object(Ops, "connect", return_value=ops)
    code = cli.main(["--json", *argv])
    return code, json.loads(capsys.readouterr().out)


# --- an empty subscription answering DeadlineExceeded ------------------------------------


@pytest.fixture
def empty(mocker: MockerFixture) -> Any:
    subscriber = mocker.MagicMock()
    subscriber.pull.side_effect = gexc.DeadlineExceeded("Deadline Exceeded")
    return subscriber


def test_a_pull_that_raises_deadline_exceeded_is_an_empty_dlq(mocker, empty, capsys):
    ops = make_ops(mocker, empty)
    assert DeadLetters(empty, PATH).peek() == []
    code, listed = run(ops, mocker, capsys, "dlq", "list")
    assert (code, listed["depth"], listed["messages"]) == (0, 0, [])
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--all")
    assert (code, replay["selected"]) == (0, 0)
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--event-id", "evt-1")
    assert code == 1 and replay["selected"] == 0 and "no DLQ message" in replay["note"]
    ops.store.event_status.return_value = {"status": "processed", "userId": None}
    code, shown = run(ops, mocker, capsys, "event", "show", "evt-1")
    assert code == 0 and shown["inDeadLetterQueue"] is False
    check = health._Health(ops)
    sub = mocker.MagicMock(topic=ops.settings.dlq_topic_path)
    sub.push_config.push_endpoint = ""
    assert check.dlq(sub) == 0
    assert check.checks[-1] == {"check": "dead letters waiting", "status": "ok", "detail": "none"}


def test_deadline_exceeded_after_the_last_page_ends_the_paging(mocker):
    subscription = FakeSubscription([message(n) for n in range(3)])
    assert [m.message.message_id for m in DeadLetters(subscription, PATH).peek()] == ["0", "1", "2"]
    assert subscription.pulls == 2  # the second, empty, raised DeadlineExceeded


# --- paging ------------------------------------------------------------------------------


def test_a_peek_of_several_pages_counts_every_message_once_and_consumes_none():
    subscription = FakeSubscription([message(n) for n in range(250)])
    seen = DeadLetters(subscription, PATH, page_size=100, clock=subscription.clock).peek()
    assert sorted(int(m.message.message_id) for m in seen) == list(range(250))
    assert len(subscription.waiting) == 250 and subscription.held() == 0  # all released
    assert subscription.deliveries == 250  # nothing was pulled twice


def test_event_show_stops_pulling_at_the_first_dlq_message_of_its_event(mocker, capsys):
    subscription = FakeSubscription([message(n) for n in range(250)])
    ops = make_ops(mocker, subscription)
    ops.store.event_status.return_value = {"status": "dead_lettered", "userId": None}
    code, shown = run(ops, mocker, capsys, "event", "show", "evt-7")
    assert code == 0 and shown["inDeadLetterQueue"] is True
    assert subscription.pulls == 1 and subscription.deliveries == 100  # the first page only
    assert len(subscription.waiting) == 250 and subscription.held() == 0  # nothing consumed
    code, shown = run(ops, mocker, capsys, "event", "show", "evt-no-such")
    assert shown["inDeadLetterQueue"] is False and subscription.held() == 0


def test_health_counts_one_page_of_dead_letters_and_says_there_may_be_more(mocker):
    subscription = FakeSubscription([message(n) for n in range(250)])
    ops = make_ops(mocker, subscription)
    check = health._Health(ops)
    sub = mocker.MagicMock(topic=ops.settings.dlq_topic_path)
    sub.push_config.push_endpoint = ""
    assert check.dlq(sub) == 100
    assert check.checks[-1]["status"] == "warn"
    assert check.checks[-1]["detail"].startswith("100 or more: ")
    assert subscription.pulls == 1 and subscription.held() == 0
    few = FakeSubscription([message(n) for n in range(3)])
    check = health._Health(make_ops(mocker, few))
    assert check.dlq(sub) == 3 and check.checks[-1]["detail"].startswith("3: ")


def test_held_messages_are_renewed_before_their_deadline_runs_out():
    subscription = FakeSubscription([message(n) for n in range(30)], ack_deadline=10)
    reader = DeadLetters(
        subscription, PATH, page_size=10, hold_seconds=60, clock=subscription.clock
    )
    with reader:
        for _ in reader.pages():
            subscription.now += 25  # slow work: past the subscription's own 10 s deadline
            reader.keep_alive()
        assert subscription.held() == 30 and subscription.deliveries == 30
    assert subscription.held() == 0 and subscription.expired_acks == 0


def test_a_long_replay_acknowledges_page_by_page_with_live_ack_ids(mocker, capsys):
    """250 messages at 1 s each outlast any ack deadline: every ack must still count."""
    subscription = FakeSubscription([message(n) for n in range(250)])
    ops = make_ops(mocker, subscription)

    def slow_publish(_: Any) -> Any:
        subscription.now += 1.0
        return mocker.MagicMock()

    ops.publisher.publish.side_effect = slow_publish
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--all", "--page-size", "50")
    assert code == 0, replay
    assert (replay["selected"], replay["republished"], replay["left"]) == (250, 250, 0)
    assert subscription.waiting == {} and subscription.expired_acks == 0
    assert subscription.deliveries == 250


# --- replay: per message, exit codes, dry run ------------------------------------------


@pytest.mark.parametrize(
    ("event_id", "status", "action", "outcome"),
    [
        (None, None, "leave", "no_event_id"),
        ("evt-1", None, "leave", "event_not_found"),
        ("evt-1", "processed", "acknowledge", "already_done"),
        ("evt-1", "ignored", "acknowledge", "already_done"),
        ("evt-1", "dead_lettered", "republish", "republished"),
        ("evt-1", "received", "republish", "republished"),
        ("evt-1", "weird", "leave", "unexpected_status"),
    ],
)
def test_replay_plan_follows_the_event_status(event_id, status, action, outcome):
    plan = dlq_commands.replay_plan(event_id, status)
    assert (plan.action, plan.outcome) == (action, outcome)


def test_a_replay_reads_each_record_once_and_publishes_the_message_reopen_returned(mocker, capsys):
    subscription = FakeSubscription([message(n) for n in range(3)])
    ops = make_ops(mocker, subscription)
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--all")
    assert code == 0 and replay["republished"] == 3
    assert [c.args for c in ops.store.reopen.call_args_list] == [("evt-0",), ("evt-1",), ("evt-2",)]
    ops.store.event_status.assert_not_called()  # reopen's one read told status and message
    published = [c.args[0] for c in ops.publisher.publish.call_args_list]
    assert [(m.event_id, m.ordering_key) for m in published] == [
        (f"evt-{n}", f"cust-of-evt-{n}") for n in range(3)
    ]


def test_a_publish_failure_is_reported_for_its_message_and_the_rest_go_on(mocker, capsys):
    subscription = FakeSubscription([message(n) for n in range(5)])
    ops = make_ops(mocker, subscription)
    pending = mocker.MagicMock()
    pending.wait.side_effect = [
        None,
        DependencyUnavailable("Pub/Sub unavailable"),
        None,
        None,
        None,
    ]
    ops.publisher.publish.return_value = pending
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--all")
    assert code == 1
    assert (replay["selected"], replay["republished"], replay["failed"]) == (5, 4, 1)
    (failed,) = [r for r in replay["messages"] if r["outcome"] == "failed"]
    assert failed["eventId"] == "evt-1" and "Pub/Sub unavailable" in failed["detail"]
    assert failed["acknowledged"] is False
    assert list(subscription.waiting) == ["1"] and subscription.held() == 0  # left, released


def test_the_table_summary_is_printed_when_a_message_fails(mocker, capsys):
    subscription = FakeSubscription([message(1)])
    ops = make_ops(mocker, subscription)
    ops.store.reopen.side_effect = DependencyUnavailable("Firestore unavailable")
    mocker.patch.object(Ops, "connect", return_value=ops)
    assert cli.main(["dlq", "replay", "--all"]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "Firestore unavailable" in out and "selected" in out


def test_an_already_processed_event_is_acknowledged_as_done(mocker, capsys):
    subscription = FakeSubscription([message(1)])
    ops = make_ops(mocker, subscription)
    ops.store.reopen.side_effect = None
    ops.store.reopen.return_value = Reopened(
        "processed", QueueMessage("evt-1", "ON_ORDER_COMPLETED", None, None)
    )
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--event-id", "evt-1")
    assert code == 0 and replay["already_done"] == 1 and replay["acknowledged"] == 1
    assert "nothing to redo" in replay["messages"][0]["detail"]
    ops.publisher.publish.assert_not_called()
    assert subscription.waiting == {}


def test_a_dry_run_reads_each_status_and_changes_nothing(mocker, capsys):
    raw = raw_body()
    subscription = FakeSubscription([message(1), message(2), message(3), raw])
    ops = make_ops(mocker, subscription)
    statuses = {"evt-1": "dead_lettered", "evt-2": "processed"}
    ops.store.event_status.side_effect = lambda e: (
        {"status": statuses[e]} if e in statuses else None
    )
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--all", "--dry-run")
    assert code == 1  # two of them a replay would leave
    outcomes = {r["messageId"]: r["outcome"] for r in replay["messages"]}
    assert outcomes == {
        "1": "would_replay",
        "2": "would_ack",
        "3": "event_not_found",
        "raw": "no_event_id",
    }
    assert replay["left"] == 2 and replay["acknowledged"] == 0
    ops.store.reopen.assert_not_called()
    ops.publisher.publish.assert_not_called()
    assert len(subscription.waiting) == 4 and subscription.held() == 0


def test_messages_dead_lettered_during_the_run_are_not_chased(mocker, capsys):
    """A replayed event that fails again comes back as a new message: left for the next run."""
    later = datetime.now(UTC) + timedelta(hours=1)
    subscription = FakeSubscription([message(1), message(2)])
    subscription.waiting["2"].publish_time = later
    ops = make_ops(mocker, subscription)
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--all")
    assert code == 0 and replay["selected"] == 1 and replay["arrivedDuringRun"] == 1
    assert list(subscription.waiting) == ["2"]


# --- discard --------------------------------------------------------------------------------


def test_discard_names_each_message_before_acknowledging_it_and_never_its_body(mocker, capsys):
    raw = raw_body()
    subscription = FakeSubscription([message(1, errorCode="event_not_found"), raw])
    ops = make_ops(mocker, subscription)
    mocker.patch.object(Ops, "connect", return_value=ops)
    assert cli.main(["--json", "dlq", "discard", "--all", "--dry-run"]) == 0
    dry = capsys.readouterr()
    assert json.loads(dry.out)["would_discard"] == 2 and len(subscription.waiting) == 2
    assert cli.main(["--json", "dlq", "discard", "--error-code", "invalid_payload"]) == 0
    done = capsys.readouterr()
    summary = json.loads(done.out)
    assert summary["discarded"] == 1 and summary["messages"][0]["messageId"] == "raw"
    assert "discarding DLQ message raw (event None, errorCode invalid_payload)" in done.err
    assert "alice@example.com" not in done.out + done.err + dry.out + dry.err
    assert list(subscription.waiting) == ["1"]
    ops.store.reopen.assert_not_called()


def test_an_interrupted_replay_still_reports_what_it_did(mocker, capsys):
    subscription = FakeSubscription([message(n) for n in range(3)])
    ops = make_ops(mocker, subscription)
    pending = mocker.MagicMock()
    pending.wait.side_effect = [None, KeyboardInterrupt()]
    ops.publisher.publish.return_value = pending
    code, replay = run(ops, mocker, capsys, "dlq", "replay", "--all")
    assert code == 1 and replay["republished"] == 1 and "interrupted" in replay["error"]
    assert len(subscription.waiting) == 2 and subscription.held() == 0  # the rest released
