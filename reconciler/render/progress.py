"""Apply's progress: a live line on a terminal; one line per finished move anywhere else (a CI log)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from reconciler.model import Request
from reconciler.planner import PlannedMove
from reconciler.render import clean

MARK = {"applied": "[green]✓[/]", "failed": "[red]✗[/]", "in-progress": "[yellow]…[/]"}


class ApplyProgress:
    """Implements applier.Progress. Done / in flight / failed / left, the elapsed time and the slowest request
    in flight, refreshed four times a second on a terminal; off a terminal, a line per move as it finishes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Any = None
        self.total = 0
        self.done = self.failed = 0
        self.flying: dict[str, float] = {}
        self.t0 = time.monotonic()

    def begin(self, total: int) -> None:
        self.total, self.t0 = total, time.monotonic()
        if self.console.is_terminal and total > 1:
            from rich.live import Live

            self.live = Live(console=self.console, transient=True, refresh_per_second=4, get_renderable=self.line)
            self.live.start()

    def line(self) -> str:
        left = self.total - self.done - len(self.flying)
        text = (f"applying: {self.done} done, {len(self.flying)} in flight, {self.failed} failed, {left} left "
                f"· {time.monotonic() - self.t0:.0f} s")
        if self.flying:
            name, since = min(self.flying.items(), key=lambda kv: kv[1])
            text += f" · slowest: {escape(clean(name))} ({time.monotonic() - since:.0f} s)"
        return text

    def started(self, pm: PlannedMove) -> None:
        self.flying[pm.name] = time.monotonic()

    def finished(self, pm: PlannedMove, outcome: str, request: Request | None, seconds: float) -> None:
        self.flying.pop(pm.name, None)
        self.done += 1
        self.failed += outcome == "failed"
        if self.live is None:
            rid = f" {request.id}" if request is not None else ""
            self.console.print(f"{MARK.get(outcome, '?')} {escape(clean(pm.name))}: {outcome}{escape(rid)} "
                               f"({seconds:.1f} s) [{self.done}/{self.total}]")

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
