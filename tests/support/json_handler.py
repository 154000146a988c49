"""The request handler the tests' small HTTP servers share: quiet, answering JSON."""

from __future__ import annotations

import http.server
import json
from typing import Any


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """``send_json`` answers a body (encoded here, or bytes already JSON); nothing is logged."""

    def send_json(self, status: int, body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass
