"""``catalog show`` and ``catalog set``: ``pointsCatalog``, the points per product.

A product missing from the catalog dead-letters its orders (``unknown_product``);
setting it here, then ``dlq replay --error-code unknown_product``, fixes them.
"""

from __future__ import annotations

import argparse
from typing import Any

from paynow.adapters.firestore_store import CATALOG
from paynow.domain.events import is_valid_id

from scripts.ops.clients import Ops, UsageError
from scripts.ops.ledger import int_field

REPLAY_HINT = "scripts/paynow-ops dlq replay --error-code unknown_product --dry-run"


def entry(product_id: str, doc: dict[str, Any] | None) -> dict[str, Any]:
    """One catalog entry as shown: its points, or what is wrong with it (None when nothing)."""
    if doc is None:
        problem: str | None = "not in pointsCatalog: orders of it are dead-lettered"
        return {"productId": product_id, "points": None, "problem": problem}
    points, problem = int_field(doc, "points")
    if points is not None and points < 0:
        problem = "points is negative"
    shown = points if points is not None else doc.get("points")
    return {"productId": product_id, "points": shown, "problem": problem}


def catalog_show(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """One product (exit 1 when missing or invalid), or the whole catalog (exit 1 on an
    invalid entry)."""
    if args.product:
        snap = ops.db.collection(CATALOG).document(_product_id(args.product)).get()
        shown = entry(args.product, (snap.to_dict() or {}) if snap.exists else None)
        return shown, shown["problem"] is None
    rows = [entry(s.id, s.to_dict() or {}) for s in ops.db.collection(CATALOG).stream()]
    invalid = sum(1 for r in rows if r["problem"] is not None)
    return {"products": len(rows), "invalid": invalid, "entries": rows}, invalid == 0


def catalog_set(ops: Ops, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Write ``pointsCatalog/{PRODUCT}.points`` (``--dry-run``: say what it would write)."""
    ref = ops.db.collection(CATALOG).document(_product_id(args.product))
    snap = ref.get()
    before = entry(args.product, (snap.to_dict() or {}) if snap.exists else None)
    if not args.dry_run:
        ref.set({"points": args.points}, merge=True)
    return {
        "productId": args.product,
        "before": before["points"],
        "after": args.points,
        "dryRun": args.dry_run,
        "changed": before["points"] != args.points and not args.dry_run,
        "note": "credits from now on; ledgers already written stay as they are",
        "next": REPLAY_HINT,
    }, True


def _product_id(text: str) -> str:
    if not is_valid_id(text):
        raise UsageError(f"{text!r} is not a product id a Firestore document can have")
    return text
