"""The bench's own WSGI functions-framework targets, served as the worker is (gunicorn threads).

- ``worker_floor``: a push endpoint doing the raw loop's transaction
  (``Floors.credit`` on a recorded event): push delivery and serving plus the worker's least
  work, beside the worker (the target's floor is the raw loop; this shows what push and the
  server cost of it);
- ``peer_webhook``: the handler a team would write from Google's samples (Flask): verify the
  signature, create the record, then publish with the client's default batch settings
  (ordering on, for the key) and wait for it;
- ``wsgi_queue_floor``: queue mode's least work on gunicorn's threads with the blocking
  clients, measured by ``alternatives`` only: the webhook's floor as it was served before
  the webhook became an ASGI function.

The webhook's own floors are in ``served_asgi.py``. Each answers a GET 405 as the webhook
does (``localstack.start_function`` waits for it). Started by the bench's stack with
``localstack.start_function(..., source=this file)``, with the same environment and server
settings as the function each stands beside.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import sys
import time
from pathlib import Path

import flask
import functions_framework
from google.cloud import firestore, pubsub_v1
from google.cloud.pubsub_v1.types import PublisherOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from scripts.proof.bench import floors


def _answer(body: dict[str, object], status: int = 200) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = status
    return response


def _not_post(request: flask.Request) -> flask.Response | None:
    return None if request.method == "POST" else _answer({"error": "use POST"}, 405)


@functools.cache
def _floors() -> floors.Floors:
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    return floors.Floors(firestore.Client(project=project), pubsub_v1.PublisherClient(), project)


@functions_framework.http
def wsgi_queue_floor(request: flask.Request) -> flask.Response:
    if (refused := _not_post(request)) is not None:
        return refused
    ids = floors.ids_of(request.get_data())
    _floors().create_and_publish(ids)
    return _answer({"status": "accepted", "eventId": ids.event})


@functions_framework.http
def worker_floor(request: flask.Request) -> flask.Response:
    if (refused := _not_post(request)) is not None:
        return refused
    ids = floors.ids_of_push(request.get_data())
    _floors().credit(ids, recorded=True)
    return _answer({"status": "processed", "eventId": ids.event})


@functools.cache
def _peer_publisher() -> pubsub_v1.PublisherClient:
    # Google's ordering sample: ordering on, batch settings left at their defaults.
    return pubsub_v1.PublisherClient(
        publisher_options=PublisherOptions(enable_message_ordering=True)
    )


@functions_framework.http
def peer_webhook(request: flask.Request) -> flask.Response:
    if (refused := _not_post(request)) is not None:
        return refused
    body = request.get_data()
    stamp = request.headers.get("PayNow-Timestamp", "")
    given = request.headers.get("PayNow-Signature", "")
    secret = os.environ["PAYNOW_WEBHOOK_SECRET"].encode()
    digest = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).digest()
    fresh = stamp.isdigit() and abs(time.time() * 1000 - int(stamp)) < 300_000
    if not (fresh and hmac.compare_digest(base64.b64encode(digest).decode(), given)):
        return _answer({"error": "invalid_signature"}, 401)
    ids = floors.ids_of(body)
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    _floors().db.collection(floors.EVENTS).document(ids.event).create(floors.record(ids, "queue"))
    data, attributes = floors.message(ids)
    topic = f"projects/{project}/topics/paynow-events"
    _peer_publisher().publish(topic, data, ordering_key=ids.customer, **attributes).result()
    return _answer({"status": "accepted", "eventId": ids.event})
