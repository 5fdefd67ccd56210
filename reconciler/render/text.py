"""Plans and results for people at a terminal (colour only on a terminal, NO_COLOR honoured)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from reconciler.planner import PlannedMove
from reconciler.render import clean, count, value
from reconciler.results import ApplyResult, PlanResult
from reconciler.state import State

SYMBOL = {"move": "[yellow]~[/]", "noop": "[green]=[/]", "invalid": "[red]✗[/]"}
REASON = {
    "applied": "already applied",
    "adopted": "already applied",
    "superseded": "superseded by a later applied move of the customer",
    "already-at-destination": "already at the destination: apply records it as adopted",
    "drifted": "drifted: the platform no longer matches this applied move (see the warning)",
}


def e(x: Any) -> str:
    return escape(clean(x))


def wrap(markup: str, width: int, hang: int | None = None) -> list[Text]:
    """One line of markup as lines that fit `width` columns: broken at spaces (a word longer than a line is cut),
    every continuation indented `hang` columns (default: the line's own indentation plus four)."""
    text = Text.from_markup(markup)
    plain = text.plain
    if cell_len(plain) <= width:
        return [text]
    lead = len(plain) - len(plain.lstrip(" "))
    hang = lead + 4 if hang is None else hang
    hang = min(hang, max(width // 2, 0))
    out: list[Text] = []
    start, avail = 0, width
    while True:
        if cell_len(plain[start:]) <= avail:
            piece = text[start:]
            out.append(piece if not out else Text(" " * hang) + piece)
            return out
        limit = start + avail
        cut = plain.rfind(" ", start + (lead if not out else 0) + 1, limit + 1)
        end = cut if cut > start else limit
        piece = text[start:end]
        piece.rstrip()
        out.append(piece if not out else Text(" " * hang) + piece)
        start = end
        while start < len(plain) and plain[start] == " ":
            start += 1
        if start >= len(plain):
            return out
        avail = width - hang


def say(console: Console, markup: str = "", hang: int | None = None) -> None:
    """Print a line of markup wrapped to the console's width (see `wrap`)."""
    for line in wrap(markup, console.width, hang):
        console.print(line, soft_wrap=True)


def _say_all(console: Console, lines: Iterable[str | tuple[str, int]]) -> None:
    for line in lines:
        if isinstance(line, tuple):
            say(console, *line)
        else:
            say(console, line)


def summary_line(result: PlanResult) -> str:
    s = result.plan.summary()
    return (f"Plan: {s['moves']} to move, {s['noop']} no-op, {s['invalid']} invalid; "
            f"{count(s['users_changed'], 'user')} {'changes' if s['users_changed'] == 1 else 'change'}; "
            f"{count(s['requests'], 'request')}; {count(s['errors'], 'error')}, {count(s['warnings'], 'warning')}")


def plan(console: Console, result: PlanResult, show_users: int | None = 20, compact: bool = False,
         applying: bool = False) -> None:
    """The whole plan; `compact`: one line per move (apply of a large, already reviewed batch)."""
    s = result.plan.summary()
    style = "red" if s["errors"] else ("yellow" if s["moves"] else "green")
    say(console, f"[bold {style}]{escape(summary_line(result))}[/]")
    if result.partial is not None:
        _say_all(console, partial(result))
    if result.plan.diagnostics:
        e_, w = (sum(1 for d in result.plan.diagnostics if d.is_error),
                 sum(1 for d in result.plan.diagnostics if not d.is_error))
        say(console, f"[red]{count(e_, 'problem')} outside any move, {count(w, 'warning')}: see the messages "
                     "above[/]")
    if compact:
        for m in result.plan.moves:
            say(console, _head(m) + (f"  [dim]{count(len(m.users), 'user')} "
                                     f"{'changes' if len(m.users) == 1 else 'change'}[/]" if m.action == "move" else
                                     f"  no-op: {REASON.get(m.reason or '', m.reason)}"
                                     if m.action == "noop" else ""))
    else:
        for m in result.plan.moves:
            console.print()
            _say_all(console, _move(m, show_users, console.width))
    console.print()
    if not result.plan.applyable:
        say(console, "[red]Cannot be applied: fix the errors above; `reconcile apply` changes nothing while any "
                     "move is invalid.[/]")
    elif s["moves"]:
        if not applying:
            say(console, f"Run `{escape(apply_command(result))}` to make these changes.")
    else:
        say(console, "[green]No changes: the platform matches the manifests.[/]")


def partial(result: PlanResult) -> list[str | tuple[str, int]]:
    """A partial plan says so, before anything else, and names every move it left out."""
    p = result.partial
    assert p is not None
    out: list[str | tuple[str, int]] = [(
        f"[bold yellow]Partial plan: {e(p.options())} left out {count(len(p.left_out), 'move')}; they are not "
        "planned, not checked against the policy and not applied:[/]", 4)]
    out += [f"  - {e(name)}" for name in p.left_out]
    return out


def apply_command(result: PlanResult) -> str:
    """The apply of exactly the paths planned (and the same --target/--exclude), ready to copy and paste."""
    words = ["reconcile", "apply", *(shlex.quote(clean(p)) for p in result.paths)]
    if result.partial is not None:
        words += [w for t in result.partial.targets for w in ("--target", shlex.quote(clean(t)))]
        words += [w for x in result.partial.excludes for w in ("--exclude", shlex.quote(clean(x)))]
    return " ".join(words)


def _head(m: PlannedMove) -> str:
    return (f"{SYMBOL[m.action]} [bold]{e(m.name)}[/]  {e(m.customer)}: {e(m.from_reseller or '?')} → "
            f"{e(m.to_reseller)}  [dim]({e(m.move.file)}:{m.move.line})[/]")


def _move(m: PlannedMove, show_users: int | None, width: int = 160) -> list[str | tuple[str, int]]:
    """One move as markup lines (with the indentation their continuation takes when wrapped); hand-aligned
    columns (a rich Table per move is ten times slower)."""
    out: list[str | tuple[str, int]] = [_head(m)]
    if m.action == "move" and m.move.allow_large:
        out.append("    allowLarge: true (exempt from the policy max_users_per_move)")
    if m.action == "noop":
        out.append(f"    no-op: {REASON.get(m.reason or '', m.reason)}")
    for d in m.diagnostics:
        colour = "red" if d.is_error else "yellow"
        out.append((f"    [{colour}]{d.severity}\\[{e(d.code)}][/]: {e(d.message)}", 8))
    if m.action != "move":
        return out
    for svc in m.services:
        p = svc["plan"]
        plan_txt = (f"plan {e(p['from'])} → {e(p['to'])}" if p["from"] != p["to"] else f"plan {e(p['to'])}")
        out.append(f"    [bold]{e(svc['service'])}[/]  {plan_txt}")
        maps = ", ".join(f"{e(x['from'])} → {e(x['to'])} ({'same id' if x['source'] == 'name' else 'mapped'})"
                         for x in svc["sal_mappings"])
        out.append((f"      SAL {maps}", 10))
        for k, ch in svc["customer_properties"].items():
            out.append((f"      customer override {e(k)}: {e(value(ch['from']))} → {e(value(ch['to']))}", 10))
    users = m.users
    out.append(f"    users: {len(users)} of {m.user_count} {'changes' if len(users) == 1 else 'change'}")
    shown = users if show_users is None else users[:show_users]
    rows: list[tuple[str, str, str, str]] = [("user", "service", "SAL", "properties")]
    for u in shown:
        for i, sv in enumerate(u["services"]):
            sal = sv["sal"]
            sal_txt = clean(sal["from"]) if sal["from"] == sal["to"] else f"{clean(sal['from'])} → {clean(sal['to'])}"
            props = ", ".join(f"{clean(k)} {value(v['from'])} → {value(v['to'])}" for k, v in sv["properties"].items())
            rows.append((clean(u["user"]) if i == 0 else "", clean(sv["service"]), sal_txt, props or "-"))
    if len(rows) > 1:
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        props_at = 6 + sum(widths) + 6  # where the properties column starts: its continuation lines go there
        hang = props_at if props_at <= width - 24 else 10
        for j, r in enumerate(rows):
            line = "  ".join(escape(r[c]).ljust(widths[c] + len(escape(r[c])) - len(r[c])) for c in range(3))
            line = f"      {line}  {escape(r[3])}"
            out.append((f"[dim]{line}[/]" if j == 0 else line, hang))
    if len(shown) < len(users):
        out.append(f"      … and {count(len(users) - len(shown), 'more user')} (--show-users all lists them)")
    for r_ in m.requests:
        out.append(f"    request {e(r_['id'])}: {r_['type']}, {count(r_['sub_requests'], 'sub-request')}")
    return out


def apply_result(console: Console, r: ApplyResult) -> None:
    if r.declined:
        say(console, "[red]Apply cancelled: nothing was changed (only 'yes' approves).[/]")
        return
    n_req = len(r.requests)
    colour = "red" if r.failed else "green"
    say(console, f"[bold {colour}]Apply complete: {len(r.applied)} applied, {len(r.adopted)} adopted, "
                 f"{len(r.failed)} failed, {count(n_req, 'request')} submitted.[/]")
    for name, err in r.failed:
        say(console, f"[red]  {e(name)} failed: {e(err)}[/]")
    if r.in_progress:
        shown = f"{e(', '.join(r.in_progress[:10]))}{' …' if len(r.in_progress) > 10 else ''}"
        if r.waited:
            say(console, f"[yellow]  {count(len(r.in_progress), 'move')} still in progress on the platform when "
                         f"apply stopped waiting: {shown}[/]")
        else:
            say(console, f"  {count(len(r.in_progress), 'move')} submitted, not waited for (--no-wait): {shown}")
        say(console, "  They are recorded in-progress: `reconcile status` records their outcome once the platform "
                     "has finished them; `reconcile apply` does too, then goes on with the rest.")
    if r.pending:
        why = ("after the failure" if r.failed else "before the apply window closed (policy; run apply again in "
               "the next window)" if r.window_closed else "before apply stopped")
        say(console, f"[yellow]  {count(len(r.pending), 'move')} not attempted {why}: "
                     f"{e(', '.join(r.pending[:10]))}{' …' if len(r.pending) > 10 else ''}[/]")
    if r.failed:
        say(console, "  Fix the cause, then run apply again: it submits a new attempt for the failed move.")


def status(console: Console, st: State | None, where: str) -> None:
    """The recorded moves, one line each, and the last request's error."""
    if st is None or not st.moves:
        say(console, f"No recorded moves in {e(where)}.")
        return
    for name, rec in st.moves.items():
        last = rec.requests[-1] if rec.requests else None
        say(console, f"{e(name)}: {e(rec.status)}  {e(rec.customer)}: {e(rec.from_reseller)} → {e(rec.to_reseller)}  "
                     f"({count(len(rec.requests), 'request')}; last {e(last.id if last else '-')} "
                     f"{e(last.status if last else '-')})")
        if last is not None and last.error:
            say(console, f"    error: {e(last.error)}", 11)


def history(console: Console, entries: list[dict[str, Any]], customer: str | None) -> None:
    """When, by whom, from which commit, which requests: a move per paragraph."""
    if not entries:
        say(console, "No recorded moves" + (f" of {e(customer)}" if customer else "") + ".")
        return
    for x in entries:
        say(console, f"{e(x['applied_at'] or '-')}  {e(x['name'])}: {e(x['status'])}  {e(x['customer'])}: "
                     f"{e(x['from_reseller'])} → {e(x['to_reseller'])}  by {e(x['applied_by'] or '-')}")
        commit = x["manifest"].get("git_commit")
        say(console, f"    manifest {e(x['manifest']['file'])} at commit {e(commit or '(not in git)')}", 8)
        g = x.get("git")
        if g:
            say(console, f"    added by {e(g['added_by'])} in {e(g['added_in'][:12])} ({e(g['subject'])}); "
                         f"merged in {e(g['merged_in'][:12])} ({e(g['merge_subject'])})", 8)
        for r in x["requests"]:
            err = f": {e(r['error'])}" if r.get("error") else ""
            say(console, f"    request {e(r['id'])} {e(r['status'])} submitted {e(r['submitted_at'] or '-')} "
                         f"completed {e(r['completed_at'] or '-')}{err}", 8)
        for v in x.get("state_versions", []):  # a store that keeps every version (PostgreSQL)
            say(console, f"    state serial {v['serial']} written {e(v['written_at'])} by {e(v['written_by'])} "
                         f"({e(v['operation'] or '-')}, commit {e(v['git_commit'] or '-')})", 8)
