"""Any body PayNow's spec allows, drawn from the one description in ``paynow.domain.payloads``.

The second interpreter of ``payloads.BODIES`` (the first builds the canonical example):
flake ids are digit strings, integers any int64 (negative and zero included), strings any
unicode up to a few characters, nullable fields sometimes null, optional fields sometimes
absent, arrays of 0 to 3 items. Ids of the roles that link events (orders, customers,
products, payments, refunds, subscriptions) and the user ids in checkout metadata are
drawn mostly from small ``Pools``, so a refund sometimes names an order credited earlier,
and the Pub/Sub emulator (one thread per ordering key) sees few customers.

``violations`` is the third reader of the description: what in a value the spec would not
accept, for the tests that hold the builders and these strategies to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from hypothesis import strategies as st
from paynow.domain import payloads as p
from paynow.domain.payloads import (
    ArrayOf,
    Cents,
    Count,
    DateTime,
    Flag,
    FlakeId,
    Nullable,
    Obj,
    Shape,
    StringMap,
    Text,
)

INT64 = (-(2**63), 2**63 - 1)
MAX_TEXT = 12
MAX_ITEMS = 3
# Roles that share one pool: a line's product, an order's second product and a plan are all
# pointsCatalog products.
SHARED_POOL = {"product2": "product", "plan": "product"}
POOLED_ROLES = ("customer", "order", "product", "payment", "refund", "subscription")


@dataclass(frozen=True, eq=False)  # hashed by identity: strategies are cached per pool
class Pools:
    """The small sets linked ids come from; ``seed`` keeps one test's ids its own."""

    by_role: Mapping[str, tuple[str, ...]]
    users: tuple[str, ...]
    user_id_key: str = "user_id"

    def of(self, role: str) -> tuple[str, ...]:
        return self.by_role.get(SHARED_POOL.get(role, role), ())


def pools(seed: int, size: int = 3, user_id_key: str = "user_id") -> Pools:
    """``size`` flake ids per linked role (and users), all starting with ``seed``'s digits."""
    by_role = {
        role: tuple(f"{seed}{r:02d}{n:02d}" for n in range(size))
        for r, role in enumerate(POOLED_ROLES)
    }
    return Pools(by_role, tuple(f"spec-user-{seed}-{n}" for n in range(size)), user_id_key)


FLAKE_IDS = st.integers(0, INT64[1]).map(str)
INTEGERS = st.one_of(st.integers(0, 10_000), st.integers(*INT64))
TEXTS = st.text(max_size=MAX_TEXT)
DATE_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1),  # naive bounds: hypothesis' rule
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
)


def rfc3339(when: datetime, zulu: bool) -> str:
    text = when.isoformat()
    return text.replace("+00:00", "Z") if zulu else text


def body_of(event_type: str, pool: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """Any spec-valid ``body`` of ``event_type``."""
    return _strategy(p.BODIES[event_type], pool)


def event_of(event_type: str, pool: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """Any spec-valid envelope of ``event_type``."""
    return st.fixed_dictionaries(
        {
            "event_type": st.just(event_type),
            "event_id": FLAKE_IDS,
            "body": body_of(event_type, pool),
        }
    )


def any_event(pool: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """Any spec-valid envelope of any of the 19 types (shrinking towards the spec's first)."""
    return st.one_of([event_of(t, pool) for t in p.EVENT_TYPES])


def linked_event(pool: Pools) -> st.SearchStrategy[dict[str, Any]]:
    """An event of a type processing handles, made by the builders over the pools: orders of
    pool products for pool users, then refunds (any status), chargebacks, won or lost closes
    and subscriptions of them. Spec-valid too, but far likelier than ``any_event`` to get past
    parsing, so the pipeline's every rule is reached."""

    def linked(role: str) -> st.SearchStrategy[str]:
        return st.sampled_from(pool.of(role))

    # What a store sends (any_event draws the values a parser must refuse), but now and
    # then an unknown product, no user, no customer.
    amounts = st.integers(0, 5_000)
    users = st.sampled_from((*pool.users, None))
    customers = st.sampled_from((*pool.of("customer"), None))
    unknown_product = f"{pool.of('product')[0]}99"  # never in pointsCatalog
    lines = st.lists(
        st.tuples(
            st.sampled_from((*pool.of("product"), unknown_product)),
            st.integers(1, 5),
            amounts,
        ),
        min_size=1,
        max_size=2,
    )
    return st.one_of(
        st.builds(
            p.order_completed,
            FLAKE_IDS,
            linked("order"),
            linked("customer"),
            users,
            lines,
            st.just(pool.user_id_key),
        ),
        st.builds(
            p.refund,
            FLAKE_IDS,
            linked("refund"),
            linked("order"),
            customers,
            amounts,
            payment_amount=st.one_of(st.none(), amounts),
            status=st.sampled_from(p.REFUND_STATUSES),
        ),
        st.builds(p.chargeback, FLAKE_IDS, linked("payment"), linked("order"), customers, amounts),
        st.builds(
            p.chargeback_closed,
            FLAKE_IDS,
            linked("payment"),
            linked("order"),
            customers,
            st.sampled_from(p.CHARGEBACK_STATUSES),
        ),
        st.builds(
            p.subscription,
            st.sampled_from(["activated", "renewed", "canceled"]),
            FLAKE_IDS,
            linked("subscription"),
            linked("customer"),
            users,
            linked("product"),
            st.just(pool.user_id_key),
        ),
    )


@cache
def _strategy(shape: Shape, pool: Pools) -> st.SearchStrategy[Any]:
    match shape:
        case FlakeId(role=role):
            linked = pool.of(role)
            return st.one_of(st.sampled_from(linked), FLAKE_IDS) if linked else FLAKE_IDS
        case Text(example=value, known=known):
            return st.one_of(st.sampled_from((value, *known)), TEXTS)
        case Cents() | Count():
            return INTEGERS
        case Flag():
            return st.booleans()
        case DateTime():
            return st.builds(rfc3339, DATE_TIMES, st.booleans())
        case StringMap(user_id=carries_user):
            metadata = st.dictionaries(TEXTS, TEXTS, max_size=MAX_ITEMS)
            if not carries_user:
                return metadata
            user = st.one_of(st.sampled_from(pool.users), TEXTS)
            return st.builds(
                lambda m, u: m if u is None else {**m, pool.user_id_key: u},
                metadata,
                st.one_of(st.none(), user),
            )
        case ArrayOf(item=item):
            return st.lists(_strategy(item, pool), max_size=MAX_ITEMS)
        case Nullable(inner=inner):
            return st.one_of(st.none(), _strategy(inner, pool))
        case Obj(fields=fields):
            return st.fixed_dictionaries(
                {f.name: _strategy(f.shape, pool) for f in fields if f.required},
                optional={f.name: _strategy(f.shape, pool) for f in fields if not f.required},
            )
    raise TypeError(f"not a shape: {shape!r}")


# --- what the spec would not accept -------------------------------------------------------

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def violations(shape: Shape, value: Any, path: str = "body") -> list[str]:
    """Where ``value`` breaks ``shape``: a type, a format, a required field missing, or a
    field the spec does not define. Empty for a spec-valid value."""
    match shape:
        case Nullable(inner=inner):
            return [] if value is None else violations(inner, value, path)
        case FlakeId():
            ok = isinstance(value, str) and value.isascii() and value.isdigit()
            return [] if ok else [f"{path}: {value!r} is not a flake id (a digit string)"]
        case Text():
            return [] if isinstance(value, str) else [f"{path}: {value!r} is not a string"]
        case Cents() | Count():
            ok = isinstance(value, int) and not isinstance(value, bool)
            return [] if ok else [f"{path}: {value!r} is not an integer"]
        case Flag():
            return [] if isinstance(value, bool) else [f"{path}: {value!r} is not a boolean"]
        case DateTime():
            ok = isinstance(value, str) and bool(_RFC3339.fullmatch(value))
            return [] if ok else [f"{path}: {value!r} is not an RFC 3339 date-time"]
        case StringMap():
            ok = isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            )
            return [] if ok else [f"{path}: {value!r} is not a string map"]
        case ArrayOf(item=item):
            if not isinstance(value, list):
                return [f"{path}: {value!r} is not an array"]
            return [v for i, x in enumerate(value) for v in violations(item, x, f"{path}[{i}]")]
        case Obj(name=name, fields=fields):
            if not isinstance(value, dict):
                return [f"{path}: {value!r} is not an object ({name})"]
            known = {f.name for f in fields}
            found = [f"{path}.{k}: not a field of {name}" for k in value if k not in known]
            for f in fields:
                if f.name in value:
                    found += violations(f.shape, value[f.name], f"{path}.{f.name}")
                elif f.required:
                    found.append(f"{path}.{f.name}: required by {name}, missing")
            return found
    raise TypeError(f"not a shape: {shape!r}")


def paths(value: Any, prefix: str = "") -> set[str]:
    """Every leaf path of a body in ``USED_FIELDS`` notation (``a.b``, ``a[].b``)."""
    if isinstance(value, dict) and value:
        return {q for k, v in value.items() for q in paths(v, f"{prefix}.{k}" if prefix else k)}
    if isinstance(value, list) and value:
        return {q for item in value for q in paths(item, f"{prefix}[]")}
    return {prefix}
