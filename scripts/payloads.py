"""PayNow-shaped payloads for the demo, the tests, the benchmark and the chaos run.

Each builder starts from the reference payload of its type
(``scripts/paynow_shapes``: PayNow's schema, PII fields included) and replaces
the ids and amounts, so every event sent locally looks like what PayNow sends. ``signed`` adds
fresh headers with the same ``sign`` the webhook verifies against.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))

from paynow.domain.signature import sign  # noqa: E402

from scripts.paynow_shapes import canonical  # noqa: E402

SAMPLE_NAMES = (
    "order_completed",
    "refund",
    "chargeback",
    "subscription_activated",
    "subscription_renewed",
    "subscription_canceled",
)


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of one reference payload (``scripts/paynow_shapes.canonical``)."""
    return canonical(name)


def _customer(doc: dict[str, Any], customer_id: str) -> None:
    body = doc["body"]
    body["customer"]["id"] = customer_id
    body["customer"]["profile"]["id"] = customer_id
    if "customer_id" in body:
        body["customer_id"] = customer_id


def order(
    event_id: str,
    order_id: str,
    customer_id: str,
    user_id: str | None,
    lines: list[tuple[str, int, int]],
) -> dict[str, Any]:
    """ON_ORDER_COMPLETED; ``lines`` are (product id, quantity, line total in cents)."""
    doc = sample("order_completed")
    doc["event_id"] = event_id
    body = doc["body"]
    body["id"] = order_id
    _customer(doc, customer_id)
    template = body["lines"][0]
    body["lines"] = [
        {**template, "product_id": p, "quantity": q, "total_amount": t, "subtotal_amount": t}
        for p, q, t in lines
    ]
    body["checkout"]["lines"] = [{"product_id": p} for p, _, _ in lines]
    total = sum(t for _, _, t in lines)
    body["total_amount"] = body["subtotal_amount"] = total
    body["checkout"]["metadata"] = {"user_id": user_id} if user_id else {}
    return doc


def reversal(
    kind: str, event_id: str, reversal_id: str, order_id: str, customer_id: str, amount: int
) -> dict[str, Any]:
    """ON_REFUND (``kind="refund"``) or ON_CHARGEBACK (``kind="chargeback"``)."""
    doc = sample(kind)
    doc["event_id"] = event_id
    body = doc["body"]
    body["id"] = reversal_id
    body["order_id"] = order_id
    body["amount"] = body["store_refund_amount"] = amount
    _customer(doc, customer_id)
    return doc


def subscription(
    kind: str,
    event_id: str,
    subscription_id: str,
    customer_id: str,
    user_id: str | None,
    product_id: str = "vip-monthly",
) -> dict[str, Any]:
    """ON_SUBSCRIPTION_{ACTIVATED,RENEWED,CANCELED} for ``kind`` activated/renewed/canceled."""
    doc = sample(f"subscription_{kind}")
    doc["event_id"] = event_id
    body = doc["body"]
    body["id"] = subscription_id
    body["product_id"] = product_id
    _customer(doc, customer_id)
    body["checkout"]["metadata"] = {"user_id": user_id} if user_id else {}
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def signed(
    doc: dict[str, Any] | bytes, secret: str, timestamp_ms: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and the headers PayNow would send it with."""
    body = doc if isinstance(doc, bytes) else encode(doc)
    headers = {"Content-Type": "application/json", **sign(body, secret, timestamp_ms)}
    return body, headers
