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
import time
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


def progress(items: Iterable[T], description: str, total: int | None = None, delay: float = 2.0) -> Iterator[T]:
    """Iterate ``items``; on a terminal, a bar appears once the work has taken ``delay`` seconds.

    rich is imported only when a bar is shown, so short work costs nothing.
    """
    if not enabled():
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    start = time.monotonic()
    iterator = iter(items)
    done = 0
    for item in iterator:
        yield item
        done += 1
        if time.monotonic() - start >= delay:
            break
    else:
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total, completed=done)
        for item in iterator:
            yield item
            bar.advance(task)
