"""PayNow-shaped webhook payloads built in code, so nothing here depends on files outside the repo.

The shapes follow PayNow's webhook schema (the fields of docs/contract.md plus
the ones PayNow sends around them, PII included, so tests prove it is
dropped). ``canonical(name)`` rebuilds the reference sample of each event
type with its fixed ids and times.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

STORE = "411486491630370816"
CUSTOMER = "cust-7"
USER = "user-42"
ORDER = "411486491630371000"
WHEN = "2026-11-22T12:00:00.000Z"
EMAIL = "jane.doe@example.com"
SUBSCRIPTION = "sub-1"


def customer(customer_id: str = CUSTOMER) -> dict[str, Any]:
    return {
        "id": customer_id,
        "name": "Steve",
        "steam": None,
        "minecraft": None,
        "profile": {"id": customer_id, "platform": "steam", "name": "Steve", "avatar_url": None},
    }


def order_line(
    ids: tuple[str, str, str], product: str, price: int, quantity: int
) -> dict[str, Any]:
    line_id, checkout_line_id, version_id = ids
    total = price * quantity
    return {
        "id": line_id,
        "checkout_line_id": checkout_line_id,
        "product_id": product,
        "product_version_id": version_id,
        "product_name": f"Pack {product}",
        "subscription_id": None,
        "trial_id": None,
        "gift_to_customer": None,
        "price": price,
        "quantity": quantity,
        "discount_amount": 0,
        "subtotal_amount": total,
        "tax_amount": 0,
        "total_amount": total,
        "selected_gameserver_id": None,
    }


def _order_completed() -> dict[str, Any]:
    lines = [
        order_line(
            ("411486491630371007", "411486491630371008", "411486491630371009"),
            "gems-100",
            199,
            2,
        ),
        order_line(
            ("411486491630371010", "411486491630371011", "411486491630371012"),
            "gems-550",
            999,
            1,
        ),
    ]
    total = sum(line["total_amount"] for line in lines)
    return {
        "event_type": "ON_ORDER_COMPLETED",
        "event_id": "411486491630371002",
        "body": {
            "id": ORDER,
            "store_id": STORE,
            "customer": customer(),
            "checkout_id": "411486491630371001",
            "checkout": {
                "id": "411486491630371001",
                "metadata": {"user_id": USER},
                "lines": [
                    {
                        "id": "411486491630371003",
                        "product_id": "gems-100",
                        "product_version_id": "411486491630371004",
                        "metadata": {},
                    },
                    {
                        "id": "411486491630371005",
                        "product_id": "gems-550",
                        "product_version_id": "411486491630371006",
                        "metadata": {},
                    },
                ],
            },
            "subscription_id": None,
            "applied_coupons": [],
            "applied_giftcards": [],
            "coupon_id": None,
            "type": "one_time",
            "currency": "usd",
            "tax_inclusive": False,
            "tax_amount": 0,
            "discount_amount": 0,
            "subtotal_amount": total,
            "total_amount": total,
            "giftcard_usage_amount": 0,
            "created_at": WHEN,
            "completed_at": WHEN,
            "billing_address_country": "US",
            "billing_email": EMAIL,
            "billing_name": "Jane Doe",
            "customer_ip": "203.0.113.7",
            "lines": lines,
            "product_names": [line["product_name"] for line in lines],
            "product_tags": [],
            "product_gameservers": [],
            "status": "completed",
        },
    }


def _reversal(
    event_type: str, event_id: str, reversal_id: str, payment_id: str, amount: int
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": reversal_id,
        "store_id": STORE,
        "order_id": ORDER,
        "customer": customer(),
        "payment_id": payment_id,
        "gateway": "stripe",
        "currency": "usd",
        "tax_inclusive": False,
        "amount": amount,
        "gateway_fee_amount": 0,
        "tax_amount": 0,
        "platform_fee_amount": 0,
        "store_net_amount": amount,
        "store_refund_amount": amount,
        "created_at": WHEN,
        "completed_at": WHEN,
        "billing_email": EMAIL,
        "status": "completed",
    }
    if event_type == "ON_CHARGEBACK":
        body.update(chargeback_status="lost", chargeback_at=WHEN)
    return {"event_type": event_type, "event_id": event_id, "body": body}


def _subscription(
    kind: str, event_id: str, checkout_id: str, version_id: str, line_id: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": SUBSCRIPTION,
        "store_id": STORE,
        "customer_id": CUSTOMER,
        "customer": customer(),
        "checkout": {"id": checkout_id, "metadata": {"user_id": USER}, "lines": []},
        "billing_cycle_sequence": 1,
        "billing_email": EMAIL,
        "billing_country": "US",
        "customer_ip": "203.0.113.7",
        "subtotal_amount": 499,
        "tax_amount": 0,
        "discount_amount": 0,
        "total_amount": 499,
        "currency": "usd",
        "interval_value": 1,
        "interval_scale": "month",
        "current_period_start": WHEN,
        "current_period_end": WHEN,
        "created_at": WHEN,
        "active_at": WHEN,
        "product_id": "vip-monthly",
        "product_version_id": version_id,
        "product_name": "VIP",
        "checkout_id": checkout_id,
        "checkout_line_id": line_id,
        "status": "canceled" if kind == "canceled" else "active",
        "lines": [],
    }
    if kind == "canceled":
        body.update(canceled_at=WHEN, cancel_reason="user")
    return {"event_type": f"ON_SUBSCRIPTION_{kind.upper()}", "event_id": event_id, "body": body}


def canonical(name: str) -> dict[str, Any]:
    """The reference payload of one event type (fresh dict each call)."""
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "order_completed": _order_completed,
        "refund": lambda: _reversal(
            "ON_REFUND", "411486491630371015", "411486491630371013", "411486491630371014", 398
        ),
        "chargeback": lambda: _reversal(
            "ON_CHARGEBACK", "411486491630371018", "411486491630371016", "411486491630371017", 1397
        ),
        "subscription_activated": lambda: _subscription(
            "activated",
            "411486491630371022",
            "411486491630371019",
            "411486491630371020",
            "411486491630371021",
        ),
        "subscription_renewed": lambda: _subscription(
            "renewed",
            "411486491630371026",
            "411486491630371023",
            "411486491630371024",
            "411486491630371025",
        ),
        "subscription_canceled": lambda: _subscription(
            "canceled",
            "411486491630371030",
            "411486491630371027",
            "411486491630371028",
            "411486491630371029",
        ),
    }
    if name not in builders:
        raise KeyError(f"no PayNow payload named {name!r}; known: {', '.join(builders)}")
    return builders[name]()
