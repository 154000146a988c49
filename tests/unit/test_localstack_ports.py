"""localstack's ports: chosen where no other process is given one, waited on until ours answers."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from scripts.local import localstack


def test_a_free_port_lies_below_the_kernel_s_ephemeral_range_and_is_never_handed_twice() -> None:
    low = localstack._ephemeral_low()
    ports = [localstack.free_port() for _ in range(50)]
    assert all(localstack.FREE_PORT_FLOOR <= port < low for port in ports)
    assert len(set(ports)) == len(ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # each one is really free


def test_a_port_something_listens_on_is_passed_over(mocker: MockerFixture) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", localstack.free_port()))
        held.listen()
        taken = held.getsockname()[1]
        other = localstack.free_port()
        localstack._handed.discard(other)
        mocker.patch("random.sample", return_value=[taken, other])
        assert localstack.free_port() == other


def test_no_ephemeral_range_file_falls_back_to_linux_s_default(
    mocker: MockerFixture, tmp_path: Path
) -> None:
    mocker.patch.object(localstack, "EPHEMERAL_RANGE_FILE", tmp_path / "absent")
    assert localstack._ephemeral_low() == 32768


@pytest.fixture
def not_http() -> Iterator[int]:
    """A listener that answers every connection with bytes that are not HTTP/1 (a gRPC port's way)."""
    server = socket.socket()
    server.bind(("127.0.0.1", localstack.free_port()))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00garbage, not a status line\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield int(server.getsockname()[1])
    server.close()


def test_a_child_whose_port_answers_something_else_is_reported_by_its_exit(
    not_http: int, tmp_path: Path
) -> None:
    child = localstack.spawn(
        "exits-soon",
        [sys.executable, "-c", "import sys, time; time.sleep(1); sys.exit('address in use')"],
        logs=tmp_path,
    )
    try:
        with pytest.raises(RuntimeError, match=r"exits-soon exited \(1\)"):
            localstack.wait_http(f"http://127.0.0.1:{not_http}/", child, timeout=20)
    finally:
        localstack.stop_all([child])
