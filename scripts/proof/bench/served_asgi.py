"""The webhook's floors, served as the webhook is: ``functions_framework.aio`` functions,
which functions-framework serves with uvicorn (its gunicorn worker), with the same
environment and settings as the webhook, and Google's async clients on the event loop.

- ``serve_floor``: reads the body and answers JSON: the server's own cost;
- ``queue_floor``: ``serve_floor`` plus queue mode's least work
  (``AsyncFloors.create_and_publish``);
- ``sync_floor``: ``serve_floor`` plus sync mode's least work (``AsyncFloors.credit``);
- ``webhook_on_threads``: an alternative, measured by ``alternatives`` only: the code's
  webhook service, unchanged, behind an ASGI shell that runs it on the webhook's own pool
  (``runtime.webhook_threads``, ``THREADS`` of them): the ASGI server without async clients.

Each answers a GET 405 as the webhook does (``localstack.start_function`` waits for it).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from pathlib import Path

import functions_framework.aio
from google.cloud import firestore
from google.pubsub_v1 import PublisherAsyncClient
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
def _floors() -> floors.AsyncFloors:
    """Made on first use, inside the server's event loop (async gRPC channels bind to it)."""
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    return floors.AsyncFloors(
        firestore.AsyncClient(project=project), PublisherAsyncClient(), project
    )


@functions_framework.aio.http
async def serve_floor(request: Request) -> JSONResponse:
    if (refused := _not_post(request)) is not None:
        return refused
    body = await request.body()
    return JSONResponse({"status": "accepted", "bytes": len(body)})


@functions_framework.aio.http
async def queue_floor(request: Request) -> JSONResponse:
    if (refused := _not_post(request)) is not None:
        return refused
    ids = floors.ids_of(await request.body())
    await _floors().create_and_publish(ids)
    return JSONResponse({"status": "accepted", "eventId": ids.event})


@functions_framework.aio.http
async def sync_floor(request: Request) -> JSONResponse:
    if (refused := _not_post(request)) is not None:
        return refused
    ids = floors.ids_of(await request.body())
    await _floors().credit(ids, recorded=False)
    return JSONResponse({"status": "processed", "eventId": ids.event})


@functions_framework.aio.http
async def webhook_on_threads(request: Request) -> JSONResponse:
    if (refused := _not_post(request)) is not None:
        return refused
    raw = await request.body()
    sig, stamp = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(
        runtime.webhook_threads(), runtime.webhook().accept, raw, sig, stamp
    )
    return JSONResponse({"status": result.status, "eventId": result.event_id})
