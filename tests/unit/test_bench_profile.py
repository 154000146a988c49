"""``bench.profile.breakdown``: py-spy's raw stacks sorted into the layers of a request."""

from __future__ import annotations

import pytest

from scripts.proof.bench.profile import breakdown

LIB = "/venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"
HANDLE = f"ThreadWorker.handle ({LIB}/gunicorn/workers/gthread.py:553)"
FLASK = f"Flask.__call__ ({LIB}/flask/app.py:1536)"
CREATE = f"DocumentReference.create ({LIB}/google/cloud/firestore_v1/document.py:140)"
GRPC = f"_UnaryUnaryMultiCallable.__call__ ({LIB}/grpc/_channel.py:1181)"
POOL = "thread (101): ThreadPoolExecutor-0_0"


def _line(thread: str, frames: list[str], count: int) -> str:
    return ";".join([thread, *frames]) + f" {count}"


def _raw(ours: str) -> list[str]:
    """Sampled stacks of a webhook served from ``ours`` (py-spy's full file names)."""
    function = f"paynow_webhook ({ours}/main.py:45)"
    accept = f"WebhookService.accept ({ours}/paynow/service/webhook.py:70)"
    record = f"FirestoreEventStore.record_received ({ours}/paynow/adapters/firestore_store.py:108)"
    return [
        _line(POOL, [HANDLE, FLASK, function, accept, record, CREATE, GRPC], 7),
        _line(POOL, [HANDLE, FLASK, function, f"_read_body ({ours}/main.py:130)"], 2),
        _line(POOL, [HANDLE, FLASK, f"Flask.full_dispatch_request ({LIB}/flask/app.py:917)"], 3),
        _line(POOL, [HANDLE, f"Response.write ({LIB}/gunicorn/http/wsgi.py:390)"], 4),
        _line(POOL, [f"_worker ({LIB}/concurrent/futures/thread.py:81)"], 50),  # idle pool
        _line("thread (7): MainThread", [HANDLE], 9),  # not a handler thread
        _line("thread (8): Thread-CommitBatchPublisher", [f"Batch._commit ({LIB}/x.py:1)"], 5),
    ]


RAW = _raw("/srv/app/functions")


@pytest.mark.parametrize("ours", ["/srv/app/functions", "/workspace", "/home/u/venv-functions"])
def test_handler_samples_go_to_our_last_frame_and_the_library_call_below_it(ours: str) -> None:
    """Wherever the function is served from, the frames beside its file are ours."""
    assert breakdown(_raw(ours), "paynow_webhook") == {
        "function: FirestoreEventStore.record_received > DocumentReference.create": 7,
        "function: _read_body (own code)": 2,
        "Flask + functions-framework around the function": 3,
        "gunicorn around Flask (parse, write)": 4,
    }


def test_depth_shows_more_library_calls_below_our_frame() -> None:
    layers = breakdown(RAW, "paynow_webhook", depth=2)
    assert (
        layers[
            "function: FirestoreEventStore.record_received > DocumentReference.create"
            " > _UnaryUnaryMultiCallable.__call__"
        ]
        == 7
    )


def test_another_function_target_leaves_the_webhook_s_samples_to_the_framework() -> None:
    layers = breakdown(RAW, "paynow_worker")
    assert layers["Flask + functions-framework around the function"] == 3 + 7 + 2


def test_an_asgi_webhook_s_loop_samples_split_below_the_loop_s_step() -> None:
    """Below ``_run_once``: our coroutine (or a task of ours), the frameworks around it, the
    client libraries' callbacks, or the loop idle; the worker's start-up frames above it
    (functions-framework's CLI, gunicorn's arbiter) never count as the framework."""
    ours = "/srv/app/functions"
    start = [
        f"_cli ({LIB}/functions_framework/_cli.py:48)",
        f"UvicornWorker.run ({LIB}/uvicorn_worker/_workers.py:126)",
        f"BaseEventLoop.run_forever ({STDLIB}/asyncio/base_events.py:608)",
        f"BaseEventLoop._run_once ({STDLIB}/asyncio/base_events.py:1922)",
    ]
    run = f"Handle._run ({STDLIB}/asyncio/events.py:80)"
    cycle = f"RequestResponseCycle.run_asgi ({LIB}/uvicorn/protocols/http/h11_impl.py:403)"
    app = f"Starlette.__call__ ({LIB}/starlette/applications.py:107)"
    function = f"paynow_webhook ({ours}/main.py:57)"
    queueable = f"WebhookService.queueable ({ours}/paynow/service/webhook.py:90)"
    verify = f"verify ({ours}/paynow/domain/signature.py:40)"
    publish = f"AsyncPubSubPublisher.publish ({ours}/paynow/adapters/pubsub_publisher.py:70)"
    gapic = f"PublisherAsyncClient.publish ({LIB}/google/pubsub_v1/async_client.py:600)"
    main = "thread (7): MainThread"
    raw = [
        _line(main, [*start, run, cycle, app, function, queueable, verify], 4),
        _line(main, [*start, run, publish, gapic], 2),
        _line(main, [*start, run, cycle, app], 5),
        _line(main, [*start, run, f"H11Protocol.data_received ({LIB}/uvicorn/h11_impl.py:90)"], 3),
        _line(main, [*start, f"EpollSelector.select ({STDLIB}/selectors.py:468)"], 40),
        _line(main, [*start, run, f"UnaryUnaryCall._invoke ({LIB}/grpc/_cython/aio.pyx:1)"], 1),
        _line(POOL, [f"_worker ({STDLIB}/concurrent/futures/thread.py:81)"], 50),  # idle pool
    ]
    assert breakdown(raw, "paynow_webhook") == {
        "function: verify (own code)": 4,
        "function: AsyncPubSubPublisher.publish > PublisherAsyncClient.publish": 2,
        "uvicorn, starlette + functions-framework around the function": 5,
        "uvicorn (parse, write)": 3,
        "event loop idle (awaiting the function's I/O, or the next request)": 40,
        "event loop: the client libraries' callbacks and the loop itself": 1,
    }


def test_the_asgi_webhook_s_threads_count_from_the_service_call_down() -> None:
    ours = "/srv/app/functions"
    accept = f"WebhookService.accept ({ours}/paynow/service/webhook.py:112)"
    inline = f"WebhookService._process_inline ({ours}/paynow/service/webhook.py:210)"
    pending = f"FirestoreEventStore.has_pending ({ours}/paynow/adapters/firestore_store.py:300)"
    result = f"Future.result ({STDLIB}/concurrent/futures/_base.py:451)"
    worker = f"_worker ({STDLIB}/concurrent/futures/thread.py:83)"
    thread = "thread (12): webhook_3"
    raw = [
        _line(thread, [worker, accept, inline, pending, result], 6),
        _line(thread, [worker], 30),  # an idle thread of the pool
        _line("thread (13): firestore-beside_0", [worker, pending], 2),  # not the webhook's
    ]
    assert breakdown(raw, "paynow_webhook") == {
        "function: FirestoreEventStore.has_pending > Future.result": 6
    }
