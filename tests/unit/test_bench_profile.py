"""``bench.profile.breakdown``: py-spy's raw stacks sorted into the layers of a request."""

from __future__ import annotations

import pytest

from scripts.proof.bench.profile import breakdown

LIB = "/venv/lib/python3.11/site-packages"
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


def test_an_asgi_webhook_s_loop_samples_split_into_function_server_and_idle() -> None:
    ours = "/srv/app/functions"
    loop = f"BaseEventLoop.run_forever ({LIB}/../asyncio/base_events.py:608)"
    step = f"Task.__step ({LIB}/../asyncio/tasks.py:269)"
    function = f"paynow_webhook ({ours}/main.py:57)"
    queueable = f"WebhookService.queueable ({ours}/paynow/service/webhook.py:90)"
    verify = f"verify ({ours}/paynow/domain/signature.py:40)"
    main = "thread (7): MainThread"
    raw = [
        _line(main, [loop, step, function, queueable, verify], 4),
        _line(main, [loop, step, f"JSONResponse.__call__ ({LIB}/starlette/responses.py:150)"], 2),
        _line(main, [loop, f"H11Protocol.data_received ({LIB}/uvicorn/protocols/h11.py:90)"], 3),
        _line(main, [loop, f"EpollSelector.select ({LIB}/../selectors.py:468)"], 40),
        _line(main, [loop, f"_handle_events ({LIB}/grpc/_cython/aio.pyx:1)"], 1),
        _line(POOL, [f"_worker ({LIB}/concurrent/futures/thread.py:81)"], 50),  # idle pool
    ]
    assert breakdown(raw, "paynow_webhook") == {
        "function: verify (own code)": 4,
        "starlette + functions-framework around the function": 2,
        "uvicorn around the function (parse, write)": 3,
        "event loop idle (awaiting the function's I/O, or the next request)": 40,
        "event loop: the client libraries' callbacks and the loop itself": 1,
    }
