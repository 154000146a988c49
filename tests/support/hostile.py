"""Hostile values and field-by-field mutation of documents, for the property-based tests.

Shared by tests/unit/test_hostile_parsing.py (the domain's readers, thousands of cases) and
tests/integration/test_hostile_input.py (the real app and emulators): each builds its values
with ``scalars`` and ``nested`` at the sizes it can afford, and mutates the PayNow samples with
``mutated``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import strategies as st

SPECIAL_STRINGS = [
    "",
    " ",
    ".",
    "..",
    "/",
    "a/b",
    "__x__",
    "\x00",
    "\ud800",
    "a\udfffb",
    "\u202e\u0645",
    "💥",
    "0",
    "-1",
    "1e309",
    "null",
    "NaN",
    "ON_ORDER_COMPLETED",
    "gems-100",
    "user-42",
    "usd",
    "USD",
    "x" * 129,
    "x" * 200,
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "${jndi:ldap://127.0.0.1/a}",
    "%s%n",
    "\r\n",
    "ü" * 64,
]
SPECIAL_INTS = [
    0,
    -1,
    1,
    2**31 - 1,
    2**53 - 1,
    2**53,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    10**100,
    1_000_000,
    1_000_001,
]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 0.5, -0.0, 1e308]

# The fields the pipeline reads (ids, amounts, types): half the mutations land on one of them.
FOCUS = frozenset(
    {
        "event_id",
        "event_type",
        "body",
        "id",
        "order_id",
        "customer",
        "customer_id",
        "checkout",
        "metadata",
        "user_id",
        "lines",
        "product_id",
        "quantity",
        "total_amount",
        "amount",
        "currency",
        "status",
        "current_period_end",
        "v",
        "eventId",
        "eventType",
        "customerId",
        "userId",
        "message",
        "data",
        "attributes",
        "publishTime",
        "deliveryAttempt",
    }
)


def scalars(
    *, max_text: int, strings: Sequence[str] = SPECIAL_STRINGS, long_text: bool = False
) -> st.SearchStrategy[Any]:
    """JSON leaves and worse: any int, float (NaN, inf), text with lone surrogates, ``strings``.

    ``long_text`` adds strings of 129 to 300,000 characters (bodies near and over 1 MiB).
    """
    special = st.sampled_from(list(strings))
    leaves = [
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from(SPECIAL_INTS),
        st.floats(),
        st.sampled_from(SPECIAL_FLOATS),
        st.text(st.characters(exclude_categories=()), max_size=max_text),
        special,
        special,  # twice: the special strings are drawn as often as all other text
    ]
    if long_text:
        leaves.append(st.integers(129, 300_000).map(lambda n: "é" * n))
    return st.one_of(leaves)


def nested(
    leaves: st.SearchStrategy[Any], *, max_size: int, max_key: int, max_leaves: int
) -> st.SearchStrategy[Any]:
    """``leaves`` and lists and dicts of them, up to ``max_leaves`` leaves in all."""
    return st.recursive(
        leaves,
        lambda kids: (
            st.lists(kids, max_size=max_size)
            | st.dictionaries(st.text(max_size=max_key), kids, max_size=max_size)
        ),
        max_leaves=max_leaves,
    )


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path in ``node``, the root (``()``) first: dict keys and list indices."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


def at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


@st.composite
def mutated(
    draw: st.DrawFn,
    doc: Any,
    *,
    values: st.SearchStrategy[Any],
    max_ops: int = 3,
    focused_values: st.SearchStrategy[Any] | None = None,
    focus: frozenset[str] = FOCUS,
    ops: Sequence[str] = ("replace", "replace", "replace", "delete", "add"),
) -> Any:
    """``doc`` with up to ``max_ops`` fields replaced by ``values``, deleted or added.

    Each mutation is drawn from ``ops`` (repeat one to weight it); an ``add`` on a leaf, or a
    ``delete`` of the root, replaces it. Half the time (when it has one) a mutation lands on a
    field named in ``focus``, with a value from ``focused_values`` (``values`` if not given).
    """
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(0, max_ops), label="mutations")):
        all_paths = list(paths(doc))
        focused = [p for p in all_paths if p and p[-1] in focus]
        on_focus = bool(focused) and draw(st.booleans(), label="focus")
        path = draw(st.sampled_from(focused if on_focus else all_paths), label="path")
        op = draw(st.sampled_from(list(ops)), label="op")
        strategy = focused_values if on_focus and focused_values is not None else values
        value = copy.deepcopy(draw(strategy, label="value"))
        node = at(doc, path)
        if op == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=12), label="key")] = value
        elif op == "add" and isinstance(node, list):
            node.append(value)
        elif op == "delete" and path:
            del at(doc, path[:-1])[path[-1]]
        elif path:
            at(doc, path[:-1])[path[-1]] = value
        else:
            doc = value
    return doc
