"""An ASGI app called in this process as uvicorn calls it: a scope, the body as
``http.request`` messages, the answer collected from what it sends.

All calls run on one event loop of the client's own, in a thread, as in a server: async
clients an app makes on its first request stay bound to that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
CHUNK = 64 * 1024


@dataclass
class Answered:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def of_function(function: Callable[[Request], Awaitable[Response]]) -> App:
    """The ASGI app around one ``functions_framework.aio`` function, as the framework's own."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = await function(Request(scope, receive))
        await response(scope, receive, send)

    return app


class AsgiClient:
    def __init__(self, app: App) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def request(
        self,
        method: str = "POST",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        chunked: bool = False,
        pieces: list[bytes] | None = None,
    ) -> Answered:
        """``chunked`` (or ``pieces`` given): no Content-Length, the body in pieces."""
        call = self._call(method, body, dict(headers or {}), chunked or pieces is not None, pieces)
        return asyncio.run_coroutine_threadsafe(call, self._loop).result(timeout=120)

    def close(self) -> None:
        """Stop the loop and close it, with whatever the app left on it (its async clients)."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _call(
        self,
        method: str,
        body: bytes,
        headers: dict[str, str],
        chunked: bool,
        pieces: list[bytes] | None,
    ) -> Answered:
        if pieces is None:
            pieces = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
        if not chunked:
            headers["Content-Length"] = str(len(body))
        left = list(pieces)

        async def receive() -> dict[str, Any]:
            if left:
                return {"type": "http.request", "body": left.pop(0), "more_body": bool(left)}
            return {"type": "http.disconnect"}

        answered = Answered(0)

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answered.status = message["status"]
                answered.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                answered.body += message.get("body", b"")

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        await self._app(scope, receive, send)
        return answered
