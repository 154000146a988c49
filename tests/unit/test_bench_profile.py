"""``bench.profile.breakdown``: py-spy's raw stacks sorted into the layers of a request."""

from __future__ import annotations

from pathlib import Path

from scripts.proof.bench.profile import breakdown

HANDLE = "ThreadWorker.handle (gunicorn/workers/gthread.py:553)"
FLASK = "Flask.__call__ (flask/app.py:1536)"
FUNCTION = "paynow_webhook (main.py:45)"


def _line(thread: str, frames: list[str], count: int) -> str:
    return ";".join([thread, *frames]) + f" {count}"


def test_handler_samples_go_to_their_layer_and_other_threads_are_left_out(tmp_path: Path) -> None:
    pool = "thread (101): ThreadPoolExecutor-0_0"
    raw = tmp_path / "spy.txt"
    raw.write_text(
        "\n".join(
            [
                _line(
                    pool,
                    [
                        HANDLE,
                        FLASK,
                        FUNCTION,
                        "WebhookService.accept (webhook.py:70)",
                        "WebhookService._enqueue (webhook.py:120)",
                        "FirestoreEventStore.record_received (firestore_store.py:108)",
                    ],
                    7,
                ),
                _line(pool, [HANDLE, FLASK, FUNCTION, "_read_body (main.py:130)"], 2),
                _line(pool, [HANDLE, FLASK, "Flask.full_dispatch_request (flask/app.py:917)"], 3),
                _line(pool, [HANDLE, "Response.write (gunicorn/http/wsgi.py:390)"], 4),
                _line(pool, ["_worker (concurrent/futures/thread.py:81)"], 50),  # idle pool
                _line("thread (7): MainThread", [HANDLE], 9),  # not a handler thread
                _line("thread (8): Thread-CommitBatchPublisher", ["Batch._commit (x.py:1)"], 5),
            ]
        )
        + "\n"
    )
    assert breakdown(raw) == {
        "function: _enqueue > FirestoreEventStore.record_received": 7,
        "function: _read_body": 2,
        "Flask + functions-framework around the function": 3,
        "gunicorn around Flask (parse, write)": 4,
    }
