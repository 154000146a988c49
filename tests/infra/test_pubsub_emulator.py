"""infra/steps/pubsub.sh with the real gcloud CLI against the Pub/Sub emulator.

What the script created is read back with the admin clients. Measured on the emulator:
it keeps the push endpoint, the OIDC service account and audience, message ordering,
the ack deadline, the retry policy, the dead-letter policy, message retention (of topics
too), a Cloud Storage subscription's config and an empty expiration policy (never
expire), so all of them are asserted; it refuses to update an expiration policy, which the
script therefore updates only when it drifted, and keeps a subscription's messages at
most 7 days (DLQ_RETENTION_DAYS=7 here; the cloud allows 31).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2, field_mask_pb2

from scripts.local import localstack
from tests.infra.conftest import emulator_env, is_mutation, project_id, run_script, write_env

ENDPOINT = "http://127.0.0.1:9/paynow-worker"


class Project:
    """One fresh project id on the shared emulator, with its settings file."""

    def __init__(self, tmp_path: Path, emulators: localstack.Emulators, config: Path) -> None:
        self.id = project_id()
        self.env_file = write_env(
            tmp_path / f"{self.id}.env", PROJECT=self.id, DLQ_RETENTION_DAYS="7"
        )
        self.env = emulator_env(config, emulators.pubsub_host, self.id)
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.push_sa = f"paynow-push@{self.id}.iam.gserviceaccount.com"

    def provision(self, endpoint: str = ENDPOINT) -> tuple[int, list[list[str]], str]:
        result = run_script(
            "infra/steps/pubsub.sh", str(self.env_file), "--push-endpoint", endpoint, env=self.env
        )
        return result.returncode, result.commands(), result.stderr

    def topic(self, name: str) -> str:
        return str(self.publisher.topic_path(self.id, name))

    def subscription(self, name: str) -> pubsub_v1.types.Subscription:
        path = self.subscriber.subscription_path(self.id, name)
        return self.subscriber.get_subscription(request={"subscription": path})


@pytest.fixture
def project(tmp_path: Path, emulators: localstack.Emulators, gcloud_config: Path) -> Project:
    return Project(tmp_path, emulators, gcloud_config)


def contract_state(project: Project) -> dict[str, object]:
    """Every setting the emulator keeps, of both topics and both subscriptions."""
    topics = {
        name: project.publisher.get_topic(request={"topic": project.topic(name)}).name
        for name in ("paynow-events", "paynow-events-dlq")
    }
    dlq_topic = project.publisher.get_topic(request={"topic": project.topic("paynow-events-dlq")})
    push = project.subscription("paynow-events-push")
    dlq = project.subscription("paynow-events-dlq-sub")
    archive = project.subscription("paynow-events-dlq-archive")
    return {
        "topics": topics,
        "push": {
            "topic": push.topic,
            "endpoint": push.push_config.push_endpoint,
            "oidc": (
                push.push_config.oidc_token.service_account_email,
                push.push_config.oidc_token.audience,
            ),
            "ordering": push.enable_message_ordering,
            "ack": push.ack_deadline_seconds,
            "retry": (
                push.retry_policy.minimum_backoff.total_seconds(),
                push.retry_policy.maximum_backoff.total_seconds(),
            ),
            "dead_letter": (
                push.dead_letter_policy.dead_letter_topic,
                push.dead_letter_policy.max_delivery_attempts,
            ),
            "never_expires": "expiration_policy" in push
            and not push.expiration_policy.ttl.total_seconds(),
        },
        "dlq": {
            "topic": dlq.topic,
            "pull": not dlq.push_config.push_endpoint,
            "ack": dlq.ack_deadline_seconds,
            "retention": dlq.message_retention_duration.total_seconds(),
            "never_expires": "expiration_policy" in dlq
            and not dlq.expiration_policy.ttl.total_seconds(),
            "topic_retention": dlq_topic.message_retention_duration.total_seconds(),
        },
        "archive": {
            "topic": archive.topic,
            "bucket": archive.cloud_storage_config.bucket,
            "prefix": archive.cloud_storage_config.filename_prefix,
            "avro_with_metadata": archive.cloud_storage_config.avro_config.write_metadata,
            "max_duration": archive.cloud_storage_config.max_duration.total_seconds(),
            "retention": archive.message_retention_duration.total_seconds(),
        },
    }


def test_provisions_the_contract_and_a_second_run_changes_nothing(project: Project) -> None:
    rc, commands, log = project.provision()
    assert rc == 0, log
    assert [c[:4] for c in commands if is_mutation(c)] == [
        ["pubsub", "topics", "create", "paynow-events"],
        ["pubsub", "topics", "create", "paynow-events-dlq"],
        ["pubsub", "subscriptions", "create", "paynow-events-push"],
        ["pubsub", "subscriptions", "create", "paynow-events-dlq-sub"],
        ["pubsub", "subscriptions", "create", "paynow-events-dlq-archive"],
    ]
    state = contract_state(project)
    assert state == {
        "topics": {
            "paynow-events": project.topic("paynow-events"),
            "paynow-events-dlq": project.topic("paynow-events-dlq"),
        },
        "push": {
            "topic": project.topic("paynow-events"),
            "endpoint": ENDPOINT,
            "oidc": (project.push_sa, ENDPOINT),
            "ordering": True,
            "ack": 90,
            "retry": (10.0, 600.0),
            "dead_letter": (project.topic("paynow-events-dlq"), 15),
            "never_expires": True,
        },
        "dlq": {
            "topic": project.topic("paynow-events-dlq"),
            "pull": True,
            "ack": 60,
            "retention": 7 * 86400.0,
            "never_expires": True,
            "topic_retention": 7 * 86400.0,
        },
        "archive": {
            "topic": project.topic("paynow-events-dlq"),
            "bucket": f"{project.id}-paynow-dlq-archive",
            "prefix": "dlq/",
            "avro_with_metadata": True,
            "max_duration": 600.0,
            "retention": 7 * 86400.0,
        },
    }

    rc, commands, log = project.provision()
    assert rc == 0, log
    assert [c for c in commands if is_mutation(c)] == []
    assert "subscription paynow-events-push is up to date" in log
    assert contract_state(project) == state


def test_drifted_settings_are_put_back_and_only_those(project: Project) -> None:
    assert project.provision()[0] == 0
    push = project.subscription("paynow-events-push")
    push.ack_deadline_seconds = 20
    push.retry_policy.minimum_backoff = duration_pb2.Duration(seconds=1)
    push.retry_policy.maximum_backoff = duration_pb2.Duration(seconds=5)
    project.subscriber.update_subscription(
        request={
            "subscription": push,
            "update_mask": field_mask_pb2.FieldMask(paths=["ack_deadline_seconds", "retry_policy"]),
        }
    )
    moved = "http://127.0.0.1:9/moved-worker"  # the worker was redeployed elsewhere

    rc, commands, log = project.provision(moved)
    assert rc == 0, log
    assert [c for c in commands if is_mutation(c)] == [
        [
            "pubsub",
            "subscriptions",
            "update",
            "paynow-events-push",
            f"--project={project.id}",
            # endpoint and audience move together, with the token's account
            f"--push-endpoint={moved}",
            f"--push-auth-service-account={project.push_sa}",
            f"--push-auth-token-audience={moved}",
            "--ack-deadline=90",
            "--min-retry-delay=10s",
            "--max-retry-delay=600s",
        ]
    ]
    push_state = contract_state(project)["push"]
    assert isinstance(push_state, dict)
    assert push_state["endpoint"] == moved
    assert push_state["oidc"] == (project.push_sa, moved)
    assert (push_state["ack"], push_state["retry"]) == (90, (10.0, 600.0))
    assert push_state["dead_letter"] == (project.topic("paynow-events-dlq"), 15)


def test_an_unordered_push_subscription_stops_the_script(project: Project) -> None:
    topic = project.topic("paynow-events")
    project.publisher.create_topic(request={"name": topic})
    path = project.subscriber.subscription_path(project.id, "paynow-events-push")
    project.subscriber.create_subscription(
        request={"name": path, "topic": topic, "push_config": {"push_endpoint": ENDPOINT}}
    )

    rc, commands, log = project.provision()
    assert rc == 1
    assert "enableMessageOrdering" in log and "delete it" in log
    assert not [c for c in commands if c[:3] == ["pubsub", "subscriptions", "update"]]
    assert project.subscription("paynow-events-push").enable_message_ordering is False
    with pytest.raises(gexc.NotFound):
        project.subscription("paynow-events-dlq-sub")  # stopped before going further
