"""Plans and results for people at a terminal (colour only on a terminal, NO_COLOR honoured)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from reconciler.planner import PlannedMove
from reconciler.render import clean, value
from reconciler.results import ApplyResult, PlanResult

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


def summary_line(result: PlanResult) -> str:
    s = result.plan.summary()
    return (f"Plan: {s['moves']} to move, {s['noop']} no-op, {s['invalid']} invalid; "
            f"{s['users_changed']} users change; {s['requests']} requests; "
            f"{s['errors']} errors, {s['warnings']} warnings")


def plan(console: Console, result: PlanResult, show_users: int | None = 20, compact: bool = False,
         applying: bool = False) -> None:
    """The whole plan; `compact`: one line per move (apply of a large, already reviewed batch)."""
    s = result.plan.summary()
    style = "red" if s["errors"] else ("yellow" if s["moves"] else "green")
    console.print(f"[bold {style}]{escape(summary_line(result))}[/]")
    if result.plan.diagnostics:
        e_, w = (sum(1 for d in result.plan.diagnostics if d.is_error),
                 sum(1 for d in result.plan.diagnostics if not d.is_error))
        console.print(f"[red]{e_} problem(s) outside any move, {w} warning(s): see the messages above[/]")
    if compact:
        console.print("\n".join(_head(m) + (f"  [dim]{len(m.users)} users change[/]" if m.action == "move" else
                                             f"  no-op: {REASON.get(m.reason or '', m.reason)}"
                                             if m.action == "noop" else "")
                                for m in result.plan.moves))
    else:
        for m in result.plan.moves:
            console.print()
            console.print("\n".join(_move(m, show_users)))
    console.print()
    if not result.plan.applyable:
        console.print("[red]Not applyable: fix the errors above; `reconcile apply` changes nothing while any "
                      "move is invalid.[/]")
    elif s["moves"]:
        if not applying:
            console.print("Run `reconcile apply` to make these changes.")
    else:
        console.print("[green]No changes: the platform matches the manifests.[/]")


def _head(m: PlannedMove) -> str:
    return (f"{SYMBOL[m.action]} [bold]{e(m.name)}[/]  {e(m.customer)}: {e(m.from_reseller or '?')} → "
            f"{e(m.to_reseller)}  [dim]({e(m.move.file)}:{m.move.line})[/]")


def _move(m: PlannedMove, show_users: int | None) -> list[str]:
    """One move as markup lines; hand-aligned columns (a rich Table per move is ten times slower)."""
    out = [_head(m)]
    if m.action == "noop":
        out.append(f"    no-op: {REASON.get(m.reason or '', m.reason)}")
    for d in m.diagnostics:
        colour = "red" if d.is_error else "yellow"
        out.append(f"    [{colour}]{d.severity}\\[{e(d.code)}][/]: {e(d.message)}")
    if m.action != "move":
        return out
    for svc in m.services:
        p = svc["plan"]
        plan_txt = (f"plan {e(p['from'])} → {e(p['to'])}" if p["from"] != p["to"] else f"plan {e(p['to'])}")
        out.append(f"    [bold]{e(svc['service'])}[/]  {plan_txt}")
        maps = ", ".join(f"{e(x['from'])} → {e(x['to'])} ({'same id' if x['source'] == 'name' else 'mapped'})"
                         for x in svc["sal_mappings"])
        out.append(f"      SAL {maps}")
        for k, ch in svc["customer_properties"].items():
            out.append(f"      customer override {e(k)}: {e(value(ch['from']))} → {e(value(ch['to']))}")
    users = m.users
    out.append(f"    users: {len(users)} of {m.user_count} change")
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
        for j, r in enumerate(rows):
            line = "  ".join(escape(r[c]).ljust(widths[c] + len(escape(r[c])) - len(r[c])) for c in range(3))
            line = f"      {line}  {escape(r[3])}"
            out.append(f"[dim]{line}[/]" if j == 0 else line)
    if len(shown) < len(users):
        out.append(f"      … and {len(users) - len(shown)} more users (--show-users all lists them)")
    for r_ in m.requests:
        out.append(f"    request {e(r_['id'])}: {r_['type']}, {r_['sub_requests']} sub-requests")
    return out


def apply_result(console: Console, r: ApplyResult) -> None:
    if r.declined:
        console.print("[red]Apply cancelled: nothing was changed.[/]")
        return
    n_req = len(r.requests)
    colour = "red" if r.failed else "green"
    console.print(f"[bold {colour}]Apply complete: {len(r.applied)} applied, {len(r.adopted)} adopted, "
                  f"{len(r.failed)} failed, {n_req} requests submitted.[/]")
    for name, err in r.failed:
        console.print(f"[red]  {e(name)} failed: {e(err)}[/]")
    if r.in_progress:
        shown = f"{e(', '.join(r.in_progress[:10]))}{' …' if len(r.in_progress) > 10 else ''}"
        if r.waited:
            console.print(f"[yellow]  {len(r.in_progress)} move(s) still in progress on the platform when apply "
                          f"stopped waiting: {shown}[/]")
        else:
            console.print(f"  {len(r.in_progress)} move(s) submitted, not waited for (--no-wait): {shown}")
        console.print("  They are recorded in-progress: `reconcile status` records their outcome once the platform "
                      "has finished them; `reconcile apply` does too, then goes on with the rest.")
    if r.pending:
        why = "after the failure" if r.failed else "before apply stopped"
        console.print(f"[yellow]  {len(r.pending)} move(s) not attempted {why}: "
                      f"{e(', '.join(r.pending[:10]))}{' …' if len(r.pending) > 10 else ''}[/]")
    if r.failed:
        console.print("  Fix the cause, then run apply again: it submits a new attempt for the failed move.")
