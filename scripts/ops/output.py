"""What ``paynow-ops`` prints for people: tables and progress bars, with rich.

A command returns one dict. Its scalar (and nested) values become a two-column summary,
each list of dicts a table of its own, with the columns of every row in the order they
first appear. A nested value reads ``key=value``. On a terminal the tables fit its
width (cells of text wrap, ids and codes stay whole); piped, they are plain aligned
text, unwrapped and uncoloured, for ``grep`` and ``awk``. ``--json`` bypasses all of
this (``scripts/ops/cli.py``).

Progress bars go to stderr, only when it is a terminal, so pipes and ``--json`` readers
never see them: ``track`` for a loop, ``progress`` when the work is counted by hand.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any, TypeVar

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

T = TypeVar("T")
PLAIN_WIDTH = 100_000  # piped: never wrap a row


def cell(value: Any, nested: bool = False) -> str:
    """One value as a table cell: ``key=value`` for a mapping, comma lists, ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}={cell(v, nested=True)}" for k, v in value.items())
        return f"{{{inner}}}" if nested else inner or "-"
    if isinstance(value, list | tuple | set):
        joiner = "; " if any(isinstance(v, Mapping) for v in value) else ", "
        return joiner.join(cell(v, nested=True) for v in value) or "-"
    return str(value)


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, Mapping) for r in value)


def tables(result: Mapping[str, Any], width: int | None) -> list[Table]:
    """The summary of ``result``'s single values, then a table per list of rows; ``width``:
    the terminal's (None: piped, plain)."""
    terminal = width is not None
    summary = Table(box=None, show_header=False, pad_edge=False)
    summary.add_column(style="bold" if terminal else None, no_wrap=True)
    summary.add_column(overflow="fold")
    out = [summary]
    for key, value in result.items():
        if not _is_rows(value):
            summary.add_row(key, cell(value))
            continue
        columns = list(dict.fromkeys(k for row in value for k in row))
        cells = [[cell(row.get(c)) for c in columns] for row in value]
        table = Table(
            title=f"{key} ({len(value)})",
            title_justify="left",
            box=box.SIMPLE_HEAD if terminal else None,
            pad_edge=False,
            header_style="bold" if terminal else "",
            title_style="bold" if terminal else "",
        )
        for column, min_width in zip(columns, _min_widths(columns, cells, width), strict=True):
            table.add_column(column, min_width=min_width, overflow="fold")
        for row in cells:
            table.add_row(*row)
        out.append(table)
    return out


TEXT_MIN_WIDTH = 12


def _min_widths(columns: list[str], cells: list[list[str]], width: int | None) -> list[int | None]:
    """Keep ids, codes and times (one-word columns) whole when the terminal has room for
    them and a little of each column of text; otherwise every column may fold."""
    longest = [max(len(c), *(len(row[n]) for row in cells)) for n, c in enumerate(columns)]
    words = [all(" " not in row[n] for row in cells) for n in range(len(columns))]
    wanted = [w if one_word else None for w, one_word in zip(longest, words, strict=True)]
    needed = sum(
        w if one_word else min(w, TEXT_MIN_WIDTH)
        for w, one_word in zip(longest, words, strict=True)
    )
    fits = width is not None and needed + 3 * len(columns) <= width  # padding, rule
    return wanted if fits else [None] * len(columns)


def print_result(result: Mapping[str, Any], stream: IO[str] | None = None) -> None:
    """``result`` as tables on ``stream`` (stdout): fitted on a terminal, plain in a pipe."""
    stream = sys.stdout if stream is None else stream
    if stream.isatty():
        console = Console(file=stream, highlight=False)
        for table in tables(result, console.width):
            console.print(table)
        return
    console = Console(
        file=stream, width=PLAIN_WIDTH, color_system=None, highlight=False, emoji=False
    )
    with console.capture() as captured:
        for n, table in enumerate(tables(result, None)):
            if n:
                console.print()
            console.print(table)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    stream.write(text + "\n")
    stream.flush()


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A bar on stderr while the block runs (a spinner and a count when ``total`` is not
    known); yields ``advance(n)``. Nothing is shown when stderr is not a terminal."""
    console = Console(stderr=True)
    if not console.is_terminal:

        def uncounted(n: int = 1) -> None:
            """Nobody watches: nothing to show."""

        yield uncounted
        return
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn() if total is not None else TextColumn(""),
        MofNCompleteColumn() if total is not None else TextColumn("{task.completed}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``items``, one by one, counted on a progress bar (see ``progress``)."""
    with progress(description, total) as advance:
        for item in items:
            yield item
            advance(1)
