"""``ledger verify`` and ``user show``: the pure check, and what the commands read."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from pytest_mock import MockerFixture

from scripts.ops import ledger


def test_balances_that_equal_their_ledgers_hold():
    verdict = ledger.check_ledgers(
        {"u1": {"points": 150}, "u2": {"points": 0}},
        [("u1", "e1", {"delta": 100}), ("u1", "e2", {"delta": 50})],
    )
    assert verdict["ok"] is True and verdict["usersChecked"] == 2
    assert verdict["entriesChecked"] == 2


def test_a_corrupted_balance_is_a_mismatch():
    verdict = ledger.check_ledgers({"u1": {"points": 999}}, [("u1", "e1", {"delta": 100})])
    assert verdict["ok"] is False
    assert verdict["mismatched"] == [
        {"userId": "u1", "balance": 999, "ledgerSum": 100, "problem": "balance != ledger sum"}
    ]


def test_a_deleted_balance_document_with_a_ledger_is_caught():
    verdict = ledger.check_ledgers({}, [("u1", "e1", {"delta": 100})])
    assert verdict["ok"] is False
    assert verdict["mismatched"][0] == {
        "userId": "u1",
        "balance": None,
        "ledgerSum": 100,
        "problem": "no users document",
    }


@pytest.mark.parametrize(
    ("balances", "entries", "document", "problem"),
    [
        ({"u1": {}}, [], "users/u1", "no points field"),
        ({"u1": {"points": "100"}}, [], "users/u1", "points is not an integer: str '100'"),
        ({"u1": {"points": True}}, [], "users/u1", "points is not an integer: bool 'True'"),
        ({"u1": {"points": 1.5}}, [], "users/u1", "points is not an integer: float '1.5'"),
        (
            {"u1": {"points": 0}},
            [("u1", "e1", {"eventId": "e1"})],
            "users/u1/pointsLedger/e1",
            "no delta field",
        ),
        (
            {"u1": {"points": 0}},
            [("u1", "e1", {"delta": None})],
            "users/u1/pointsLedger/e1",
            "delta is not an integer: NoneType 'None'",
        ),
    ],
)
def test_a_missing_or_non_integer_field_is_a_failed_check_not_a_crash(
    balances, entries, document, problem
):
    verdict = ledger.check_ledgers(balances, entries)
    assert verdict["ok"] is False
    assert verdict["invalidFields"] == [{"document": document, "problem": problem}]
    assert verdict["mismatched"] == []  # a sum with an unreadable delta is not compared


def test_an_event_with_entries_under_two_users_is_reported():
    verdict = ledger.check_ledgers(
        {"u1": {"points": 5}, "u2": {"points": 5}},
        [("u1", "e1", {"delta": 5}), ("u2", "e1", {"delta": 5})],
    )
    assert verdict["ok"] is False and verdict["eventsWithSeveralEntries"] == {"e1": ["u1", "u2"]}


def _snapshot(mocker: MockerFixture, doc_id: str, data: dict[str, Any] | None) -> Any:
    snap = mocker.MagicMock(id=doc_id, exists=data is not None)
    snap.to_dict.return_value = data
    snap.get.side_effect = KeyError  # what DocumentSnapshot.get does for a missing field
    return snap


def test_verify_of_one_user_reads_only_its_ledger(mocker: MockerFixture):
    ops = mocker.MagicMock()
    user = ops.db.collection.return_value.document.return_value
    user.get.return_value = _snapshot(mocker, "u1", {"points": 7})
    user.collection.return_value.stream.return_value = [_snapshot(mocker, "e1", {"delta": 7})]
    verdict, ok = ledger.ledger_verify(ops, argparse.Namespace(user="u1"))
    assert ok and verdict["entriesChecked"] == 1
    ops.db.collection.return_value.document.assert_called_with("u1")
    user.collection.assert_called_with("pointsLedger")
    ops.db.collection_group.assert_not_called()


def test_user_show_reports_fields_it_cannot_read_instead_of_crashing(mocker: MockerFixture):
    ops = mocker.MagicMock()
    user = ops.db.collection.return_value.document.return_value
    user.get.return_value = _snapshot(mocker, "u1", {"updatedAt": "x"})
    user.collection.return_value.stream.return_value = [
        _snapshot(mocker, "e1", {"delta": "ten", "eventId": "e1"})
    ]
    out, ok = ledger.user_show(ops, argparse.Namespace(user_id="u1", limit=20))
    assert ok is False and out["consistent"] is False
    assert out["balance"] is None and out["ledgerSum"] == 0 and out["ledgerEntries"] == 1
    assert out["problems"] == [
        "users/u1/pointsLedger/e1: delta is not an integer: str 'ten'",
        "users/u1: no points field",
    ]
