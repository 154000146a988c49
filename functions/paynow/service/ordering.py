"""Processing that waits for an earlier event instead of failing for its absence.

Pub/Sub orders a customer's messages per ordering key, but not across redeliveries,
reconcile's republishing or a switch between modes: a refund can reach processing
before its order is credited, a renewal before its activation. Such an event fails
with an error that may mean only "not yet" (``points.may_await_earlier_event``);
while an earlier event of the customer is still ``received`` it is transient
(retried later), else it is final. Both the webhook (sync mode) and the worker
process through here.
"""

from __future__ import annotations

from paynow.domain.errors import AwaitingEarlierEvent, AwaitingOrderEvent, NoUserId
from paynow.domain.events import PayNowEvent
from paynow.domain.points import may_await_earlier_event
from paynow.domain.records import Processed
from paynow.service.ports import EventStore


def process_in_order(
    store: EventStore,
    event: PayNowEvent | None,
    event_id: str,
    event_type: str,
    customer_id: str | None,
    mode: str,
    *,
    behind_pending: bool = False,
) -> Processed:
    """``store.process`` with the wait rule; raise ``AwaitingEarlierEvent`` while one is pending.

    The earlier event is looked for among the customer's and, for an event about an
    order, among that order's: a refund whose PayNow body has no customer still waits
    for its order.
    """
    try:
        return store.process(event, event_id, mode, behind_pending=behind_pending)
    except (AwaitingOrderEvent, NoUserId) as exc:
        order_id = exc.order_id if isinstance(exc, AwaitingOrderEvent) else None
        if not (may_await_earlier_event(exc, event_type) and (customer_id or order_id)):
            raise
        if store.has_pending_predecessor(event_id, customer_id, order_id):
            raise AwaitingEarlierEvent(
                "an earlier event of this customer or order is queued"
            ) from exc
        # No predecessor pending now: one may have committed between our read and the
        # query. Its status and its order are one transaction, so a second look is final.
        return store.process(event, event_id, mode)
