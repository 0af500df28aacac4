"""Progress bars and tables via rich (prints cleanly when piped to a CI log)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["console", "progress_bar"]

console = Console(stderr=True, highlight=False)


class _Bar:
    """Counts the steps of one :func:`progress_bar`."""

    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps done."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


@contextlib.contextmanager
def progress_bar(description: str, *, total: int | None, enabled: bool = True) -> Iterator[_Bar]:
    """A rich progress bar on stderr; a no-op when disabled. Non-TTY output prints one line.

    ``total`` is the number of steps (``None``: unknown); the bar's ``advance(n=1)`` counts them
    (pass ``bar.advance`` where a callback ``advance(k)`` is expected).
    """
    if not enabled:
        yield _Bar(None, None)
        return
    if not sys.stderr.isatty():
        steps = f" ({total} steps)" if total is not None else ""
        console.print(f"[..] {description}{steps}")
        yield _Bar(None, None)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as prog:
        yield _Bar(prog, prog.add_task(description, total=total))
