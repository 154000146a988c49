"""``paynow-ops health``: a push subscription compared with what infra/steps/pubsub.sh sets."""

from __future__ import annotations

import dataclasses

import pytest
from google.cloud import pubsub_v1

from scripts.ops.push_subscription import Deployed, PushSettings, differences
from tests.unit.helpers import settings

WORKER = "https://paynow-worker-abc-ew.a.run.app"
PUSH_SA = "paynow-push@p.iam.gserviceaccount.com"
DLQ = "projects/p/topics/paynow-events-dlq"
AS_DEPLOYED = PushSettings(
    endpoint=WORKER,
    wrapped=True,
    write_metadata=False,
    ordered=True,
    service_account=PUSH_SA,
    audience=WORKER,
    dead_letter_topic=DLQ,
    max_delivery_attempts=15,
)
CLOUD = Deployed(
    more_attempts_than=10, dead_letter_topic=DLQ, endpoint=WORKER, service_account=PUSH_SA
)


def texts(actual: PushSettings, deployed: Deployed = CLOUD) -> list[str]:
    return [d.text for d in differences(actual, deployed)]


def test_the_deployed_subscription_has_no_differences() -> None:
    assert differences(AS_DEPLOYED, CLOUD) == []
    unknown = Deployed(more_attempts_than=10, dead_letter_topic=DLQ)  # no PUSH_* variables
    assert differences(AS_DEPLOYED, unknown) == []
    # Pub/Sub's default audience is the endpoint.
    assert differences(dataclasses.replace(AS_DEPLOYED, audience=""), CLOUD) == []


@pytest.mark.parametrize(
    ("write_metadata", "words"), [(True, "with write-metadata"), (False, "without write-metadata")]
)
def test_payload_unwrapping_is_a_difference_the_worker_copes_with(
    write_metadata: bool, words: str
) -> None:
    actual = dataclasses.replace(AS_DEPLOYED, wrapped=False, write_metadata=write_metadata)
    [difference] = differences(actual, CLOUD)
    assert "--push-no-wrapper" in difference.text and words in difference.text
    assert difference.breaks is False


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"ordered": False}, "message ordering is off"),
        ({"endpoint": "", "audience": ""}, "no push endpoint"),
        ({"endpoint": "https://elsewhere", "audience": "https://elsewhere"}, "https://elsewhere"),
        ({"service_account": ""}, "no OIDC token"),
        ({"service_account": "other@p.iam.gserviceaccount.com"}, "other@p"),
        ({"audience": "https://other-audience"}, "token audience https://other-audience"),
        ({"dead_letter_topic": ""}, "no dead-letter policy"),
        ({"dead_letter_topic": "projects/p/topics/x"}, "projects/p/topics/x"),
    ],
)
def test_each_breaking_difference_is_named(change: dict[str, object], words: str) -> None:
    drift = differences(dataclasses.replace(AS_DEPLOYED, **change), CLOUD)  # type: ignore[arg-type]
    assert len(drift) == 1 and words in drift[0].text and drift[0].breaks


def test_too_few_pubsub_deliveries_is_a_difference() -> None:
    [difference] = differences(dataclasses.replace(AS_DEPLOYED, max_delivery_attempts=10), CLOUD)
    assert "after 10 deliveries" in difference.text and not difference.breaks


def test_the_local_stack_expects_no_token_and_no_dead_letter_policy() -> None:
    local = Deployed.for_settings(
        settings(PUSH_AUTH="none", PUBSUB_EMULATOR_HOST="localhost:8085"), local=True
    )
    bare = dataclasses.replace(
        AS_DEPLOYED, service_account="", audience="", dead_letter_topic="", max_delivery_attempts=0
    )
    assert differences(bare, local) == []
    assert texts(dataclasses.replace(bare, wrapped=False), local) == [
        "payload unwrapping is on (--push-no-wrapper, without write-metadata); "
        "the deploy keeps the wrapper"
    ]


def test_deployed_follows_the_settings() -> None:
    s = settings(PUSH_AUDIENCE=WORKER, PUSH_SERVICE_ACCOUNT=PUSH_SA, MAX_DELIVERY_ATTEMPTS="7")
    assert Deployed.for_settings(s, local=False) == Deployed(
        more_attempts_than=7,
        dead_letter_topic="projects/demo-unit/topics/paynow-events-dlq",
        endpoint=WORKER,
        service_account=PUSH_SA,
    )


@pytest.mark.parametrize(
    ("push_config", "wrapped", "write_metadata"),
    [
        ({"push_endpoint": WORKER}, True, False),
        ({"push_endpoint": WORKER, "pubsub_wrapper": {}}, True, False),
        ({"push_endpoint": WORKER, "no_wrapper": {}}, False, False),
        ({"push_endpoint": WORKER, "no_wrapper": {"write_metadata": True}}, False, True),
    ],
)
def test_settings_are_read_off_the_api_subscription(
    push_config: dict[str, object], wrapped: bool, write_metadata: bool
) -> None:
    subscription = pubsub_v1.types.Subscription(
        name="projects/p/subscriptions/paynow-events-push",
        topic="projects/p/topics/paynow-events",
        push_config={
            **push_config,
            "oidc_token": {"service_account_email": PUSH_SA, "audience": WORKER},
        },
        enable_message_ordering=True,
        dead_letter_policy={"dead_letter_topic": DLQ, "max_delivery_attempts": 15},
    )
    assert PushSettings.of(subscription) == dataclasses.replace(
        AS_DEPLOYED, wrapped=wrapped, write_metadata=write_metadata
    )
