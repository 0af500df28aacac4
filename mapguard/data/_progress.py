"""A ``rich`` progress bar on stderr, or nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, *, enabled: bool
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(k)``; shows a bar on stderr when ``enabled`` (plain lines on a non-TTY)."""
    if not enabled:
        yield lambda k: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda k: bar.advance(task, k)
