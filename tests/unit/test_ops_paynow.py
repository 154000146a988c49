"""``paynow backfill`` row by row on the fakes, ``--since``, the confirmation, and the rule
that the functions never import the Management API client."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from paynow.adapters.paynow_api import Delivery
from paynow.adapters.secrets import StaticSecrets
from paynow.domain import payloads
from paynow.domain.errors import DependencyUnavailable
from paynow.service.webhook import WebhookService
from pytest_mock import MockerFixture

from scripts.ops import paynow
from scripts.ops.timespan import since
from tests.unit.fakes import FakePublisher, FakeStore
from tests.unit.helpers import CATALOG, settings

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2027, 1, 1, tzinfo=UTC)


def delivery(n: int, payload: bytes | None) -> paynow.Found:
    d = Delivery(
        str(n), "w", START + timedelta(minutes=n), "failed", "OnOrderCompleted", payload, ()
    )
    return paynow.read(d)


def order(event_id: str, customer: str = "cust-1") -> bytes:
    doc = payloads.order_completed(
        event_id, f"o-{event_id}", customer, "user-1", [("gems-100", 1, 1)]
    )
    return payloads.encode(doc)


@pytest.fixture
def service() -> tuple[WebhookService, FakeStore]:
    store = FakeStore(CATALOG, source="backfill")
    return WebhookService(settings(), store, FakePublisher(), StaticSecrets("")), store


def run(service: WebhookService, found: list[paynow.Found]) -> list[tuple[Any, str]]:
    rows = paynow._run(None, service, found, dry_run=False, quiet=True)  # type: ignore[arg-type]
    return [(r["eventId"], r["outcome"]) for r in rows]


def test_each_delivery_gets_the_webhooks_answer_and_the_record_notes_backfill(service):
    svc, store = service
    found = [
        delivery(1, order("e-1")),
        delivery(2, order("e-1")),  # PayNow queued the same event twice
        delivery(3, b'{"event_type": "ON_ORDER_COMPLETED"}'),
        delivery(4, None),
        delivery(5, order("e-2")),
    ]
    assert run(svc, found) == [
        ("e-1", "processed"),
        ("e-1", "duplicate"),
        (None, "failed"),
        (None, "failed"),
        ("e-2", "processed"),
    ]
    assert store.events["e-1"]["source"] == "backfill"
    assert store.balance("user-1") == 200


def test_a_transient_failure_stops_the_run_so_nothing_overtakes_it(service, mocker: MockerFixture):
    svc, store = service
    real = svc.ingest
    calls = iter([None, DependencyUnavailable("Firestore unavailable (ServiceUnavailable)")])

    def ingest(raw: bytes) -> Any:
        error = next(calls, None)
        if error is not None:
            raise error
        return real(raw)

    mocker.patch.object(svc, "ingest", side_effect=ingest)
    found = [delivery(1, order("e-1")), delivery(2, order("e-2")), delivery(3, order("e-3"))]
    assert run(svc, found) == [("e-1", "processed"), ("e-2", "failed"), ("e-3", "not_reached")]
    assert store.status("e-3") is None


def test_a_payload_that_is_not_an_event_says_why():
    found = delivery(1, b"[1, 2]")
    assert (found.event_id, found.problem) == (None, "invalid_payload: body is not a JSON object")
    assert delivery(2, None).problem == "payload is neither a JSON object nor a JSON string"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", START - timedelta(hours=24)),
        ("30m", START - timedelta(minutes=30)),
        ("7d", START - timedelta(days=7)),
        ("90s", START - timedelta(seconds=90)),
        ("2026-12-31T10:00:00+01:00", datetime(2026, 12, 31, 9, tzinfo=UTC)),
        ("2026-12-31T10:00:00", datetime(2026, 12, 31, 10, tzinfo=UTC)),
    ],
)
def test_since_takes_an_age_or_an_instant(text, expected):
    assert since(text, now=START) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "-1h", "1w", ""])
def test_since_refuses_anything_else(text):
    with pytest.raises(argparse.ArgumentTypeError):
        since(text)


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"yes": False, **kw})


def test_the_functions_never_import_the_management_api_client():
    client = ROOT / "functions" / "paynow" / "adapters" / "paynow_api.py"
    for path in (ROOT / "functions").rglob("*.py"):
        if path != client:
            assert not re.search(r"\bpaynow_api\b", path.read_text()), path
