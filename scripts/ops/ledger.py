"""``user show`` and ``ledger verify``: balances against their ledgers.

The checks are pure functions of the documents' dicts, so a missing document
or a field that is absent or not an integer is a finding, never a crash
(``DocumentSnapshot.get`` raises KeyError on a missing field).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from paynow.adapters import documents
from paynow.adapters.firestore_store import LEDGER, USERS

from scripts.ops.clients import Ops
from scripts.ops.output import track

Doc = dict[str, Any]


def int_field(doc: Doc, name: str) -> tuple[int | None, str | None]:
    """The integer ``doc[name]``, or None and what is wrong with it."""
    if name not in doc:
        return None, f"no {name} field"
    value = doc[name]
    if not documents.is_int(value):
        return None, f"{name} is not an integer: {type(value).__name__} {str(value)[:40]!r}"
    return value, None


def check_ledgers(
    balances: Mapping[str, Doc | None], entries: Iterable[tuple[str, str, Doc]]
) -> dict[str, Any]:
    """Each user's ``points`` against the sum of its ledger's ``delta``; every event once.

    ``balances``: user id -> ``users/{u}`` (None when it does not exist);
    ``entries``: (user id, entry id, entry) for every ledger entry read.
    """
    sums: dict[str, int] = defaultdict(int)
    owners: dict[str, list[str]] = defaultdict(list)
    unreadable: set[str] = set()
    invalid = []
    for user_id, entry_id, entry in entries:
        owners[entry_id].append(user_id)
        delta, problem = int_field(entry, "delta")
        if delta is None:
            unreadable.add(user_id)
            path = f"{USERS}/{user_id}/{LEDGER}/{entry_id}"
            invalid.append({"document": path, "problem": problem})
        else:
            sums[user_id] += delta
    with_entries = {u for users in owners.values() for u in users}
    users = sorted(set(balances) | with_entries)
    mismatched = []
    for user_id in users:
        doc = balances.get(user_id)
        if doc is None:
            if user_id in with_entries:
                mismatched.append(_mismatch(user_id, None, sums[user_id], "no users document"))
            continue
        points, problem = int_field(doc, "points")
        if points is None:
            invalid.append({"document": f"{USERS}/{user_id}", "problem": problem})
        elif user_id not in unreadable and points != sums[user_id]:
            mismatched.append(_mismatch(user_id, points, sums[user_id], "balance != ledger sum"))
    doubled = {e: u for e, u in owners.items() if len(u) > 1}
    ok = not mismatched and not invalid and not doubled
    return {
        "usersChecked": len(users),
        "entriesChecked": sum(len(u) for u in owners.values()),
        "mismatched": mismatched,
        "invalidFields": invalid,
        "eventsWithSeveralEntries": doubled,
        "ok": ok,
    }


def _mismatch(user_id: str, balance: int | None, total: int, problem: str) -> dict[str, Any]:
    return {"userId": user_id, "balance": balance, "ledgerSum": total, "problem": problem}


# --- the commands -----------------------------------------------------------------


def user_show(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """A user's balance, its ledger's sum and latest entries; exit 1 when they disagree."""
    user = ops.db.collection(USERS).document(args.user_id).get()
    rows = [(args.user_id, d.id, d.to_dict() or {}) for d in _ledger_of(ops, args.user_id)]
    doc = (user.to_dict() or {}) if user.exists else None
    verdict = check_ledgers({args.user_id: doc}, rows)
    entries = [entry for _, _, entry in rows]
    recent = sorted(entries, key=lambda e: str(e.get("createdAt")), reverse=True)[: args.limit]
    consistent = bool(verdict["ok"])
    return {
        "userId": args.user_id,
        "found": doc is not None or bool(entries),
        "balance": int_field(doc, "points")[0] if doc is not None else None,
        "ledgerSum": sum(v for e in entries if (v := int_field(e, "delta")[0]) is not None),
        "ledgerEntries": len(entries),
        "consistent": consistent,
        "problems": [m["problem"] for m in verdict["mismatched"]]
        + [f"{i['document']}: {i['problem']}" for i in verdict["invalidFields"]],
        "recent": [
            {
                k: e.get(k)
                for k in ("eventId", "eventType", "delta", "reason", "orderId", "createdAt")
            }
            for e in recent
        ],
    }, consistent


def ledger_verify(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Every user (or one: its own ledger only, no collection-group scan)."""
    if args.user:
        snap = ops.db.collection(USERS).document(args.user).get()
        balances = {args.user: (snap.to_dict() or {}) if snap.exists else None}
        ledger = track(_ledger_of(ops, args.user), "ledger verify: ledger entries")
        entries = [(args.user, d.id, d.to_dict() or {}) for d in ledger]
    else:
        users = track(ops.db.collection(USERS).stream(), "ledger verify: users")
        balances = {u.id: u.to_dict() or {} for u in users}
        ledgers = track(ops.db.collection_group(LEDGER).stream(), "ledger verify: ledger entries")
        entries = [
            (d.reference.parent.parent.id, d.id, d.to_dict() or {})
            for d in ledgers
            if _under_users(d.reference)
        ]
    verdict = check_ledgers(balances, entries)
    return verdict, bool(verdict["ok"])


def _ledger_of(ops: Ops, user_id: str) -> Any:
    return ops.db.collection(USERS).document(user_id).collection(LEDGER).stream()


def _under_users(ref: Any) -> bool:
    """True for ``users/{u}/pointsLedger/{e}`` (a collection group spans every parent)."""
    parent = ref.parent.parent
    return parent is not None and parent.parent.id == USERS
