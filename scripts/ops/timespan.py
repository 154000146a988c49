"""``--since``: a time given as an age (``24h``, ``30m``, ``7d``) or an ISO-8601 instant."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"(\d{1,6})([smhd])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since(text: str, now: datetime | None = None) -> datetime:
    """An argparse type: the instant ``text`` names, in UTC."""
    age = _AGE.fullmatch(text.strip())
    if age:
        amount, unit = age.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNIT[unit]: int(amount)})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an age (24h, 30m, 7d) or an ISO-8601 time: {text!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
