"""Structured JSON logs on stdout, the shape Cloud Logging parses into jsonPayload.

Stable names matter: log-based metrics and alerts filter on ``metric`` and
the fields below. Only ids, codes, counts and timings are ever passed in;
never a secret, a signature, a token, an email, a name or an IP.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

# Metric names (jsonPayload.metric), used by infra/monitoring.
QUEUE_PUBLISHED = "paynow_queue_published"
QUEUE_PUBLISH_LATENCY = "paynow_queue_publish_latency"
WEBHOOK_HANDLED = "paynow_webhook_handled"
WEBHOOK_REJECTED = "paynow_webhook_rejected"
CALLER_REFUSED = "paynow_caller_refused"  # a push or scheduler token refused (401/403)
WORKER_PROCESSED = "paynow_worker_processed"
WORKER_FAILURES = "paynow_worker_failures"
WORKER_LATENCY = "paynow_worker_latency"
DEAD_LETTERED = "paynow_dead_lettered"
RECONCILE_REPUBLISHED = "paynow_reconcile_republished"

_lock = threading.Lock()


def log(severity: str, message: str, **fields: Any) -> None:
    """Write one JSON log line; ``None`` fields are left out."""
    entry = {"severity": severity, "message": message}
    entry.update({k: v for k, v in fields.items() if v is not None})
    line = json.dumps(entry, default=str, separators=(",", ":"))
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` value), rounded for logs."""
    return round((time.perf_counter() - started) * 1000, 2)
