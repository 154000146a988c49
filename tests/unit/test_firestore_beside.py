"""``_Beside``: a read beside a transaction is waited for once, and a retry starts it anew."""

from __future__ import annotations

import threading
import time

import pytest
from paynow.adapters.firestore_store import _Beside


def _blocked(released: threading.Event, calls: list[int]) -> _Beside[str]:
    def read() -> str:
        calls.append(1)
        released.wait(5)
        return "record"

    return _Beside(read, again=False)


def test_a_read_that_missed_its_wait_is_not_waited_for_again() -> None:
    released, calls = threading.Event(), list[int]()
    hint = _blocked(released, calls)
    hint.attempt()
    try:
        with pytest.raises(TimeoutError):
            hint.answer(0.05)
        hint.attempt()  # the transaction's retry: a hint is not read again
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            hint.answer(2.0)
        assert time.monotonic() - started < 0.5
    finally:
        released.set()
    assert calls == [1]


def test_an_answer_in_time_is_returned_on_every_attempt() -> None:
    released, calls = threading.Event(), list[int]()
    hint = _blocked(released, calls)
    released.set()
    hint.attempt()
    assert hint.answer(2.0) == "record"
    hint.attempt()
    assert hint.answer(2.0) == "record"
    assert calls == [1]


def test_a_fresh_read_on_each_retry_is_waited_for_anew() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def read() -> int:
        calls.append(1)
        if len(calls) == 1:
            gate.wait(5)  # the first attempt's read is late
        return len(calls)

    pending = _Beside(read, again=True)
    pending.attempt()
    try:
        with pytest.raises(TimeoutError):
            pending.answer(0.05)
        pending.attempt()  # a retry starts the read again and waits for that one
        assert pending.answer(2.0) == 2
    finally:
        gate.set()
