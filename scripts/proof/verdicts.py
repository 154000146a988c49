"""What every proof tool reports the same way: progress lines, verdicts, the JSON report.

The chaos run and the outage drill each end in invariants that hold or not; both print
them as ``PASS``/``FAIL`` lines and write them, with their figures, to a JSON report that
their tests read (never their stdout).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def say(tool: str, message: str) -> None:
    """One progress line on stderr, stamped with the wall clock."""
    print(f"[{tool} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Verdict:
    """One invariant: held or not, a short detail, and every item that broke it."""

    name: str
    ok: bool
    detail: str
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"  {'PASS' if self.ok else 'FAIL'}  {self.name} ({self.detail})"


def verdict(name: str, failures: list[str], checked: int, what: str) -> Verdict:
    """Held when nothing failed; the detail counts what was checked (or what failed of it)."""
    detail = f"{checked} {what}" if not failures else f"{len(failures)} of {checked} {what} fail"
    return Verdict(name, not failures, detail, failures)


def held(verdicts: list[Verdict]) -> str:
    """``PASS: 5/5 invariants held`` (or ``FAIL: ...``)."""
    good = sum(v.ok for v in verdicts)
    word = "PASS" if good == len(verdicts) else "FAIL"
    return f"{word}: {good}/{len(verdicts)} invariants held"


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """The run's evidence as JSON (values it cannot encode, as text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))
