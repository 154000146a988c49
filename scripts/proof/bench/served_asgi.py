"""The load target's alternatives on functions-framework's ASGI server (``FUNCTION_USE_ASGI``).

Measured by ``python -m scripts.proof.bench.alternatives``, not by the bench's run:

- ``asgi_queue_floor``: queue mode's least work with Google's async clients (the record's
  create and one Publish RPC, awaited together on the event loop): what a fully async
  webhook could reach at best;
- ``asgi_webhook_on_threads``: the code's own webhook service, unchanged, behind an ASGI
  shell that runs it on a pool of ``THREADS`` threads: the ASGI server without async clients.

Both answer a GET 405 (``localstack.start_function`` waits for it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import os
import sys
from pathlib import Path

import functions_framework.aio
from google.cloud import firestore
from google.pubsub_v1 import PubsubMessage
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from starlette.requests import Request
from starlette.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "functions"))

from paynow import runtime
from paynow.domain.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER

from scripts.proof.bench import floors


def _not_post(request: Request) -> JSONResponse | None:
    if request.method == "POST":
        return None
    return JSONResponse({"error": "use POST"}, status_code=405)


@functools.cache
def _async_clients() -> tuple[firestore.AsyncClient, PublisherAsyncClient, str]:
    """Made on first use, inside the server's event loop (async gRPC channels bind to it)."""
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    topic = f"projects/{project}/topics/paynow-events"
    return firestore.AsyncClient(project=project), PublisherAsyncClient(), topic


@functools.cache
def _pool() -> cf.ThreadPoolExecutor:
    return cf.ThreadPoolExecutor(int(os.environ["THREADS"]))


@functions_framework.aio.http
async def asgi_queue_floor(request: Request) -> JSONResponse:
    if (refused := _not_post(request)) is not None:
        return refused
    ids = floors.ids_of(await request.body())
    db, publisher, topic = _async_clients()
    data, attributes = floors.message(ids)
    message = PubsubMessage(data=data, attributes=attributes, ordering_key=ids.customer)
    await asyncio.gather(
        db.collection(floors.EVENTS).document(ids.event).create(floors.record(ids, "queue")),
        publisher.publish(topic=topic, messages=[message]),
    )
    return JSONResponse({"status": "accepted", "eventId": ids.event})


@functions_framework.aio.http
async def asgi_webhook_on_threads(request: Request) -> JSONResponse:
    if (refused := _not_post(request)) is not None:
        return refused
    raw = await request.body()
    sig, stamp = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(_pool(), runtime.webhook().accept, raw, sig, stamp)
    return JSONResponse({"status": result.status, "eventId": result.event_id})
