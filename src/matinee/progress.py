"""Progress bars for long work: shown on a terminal, silent in CI and logs.

>>> from matinee.progress import progress
>>> total = 0
>>> for i in progress(range(3), "adding"):   # no bar: not a terminal
...     total += i
>>> total
3
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Bars show only when stderr is a terminal, not under CI, and not with MATINEE_PROGRESS=0."""
    if os.environ.get("MATINEE_PROGRESS", "").lower() in ("0", "false", "no", "off"):
        return False
    if os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items``, with a bar on a terminal (rich is imported only then)."""
    if not enabled():
        yield from items
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
