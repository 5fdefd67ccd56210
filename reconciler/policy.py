"""Batch policies of reconcile.toml `[policy]` (contract section 12): parse them, check a plan against them,
and the apply window's clock arithmetic. Pure: the caller passes `now`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconciler.diagnostics import Diagnostic, error
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.planner import Plan, PlannedMove

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
KEYS = ("max_moves", "max_users", "max_users_per_move", "frozen_resellers", "apply_window")
WINDOW_KEYS = ("days", "start", "end", "timezone")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")
CODES = ("policy-max-moves", "policy-max-users", "policy-large-move", "policy-frozen-reseller",
         "policy-outside-window")


@dataclass(frozen=True)
class Window:
    """`[start, end)` in `timezone`, starting on `days` (0 = Monday); an end before the start runs past midnight."""

    start: time
    end: time
    days: tuple[int, ...] = tuple(range(7))
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _spans(self, now: datetime) -> Iterable[tuple[datetime, datetime]]:
        """Every window from the one that started the day before `now` (local) on, as UTC datetimes."""
        local = now.astimezone(self.zone).date()
        for i in range(-1, 9):
            d = local + timedelta(days=i)
            if d.weekday() not in self.days:
                continue
            end_day = d + timedelta(days=1) if self.end <= self.start else d
            yield self._utc(d, self.start), self._utc(end_day, self.end)

    def _utc(self, d: date, t: time) -> datetime:
        # Compared in UTC: two aware datetimes of the same zone compare by wall clock, across a DST change too.
        return datetime.combine(d, t, tzinfo=self.zone).astimezone(timezone.utc)

    def closes_at(self, now: datetime) -> datetime | None:
        """When the window `now` is in closes; None when `now` is outside it."""
        for start, end in self._spans(now):
            if start <= now < end:
                return end
        return None

    def next_opening(self, now: datetime) -> datetime:
        return next(start for start, _ in self._spans(now) if start > now)

    def describe(self) -> str:
        days = "every day" if len(self.days) == 7 else ", ".join(DAYS[d] for d in self.days)
        return f"{days} {_clock(self.start)}-{_clock(self.end)} {self.timezone}"

    def to_json(self) -> dict[str, Any]:
        return {"days": [DAYS[d] for d in self.days], "start": _clock(self.start), "end": _clock(self.end),
                "timezone": self.timezone}


@dataclass(frozen=True)
class Policy:
    max_moves: int | None = None
    max_users: int | None = None
    max_users_per_move: int | None = None
    frozen_resellers: tuple[str, ...] = ()
    apply_window: Window | None = None

    def to_json(self) -> dict[str, Any]:
        return {"max_moves": self.max_moves, "max_users": self.max_users,
                "max_users_per_move": self.max_users_per_move, "frozen_resellers": list(self.frozen_resellers),
                "apply_window": self.apply_window.to_json() if self.apply_window else None}

    def strictest(self, other: Policy | None) -> Policy:
        """Both at once (a saved plan's policy and the reconcile.toml's): the lower limit, every frozen reseller.
        Windows are not merged: apply checks each (`windows`)."""
        if other is None:
            return self

        def low(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        return dataclasses.replace(self, max_moves=low(self.max_moves, other.max_moves),
                                   max_users=low(self.max_users, other.max_users),
                                   max_users_per_move=low(self.max_users_per_move, other.max_users_per_move),
                                   frozen_resellers=tuple(dict.fromkeys(self.frozen_resellers +
                                                                        other.frozen_resellers)))


def _clock(t: time) -> str:
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


# -- parse ----------------------------------------------------------------------------------
def parse(table: Any, where: str) -> Policy:
    """reconcile.toml's `[policy]` table; an unknown key or a bad value is a ConfigError naming it."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [policy] must be a table")
    _no_unknown(table, KEYS, "policy", where)
    frozen = table.get("frozen_resellers", [])
    if not isinstance(frozen, list) or not all(isinstance(r, str) and r for r in frozen):
        raise ConfigError(f"{where}: [policy] frozen_resellers must be a list of reseller ids, "
                          f"not {frozen!r}", hint='for example: frozen_resellers = ["contoso"]')
    win = table.get("apply_window")
    return Policy(max_moves=_limit(table, "max_moves", where), max_users=_limit(table, "max_users", where),
                  max_users_per_move=_limit(table, "max_users_per_move", where),
                  frozen_resellers=tuple(dict.fromkeys(frozen)),
                  apply_window=None if win is None else parse_window(win, where))


def parse_window(win: Any, where: str) -> Window:
    if not isinstance(win, dict):
        raise ConfigError(f"{where}: [policy.apply_window] must be a table",
                          hint='for example: [policy.apply_window] start = "22:00" end = "06:00"')
    _no_unknown(win, WINDOW_KEYS, "policy.apply_window", where)
    for key in ("start", "end"):
        if key not in win:
            raise ConfigError(f"{where}: [policy.apply_window] needs `{key}`",
                              hint='times are "HH:MM", for example start = "22:00" end = "06:00"')
    start, end = _time(win["start"], "start", where), _time(win["end"], "end", where)
    if start == end:
        raise ConfigError(f"{where}: [policy.apply_window] start and end are both {_clock(start)}: the window "
                          "would be empty (or the whole day)",
                          hint="leave out [policy.apply_window] to allow apply at any time")
    days = win.get("days", list(DAYS))
    if not isinstance(days, list) or not days or not all(isinstance(d, str) and d in DAYS for d in days):
        raise ConfigError(f"{where}: [policy.apply_window] days must be a non-empty list of {', '.join(DAYS)}, "
                          f"not {days!r}", hint='for example: days = ["Sat", "Sun"]')
    tz = win.get("timezone", "UTC")
    try:
        if not isinstance(tz, str) or not tz:
            raise ValueError(tz)
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"{where}: [policy.apply_window] timezone {tz!r} is not an IANA time zone name",
                          hint='for example: timezone = "Europe/Berlin" (default "UTC")') from None
    return Window(start=start, end=end, days=tuple(sorted({DAYS.index(d) for d in days})), timezone=tz)


def _no_unknown(table: Mapping[str, Any], known: Sequence[str], name: str, where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} in [{name}]: "
                          f"{', '.join(unknown)}", hint=f"[{name}] takes {', '.join(known)}")


def _limit(table: Mapping[str, Any], key: str, where: str) -> int | None:
    v = table.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"{where}: [policy] {key} must be a whole number >= 0, not {v!r}")
    return v


def _time(v: Any, key: str, where: str) -> time:
    m = _CLOCK.match(v) if isinstance(v, str) else None
    if m is None:
        raise ConfigError(f"{where}: [policy.apply_window] {key} must be a time \"HH:MM\" (00:00 to 23:59), "
                          f"not {v!r}")
    return time(int(m[1]), int(m[2]), int(m[3] or 0))


def from_json(doc: Any, where: str) -> Policy | None:
    """The policy a saved plan carries (`Policy.to_json`), checked as strictly as reconcile.toml's."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ReconcilerError(f"{where}: the plan file's policy is not an object",
                              hint="make the plan again with `reconcile plan --out FILE`")
    table = {k: v for k, v in doc.items() if v is not None}
    try:
        return parse(table, f"{where} (the policy the plan was checked against)")
    except ConfigError as e:
        raise ReconcilerError(e.message, hint="make the plan again with `reconcile plan --out FILE`") from None


# -- check ----------------------------------------------------------------------------------
def move_check(policy: Policy | None) -> Callable[[PlannedMove], list[Diagnostic]] | None:
    """The policy's word on each move that would change the platform, for the planner (planner.plan's `check`):
    a move it refuses is invalid before the moves after it are planned."""
    if policy is None:
        return None
    frozen = set(policy.frozen_resellers)

    def check_move(pm: PlannedMove) -> list[Diagnostic]:
        found: list[Diagnostic] = []
        if pm.to_reseller in frozen:
            found.append(pm.move.locate(error(
                "policy-frozen-reseller",
                f"{pm.to_reseller!r} is frozen by the policy (frozen_resellers in reconcile.toml): it may not "
                f"receive customers; {pm.customer!r} stays where it is", "$.spec.toReseller"),
                ("spec", "toReseller")))
        n = len(pm.users)
        limit = policy.max_users_per_move
        if limit is not None and n > limit and not pm.move.allow_large:
            found.append(pm.move.locate(error(
                "policy-large-move",
                f"{pm.name!r} changes {n} users, more than max_users_per_move = {limit}; if that is intended, "
                "set spec.allowLarge: true in its manifest (reviewers see it in the plan)", "$.spec"),
                ("spec",), at_key=True))
        return found

    return check_move


def check(the_plan: Plan, policy: Policy | None) -> None:
    """The policy's limits on the whole plan, counted over the moves it let through (move_check)."""
    if policy is None:
        return
    s = the_plan.summary()
    if policy.max_moves is not None and s["moves"] > policy.max_moves:
        the_plan.diagnostics.append(error(
            "policy-max-moves", f"the plan has {s['moves']} moves that change the platform, more than "
                                f"max_moves = {policy.max_moves}; split the batch (--target/--exclude, or fewer "
                                "manifests per pull request)"))
    if policy.max_users is not None and s["users_changed"] > policy.max_users:
        the_plan.diagnostics.append(error(
            "policy-max-users", f"the plan changes {s['users_changed']} users, more than max_users = "
                                f"{policy.max_users}; split the batch (--target/--exclude, or fewer manifests "
                                "per pull request)"))


def outside_window(windows: Sequence[Window], now: datetime) -> str | None:
    """Why apply may not run at `now` (the next time every window is open), or None when it may."""
    closed = [w for w in windows if w.closes_at(now) is None]
    if not closed:
        return None
    opening = _next_open(windows, now)
    names = "; ".join(w.describe() for w in closed)
    when = (f"the next opening is {opening.astimezone(closed[0].zone).isoformat(timespec='minutes')} "
            f"({opening.isoformat(timespec='minutes').replace('+00:00', 'Z')})" if opening else
            "the windows never overlap")
    return f"apply runs only inside the apply window ({names}); it is {now.astimezone(closed[0].zone):%a %H:%M} " \
           f"there now: {when}"


def _next_open(windows: Sequence[Window], now: datetime) -> datetime | None:
    """The first moment after `now` at which every window is open (a window opens at a start)."""
    starts = sorted({s for w in windows for s, _ in w._spans(now) if s > now})
    return next((t for t in starts if all(w.closes_at(t) is not None for w in windows)), None)


def seconds_left(windows: Sequence[Window], now: datetime) -> float | None:
    """Until the first of the windows closes (None: no window)."""
    ends = [w.closes_at(now) for w in windows]
    return min(((e - now).total_seconds() for e in ends if e is not None), default=None)
