"""Progress bars and tables via rich; plain periodic lines when stderr is not a terminal.

On a terminal :func:`progress_bar` draws a rich bar. In a log (stderr piped or redirected, e.g. a
batch job or ``torchrun``) it prints one line when it starts and then one status line every
``interval`` seconds (default 30 s, or ``MAPGUARD_PROGRESS_INTERVAL``)::

    [..] learning mask (40 steps)
    [..] learning mask: step 12/40 (30%), loss 0.5320, 812.4 images/s, elapsed 31s, ETA 1m12s
    [ok] learning mask: 40 steps in 1m43s, 805.1 images/s

The closing ``[ok]`` line is printed only when at least one status line was, so short phases stay
one line.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mapguard._errors import ConfigError

__all__ = ["DEFAULT_INTERVAL", "INTERVAL_ENV", "console", "progress_bar"]

console = Console(stderr=True, highlight=False)

DEFAULT_INTERVAL = 30.0
INTERVAL_ENV = "MAPGUARD_PROGRESS_INTERVAL"


def _interval(value: float | None) -> float:
    """The seconds between status lines: ``value``, else the environment, else 30."""
    if value is None:
        text = os.environ.get(INTERVAL_ENV, "").strip()
        if not text:
            return DEFAULT_INTERVAL
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{INTERVAL_ENV}={text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"progress interval must be >= 0 seconds, got {value!r}")
    return float(value)


def _duration(seconds: float) -> str:
    """``45s``, ``1m05s``, ``2h03m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class _Bar:
    """Counts the steps (and images, last loss) of one :func:`progress_bar`."""

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        progress: Progress | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.description, self.total = description, total
        self.done, self.images, self.loss = 0, 0, None
        self._progress, self._interval, self._clock = progress, interval, clock
        self._task = progress.add_task(description, total=total, stats="") if progress else None
        self._start = self._last = clock()
        self.lines = 0

    def advance(self, n: int = 1, *, images: int = 0, loss: float | None = None) -> None:
        """Count ``n`` more steps done (and ``images`` processed in them; ``loss`` the latest)."""
        self.done += n
        self.images += images
        self.loss = self.loss if loss is None else float(loss)
        if self._task is not None:
            self._progress.update(self._task, advance=n, stats=self._stats(eta=False))
        elif self._interval is not None and self._clock() - self._last >= self._interval:
            self._last = self._clock()
            self.lines += 1
            _emit(f"[..] {self.description}: {self.status()}")

    def status(self) -> str:
        """``step 12/40 (30%), loss 0.5320, 812.4 images/s, elapsed 31s, ETA 1m12s``."""
        step = f"step {self.done}"
        if self.total:
            step += f"/{self.total} ({self.done / self.total:.0%})"
        return ", ".join(p for p in (step, self._stats(eta=True)) if p)

    def _stats(self, *, eta: bool) -> str:
        elapsed = self._clock() - self._start
        parts = [] if self.loss is None else [f"loss {self.loss:.4f}"]
        if self.images and elapsed > 0:
            parts.append(f"{self.images / elapsed:.1f} images/s")
        if eta:
            parts.append(f"elapsed {_duration(elapsed)}")
            if self.total and 0 < self.done <= self.total:
                parts.append(f"ETA {_duration(elapsed / self.done * (self.total - self.done))}")
        return ", ".join(parts)

    def finish(self) -> None:
        """The closing line of a log that showed status lines."""
        if not self.lines:
            return
        elapsed = self._clock() - self._start
        rate = f", {self.images / elapsed:.1f} images/s" if self.images and elapsed > 0 else ""
        _emit(f"[ok] {self.description}: {self.done} steps in {_duration(elapsed)}{rate}")


def _emit(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress_bar(
    description: str, *, total: int | None, enabled: bool = True, interval: float | None = None
) -> Iterator[_Bar]:
    """A rich progress bar on a terminal, periodic status lines otherwise; no-op when disabled.

    ``total`` is the number of steps (``None``: unknown); ``bar.advance(n=1, images=, loss=)``
    counts them (pass ``bar.advance`` where a callback ``advance(k)`` is expected). When stderr
    is not a terminal a line with the step, loss, images/s and ETA is printed every ``interval``
    seconds (``None``: ``MAPGUARD_PROGRESS_INTERVAL`` or 30; ``0``: every step).

    Raises:
        ConfigError: a negative interval, or a non-numeric ``MAPGUARD_PROGRESS_INTERVAL``.
    """
    if not enabled:
        yield _Bar(description, total)
        return
    if not sys.stderr.isatty():
        bar = _Bar(description, total, interval=_interval(interval))
        _emit(f"[..] {description}" + (f" ({total} steps)" if total is not None else ""))
        yield bar
        bar.finish()
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        transient=False,
    ) as prog:
        yield _Bar(description, total, progress=prog)
