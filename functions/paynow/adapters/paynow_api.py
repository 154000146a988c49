"""PayNow's Management API: webhook subscriptions, their delivery history, resends.

The recovery tooling's adapter (``scripts/paynow-ops paynow ...``); the functions
never import it, so they never hold the API key. Facts from PayNow's OpenAPI
spec (``management-api.json``): header ``Authorization: APIKey <key>``;
``GET /v1/stores/{storeId}/webhooks`` lists ``WebhookSubscriptionDto``;
``GET .../webhooks/{webhookId}/history?page=&state=`` answers a
``WebhookHistoryDto`` (``page``, ``history`` of ``QueuedWebhookDto``);
``POST .../webhooks/resend`` with ``{"webhook_id": ...}`` answers 204; every
error is a ``PayNowError`` (``status``, ``code``, ``message``, ``trace_id``).

The spec types ``payload`` as anything: an object or a JSON string are both
taken as the webhook body PayNow sent. It does not say where pages start, so
the client asks from page 0 and stops at the first page with nothing it has
not seen (an empty page, or a server that answers its last page again).
Transient answers (429, 5xx) and network failures are retried with
exponential backoff, honouring ``Retry-After``. The key is never put in an
error, a log line or a ``repr``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from paynow.config import ConfigError

DEFAULT_URL = "https://api.paynow.gg"
NO_KEY = "PAYNOW_API_KEY or PAYNOW_API_KEY_SECRET_ID must be set for the paynow commands"
STATES = ("success", "pending", "failed", "all")  # WebhookState
JSON_WEBHOOK = "json_v1"  # WebhookType of a subscription that posts PayNow's JSON body
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PAGES = 10_000  # a bound, far above any real history, so a broken server cannot loop us
_SECRET_ID = re.compile(r"projects/[^/]+/secrets/[^/]+")
_PATH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # FlakeIds are digits; kept safe in a URL path
_KEY = re.compile(r"[\x21-\x7e]{8,512}")  # printable, no spaces: it goes into a header


class PayNowApiError(Exception):
    """A Management API call that failed: one line, naming the call and PayNow's answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ApiSettings:
    """The recovery tooling's PayNow settings, validated once when a command starts."""

    url: str
    store_id: str
    api_key: str | None = field(repr=False)
    api_key_secret_id: str | None

    @classmethod
    def load(cls, env: Mapping[str, str]) -> ApiSettings:
        """Read ``PAYNOW_API_URL``, ``PAYNOW_STORE_ID`` and the key (value, else secret id)."""

        def text(name: str) -> str | None:
            return env.get(name, "").strip() or None

        url = (text("PAYNOW_API_URL") or DEFAULT_URL).rstrip("/")
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
            raise ConfigError(f"PAYNOW_API_URL must be an http(s) URL, got {url!r}")
        store = text("PAYNOW_STORE_ID")
        if store is None:
            raise ConfigError("PAYNOW_STORE_ID must name the PayNow store (its id)")
        if not _PATH_ID.fullmatch(store):
            raise ConfigError(f"PAYNOW_STORE_ID must be a PayNow id (digits), got {store!r}")
        key, secret_id = text("PAYNOW_API_KEY"), text("PAYNOW_API_KEY_SECRET_ID")
        if key is not None and not _KEY.fullmatch(key):
            # Never echo the value: it may be the key with a typo in it.
            raise ConfigError(
                "PAYNOW_API_KEY must be the API key alone (8-512 printable characters, "
                "no spaces; not the 'APIKey ' prefix)"
            )
        if secret_id is not None and not _SECRET_ID.fullmatch(secret_id):
            raise ConfigError(
                f"PAYNOW_API_KEY_SECRET_ID must look like projects/P/secrets/S, got {secret_id!r}"
            )
        if key is None and secret_id is None:
            raise ConfigError(NO_KEY)
        return cls(url=url, store_id=store, api_key=key, api_key_secret_id=secret_id)

    def key(self, read_secret: Callable[[str], str] | None = None) -> str:
        """The key: the value when given, else the latest version of the secret."""
        if self.api_key is not None:
            return self.api_key
        if self.api_key_secret_id is None:  # ``load`` refuses it; settings made by hand may not
            raise ConfigError(NO_KEY)
        if read_secret is None:
            from paynow.adapters.secrets import read_latest

            read_secret = read_latest
        value = read_secret(self.api_key_secret_id).strip()
        if not _KEY.fullmatch(value):
            raise ConfigError(
                f"PAYNOW_API_KEY_SECRET_ID: the secret {self.api_key_secret_id} does not hold "
                "an API key (8-512 printable characters, no spaces)"
            )
        return value


@dataclass(frozen=True)
class Subscription:
    """A ``WebhookSubscriptionDto`` without its signing secret."""

    id: str
    event: str  # WebhookEventType, e.g. OnOrderCompleted
    url: str
    type: str  # json_v1 | discord_v1


@dataclass(frozen=True)
class Execution:
    """One delivery attempt (``ExecutedWebhookDto``); ``status_code`` as PayNow saw it."""

    started_at: datetime | None
    status_code: int | None


@dataclass(frozen=True)
class Delivery:
    """A ``QueuedWebhookDto``: one event PayNow queued for one subscription."""

    id: str
    webhook_id: str
    created_at: datetime
    state: str
    event: str
    payload: bytes | None  # the webhook body; None when PayNow's value is neither form
    executions: tuple[Execution, ...]

    @property
    def attempts(self) -> int:
        return len(self.executions)

    @property
    def last_status(self) -> int | None:
        """The status code of the latest attempt (by start time; the last listed if undated)."""
        if not self.executions:
            return None
        dated = [e for e in self.executions if e.started_at is not None]
        last = max(dated, key=lambda e: e.started_at or self.created_at) if dated else None
        return (last or self.executions[-1]).status_code


def payload_bytes(value: object) -> bytes | None:
    """``payload`` as the body PayNow posted: an object is encoded, a string taken as is."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return None


class PayNowApi:
    """A client of one store's webhook endpoints of the Management API."""

    def __init__(
        self,
        base_url: str,
        store_id: str,
        api_key: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        attempts: int = 5,
        backoff_seconds: float = 0.5,
        max_wait_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not _PATH_ID.fullmatch(store_id):
            raise ValueError("store_id must be a PayNow id")
        self._base = base_url.rstrip("/")
        self._store = store_id
        self._session = session or requests.Session()
        self._headers = {
            "Authorization": f"APIKey {api_key}",
            "Accept": "application/json",
            "User-Agent": "paynow-points-ops",
        }
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._max_wait = max_wait_seconds
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: ApiSettings, **kw: Any) -> PayNowApi:
        return cls(settings.url, settings.store_id, settings.key(), **kw)

    def __repr__(self) -> str:
        return f"PayNowApi({self._base!r}, store {self._store})"

    # --- the endpoints ------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        """The store's webhook subscriptions (their secrets are dropped here)."""
        path = f"/v1/stores/{self._store}/webhooks"
        doc = self._json("GET", path)
        if not isinstance(doc, list):
            raise PayNowApiError(f"PayNow API: GET {path}: the answer is not a list")
        return [_subscription(item, path) for item in doc]

    def history(self, webhook_id: str, state: str) -> Iterator[Delivery]:
        """Every delivery of one subscription in ``state``, page by page until an empty one."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        _check_id(webhook_id, "webhook id")
        path = f"/v1/stores/{self._store}/webhooks/{webhook_id}/history"
        seen: set[str] = set()
        for page in range(MAX_PAGES):
            doc = self._json("GET", path, params={"page": page, "state": state})
            where = f"GET {path}?page={page}"
            items = doc.get("history") if isinstance(doc, dict) else None
            if not isinstance(items, list):
                raise PayNowApiError(f"PayNow API: {where}: the answer is not a WebhookHistoryDto")
            fresh = [d for d in (_delivery(item, where) for item in items) if d.id not in seen]
            if not fresh:
                return
            seen.update(d.id for d in fresh)
            yield from fresh
        raise PayNowApiError(f"PayNow API: {path}: still answering after {MAX_PAGES} pages")

    def resend(self, delivery_id: str) -> None:
        """Ask PayNow to deliver a queued webhook again (204)."""
        _check_id(delivery_id, "delivery id")
        self._request(
            "POST", f"/v1/stores/{self._store}/webhooks/resend", {"webhook_id": delivery_id}
        )

    # --- HTTP -----------------------------------------------------------------

    def _json(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self._request(method, path, params=params)
        try:
            return response.json()
        except ValueError:
            query = f"?page={params['page']}" if params and "page" in params else ""
            kind = response.headers.get("Content-Type", "no content type")
            raise PayNowApiError(
                f"PayNow API: {method} {path}{query} answered {response.status_code} with a "
                f"body that is not JSON ({kind.split(';')[0]})",
                response.status_code,
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        """One call, retried on 429/5xx and network failures; an error answer raises."""
        url = self._base + path
        for attempt in range(1, self._attempts + 1):
            last = attempt == self._attempts
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=self._headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                if last:
                    raise PayNowApiError(
                        f"PayNow API: {method} {path}: no answer from {self._base} after "
                        f"{attempt} attempts ({type(exc).__name__})"
                    ) from None
                self._sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRIED_STATUSES and not last:
                wait = self._delay(attempt, response.headers.get("Retry-After"))
                if wait > self._max_wait:
                    raise PayNowApiError(
                        f"PayNow API: {method} {path} answered {response.status_code} and asks "
                        f"to wait {wait:.0f} s (more than {self._max_wait:.0f} s): try later",
                        response.status_code,
                    )
                self._sleep(wait)
                continue
            if response.status_code >= 300:
                raise PayNowApiError(_error_line(method, path, response), response.status_code)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """``Retry-After`` (seconds or an HTTP date) when given, else exponential backoff."""
        if retry_after is not None:
            wait = _retry_after_seconds(retry_after)
            if wait is not None:
                return wait
        return float(min(self._backoff * 2 ** (attempt - 1), self._max_wait))


# --- reading the answers --------------------------------------------------------


def _check_id(value: str, what: str) -> None:
    if not _PATH_ID.fullmatch(value):
        raise ValueError(f"{what} must be a PayNow id (letters, digits, - and _)")


def _retry_after_seconds(value: str) -> float | None:
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_line(method: str, path: str, response: requests.Response) -> str:
    """PayNow's ``PayNowError`` as one line (its message is PayNow's, never our key)."""
    head = f"PayNow API: {method} {path} answered {response.status_code}"
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return f"{head} (no PayNow error body)"
    code, message = doc.get("code"), doc.get("message")
    text = " ".join(str(message).split())[:200] if message else ""
    line = f"{head} {code}" if isinstance(code, str) and code else head
    if text:
        line += f": {text}"
    trace = doc.get("trace_id")
    if isinstance(trace, str) and trace:
        line += f" (trace {trace[:64]})"
    return line


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _subscription(item: object, where: str) -> Subscription:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise PayNowApiError(f"PayNow API: GET {where}: an item is not a WebhookSubscriptionDto")
    return Subscription(
        id=item["id"],
        event=str(item.get("subscribed_to", "")),
        url=str(item.get("url", "")),
        type=str(item.get("type", "")),
    )


def _delivery(item: object, where: str) -> Delivery:
    if not isinstance(item, dict):
        raise PayNowApiError(f"PayNow API: {where}: a history item is not a QueuedWebhookDto")
    delivery_id, created = item.get("id"), _time(item.get("created_at"))
    if not isinstance(delivery_id, str) or created is None:
        raise PayNowApiError(
            f"PayNow API: {where}: a history item has no id or created_at (QueuedWebhookDto)"
        )
    executions = item.get("executions")
    return Delivery(
        id=delivery_id,
        webhook_id=str(item.get("webhook_id", "")),
        created_at=created,
        state=str(item.get("state", "")),
        event=str(item.get("event", "")),
        payload=payload_bytes(item.get("payload")),
        executions=tuple(
            Execution(
                _time(e.get("started_at")),
                e.get("status_code") if isinstance(e.get("status_code"), int) else None,
            )
            for e in (executions if isinstance(executions, list) else [])
            if isinstance(e, dict)
        ),
    )
