"""The floors: the least work the contract needs, done with Google's clients directly.

A floor is never what the code happens to do. Each is written from the contract alone:

- ``publish``: one Publish RPC carrying the contract's ids-only message, its attributes and
  its ordering key (the customer id), started on gRPC's own future (no thread);
- ``create``: the contract's ``webhookEvents/{eventId}`` record created, with the fields the
  contract lists and nothing the implementation added;
- ``create_and_publish``: both at once, awaited (queue mode's least work);
- ``credit``: one transaction: begin, one batch read of the event, the user, the catalog
  entry and the order, one commit of the record, the balance, the ledger entry and the
  order (sync mode's and the worker's least work).

``served_asgi.py`` puts them behind the webhook's server (functions-framework's ASGI
server, with Google's async clients: ``AsyncFloors``), and ``served.py`` puts ``credit``
behind the worker's (gunicorn threads) as a push endpoint; the bench also calls them here,
in its own process, for the raw rates.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore, pubsub_v1
from google.pubsub_v1 import PublisherAsyncClient, PublishRequest, PubsubMessage

PRODUCT, QUANTITY, LINE_CENTS, CURRENCY = "gems-100", 2, 998, "USD"
EVENT_TYPE = "ON_ORDER_COMPLETED"
EVENTS, USERS, LEDGER, ORDERS, CATALOG = (
    "webhookEvents",
    "users",
    "pointsLedger",
    "paynowOrders",
    "pointsCatalog",
)
TTL = timedelta(days=30)


@dataclass(frozen=True)
class Ids:
    event: str
    order: str
    customer: str
    user: str


def order_of(event: str) -> str:
    """The order id the bench gives an event's order: named after the event, so a floor
    behind push knows it from the ids-only message without reading the record (as the raw
    loop knows it from memory)."""
    return f"{event}-o"


def ids_of_push(envelope: bytes) -> Ids:
    """The ids of a pushed queue message (Pub/Sub's wrapped form): the least parsing the
    served worker floor needs. The bench's events all carry a user id; a message without
    one (the contract allows it) is not the bench's and fails here."""
    data = json.loads(base64.b64decode(json.loads(envelope)["message"]["data"]))
    return Ids(data["eventId"], order_of(data["eventId"]), data["customerId"], data["userId"])


def ids_of(body: bytes) -> Ids:
    """The ids an ``ON_ORDER_COMPLETED`` body carries: the least parsing a floor needs."""
    doc = json.loads(body)
    inner = doc["body"]
    return Ids(
        doc["event_id"],
        inner["id"],
        inner["customer"]["id"],
        inner["checkout"]["metadata"]["user_id"],
    )


def record(ids: Ids, mode: str) -> dict[str, Any]:
    """The contract's event record, as it is first written."""
    return {
        "eventType": EVENT_TYPE,
        "userId": ids.user,
        "status": "received",
        "mode": mode,
        "receivedAt": firestore.SERVER_TIMESTAMP,
        "processedAt": None,
        "attempts": 0,
        "lastError": None,
        "expireAt": datetime.now(UTC) + TTL,
        "data": {
            "orderId": ids.order,
            "lines": [{"productId": PRODUCT, "quantity": QUANTITY}],
            "totalAmount": LINE_CENTS,
            "currency": CURRENCY,
        },
    }


def message(ids: Ids) -> tuple[bytes, dict[str, str]]:
    """The contract's queue message: ids-only data and its attributes."""
    data = {"v": 1, "eventId": ids.event, "eventType": EVENT_TYPE, "customerId": ids.customer}
    data["userId"] = ids.user
    return json.dumps(data, separators=(",", ":")).encode(), {
        "eventId": ids.event,
        "eventType": EVENT_TYPE,
    }


def pubsub_message(ids: Ids) -> PubsubMessage:
    """The contract's message as one Publish RPC carries it, the customer as ordering key."""
    data, attributes = message(ids)
    return PubsubMessage(data=data, attributes=attributes, ordering_key=ids.customer)


@dataclass(frozen=True)
class CreditRefs:
    """The documents the points transaction reads and writes, on a sync or an async client."""

    event: Any
    user: Any
    catalog: Any
    order: Any

    @classmethod
    def of(cls, db: Any, ids: Ids) -> CreditRefs:
        col = db.collection
        return cls(
            col(EVENTS).document(ids.event),
            col(USERS).document(ids.user),
            col(CATALOG).document(PRODUCT),
            col(ORDERS).document(ids.order),
        )

    @property
    def read(self) -> list[Any]:
        return [self.event, self.user, self.catalog, self.order]


def write_credit(txn: Any, refs: CreditRefs, read: list[Any], ids: Ids, *, recorded: bool) -> None:
    """The points transaction's one commit, from its one batch read: the record (updated,
    or created when ``recorded`` is false), the balance, the ledger entry and the order."""
    snaps = {s.reference.path: s for s in read}
    points = int(snaps[refs.catalog.path].get("points")) * QUANTITY
    now = firestore.SERVER_TIMESTAMP
    final = {"status": "processed", "processedAt": now}
    if recorded:
        txn.update(refs.event, final)
    else:
        txn.set(refs.event, {**record(ids, "sync"), **final})
    txn.set(refs.user, {"points": firestore.Increment(points), "updatedAt": now}, merge=True)
    txn.set(
        refs.user.collection(LEDGER).document(ids.event),
        {
            "delta": points,
            "eventId": ids.event,
            "eventType": EVENT_TYPE,
            "orderId": ids.order,
            "reason": "order_completed",
            "createdAt": now,
        },
    )
    txn.set(
        refs.order,
        {
            "userId": ids.user,
            "customerId": ids.customer,
            "totalAmount": LINE_CENTS,
            "currency": CURRENCY,
            "pointsCredited": points,
            "refundedAmount": 0,
            "pointsReversed": 0,
            "updatedAt": now,
        },
    )


class Floors:
    """The floor operations on one Firestore client and one Publisher client's channel."""

    def __init__(self, db: firestore.Client, publisher: pubsub_v1.PublisherClient, project: str):
        self.db = db
        self._api = publisher.api  # the generated client: one RPC per call, no batching
        self._topic = f"projects/{project}/topics/paynow-events"

    def publish(self, ids: Ids) -> Any:
        """One Publish RPC started, not awaited: gRPC's own future, no thread of ours (the
        least a concurrent call costs); ``.result()`` awaits it."""
        request = PublishRequest(topic=self._topic, messages=[pubsub_message(ids)])
        return self._api.transport.publish.future(request)

    def create(self, ids: Ids, mode: str = "queue") -> None:
        self.db.collection(EVENTS).document(ids.event).create(record(ids, mode))

    def create_and_publish(self, ids: Ids) -> None:
        sent = self.publish(ids)
        self.create(ids)
        sent.result()

    def credit(self, ids: Ids, *, recorded: bool) -> None:
        """The points transaction; ``recorded``: the record exists (the worker's case),
        else it is created by the commit (sync mode's)."""
        refs = CreditRefs.of(self.db, ids)

        def apply(txn: Any) -> None:
            write_credit(txn, refs, list(txn.get_all(refs.read)), ids, recorded=recorded)

        firestore.transactional(apply)(self.db.transaction())

    def create_received(self, all_ids: list[Ids]) -> None:
        """Records as the queue leaves them (``received``), in batches: the raw loop's input."""
        for start in range(0, len(all_ids), 400):
            batch = self.db.batch()
            for ids in all_ids[start : start + 400]:
                batch.create(self.db.collection(EVENTS).document(ids.event), record(ids, "queue"))
            batch.commit()


class AsyncFloors:
    """The queue and sync floors with Google's async clients, for a server's event loop (the
    webhook's: functions-framework serves it with uvicorn). Made inside that loop."""

    def __init__(self, db: firestore.AsyncClient, publisher: PublisherAsyncClient, project: str):
        self.db = db
        self._publisher = publisher
        self._topic = f"projects/{project}/topics/paynow-events"

    async def create_and_publish(self, ids: Ids) -> None:
        """The record's create and one Publish RPC, awaited together."""
        await asyncio.gather(
            self.db.collection(EVENTS).document(ids.event).create(record(ids, "queue")),
            self._publisher.publish(topic=self._topic, messages=[pubsub_message(ids)]),
        )

    async def credit(self, ids: Ids, *, recorded: bool) -> None:
        """``Floors.credit`` on the event loop: begin, one batch read, one commit."""
        refs = CreditRefs.of(self.db, ids)

        async def apply(txn: Any) -> None:
            # The client's get_all in the transaction: this release's AsyncTransaction.get_all
            # awaits an async generator and fails.
            read = [snap async for snap in self.db.get_all(refs.read, transaction=txn)]
            write_credit(txn, refs, read, ids, recorded=recorded)

        await firestore.async_transactional(apply)(self.db.transaction())
