"""``user show`` and ``ledger verify``: balances against their ledgers."""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from scripts.paynow_ops.clients import Ops


def user_show(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    user = ops.db.collection("users").document(args.user_id).get()
    entries = [d.to_dict() for d in user.reference.collection("pointsLedger").stream()]
    total = sum(int(e.get("delta", 0)) for e in entries)
    balance = user.get("points") if user.exists else None
    recent = sorted(entries, key=lambda e: str(e.get("createdAt")), reverse=True)[: args.limit]
    out = {
        "userId": args.user_id,
        "balance": balance,
        "ledgerSum": total,
        "ledgerEntries": len(entries),
        "consistent": (balance or 0) == total,
        "recent": [
            {
                k: e.get(k)
                for k in ("eventId", "eventType", "delta", "reason", "orderId", "createdAt")
            }
            for e in recent
        ],
    }
    return out, bool(out["consistent"])


def ledger_verify(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    sums: dict[str, int] = defaultdict(int)
    owners: dict[str, list[str]] = defaultdict(list)
    query = ops.db.collection_group("pointsLedger")
    for entry in query.stream():
        user_id = entry.reference.parent.parent.id
        if args.user and user_id != args.user:
            continue
        sums[user_id] += int(entry.get("delta") or 0)
        owners[entry.id].append(user_id)
    users = [args.user] if args.user else [u.id for u in ops.db.collection("users").stream()]
    mismatched = []
    for user_id in users:
        snap = ops.db.collection("users").document(user_id).get()
        balance = int(snap.get("points") or 0) if snap.exists else 0
        if balance != sums.get(user_id, 0):
            mismatched.append({"userId": user_id, "balance": balance, "ledgerSum": sums[user_id]})
    doubled = {e: u for e, u in owners.items() if len(u) > 1}
    ok = not mismatched and not doubled
    return {
        "usersChecked": len(users),
        "mismatched": mismatched,
        "eventsWithSeveralEntries": doubled,
        "ok": ok,
    }, ok
