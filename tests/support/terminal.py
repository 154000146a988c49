"""Reading what a program shows on a pseudo-terminal (``pty.openpty``)."""

from __future__ import annotations

import os
import select


def read_available(fd: int, wait: float) -> bytes:
    """What the terminal shows within ``wait`` seconds (until it goes quiet)."""
    out = b""
    while select.select([fd], [], [], wait)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side is closed
            break
        if not chunk:
            break
        out += chunk
        wait = 0.3
    return out
