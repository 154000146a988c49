"""PayNow webhook bodies as PayNow's OpenAPI spec defines them, beside ``sign``.

The verifier's twin for bodies, as ``signature.sign`` is for headers: tests,
scripts, chaos and load build what PayNow sends here, so nothing drifts from
the spec (``paynow-gg/openapi``, ``openapi/json/webhook-definitions.json``).

Each of the spec's 19 event types is described once, declaratively, in a
small vocabulary of our own (``FlakeId``, ``Text``, ``Cents``, ``Count``,
``Flag``, ``DateTime``, ``StringMap``, ``ArrayOf``, ``Nullable``, ``Obj`` of
required and optional ``Field``s): ``BODIES``. Two interpreters read it:
``event`` builds the canonical example (fixed flake ids, integer cents, ISO
times, PII present so tests prove it is dropped), and the tests'
``tests/support/spec_bodies.py`` draws any body the spec allows. The
builders (``order_completed``, ``refund``, ...) are the canonical example
with the ids and amounts a test chooses; ``minimal`` keeps only what
processing reads (``USED_FIELDS``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from paynow.domain.signature import sign

# --- the vocabulary ------------------------------------------------------------------------


@dataclass(frozen=True)
class FlakeId:
    """A PayNow Flake ID (a decimal string). ``role`` says what it identifies: one canonical
    id per role (``IDS``) keeps a body consistent, one pool per role lets drawn bodies refer
    to each other."""

    role: str


@dataclass(frozen=True)
class Text:
    """A string. ``known`` lists the values the spec's description names (the spec has no
    enum there, so any string is valid); ``pii`` marks personal data processing must drop."""

    example: str
    known: tuple[str, ...] = ()
    pii: bool = False


@dataclass(frozen=True)
class Cents:
    """An integer amount in cents."""

    example: int


@dataclass(frozen=True)
class Count:
    """An integer that is not money: a quantity, an interval, a sequence number."""

    example: int


@dataclass(frozen=True)
class Flag:
    example: bool


@dataclass(frozen=True)
class DateTime:
    """An RFC 3339 date-time string."""

    example: str


@dataclass(frozen=True)
class StringMap:
    """``{string: string}`` (metadata). ``user_id`` marks the checkout's custom variables,
    where the app's user id travels under ``PAYNOW_USER_ID_KEY``."""

    example: tuple[tuple[str, str], ...] = ()
    user_id: bool = False


@dataclass(frozen=True)
class ArrayOf:
    item: Shape
    example_items: int = 1


@dataclass(frozen=True)
class Nullable:
    inner: Shape
    example_null: bool = False


@dataclass(frozen=True)
class Field:
    name: str
    shape: Shape
    required: bool = True


@dataclass(frozen=True)
class Obj:
    """An object of the spec: its schema name (for messages) and its fields, in its order."""

    name: str
    fields: tuple[Field, ...]


Shape = FlakeId | Text | Cents | Count | Flag | DateTime | StringMap | ArrayOf | Nullable | Obj


def req(name: str, shape: Shape) -> Field:
    return Field(name, shape, required=True)


def opt(name: str, shape: Shape) -> Field:
    return Field(name, shape, required=False)


def maybe(name: str, shape: Shape, example_null: bool = True) -> Field:
    """Optional and nullable, the spec's most common field (``type: [null, T]``)."""
    return Field(name, Nullable(shape, example_null), required=False)


# --- canonical values ------------------------------------------------------------------------

IDS: Mapping[str, str] = MappingProxyType(
    {
        "store": "411486491630370816",
        "customer": "411486491634565127",
        "checkout": "411486491638759438",
        "checkout_line": "411486491642953749",
        "order": "411486491647148060",
        "order_line": "411486491651342371",
        "product": "411486491655536682",
        "product2": "411486491659730993",
        "product_version": "411486491663925304",
        "plan": "411486491668119615",
        "plan_version": "411486491672313926",
        "subscription": "411486491676508237",
        "subscription_line": "411486491680702548",
        "payment": "411486491684896859",
        "refund": "411486491689091170",
        "trial": "411486491693285481",
        "delivery_item": "411486491697479792",
        "coupon": "411486491701674103",
        "giftcard": "411486491705868414",
        "gameserver": "411486491710062725",
        "tag": "411486491714257036",
        "user": "user-42",  # the app's user id, not PayNow's: any id string
    }
)
CREATED = "2026-11-22T11:58:04Z"
WHEN = "2026-11-22T12:00:00Z"
PERIOD_END = "2026-12-22T12:00:00Z"
EMAIL = "jane.doe@example.com"
NAME = "Jane Doe"
IP = "203.0.113.7"
CURRENCIES = ("USD", "EUR", "GBP")
# The canonical order: 2 x product (199 each) + 1 x product2 (999).
ORDER_LINES = (("product", 2, 398), ("product2", 1, 999))
ORDER_TOTAL = sum(total for _, _, total in ORDER_LINES)
PRODUCT_NAMES: Mapping[str, str] = MappingProxyType(
    {IDS["product"]: "100 Gems", IDS["product2"]: "550 Gems"}
)
# Facts of the Management API's enums, for the values drawn bodies favour.
PAYMENT_STATUSES = (
    "unknown",
    "created",
    "pending",
    "completed",
    "canceled",
    "failed",
    "refunded",
    "chargeback",
    "refund_failed",
    "refund_processing",
)
CHARGEBACK_STATUSES = ("none", "pending", "won", "lost")
REFUND_STATUSES = ("created", "approved", "processing", "completed", "canceled", "failed")

# --- the spec's objects (components/schemas) -------------------------------------------------

AVATAR = "https://cdn.example.com/avatar/jane.png"
STEAM = Obj(
    "SteamCustomerDTO",
    (
        req("id", Text("76561197960287930", pii=True)),
        req("name", Text("jane_plays", pii=True)),
        req("avatar_url", Text(AVATAR)),
    ),
)
MINECRAFT = Obj(
    "MinecraftCustomerDTO",
    (
        req("id", Text("069a79f4-44e9-4726-a5be-fca90e38aaf5", pii=True)),
        req("name", Text("JaneCrafts", pii=True)),
        req("avatar_url", Text(AVATAR)),
    ),
)
PROFILE = Obj(
    "GenericProfileDTO",
    (
        req("id", Text("76561197960287930", pii=True)),
        req("platform", Text("steam")),
        req("name", Text("jane_plays", pii=True)),
        req("avatar_url", Text(AVATAR)),
    ),
)
CUSTOMER = Obj(
    "CustomerDTO",
    (
        req("id", FlakeId("customer")),
        maybe("name", Text(NAME, pii=True), example_null=False),
        req("steam", STEAM),
        req("minecraft", MINECRAFT),
        req("profile", PROFILE),
    ),
)
CHECKOUT_LINE = Obj(
    "CheckoutLineDTO",
    (
        req("id", FlakeId("checkout_line")),
        req("product_id", FlakeId("product")),
        req("product_version_id", FlakeId("product_version")),
        req("metadata", StringMap()),
    ),
)
CHECKOUT = Obj(
    "CheckoutDTO",
    (
        req("id", FlakeId("checkout")),
        req("metadata", StringMap((("source", "storefront"),), user_id=True)),
        req("lines", ArrayOf(CHECKOUT_LINE)),
    ),
)
GAMESERVER = Obj(
    "GameServerDTO",
    (
        req("id", FlakeId("gameserver")),
        req("name", Text("EU #1")),
        req("enabled", Flag(True)),
    ),
)
PRODUCT_GAMESERVER = Obj("ProductGameServerDTO", GAMESERVER.fields)
PRODUCT_TAG = Obj(
    "ProductTagDTO",
    (
        req("id", FlakeId("tag")),
        req("slug", Text("gems")),
        req("name", Text("Gems")),
    ),
)
PRODUCT_COMMAND = Obj(
    "ProductCommandDTO",
    (
        req(
            "stage",
            Text(
                "on_purchase",
                known=(
                    "on_purchase",
                    "on_expire",
                    "on_refund",
                    "on_renew",
                    "on_chargeback",
                    "on_trial_start",
                    "on_trial_expire",
                ),
            ),
        ),
        req("content", Text("gems give {customer.steam.id} 100")),
        req("online_only", Flag(False)),
    ),
)


def _product(role: str, version_role: str, name: str, price: int, plan: bool) -> Obj:
    """ProductDTO: a one-time pack, or (``plan``) a monthly subscription product."""
    return Obj(
        "ProductDTO",
        (
            req("id", FlakeId(role)),
            req("store_id", FlakeId("store")),
            req("version_id", FlakeId(version_role)),
            maybe("image_url", Text("https://cdn.example.com/products/pack.png"), False),
            req("slug", Text(name.lower().replace(" ", "-"))),
            req("name", Text(name)),
            req("description", Text(f"{name}, delivered in game.")),
            req("enabled", Flag(True)),
            maybe("label", Text("Best value")),
            req("sort_order", Count(1)),
            req("price", Cents(price)),
            req("single_game_server_only", Flag(False)),
            req("allow_one_time_purchase", Flag(not plan)),
            req("allow_subscription", Flag(plan)),
            maybe("subscription_interval_value", Count(1), example_null=not plan),
            maybe("subscription_interval_scale", Text("month"), example_null=not plan),
            req("remove_after_enabled", Flag(False)),
            maybe("remove_after_time_value", Count(1)),
            maybe("remove_after_time_scale", Text("month")),
            req("tags", ArrayOf(PRODUCT_TAG)),
            req("tag_names", Text("Gems")),
            req("gameservers", ArrayOf(PRODUCT_GAMESERVER)),
            req("gameserver_names", Text("EU #1")),
            req("commands", ArrayOf(PRODUCT_COMMAND)),
            maybe("created_at", DateTime(CREATED), example_null=False),
            maybe("updated_at", DateTime(CREATED), example_null=False),
            req("metadata", StringMap()),
        ),
    )


PRODUCT = _product("product", "product_version", "100 Gems", 199, plan=False)
PLAN = _product("plan", "plan_version", "VIP", 499, plan=True)
ORDER_LINE = Obj(
    "OrderLineDTO",
    (
        req("id", FlakeId("order_line")),
        maybe("checkout_line_id", FlakeId("checkout_line"), example_null=False),
        req("product_id", FlakeId("product")),
        req("product_version_id", FlakeId("product_version")),
        req("product", PRODUCT),
        req("product_name", Text("100 Gems")),
        maybe("product_image_url", Text("https://cdn.example.com/products/pack.png"), False),
        maybe("subscription_id", FlakeId("subscription")),
        maybe("subscription_line_id", FlakeId("subscription_line")),
        maybe("subscription_interval_value", Count(1)),
        maybe("subscription_interval_scale", Text("month")),
        maybe("trial_id", FlakeId("trial")),
        opt("gift_to_customer", Nullable(CUSTOMER, example_null=True)),
        req("price", Cents(199)),
        req("quantity", Count(2)),
        req("discount_amount", Cents(0)),
        req("subtotal_amount", Cents(398)),
        req("tax_amount", Cents(0)),
        req("total_amount", Cents(398)),
        maybe("selected_gameserver_id", FlakeId("gameserver")),
    ),
)
COUPON_USAGE = Obj(
    "OrderCouponUsageDTO",
    (req("coupon_id", FlakeId("coupon")), req("usage_amount", Cents(100))),
)
GIFTCARD_USAGE = Obj(
    "OrderGiftCardUsageDTO",
    (req("giftcard_id", FlakeId("giftcard")), req("usage_amount", Cents(500))),
)
ORDER = Obj(
    "OrderDTO",
    (
        req("id", FlakeId("order")),
        req("store_id", FlakeId("store")),
        req("customer", CUSTOMER),
        req("checkout_id", FlakeId("checkout")),
        req("checkout", CHECKOUT),
        maybe("subscription_id", FlakeId("subscription")),
        req("applied_coupons", ArrayOf(COUPON_USAGE, example_items=0)),
        req("applied_giftcards", ArrayOf(GIFTCARD_USAGE, example_items=0)),
        req("coupon_id", FlakeId("coupon")),  # required and not nullable in the spec
        req(
            "type",
            Text(
                "one_time",
                known=(
                    "one_time",
                    "subscription_initial",
                    "subscription_renewal",
                    "subscription_proration",
                    "mixed",
                ),
            ),
        ),
        req("currency", Text("USD", known=CURRENCIES)),
        req("tax_inclusive", Flag(False)),
        req("tax_amount", Cents(0)),
        req("discount_amount", Cents(0)),
        req("subtotal_amount", Cents(ORDER_TOTAL)),
        req("total_amount", Cents(ORDER_TOTAL)),
        req("created_at", DateTime(CREATED)),
        req("completed_at", DateTime(WHEN)),
        req("billing_name", Text(NAME, pii=True)),
        req("billing_email", Text(EMAIL, pii=True)),
        req("billing_address_country", Text("US")),
        req("customer_ip", Text(IP, pii=True)),
        req("giftcard_usage_amount", Cents(0)),
        req("lines", ArrayOf(ORDER_LINE)),
        req("product_names", Text("100 Gems, 550 Gems")),  # comma-separated, as typed
        req("product_tags", Text("Gems")),
        req("product_gameservers", Text("EU #1")),
        req("status", Text("completed", known=("created", "completed", "canceled"))),
    ),
)
SUBSCRIPTION_LINE = Obj(
    "SubscriptionLineDTO",
    (
        req("id", FlakeId("subscription_line")),
        req("subscription_id", FlakeId("subscription")),
        maybe("checkout_line_id", FlakeId("checkout_line"), example_null=False),
        maybe("initial_order_line_id", FlakeId("order_line"), example_null=False),
        maybe("gift_to_customer_id", FlakeId("customer")),
        opt("gift_to_customer", Nullable(CUSTOMER, example_null=True)),
        maybe("selected_gameserver_id", FlakeId("gameserver")),
        maybe("sale_id", FlakeId("sale")),
        maybe("trial_id", FlakeId("trial")),
        req("product_id", FlakeId("plan")),
        req("product_version_id", FlakeId("plan_version")),
        req("product_name", Text("VIP")),
        maybe("product_image_url", Text("https://cdn.example.com/products/vip.png"), False),
        opt("product", Nullable(PLAN)),
        req("tax_inclusive", Flag(False)),
        req("price", Cents(499)),
        req("discount_amount", Cents(0)),
        req("subtotal_amount", Cents(499)),
        req("tax_amount", Cents(0)),
        req("total_amount", Cents(499)),
        req("initial_discount_amount", Cents(0)),
        req("initial_subtotal_amount", Cents(499)),
        req("initial_giftcard_usage_amount", Cents(0)),
        req("initial_tax_amount", Cents(0)),
        req("initial_total_amount", Cents(499)),
        req("currency", Text("USD", known=CURRENCIES)),
        maybe("presentment_currency", Text("EUR", known=CURRENCIES), example_null=False),
        maybe("presentment_subtotal_amount", Cents(459), example_null=False),
        maybe("presentment_discount_amount", Cents(0), example_null=False),
        maybe("presentment_tax_amount", Cents(0), example_null=False),
        maybe("presentment_total_amount", Cents(459), example_null=False),
        maybe("initial_presentment_discount_amount", Cents(0), example_null=False),
        maybe("initial_presentment_subtotal_amount", Cents(459), example_null=False),
        maybe("initial_presentment_giftcard_usage_amount", Cents(0), example_null=False),
        maybe("initial_presentment_tax_amount", Cents(0), example_null=False),
        maybe("initial_presentment_total_amount", Cents(459), example_null=False),
    ),
)

# --- the 19 webhook bodies (webhooks.*.requestBody) -----------------------------------------


def _payment_head(role: str, status: str) -> tuple[Field, ...]:
    """The fields every payment-shaped body starts with (payments, chargebacks)."""
    return (
        req("id", FlakeId(role)),
        req("store_id", FlakeId("store")),
        req("order_id", FlakeId("order")),
        opt("customer", Nullable(CUSTOMER)),
        req("gateway", Text("stripe")),
        req("currency", Text("USD", known=CURRENCIES)),
        req("tax_inclusive", Flag(False)),
        req("amount", Cents(ORDER_TOTAL)),
        req("gateway_fee_amount", Cents(ORDER_TOTAL * 3 // 100)),
        req("tax_amount", Cents(0)),
        req("platform_fee_amount", Cents(ORDER_TOTAL * 5 // 100)),
        req("store_net_amount", Cents(ORDER_TOTAL - ORDER_TOTAL * 8 // 100)),
        req("status", Text(status, known=PAYMENT_STATUSES)),
    )


def _chargeback(payment_status: str, outcome: str) -> Obj:
    return Obj(
        "Chargeback",
        (
            *_payment_head("payment", payment_status),
            req("chargeback_status", Text(outcome, known=CHARGEBACK_STATUSES)),
            req("chargeback_at", DateTime(WHEN)),
        ),
    )


def _delivery_item(state: str, **times: str) -> Obj:
    """A delivery item in ``state``; ``times`` gives the nullable times that are set."""
    return Obj(
        "DeliveryItem",
        (
            req("id", FlakeId("delivery_item")),
            req("store_id", FlakeId("store")),
            opt("customer", Nullable(CUSTOMER)),
            maybe("order_customer_id", FlakeId("customer"), example_null=False),
            maybe("checkout_id", FlakeId("checkout"), example_null=False),
            maybe("order_id", FlakeId("order"), example_null=False),
            maybe("order_line_id", FlakeId("order_line"), example_null=False),
            maybe("subscription_id", FlakeId("subscription")),
            maybe("execute_on_gameserver_id", FlakeId("gameserver"), example_null=False),
            opt("execute_on_gameserver", Nullable(GAMESERVER)),
            req("product_id", FlakeId("product")),
            req("product_version_id", FlakeId("product_version")),
            req("product", PRODUCT),
            req(
                "state",
                Text(state, known=("usable", "active", "used", "revoked", "renewed")),
            ),
            req("added_at", DateTime(CREATED)),
            *(
                maybe(name, DateTime(times.get(name, WHEN)), example_null=name not in times)
                for name in ("active_at", "expires_at", "removed_at", "revoked_at")
            ),
            maybe("revoke_reason", Text("chargeback"), example_null="revoked_at" not in times),
        ),
    )


def _subscription(status: str, canceled: bool = False) -> Obj:
    cancel = (
        (
            maybe("canceled_at", DateTime(WHEN), example_null=False),
            maybe("cancel_reason", Text("requested by the customer"), example_null=False),
        )
        if canceled
        else ()
    )
    return Obj(
        "Subscription",
        (
            *cancel,
            req("id", FlakeId("subscription")),
            req("store_id", FlakeId("store")),
            req("customer_id", FlakeId("customer")),
            req("customer", CUSTOMER),
            req("checkout", CHECKOUT),
            req("billing_cycle_sequence", Count(1)),
            req("billing_email", Text(EMAIL, pii=True)),
            req("subtotal_amount", Cents(499)),
            req("tax_amount", Cents(0)),
            req("discount_amount", Cents(0)),
            req("total_amount", Cents(499)),
            req("currency", Text("USD", known=CURRENCIES)),
            req("interval_value", Count(1)),
            req("interval_scale", Text("month")),
            req("product_id", FlakeId("plan")),
            req("product_version_id", FlakeId("plan_version")),
            req("product_name", Text("VIP")),
            maybe("product_image_url", Text("https://cdn.example.com/products/vip.png"), False),
            req("product", PLAN),
            req("billing_country", Text("US")),
            req("initial_subtotal_amount", Cents(499)),
            req("initial_tax_amount", Cents(0)),
            req("initial_discount_amount", Cents(0)),
            req("initial_giftcard_usage_amount", Cents(0)),
            req("initial_total_amount", Cents(499)),
            req("customer_ip", Text(IP, pii=True)),
            maybe("current_period_start", DateTime(WHEN), example_null=False),
            maybe("current_period_end", DateTime(PERIOD_END), example_null=False),
            maybe("created_at", DateTime(CREATED), example_null=False),
            maybe("active_at", DateTime(WHEN), example_null=False),
            req("checkout_id", FlakeId("checkout")),
            req("checkout_line_id", FlakeId("checkout_line")),
            req("status", Text(status, known=("created", "active", "canceled"))),
            req("lines", ArrayOf(SUBSCRIPTION_LINE)),
        ),
    )


def _trial(status: str) -> Obj:
    return Obj(
        "Trial",
        (
            req("id", FlakeId("trial")),
            req("store_id", FlakeId("store")),
            req("customer_id", FlakeId("customer")),
            req("customer", CUSTOMER),
            maybe("checkout_id", FlakeId("checkout"), example_null=False),
            maybe("checkout_line_id", FlakeId("checkout_line"), example_null=False),
            req("product_id", FlakeId("plan")),
            req("product_version_id", FlakeId("plan_version")),
            req("product_name", Text("VIP")),
            maybe("product_image_url", Text("https://cdn.example.com/products/vip.png"), False),
            req("period_value", Count(7)),
            req("period_scale", Text("day")),
            maybe("starts_at", DateTime(CREATED), example_null=False),
            maybe("ends_at", DateTime("2026-11-29T11:58:04Z"), example_null=False),
            req("status", Text(status, known=("created", "active", "canceled", "completed"))),
            req("created_at", DateTime(CREATED)),
            maybe("canceled_at", DateTime(WHEN), example_null=status != "canceled"),
        ),
    )


BODIES: Mapping[str, Obj] = MappingProxyType(
    {
        "ON_CHARGEBACK": _chargeback("chargeback", "pending"),
        "ON_CHARGEBACK_CLOSED": _chargeback("completed", "won"),
        "ON_DISCORD_ACCOUNT_LINKED_TO_CHECKOUT": Obj(
            "DiscordAccountLinked",
            (
                req("store_id", FlakeId("store")),
                req("customer_id", FlakeId("customer")),
                req("customer", CUSTOMER),
                req("checkout_id", FlakeId("checkout")),
                req("checkout_line_id", FlakeId("checkout_line")),
                req("order_id", FlakeId("order")),
                req("order", ORDER),
                req("discord_user_id", Text("80351110224678912", pii=True)),
                req("discord_user_name", Text("jane_plays", pii=True)),
                req("discord_user_avatar_hash", Text("a_1269e74af4df7417b13759eae50c83dc")),
                req("product_id", FlakeId("product")),
                req("product_version_id", FlakeId("product_version")),
                req("product", PRODUCT),
                maybe("enqueued_at", DateTime(WHEN), example_null=False),
            ),
        ),
        "ON_DELIVERY_ITEM_ADDED": _delivery_item("usable"),
        "ON_DELIVERY_ITEM_ACTIVATED": _delivery_item("active", active_at=WHEN),
        "ON_DELIVERY_ITEM_USED": _delivery_item("used", active_at=WHEN, removed_at=WHEN),
        "ON_DELIVERY_ITEM_RENEWED": _delivery_item(
            "renewed", active_at=WHEN, expires_at=PERIOD_END
        ),
        # The spec names no "expired" state: an expired item is an active one past expires_at.
        "ON_DELIVERY_ITEM_EXPIRED": _delivery_item(
            "active", active_at=CREATED, expires_at=WHEN, removed_at=WHEN
        ),
        "ON_DELIVERY_ITEM_REVOKED": _delivery_item(
            "revoked", active_at=CREATED, removed_at=WHEN, revoked_at=WHEN
        ),
        "ON_ORDER_COMPLETED": ORDER,
        "ON_PAYMENT_COMPLETED": Obj(
            "PaymentCompleted",
            (
                *_payment_head("payment", "completed"),
                maybe("billing_country", Text("US"), example_null=False),
                req("created_at", DateTime(CREATED)),
                maybe("pending_at", DateTime(CREATED), example_null=False),
                req("completed_at", DateTime(WHEN)),
            ),
        ),
        "ON_PAYMENT_FAILED": Obj(
            "PaymentFailed",
            (
                *_payment_head("payment", "failed"),
                req("failure_code", Text("insufficient_funds")),
                req("created_at", DateTime(CREATED)),
                maybe("pending_at", DateTime(CREATED), example_null=False),
                req("failed_at", DateTime(WHEN)),
            ),
        ),
        "ON_REFUND": Obj(
            "Refund",
            (
                req("id", FlakeId("refund")),
                req("store_id", FlakeId("store")),
                req("order_id", FlakeId("order")),
                opt("customer", Nullable(CUSTOMER)),
                req("payment_id", FlakeId("payment")),
                req("gateway", Text("stripe")),
                req("currency", Text("USD", known=CURRENCIES)),
                req("tax_inclusive", Flag(False)),
                req("amount", Cents(ORDER_TOTAL)),  # the original payment's
                req("gateway_fee_amount", Cents(ORDER_TOTAL * 3 // 100)),
                req("tax_amount", Cents(0)),
                req("platform_fee_amount", Cents(ORDER_TOTAL * 5 // 100)),
                req("store_net_amount", Cents(ORDER_TOTAL - ORDER_TOTAL * 8 // 100)),
                req("store_refund_amount", Cents(ORDER_TOTAL)),  # the refund's
                req("created_at", DateTime(CREATED)),
                req("approved_at", DateTime(CREATED)),
                req("pending_at", DateTime(CREATED)),
                req("completed_at", DateTime(WHEN)),
                req("billing_email", Text(EMAIL, pii=True)),
                req("status", Text("completed", known=REFUND_STATUSES)),
            ),
        ),
        "ON_SUBSCRIPTION_ACTIVATED": _subscription("active"),
        "ON_SUBSCRIPTION_CANCELED": _subscription("canceled", canceled=True),
        "ON_SUBSCRIPTION_RENEWED": _subscription("active"),
        "ON_TRIAL_ACTIVATED": _trial("active"),
        "ON_TRIAL_COMPLETED": _trial("completed"),
        "ON_TRIAL_CANCELED": _trial("canceled"),
    }
)
EVENT_TYPES: tuple[str, ...] = tuple(BODIES)
# One fixed event id per type, so the canonical events of all 19 types are distinct events.
EVENT_IDS: Mapping[str, str] = MappingProxyType(
    {t: str(411486491800000000 + i) for i, t in enumerate(EVENT_TYPES)}
)

# --- what processing reads -------------------------------------------------------------------

USER_ID_KEY_SLOT = "<user_id_key>"  # stands for PAYNOW_USER_ID_KEY in USED_FIELDS
_SUBSCRIPTION_USED = (
    "id",
    "product_id",
    "customer.id",
    "customer_id",  # read when customer is absent
    f"checkout.metadata.{USER_ID_KEY_SLOT}",
    "status",
    "current_period_end",
)
_USED: dict[str, tuple[str, ...]] = {
    "ON_ORDER_COMPLETED": (
        "id",
        "customer.id",
        f"checkout.metadata.{USER_ID_KEY_SLOT}",
        "lines[].product_id",
        "lines[].quantity",
        "total_amount",
        "currency",
    ),
    "ON_REFUND": ("id", "order_id", "customer.id", "store_refund_amount", "currency", "status"),
    "ON_CHARGEBACK": ("id", "order_id", "customer.id"),
    "ON_CHARGEBACK_CLOSED": ("id", "order_id", "customer.id", "chargeback_status"),
    "ON_SUBSCRIPTION_ACTIVATED": _SUBSCRIPTION_USED,
    "ON_SUBSCRIPTION_RENEWED": _SUBSCRIPTION_USED,
    "ON_SUBSCRIPTION_CANCELED": _SUBSCRIPTION_USED,
}
USED_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {t: _USED.get(t, ()) for t in EVENT_TYPES}
)
"""Per event type, the dotted body paths processing reads (``a.b``: key b of object a;
``a[].b``: key b of every item of array a). Every other field may be absent."""

# --- interpreter 1: the canonical example ----------------------------------------------------

User = tuple[str, str] | None  # (PAYNOW_USER_ID_KEY, user id) for the checkout metadata


def example(shape: Shape, ids: Mapping[str, str] = IDS, user: User = None) -> Any:
    """The canonical value of ``shape``: ``ids[role]`` for each flake id, every field."""
    match shape:
        case FlakeId(role=role):
            return ids[role]
        case Text(example=value) | Cents(example=value) | Count(example=value):
            return value
        case Flag(example=flag):
            return flag
        case DateTime(example=when):
            return when
        case StringMap(example=pairs, user_id=carries_user):
            metadata = dict(pairs)
            if carries_user and user is not None:
                metadata[user[0]] = user[1]
            return metadata
        case ArrayOf(item=item, example_items=n):
            return [example(item, ids, user) for _ in range(n)]
        case Nullable(inner=inner, example_null=null):
            return None if null else example(inner, ids, user)
        case Obj(fields=fields):
            return {f.name: example(f.shape, ids, user) for f in fields}
    raise TypeError(f"not a shape: {shape!r}")


def event(
    event_type: str,
    event_id: str | None = None,
    *,
    ids: Mapping[str, str] | None = None,
    user_id_key: str = "user_id",
) -> dict[str, Any]:
    """The canonical ``event_type`` envelope (a fresh dict every call).

    ``ids`` replaces the canonical id of some roles (``{"order": ..., "customer": ...,
    "user": ...}``), so a test can send every type under ids of its own.
    """
    if event_type not in BODIES:
        raise ValueError(f"{event_type!r} is not one of PayNow's {len(BODIES)} event types")
    roles = {**IDS, **(ids or {})}
    eid = EVENT_IDS[event_type] if event_id is None else event_id
    user = (user_id_key, roles["user"])
    if event_type == "ON_ORDER_COMPLETED":
        lines = [(roles[product], quantity, total) for product, quantity, total in ORDER_LINES]
        return _envelope(event_type, eid, _order_body(roles, lines, user))
    if event_type == "ON_DISCORD_ACCOUNT_LINKED_TO_CHECKOUT":
        body = example(BODIES[event_type], roles, user)
        lines = [(roles[product], quantity, total) for product, quantity, total in ORDER_LINES]
        body["order"] = _order_body(roles, lines, user)
        return _envelope(event_type, eid, body)
    if event_type in ("ON_REFUND", "ON_CHARGEBACK", "ON_CHARGEBACK_CLOSED"):
        return _envelope(event_type, eid, _payment_body(event_type, roles, ORDER_TOTAL, True))
    return _envelope(event_type, eid, example(BODIES[event_type], roles, user))


# --- the builders: the canonical example with a test's ids and amounts -----------------------


def order_completed(
    event_id: str,
    order_id: str,
    customer_id: str,
    user_id: str | None,
    lines: Sequence[tuple[str, int, int]],
    user_id_key: str = "user_id",
) -> dict[str, Any]:
    """ON_ORDER_COMPLETED; ``lines`` are (product id, quantity, line total in cents), the
    user id travels in ``checkout.metadata[user_id_key]`` and the total is the lines' sum."""
    roles = _roles(order=order_id, customer=customer_id)
    user = None if user_id is None else (user_id_key, user_id)
    return _envelope("ON_ORDER_COMPLETED", event_id, _order_body(roles, lines, user))


def refund(
    event_id: str,
    refund_id: str,
    order_id: str,
    customer_id: str | None,
    refund_amount: int,
    *,
    payment_amount: int | None = None,
    status: str = "completed",
) -> dict[str, Any]:
    """ON_REFUND of ``refund_amount`` (``store_refund_amount``) from a payment of
    ``payment_amount`` (``amount``; default: a full refund); ``customer`` null when None."""
    roles = _roles(refund=refund_id, order=order_id, customer=customer_id)
    paid = refund_amount if payment_amount is None else payment_amount
    body = _payment_body("ON_REFUND", roles, paid, customer_id is not None)
    body.update(store_refund_amount=refund_amount, status=status)
    return _envelope("ON_REFUND", event_id, body)


def chargeback(
    event_id: str,
    payment_id: str,
    order_id: str,
    customer_id: str | None,
    amount: int = ORDER_TOTAL,
) -> dict[str, Any]:
    """ON_CHARGEBACK opened on the payment ``payment_id`` (the body's ``id``) of an order."""
    roles = _roles(payment=payment_id, order=order_id, customer=customer_id)
    body = _payment_body("ON_CHARGEBACK", roles, amount, customer_id is not None)
    return _envelope("ON_CHARGEBACK", event_id, body)


def chargeback_closed(
    event_id: str,
    payment_id: str,
    order_id: str,
    customer_id: str | None,
    outcome: str = "won",
    *,
    amount: int = ORDER_TOTAL,
) -> dict[str, Any]:
    """ON_CHARGEBACK_CLOSED: the chargeback on ``payment_id`` resolved, ``chargeback_status``
    = ``outcome`` (``won``: the store keeps the money; ``lost``: the customer does)."""
    roles = _roles(payment=payment_id, order=order_id, customer=customer_id)
    body = _payment_body("ON_CHARGEBACK_CLOSED", roles, amount, customer_id is not None)
    body.update(chargeback_status=outcome, status="completed" if outcome == "won" else "chargeback")
    return _envelope("ON_CHARGEBACK_CLOSED", event_id, body)


def subscription(
    kind: str,
    event_id: str,
    subscription_id: str,
    customer_id: str,
    user_id: str | None,
    product_id: str = "vip-monthly",
    user_id_key: str = "user_id",
) -> dict[str, Any]:
    """ON_SUBSCRIPTION_ACTIVATED / _RENEWED / _CANCELED of ``product_id``."""
    event_type = f"ON_SUBSCRIPTION_{kind.upper()}"
    if event_type not in BODIES:
        raise ValueError(f"no subscription event {kind!r}: activated, renewed or canceled")
    roles = _roles(subscription=subscription_id, customer=customer_id, plan=product_id)
    user = None if user_id is None else (user_id_key, user_id)
    return _envelope(event_type, event_id, example(BODIES[event_type], roles, user))


def _roles(**chosen: str | None) -> dict[str, str]:
    """The canonical ids with the ones a caller chose (None: keep the canonical one)."""
    return {**IDS, **{role: value for role, value in chosen.items() if value is not None}}


def _envelope(event_type: str, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": event_type, "event_id": event_id, "body": body}


def _nth(flake_id: str, i: int) -> str:
    """The id of the ``i``-th of several things of one role (lines of an order)."""
    if i == 0:
        return flake_id
    return str(int(flake_id) + i) if flake_id.isdigit() else f"{flake_id}-{i}"


def _order_body(
    roles: Mapping[str, str], lines: Sequence[tuple[str, int, int]], user: User
) -> dict[str, Any]:
    """OrderDTO with one order line and one checkout line per (product, quantity, total)."""
    body: dict[str, Any] = example(ORDER, roles, user)
    order_lines, checkout_lines = [], []
    for i, (product_id, quantity, total) in enumerate(lines):
        line_roles = {
            **roles,
            "product": product_id,
            "order_line": _nth(roles["order_line"], i),
            "checkout_line": _nth(roles["checkout_line"], i),
            "product_version": _nth(roles["product_version"], i),
        }
        price = total // quantity if quantity > 0 else total
        name = PRODUCT_NAMES.get(product_id, product_id)
        line = example(ORDER_LINE, line_roles)
        line.update(
            product_name=name,
            price=price,
            quantity=quantity,
            subtotal_amount=total,
            total_amount=total,
        )
        line["product"].update(name=name, slug=name.lower().replace(" ", "-"), price=price)
        order_lines.append(line)
        checkout_lines.append(example(CHECKOUT_LINE, line_roles))
    total_amount = sum(total for _, _, total in lines)
    body["lines"] = order_lines
    body["checkout"]["lines"] = checkout_lines
    body.update(
        subtotal_amount=total_amount,
        total_amount=total_amount,
        product_names=", ".join(line["product_name"] for line in order_lines),
        product_tags=", ".join(dict.fromkeys(x["product"]["tag_names"] for x in order_lines)),
        product_gameservers=", ".join(
            dict.fromkeys(x["product"]["gameserver_names"] for x in order_lines)
        ),
    )
    return body


def _payment_body(
    event_type: str, roles: Mapping[str, str], amount: int, with_customer: bool
) -> dict[str, Any]:
    """A refund or chargeback body over a payment of ``amount``: fees 3% + 5%, no tax."""
    body: dict[str, Any] = example(BODIES[event_type], roles)
    gateway_fee, platform_fee = amount * 3 // 100, amount * 5 // 100
    body.update(
        amount=amount,
        gateway_fee_amount=gateway_fee,
        platform_fee_amount=platform_fee,
        store_net_amount=amount - gateway_fee - platform_fee,
    )
    if "store_refund_amount" in body:
        body["store_refund_amount"] = amount
    if not with_customer:
        body["customer"] = None
    return body


# --- the variant without what processing does not read ---------------------------------------

_Tree = dict[str, "_Tree"]


def minimal(doc: Mapping[str, Any], user_id_key: str = "user_id") -> dict[str, Any]:
    """``doc`` with every body field outside ``USED_FIELDS`` of its type left out.

    The envelope's ``event_type`` and ``event_id`` stay; a field on a used path that holds
    null (a refund's ``customer``) stays null. ``doc`` itself is left as it was.
    """
    event_type = doc["event_type"]
    tree: _Tree = {}
    for path in USED_FIELDS.get(event_type, ()):
        node = tree
        for part in path.split("."):
            node = node.setdefault(user_id_key if part == USER_ID_KEY_SLOT else part, {})
    body = doc.get("body")
    kept = _pick(body, tree) if isinstance(body, dict) else copy.deepcopy(body)
    return {"event_type": event_type, "event_id": doc["event_id"], "body": kept}


def _pick(obj: Mapping[str, Any], tree: _Tree) -> dict[str, Any]:
    """The keys of ``obj`` that ``tree`` names, each pruned to its subtree."""
    kept: dict[str, Any] = {}
    for key, subtree in tree.items():
        name = key.removesuffix("[]")
        if name not in obj:
            continue
        value = obj[name]
        if key.endswith("[]") and isinstance(value, list):
            kept[name] = [_prune(item, subtree) for item in value]
        else:
            kept[name] = _prune(value, subtree)
    return kept


def _prune(value: Any, tree: _Tree) -> Any:
    """A leaf (or a value that is not an object, e.g. a null customer) is kept whole."""
    if not tree or not isinstance(value, dict):
        return copy.deepcopy(value)
    return _pick(value, tree)


# --- on the wire -----------------------------------------------------------------------------


def encode(doc: Mapping[str, Any]) -> bytes:
    """Compact JSON, as a webhook body."""
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def signed(
    doc: Mapping[str, Any] | bytes, secret: str, timestamp_ms: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and the headers PayNow would send it with (``signature.sign``)."""
    body = doc if isinstance(doc, bytes) else encode(doc)
    return body, {"Content-Type": "application/json", **sign(body, secret, timestamp_ms)}


def _pii(shape: Shape, found: set[str]) -> set[str]:
    match shape:
        case Text(example=value, pii=True):
            found.add(value)
        case ArrayOf(item=inner) | Nullable(inner=inner):
            _pii(inner, found)
        case Obj(fields=fields):
            for f in fields:
                _pii(f.shape, found)
    return found


PII: tuple[str, ...] = tuple(
    sorted(_pii(Obj("all", tuple(req(t, b) for t, b in BODIES.items())), set()))
)
"""Every personal value the canonical examples carry: none may reach a record, log or message."""
