"""The Management API client against the local PayNow API server, over real HTTP.

Auth, PayNow's error bodies, pagination, the payload's two forms, retries that honour
Retry-After, a page that is not JSON, and the settings it starts from. No emulator is
needed: the server is ``scripts/local/paynow_api_server.py`` on a free port.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from paynow.adapters.paynow_api import (
    DEFAULT_URL,
    ApiSettings,
    PayNowApi,
    PayNowApiError,
    payload_bytes,
)
from paynow.config import ConfigError
from paynow.domain import payloads
from pytest_mock import MockerFixture

from scripts.local.paynow_api_server import PayNowApiServer, enum_name

KEY = "test-api-key-0123456789"
STORE = "411486491630370816"
WEBHOOK = "http://127.0.0.1:9/"  # never reached: these tests only read the history


@pytest.fixture
def server() -> Iterator[PayNowApiServer]:
    srv = PayNowApiServer(KEY, STORE, page_size=3)
    yield srv
    srv.close()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client(server: PayNowApiServer, sleeps: Sleeps, key: str = KEY, **kw: Any) -> PayNowApi:
    return PayNowApi(server.url, kw.pop("store", STORE), key, sleep=sleeps, **kw)


def order(n: int) -> dict[str, Any]:
    return payloads.order_completed(
        f"evt-{n}", f"order-{n}", f"cust-{n}", f"user-{n}", [("gems-100", 1, 1)]
    )


def test_subscriptions_keep_id_event_url_and_type_and_drop_the_secret(server, sleeps):
    sub = server.subscribe("ON_ORDER_COMPLETED", WEBHOOK, "whsec-very-secret")
    server.subscribe("ON_REFUND", "https://discord.example/hook", kind="discord_v1")
    (mine, discord) = client(server, sleeps).subscriptions()
    assert (mine.id, mine.event, mine.url, mine.type) == (
        sub.id,
        "OnOrderCompleted",
        WEBHOOK,
        "json_v1",
    )
    assert discord.type == "discord_v1"
    assert "whsec-very-secret" not in repr(mine)
    assert server.calls[-1][0:1] == ("GET",)


def test_a_wrong_key_is_paynows_401_as_one_line_without_the_key(server, sleeps):
    with pytest.raises(PayNowApiError) as caught:
        client(server, sleeps, key="wrong-key-0123456789").subscriptions()
    assert caught.value.status == 401
    text = str(caught.value)
    assert text.startswith(f"PayNow API: GET /v1/stores/{STORE}/webhooks answered 401 unauthorized")
    assert "wrong-key" not in text and "\n" not in text
    assert sleeps == []  # a refusal is not retried


def test_a_request_without_a_key_gets_paynows_error_body(server):
    answer = requests.get(f"{server.url}/v1/stores/{STORE}/webhooks", timeout=5)
    assert answer.status_code == 401
    body = answer.json()
    assert set(body) >= {"status", "code", "message"} and body["status"] == 401


def test_an_unknown_store_or_webhook_is_404(server, sleeps):
    with pytest.raises(PayNowApiError, match=r"answered 404 not-found: store not found") as caught:
        client(server, sleeps, store="999").subscriptions()
    assert caught.value.status == 404
    with pytest.raises(PayNowApiError, match="webhook not found"):
        list(client(server, sleeps).history("12345", "failed"))


def test_history_pages_until_an_empty_page_and_filters_by_state(server, sleeps):
    sub = server.subscribe("ON_ORDER_COMPLETED", WEBHOOK)
    start = datetime(2027, 1, 1, tzinfo=UTC)
    failed = [
        server.queue(order(i), created_at=start + timedelta(minutes=i), statuses=(0, 503, 401))
        for i in range(7)
    ]
    server.queue(order(99), state="success", statuses=(200,))
    api = client(server, sleeps)
    got = list(api.history(sub.id, "failed"))
    assert sorted(d.id for d in got) == sorted(q.id for q in failed)
    pages = [path for method, path, _ in server.calls if "history" in path]
    assert [p.split("page=")[1].split("&")[0] for p in pages] == ["0", "1", "2", "3"]
    newest = got[0]
    assert newest.created_at == start + timedelta(minutes=6)  # the server answers newest first
    assert (newest.attempts, newest.last_status, newest.state) == (3, 401, "failed")
    assert newest.event == "OnOrderCompleted"
    assert json.loads(newest.payload or b"")["event_id"] == "evt-6"
    assert len(list(api.history(sub.id, "all"))) == 8
    assert [d.state for d in api.history(sub.id, "success")] == ["success"]


def test_the_payload_is_taken_as_an_object_or_as_a_json_string(server, sleeps):
    sub = server.subscribe("ON_ORDER_COMPLETED", WEBHOOK)
    raw = '{"event_type": "ON_ORDER_COMPLETED", "event_id": "evt-s", "body": {}}'
    server.queue(raw)
    server.queue(order(1), as_string=True)
    server.queue(order(2))
    by_id = {
        json.loads(d.payload or b"")["event_id"]: d.payload
        for d in client(server, sleeps).history(sub.id, "failed")
    }
    assert by_id["evt-s"] == raw.encode()  # a string is the body, byte for byte
    assert json.loads(by_id["evt-1"] or b"") == order(1)
    assert json.loads(by_id["evt-2"] or b"") == order(2)
    assert payload_bytes(None) is None and payload_bytes([1]) is None and payload_bytes(5) is None


def test_429_is_retried_after_what_retry_after_says(server, sleeps):
    server.subscribe("ON_ORDER_COMPLETED", WEBHOOK)
    server.fail_next(429, retry_after="2")
    assert len(client(server, sleeps).subscriptions()) == 1
    assert sleeps == [2.0]
    assert [status for _, _, status in server.calls] == [429, 200]


def test_5xx_is_retried_with_exponential_backoff(server, sleeps):
    server.subscribe("ON_ORDER_COMPLETED", WEBHOOK)
    server.fail_next(503, times=3)
    assert len(client(server, sleeps, backoff_seconds=0.25).subscriptions()) == 1
    assert sleeps == [0.25, 0.5, 1.0]


def test_5xx_that_lasts_ends_in_paynows_message(server, sleeps):
    server.fail_next(502, times=10)
    with pytest.raises(PayNowApiError, match=r"answered 502 server-error: injected failure"):
        client(server, sleeps, attempts=3).subscriptions()
    assert len(server.calls) == 3 and len(sleeps) == 2


def test_a_retry_after_longer_than_the_tool_waits_is_an_error_at_once(server, sleeps):
    server.fail_next(429, retry_after="3600")
    with pytest.raises(PayNowApiError, match=r"asks to wait 3600 s"):
        client(server, sleeps).subscriptions()
    assert sleeps == []


def test_a_history_page_that_is_not_json_stops_with_a_clear_error(server, sleeps):
    sub = server.subscribe("ON_ORDER_COMPLETED", WEBHOOK)
    for i in range(4):
        server.queue(order(i))
    server.fail_next(200, not_json=True, path="history")
    with pytest.raises(PayNowApiError, match=r"page=0 answered 200 with a body that is not JSON"):
        list(client(server, sleeps).history(sub.id, "failed"))


def test_no_answer_at_all_is_retried_then_named(sleeps):
    dead = PayNowApiServer(KEY, STORE)
    url = dead.url
    dead.close()
    api = PayNowApi(url, STORE, KEY, sleep=sleeps, attempts=2, timeout=(1.0, 1.0))
    with pytest.raises(PayNowApiError, match=r"no answer from http://127\.0\.0\.1:\d+ after 2"):
        api.subscriptions()
    assert len(sleeps) == 1


def test_resend_posts_the_delivery_id_and_an_unknown_one_is_404(server, sleeps):
    server.subscribe("ON_ORDER_COMPLETED", WEBHOOK)
    queued = server.queue(order(1))
    api = client(server, sleeps)
    api.resend(queued.id)
    assert server.resent == [queued.id]
    assert ("POST", f"/v1/stores/{STORE}/webhooks/resend", 204) in server.calls
    with pytest.raises(PayNowApiError, match="404 not-found: queued webhook not found"):
        api.resend("123")
    with pytest.raises(ValueError, match="delivery id"):
        api.resend("../../stores")


def test_a_server_that_repeats_its_last_page_does_not_loop_forever(mocker: MockerFixture):
    item = {
        "id": "1",
        "webhook_id": "w",
        "created_at": "2027-01-01T00:00:00.1234567Z",
        "state": "failed",
        "event": "OnOrderCompleted",
        "payload": {},
        "executions": [],
    }
    response = mocker.MagicMock(status_code=200)
    response.json.return_value = {"page": 0, "history": [item]}
    session = mocker.MagicMock()
    session.request.return_value = response
    api = PayNowApi("https://api.paynow.gg", STORE, KEY, session=session)
    (only,) = list(api.history("42", "failed"))
    assert only.created_at == datetime(2027, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert session.request.call_count == 2
    (headers,) = {c.kwargs["headers"]["Authorization"] for c in session.request.call_args_list}
    assert headers == f"APIKey {KEY}"
    assert KEY not in repr(api)


def test_enum_names_follow_paynows_spelling():
    assert enum_name("ON_ORDER_COMPLETED") == "OnOrderCompleted"
    assert enum_name("ON_CHARGEBACK_CLOSED") == "OnChargebackClosed"


# --- settings --------------------------------------------------------------------------


def test_settings_take_the_url_store_and_key():
    s = ApiSettings.load({"PAYNOW_STORE_ID": STORE, "PAYNOW_API_KEY": KEY})
    assert (s.url, s.store_id, s.key()) == ("https://api.paynow.gg", STORE, KEY)
    assert KEY not in repr(s)
    local = ApiSettings.load(
        {"PAYNOW_API_URL": "http://127.0.0.1:8090/", "PAYNOW_STORE_ID": "1", "PAYNOW_API_KEY": KEY}
    )
    assert local.url == "http://127.0.0.1:8090"


def test_the_key_can_come_from_secret_manager():
    secret = "projects/p/secrets/paynow-api-key"
    s = ApiSettings.load({"PAYNOW_STORE_ID": STORE, "PAYNOW_API_KEY_SECRET_ID": secret})
    asked: list[str] = []

    def read(name: str) -> str:
        asked.append(name)
        return f"{KEY}\n"

    assert s.key(read) == KEY
    assert asked == [secret]
    with pytest.raises(ConfigError, match="does not hold an API key"):
        s.key(lambda name: "has a space in it")


def test_settings_made_without_any_key_are_a_configuration_error_not_an_assert():
    """``load`` refuses them; settings built by hand still get the error naming the variables."""
    s = ApiSettings(url=DEFAULT_URL, store_id=STORE, api_key=None, api_key_secret_id=None)
    with pytest.raises(ConfigError, match="PAYNOW_API_KEY or PAYNOW_API_KEY_SECRET_ID"):
        s.key(lambda name: KEY)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PAYNOW_API_KEY": KEY}, "PAYNOW_STORE_ID"),
        ({"PAYNOW_STORE_ID": "../x", "PAYNOW_API_KEY": KEY}, "PAYNOW_STORE_ID"),
        ({"PAYNOW_STORE_ID": STORE}, "PAYNOW_API_KEY or PAYNOW_API_KEY_SECRET_ID"),
        ({"PAYNOW_STORE_ID": STORE, "PAYNOW_API_KEY": "APIKey abcdefgh"}, "PAYNOW_API_KEY"),
        ({"PAYNOW_STORE_ID": STORE, "PAYNOW_API_KEY": "short"}, "PAYNOW_API_KEY"),
        ({"PAYNOW_STORE_ID": STORE, "PAYNOW_API_KEY_SECRET_ID": "paynow"}, "SECRET_ID"),
        (
            {"PAYNOW_STORE_ID": STORE, "PAYNOW_API_KEY": KEY, "PAYNOW_API_URL": "ftp://x"},
            "PAYNOW_API_URL",
        ),
    ],
)
def test_a_bad_setting_names_its_variable_and_never_the_key(env, named):
    with pytest.raises(ConfigError, match=named) as caught:
        ApiSettings.load(env)
    assert "abcdefgh" not in str(caught.value) and "short" not in str(caught.value)
