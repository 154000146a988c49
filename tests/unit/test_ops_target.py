"""``paynow-ops``: which target a run works on, the question before it changes cloud data,
and what it prints (tables, progress)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.local import localstack
from scripts.ops import cli, output
from scripts.ops.clients import Ops, UsageError
from scripts.ops.target import NotConfirmed, Target, confirm, resolve

HOSTS = {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1", "PUBSUB_EMULATOR_HOST": "127.0.0.1:2"}


def _stack_file(tmp_path: Path, pid: int) -> Path:
    path = tmp_path / "stack.env"
    localstack.write_stack_env(
        path,
        {
            "GOOGLE_CLOUD_PROJECT": "demo-paynow",
            "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8086",
            "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085",
            "WEBHOOK_MODE": "queue",
            "STACK_PID": str(pid),
        },
    )
    return path


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# --- the target ----------------------------------------------------------------------------


def test_project_flag_targets_the_cloud_and_ignores_emulator_variables(tmp_path):
    running = _stack_file(tmp_path, os.getpid())
    target = resolve("prod-1", {"GOOGLE_CLOUD_PROJECT": "other", **HOSTS}, running)
    assert (target.project, target.cloud) == ("prod-1", True)
    assert "FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST ignored" in target.source
    environ = {"GOOGLE_CLOUD_PROJECT": "other", **HOSTS}
    with target.applied(environ):
        assert environ == {"GOOGLE_CLOUD_PROJECT": "prod-1"}
    assert environ == {"GOOGLE_CLOUD_PROJECT": "other", **HOSTS}  # put back


def test_the_environment_comes_before_the_local_stack(tmp_path):
    running = _stack_file(tmp_path, os.getpid())
    target = resolve(None, {"GOOGLE_CLOUD_PROJECT": "demo-x", **HOSTS}, running)
    assert (target.project, target.cloud, target.stack) == ("demo-x", False, None)
    assert target.describe() == (
        "emulators, project demo-x: Firestore 127.0.0.1:1, Pub/Sub 127.0.0.1:2 "
        "(from GOOGLE_CLOUD_PROJECT)"
    )
    assert resolve(None, {"GCP_PROJECT": "prod-2"}, running).describe() == (
        "cloud project prod-2 (from GCP_PROJECT)"
    )


def test_one_emulator_alone_still_leaves_the_other_in_the_cloud(tmp_path):
    environ = {"GOOGLE_CLOUD_PROJECT": "p", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"}
    target = resolve(None, environ, tmp_path / "none.env")
    assert target.cloud
    assert "Pub/Sub in the cloud" in target.describe()


def test_with_nothing_set_the_running_local_stack_is_the_target(tmp_path):
    running = _stack_file(tmp_path, os.getpid())
    target = resolve(None, {}, running)
    assert (target.project, target.cloud) == ("demo-paynow", False)
    assert target.variables == {
        "GOOGLE_CLOUD_PROJECT": "demo-paynow",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8086",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085",
    }
    assert f"the local stack, pid {os.getpid()}" in target.source
    assert target.stack is not None and target.stack["WEBHOOK_MODE"] == "queue"


def test_no_target_is_a_usage_error_that_says_what_to_do(tmp_path):
    with pytest.raises(UsageError, match=r"--project P .*GOOGLE_CLOUD_PROJECT.*scripts/stack"):
        resolve(None, {}, tmp_path / "absent.env")
    stale = _stack_file(tmp_path, _dead_pid())
    with pytest.raises(UsageError, match="left from a stack that no longer runs"):
        resolve(None, {}, stale)


# --- confirmation ---------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


CLOUD = Target("prod-1", "--project", {"GOOGLE_CLOUD_PROJECT": "prod-1"})
EMULATORS = Target("demo", "env", {"GOOGLE_CLOUD_PROJECT": "demo", **HOSTS})


def test_emulators_and_yes_are_never_asked():
    stdin = Terminal("n\n")
    confirm(EMULATORS, "dlq replay", yes=False, stdin=stdin, stderr=io.StringIO())
    confirm(CLOUD, "dlq replay", yes=True, stdin=stdin, stderr=io.StringIO())
    assert stdin.tell() == 0  # nothing read


@pytest.mark.parametrize(
    ("answer", "goes_on"),
    [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False), ("", False)],
)
def test_a_cloud_project_is_asked_on_the_terminal(answer, goes_on):
    stderr = io.StringIO()
    if goes_on:
        confirm(CLOUD, "dlq replay", yes=False, stdin=Terminal(answer), stderr=stderr)
    else:
        with pytest.raises(NotConfirmed, match="not confirmed: nothing changed"):
            confirm(CLOUD, "dlq replay", yes=False, stdin=Terminal(answer), stderr=stderr)
    assert stderr.getvalue() == (
        "paynow-ops: dlq replay changes data in cloud project prod-1. Go on? [y/N] "
    )


def test_without_a_terminal_a_cloud_change_is_refused():
    with pytest.raises(NotConfirmed, match="no terminal to confirm on: run it again with --yes"):
        confirm(CLOUD, "catalog set", yes=False, stdin=io.StringIO("y\n"), stderr=io.StringIO())


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    for name in ("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", *HOSTS):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["catalog", "set", "gems-1", "5"],
        ["dlq", "replay", "--all"],
        ["dlq", "discard", "--error-code", "no_user_id"],
        ["reconcile"],
        ["paynow", "backfill", "--since", "2h"],
        ["paynow", "resend", "d-1"],
    ],
)
def test_a_change_to_a_cloud_project_exits_2_before_it_connects(no_terminal, mocker, capsys, argv):
    connect = mocker.patch.object(Ops, "connect")
    assert cli.main(["--project", "prod-1", "--json", *argv]) == 2
    out, err = capsys.readouterr()
    assert "changes data in cloud project prod-1" in json.loads(out)["error"]
    assert err.splitlines()[0] == "paynow-ops: target: cloud project prod-1 (--project)"
    connect.assert_not_called()


@pytest.mark.parametrize(
    "argv",
    [
        ["catalog", "set", "gems-1", "5", "--dry-run"],
        ["paynow", "backfill", "--dry-run"],
        ["dlq", "replay", "--all", "--dry-run"],
        ["catalog", "set", "gems-1", "5", "--yes"],
        ["ledger", "verify"],
        ["event", "show", "evt-1"],
    ],
)
def test_reads_dry_runs_and_yes_need_no_question(no_terminal, mocker, argv):
    connect = mocker.patch.object(Ops, "connect", side_effect=RuntimeError("connected"))
    assert cli.main(["--project", "prod-1", *argv]) == 2  # got as far as connecting
    connect.assert_called_once()


def test_the_target_options_go_after_the_command_too(no_terminal, mocker, capsys):
    mocker.patch.object(Ops, "connect", side_effect=RuntimeError("connected"))
    assert cli.main(["catalog", "set", "gems-1", "5", "--project", "prod-1", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "target: cloud project prod-1" in err and "connected" in err


# --- tables -----------------------------------------------------------------------------------


def test_a_cell_reads_nested_values_as_key_value():
    assert output.cell({"code": "no_user_id", "message": "no user"}) == (
        "code=no_user_id, message=no user"
    )
    assert output.cell({"a": {"b": 1}, "c": [1, 2]}) == "a={b=1}, c=1, 2"
    assert output.cell([{"x": 1}, {"x": 2}]) == "{x=1}; {x=2}"
    assert (output.cell(None), output.cell([]), output.cell({}), output.cell(False)) == (
        "-",
        "-",
        "-",
        "False",
    )


RESULT: dict[str, Any] = {
    "depth": 2,
    "byErrorCode": {"no_user_id": 1, "unknown_product": 1},
    "messages": [
        {"messageId": "1", "eventId": "evt-1"},
        {"messageId": "2", "errorCode": "unknown_product", "detail": {"attempts": 3}},
    ],
}


def test_piped_tables_are_plain_with_the_columns_of_every_row():
    stream = io.StringIO()
    output.print_result(RESULT, stream)
    assert stream.getvalue().splitlines() == [
        "depth        2",
        "byErrorCode  no_user_id=1, unknown_product=1",
        "",
        "messages (2)",
        "messageId  eventId  errorCode        detail",
        "1          evt-1    -                -",
        "2          -        unknown_product  attempts=3",
    ]


def test_on_a_terminal_tables_fit_its_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    long = {"messages": [{"messageId": "m" * 30, "detail": "word " * 30}]}
    stream = Terminal()
    output.print_result(long, stream)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue()).splitlines()
    assert max(len(line) for line in lines) <= 50
    assert len(lines) > 6  # the detail wrapped
    assert "m" * 30 in stream.getvalue()


# --- progress ---------------------------------------------------------------------------------


def test_progress_is_drawn_on_a_terminal_and_nowhere_else(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(output.track(iter(range(5)), "walking documents")) == [0, 1, 2, 3, 4]
    assert "walking documents" in terminal.getvalue()
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    assert list(output.track(range(5), "walking documents")) == [0, 1, 2, 3, 4]
    with output.progress("counted", total=10) as advance:
        advance(10)
    assert piped.getvalue() == ""
