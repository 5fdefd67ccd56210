"""Apply's progress (render/progress.py): a live line on a terminal, one line per finished move elsewhere."""

from __future__ import annotations

import io
import re

from rich.console import Console

from reconciler.manifests import Move
from reconciler.model import Request
from reconciler.planner import PlannedMove
from reconciler.render.progress import ApplyProgress


def _pm(name: str) -> PlannedMove:
    move = Move(None, None, "sha256:x", name=name, customer=name, to_reseller="r1")
    return PlannedMove(move, name, "r0", "r1", "move")


def _request(rid: str, customer: str) -> Request:
    return Request(rid, "CustomerMove", customer, "Provisioned", None, 3, 0, None, None)


def test_off_a_terminal_each_finished_move_is_one_line() -> None:
    out = io.StringIO()
    p = ApplyProgress(Console(file=out, force_terminal=False, no_color=True, highlight=False, width=200))
    p.begin(2)
    assert p.live is None
    a, b = _pm("move-a"), _pm("move-[b]")
    p.started(a)
    p.started(b)
    p.finished(a, "applied", _request("rq-1", "move-a"), 1.24)
    p.finished(b, "failed", None, 0.5)
    p.stop()
    assert out.getvalue().splitlines() == ["✓ move-a: applied rq-1 (1.2 s) [1/2]",
                                           "✗ move-[b]: failed (0.5 s) [2/2]"]


def test_on_a_terminal_one_live_line_says_done_in_flight_failed_left_and_the_slowest() -> None:
    out = io.StringIO()
    p = ApplyProgress(Console(file=out, force_terminal=True, no_color=True, highlight=False, width=200))
    p.begin(3)
    try:
        assert p.live is not None
        a, b, c = _pm("move-a"), _pm("move-b"), _pm("move-c")
        p.started(a)
        p.started(b)
        p.flying["move-a"] -= 7  # started 7 s before move-b
        assert re.fullmatch(r"applying: 0 done, 2 in flight, 0 failed, 1 left · \d+ s · slowest: move-a \(7 s\)",
                            p.line()), p.line()
        p.finished(a, "failed", None, 5.0)
        p.started(c)
        assert re.fullmatch(r"applying: 1 done, 2 in flight, 1 failed, 0 left · \d+ s · slowest: move-b \(0 s\)",
                            p.line()), p.line()
        p.finished(b, "applied", None, 3.0)
        p.finished(c, "applied", None, 0.1)
        assert re.fullmatch(r"applying: 3 done, 0 in flight, 1 failed, 0 left · \d+ s", p.line()), p.line()
    finally:
        p.stop()
    assert p.live is None
    p.stop()  # twice: no error
    assert "move-a: failed" not in out.getvalue()  # the live line replaces the per-move lines


def test_a_single_move_on_a_terminal_gets_no_live_line() -> None:
    out = io.StringIO()
    p = ApplyProgress(Console(file=out, force_terminal=True, no_color=True, highlight=False, width=200))
    p.begin(1)
    assert p.live is None
    p.finished(_pm("only"), "in-progress", _request("rq-9", "only"), 60.0)
    assert "… only: in-progress rq-9 (60.0 s) [1/1]" in out.getvalue()
