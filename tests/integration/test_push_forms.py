"""Both push forms Pub/Sub publishes, delivered by the Pub/Sub emulator to the real worker.

Each form gets its own topic, a queue-mode webhook publishing to it, and a push
subscription to the session's worker configured like that: Pub/Sub's wrapper (the
deploy's), ``--push-no-wrapper`` with ``--push-no-wrapper-write-metadata`` (the
metadata and attributes as headers), and ``--push-no-wrapper`` alone (the bare data).
The emulator supports all three.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from paynow.domain import payloads

from scripts.local import localstack
from tests.integration.conftest import (
    SECRET,
    DeadLetterReader,
    Stack,
    balance,
    event,
    ledger,
    send,
    status_of,
    wait_for,
)
from tests.integration.test_ops import ops

FORMS: dict[str, dict[str, Any]] = {
    "wrapped": {},
    "unwrapped-with-metadata": {"no_wrapper": {"write_metadata": True}},
    "unwrapped": {"no_wrapper": {}},
}
LINES = [("gems-550", 1, 999)]  # 550 points


@dataclass
class Form:
    webhook: str
    topic: str
    subscription: str


@pytest.fixture(scope="module")
def forms(stack: Stack) -> Iterator[dict[str, Form]]:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    project, run = stack.emulators.project, uuid.uuid4().hex[:6]
    made: dict[str, Form] = {}
    functions = []
    try:
        for name, wrapper in FORMS.items():
            topic = publisher.topic_path(project, f"paynow-events-{name}-{run}")
            subscription = subscriber.subscription_path(project, f"paynow-push-{name}-{run}")
            publisher.create_topic(name=topic)
            subscriber.create_subscription(
                request=localstack.push_subscription(
                    subscription, topic, {"push_endpoint": stack.worker, **wrapper}
                )
            )
            env = localstack.function_env(
                pubsub_host=stack.emulators.pubsub_host,
                firestore_host=stack.emulators.firestore_host,
                mode="queue",
                extra={"PAYNOW_WEBHOOK_SECRET": SECRET, "PUBSUB_TOPIC": topic.rsplit("/")[-1]},
            )
            functions.append(
                localstack.Function(
                    f"it-webhook-{name}", "paynow_webhook", localstack.free_port(), env
                )
            )
            made[name] = Form(functions[-1].url, topic, subscription)
        with localstack.LocalRun() as local:
            local.functions(*functions)
            yield made
    finally:
        for form in made.values():
            with contextlib.suppress(gexc.GoogleAPICallError):
                subscriber.delete_subscription(request={"subscription": form.subscription})


@pytest.mark.parametrize("name", FORMS)
def test_a_customer_history_pushed_in_each_form_is_processed_in_order(forms, db, ids, name):
    form, user, customer = forms[name], ids("u"), ids("c")
    history = [
        payloads.order_completed(ids("order"), ids("o"), customer, user, LINES),
        payloads.subscription("activated", ids("act"), ids("sub"), customer, user),
        payloads.subscription("renewed", ids("ren"), ids("sub"), customer, None),
    ]
    for doc in history:
        answer = send(form.webhook, doc)
        assert (answer.status_code, answer.json()["status"]) == (200, "accepted")
    for doc in history:
        wait_for(lambda doc=doc: status_of(db, doc["event_id"]) == "processed", timeout=60)
    assert balance(db, user) == 550 + 2 * 300  # vip-monthly is 300 points per period
    assert set(ledger(db, user)) == {doc["event_id"] for doc in history}
    assert all(event(db, doc["event_id"])["mode"] == "queue" for doc in history)


@pytest.mark.parametrize(
    ("name", "event_id_kept"),
    [("wrapped", True), ("unwrapped-with-metadata", True), ("unwrapped", False)],
)
def test_data_that_is_not_an_event_message_is_dead_lettered_whole(
    forms, stack, ids, name, event_id_kept
):
    """The worker acknowledges it and keeps the original data; the eventId attribute
    reaches it wrapped, or unwrapped as a header when write-metadata is on."""
    reader = DeadLetterReader(stack.emulators.project)
    try:
        data = f"not an event message {ids('junk')}".encode()
        publisher = pubsub_v1.PublisherClient()
        publisher.publish(forms[name].topic, data, eventId=ids("junk")).result(timeout=30)
        [letter] = wait_for(lambda: [m for m in reader.pull() if m.data == data], timeout=60)
        assert letter.attributes["errorCode"] == "invalid_message"
        assert letter.attributes["source"] == "worker"
        assert letter.attributes.get("eventId") == (ids("junk") if event_id_kept else None)
    finally:
        reader.close()


def test_health_reports_a_push_subscription_without_the_wrapper(forms, stack):
    for name, form in forms.items():
        _, report = ops(stack, "health", PUBSUB_PUSH_SUBSCRIPTION=form.subscription.split("/")[-1])
        [row] = [c for c in report["checks"] if c["check"] == "push subscription as deployed"]
        if name == "wrapped":
            assert (row["status"], row["detail"]) == ("ok", "as infra/steps/pubsub.sh sets it")
        else:
            assert row["status"] == "warn"
            assert "--push-no-wrapper" in row["detail"]
            metadata = "with write-metadata" if "metadata" in name else "without write-metadata"
            assert metadata in row["detail"]
    _, report = ops(stack, "health")  # the local stack's own subscription, as provisioned
    [row] = [c for c in report["checks"] if c["check"] == "push subscription as deployed"]
    assert row["status"] == "ok"
