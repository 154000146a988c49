"""Is the push subscription configured as the deploy configures it? A pure comparison.

``infra/steps/pubsub.sh`` creates ``paynow-events-push`` with Pub/Sub's wrapper
(no ``--push-no-wrapper``), message ordering on, the worker's URL as push endpoint
and as the audience of an OIDC token of the push service account, and a
dead-letter policy to ``paynow-events-dlq`` after more deliveries than the worker's
own ``MAX_DELIVERY_ATTEMPTS``. The worker also reads an unwrapped push, but then it
never learns the delivery attempt, and without ``--push-no-wrapper-write-metadata``
not the publish time either (a lost event is then retried until the attempts run
out instead of being dead-lettered ``event_not_found`` after ten minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from paynow.config import Settings


@dataclass(frozen=True)
class PushSettings:
    """The settings of a push subscription that the deploy sets."""

    endpoint: str
    wrapped: bool
    write_metadata: bool
    ordered: bool
    service_account: str
    audience: str
    dead_letter_topic: str
    max_delivery_attempts: int

    @classmethod
    def of(cls, subscription: Any) -> PushSettings:
        """Read them off a ``pubsub_v1.types.Subscription``."""
        push = subscription.push_config
        unwrapped = "no_wrapper" in push
        return cls(
            endpoint=push.push_endpoint,
            wrapped=not unwrapped,
            write_metadata=unwrapped and bool(push.no_wrapper.write_metadata),
            ordered=bool(subscription.enable_message_ordering),
            service_account=push.oidc_token.service_account_email,
            audience=push.oidc_token.audience,
            dead_letter_topic=subscription.dead_letter_policy.dead_letter_topic,
            max_delivery_attempts=subscription.dead_letter_policy.max_delivery_attempts,
        )


@dataclass(frozen=True)
class Deployed:
    """What the deploy sets, as far as this environment knows it (None: not known, or
    nothing expected: the local stack has no OIDC token and no dead-letter policy)."""

    more_attempts_than: int
    dead_letter_topic: str | None = None
    endpoint: str | None = None
    service_account: str | None = None
    oidc: bool = True

    @classmethod
    def for_settings(cls, settings: Settings, local: bool) -> Deployed:
        return cls(
            more_attempts_than=settings.max_delivery_attempts,
            dead_letter_topic=None if local else settings.dlq_topic_path,
            endpoint=settings.push_audience,
            service_account=settings.push_service_account,
            oidc=not local,
        )


class Difference(NamedTuple):
    """One way a subscription differs from the deploy; ``breaks``: events stop flowing
    or lose their guarantees (otherwise the worker copes, with less to go on)."""

    text: str
    breaks: bool = True


def differences(actual: PushSettings, deployed: Deployed) -> list[Difference]:
    """Each way ``actual`` differs from what the deploy sets; [] when none."""
    found = []
    if not actual.wrapped:
        metadata = "with" if actual.write_metadata else "without"
        found.append(
            Difference(
                f"payload unwrapping is on (--push-no-wrapper, {metadata} write-metadata); "
                "the deploy keeps the wrapper",
                breaks=False,
            )
        )
    if not actual.ordered:
        found.append(Difference("message ordering is off"))
    if not actual.endpoint:
        found.append(Difference("no push endpoint"))
    elif deployed.endpoint and actual.endpoint != deployed.endpoint:
        found.append(
            Difference(f"pushes to {actual.endpoint}, not to the worker's {deployed.endpoint}")
        )
    if deployed.oidc:
        if not actual.service_account:
            found.append(Difference("no OIDC token"))
        elif deployed.service_account and actual.service_account != deployed.service_account:
            found.append(
                Difference(
                    f"OIDC token of {actual.service_account}, not of {deployed.service_account}"
                )
            )
        # An unset audience is the endpoint (Pub/Sub's default); the deploy sets it so.
        if actual.service_account and (actual.audience or actual.endpoint) != actual.endpoint:
            found.append(Difference(f"token audience {actual.audience} is not the endpoint"))
    if deployed.dead_letter_topic:
        if not actual.dead_letter_topic:
            found.append(Difference("no dead-letter policy"))
        elif actual.dead_letter_topic != deployed.dead_letter_topic:
            found.append(
                Difference(
                    f"dead-letters to {actual.dead_letter_topic}, not {deployed.dead_letter_topic}"
                )
            )
        elif actual.max_delivery_attempts <= deployed.more_attempts_than:
            found.append(
                Difference(
                    f"dead-letters after {actual.max_delivery_attempts} deliveries, not after "
                    f"more than MAX_DELIVERY_ATTEMPTS={deployed.more_attempts_than}",
                    breaks=False,  # Pub/Sub's dead letters then carry no errorCode
                )
            )
    return found
