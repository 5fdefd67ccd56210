"""The plan as a pull-request comment: summary first, a collapsible section per move, always < 65,000 chars."""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

from reconciler.planner import PlannedMove
from reconciler.render import clean, count, value
from reconciler.results import PlanResult

MARKER = "<!-- reconcile-plan -->"
LIMIT = 65_000
ICON = {"move": "🔀", "noop": "✅", "invalid": "❌"}


def md(x: Any) -> str:
    """Inert in markdown and HTML: no tags, no code spans, no table breaks, one line."""
    s = clean(x).replace("\n", " ").replace("\r", " ")
    s = html.escape(s, quote=True)
    for ch, ent in (("`", "&#96;"), ("|", "&#124;"), ("*", "&#42;"), ("_", "&#95;"), ("[", "&#91;"),
                    ("]", "&#93;"), ("~", "&#126;"), ("\\", "&#92;"), ("@", "&#64;")):
        s = s.replace(ch, ent)
    return s


def _mermaid_label(x: Any) -> str:
    text = clean(x).replace("\n", " ").replace("\r", " ").replace('"', "#quot;")
    return text.replace("<", "#lt;").replace(">", "#gt;").replace("`", "#96;")


def mermaid(result: PlanResult, max_edges: int = 30) -> str:
    moving = [m for m in result.plan.moves if m.action == "move"]
    if not moving:
        return ""
    pairs: dict[tuple[str, str], list[PlannedMove]] = defaultdict(list)
    for m in moving:
        pairs[(m.from_reseller or "?", m.to_reseller)].append(m)
    nodes: dict[str, str] = {}

    def node(name: str) -> str:
        if name not in nodes:
            nodes[name] = f"r{len(nodes)}"
        return nodes[name]

    lines = ["```mermaid", "flowchart LR"]
    for (src, dst), ms in list(pairs.items())[:max_edges]:
        # Users changed, as the table and the summary count them (not every user of the customer).
        users = sum(len(m.users) for m in ms)
        if len(ms) <= 3:
            label = ", ".join(f"{m.customer} ({count(len(m.users), 'user')} changed)" for m in ms)
        else:
            label = f"{len(ms)} customers, {count(users, 'user')} changed"
        lines.append(f'  {node(src)}["{_mermaid_label(src)}"] -->|"{_mermaid_label(label)}"| '
                     f'{node(dst)}["{_mermaid_label(dst)}"]')
    if len(pairs) > max_edges:
        lines.append(f'  more["… {len(pairs) - max_edges} more reseller pairs"]')
    lines.append("```")
    return "\n".join(lines)


def _summary(result: PlanResult) -> list[str]:
    s = result.plan.summary()
    status = "❌ cannot be applied" if not result.plan.applyable else ("🔀 changes" if s["moves"] else "✅ no changes")
    out = [MARKER, f"## reconcile plan: {status}", "",
           "| moves | no-op | invalid | users changed | requests | errors | warnings |",
           "|---:|---:|---:|---:|---:|---:|---:|",
           f"| {s['moves']} | {s['noop']} | {s['invalid']} | {s['users_changed']} | {s['requests']} | "
           f"{s['errors']} | {s['warnings']} |", ""]
    if result.git_commit:
        out += [f"Commit `{md(result.git_commit)}` · platform `{md(result.fingerprint[:19])}`", ""]
    p = result.partial
    if p is not None:
        names = ", ".join(md(n) for n in p.left_out[:50]) + (" …" if len(p.left_out) > 50 else "")
        out += [f"⚠️ **Partial plan**: {md(p.options())} left out {count(len(p.left_out), 'move')} (not planned, "
                f"not checked against the policy, not applied): {names}", ""]
    return out


def _move_row(m: PlannedMove) -> str:
    codes = ", ".join(sorted({d.code for d in m.diagnostics}))
    what = m.reason or codes or "move"
    if m.action == "invalid":
        what = codes
    return (f"| {ICON[m.action]} {md(m.name)} | {md(m.customer)} | {md(m.from_reseller or '?')} → "
            f"{md(m.to_reseller)} | {len(m.users)} | {md(what)} |")


def _details(m: PlannedMove, max_users: int = 20) -> str:
    out = [f"<details><summary>{ICON[m.action]} <b>{md(m.name)}</b>: {md(m.customer)} "
           f"{md(m.from_reseller or '?')} → {md(m.to_reseller)} ({count(len(m.users), 'user')} changed)</summary>", ""]
    out.append(f"File: {md(m.move.file)} line {m.move.line}")
    if m.action == "move" and m.move.allow_large:
        out.append(" · **allowLarge: true** (exempt from the policy max_users_per_move)")
    if m.move.manifest.metadata.ticket:
        out.append(f" · ticket {md(m.move.manifest.metadata.ticket)}")
    if m.move.manifest.metadata.description:
        out += ["", f"> {md(m.move.manifest.metadata.description)[:500]}"]
    out.append("")
    for d in m.diagnostics:
        out.append(f"- **{d.severity}** {md(d.code)} (line {d.line}): {md(d.message)}")
    if m.diagnostics:
        out.append("")
    if m.services:
        out += ["| service | plan | SALs | customer overrides |", "|---|---|---|---|"]
        for s in m.services:
            maps = ", ".join(f"{md(x['from'])} → {md(x['to'])}" for x in s["sal_mappings"])
            props = ", ".join(f"{md(k)}: {md(value(v['from']))} → {md(value(v['to']))}"
                              for k, v in s["customer_properties"].items()) or "–"
            out.append(f"| {md(s['service'])} | {md(s['plan']['from'])} → {md(s['plan']['to'])} | {maps} | "
                       f"{props} |")
        out.append("")
    if m.users:
        out += ["| user | service | SAL | properties |", "|---|---|---|---|"]
        for u in m.users[:max_users]:
            for s in u["services"]:
                props = ", ".join(f"{md(k)}: {md(value(v['from']))} → {md(value(v['to']))}"
                                  for k, v in s["properties"].items()) or "–"
                out.append(f"| {md(u['user'])} | {md(s['service'])} | {md(s['sal']['from'])} → "
                           f"{md(s['sal']['to'])} | {props} |")
        if len(m.users) > max_users:
            out.append(f"\n… and {count(len(m.users) - max_users, 'more user')}: see the plan JSON artifact.")
        out.append("")
    out += ["</details>", ""]
    return "\n".join(out)


def _units(text: str) -> int:
    """GitHub counts a comment's length in UTF-16 code units: an emoji is two."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def plan(result: PlanResult, limit: int = LIMIT) -> str:
    parts = _summary(result)
    diagram = mermaid(result)
    if diagram:
        parts += [diagram, ""]
    if result.plan.diagnostics:
        parts.append(f"**{count(len(result.plan.diagnostics), 'problem')} outside any move:**")
        for d in result.plan.diagnostics[:50]:
            parts.append(f"- {md(d.file or '')}:{d.line or ''} {md(d.code)}: {md(d.message)}")
        parts.append("")
    rows = ["| move | customer | reseller | users changed | action |", "|---|---|---|---:|---|"]
    rows += [_move_row(m) for m in result.plan.moves]
    tail = "\n_Truncated to fit a comment: the plan JSON artifact has every move and user._\n"
    head = "\n".join(parts) + "\n"
    table = "\n".join(rows) + "\n\n"
    if _units(head) + _units(table) + _units(tail) > limit:
        kept = []
        size = _units(head) + _units(tail) + 200
        for r in rows:
            if size + _units(r) + 1 > limit:
                break
            kept.append(r)
            size += _units(r) + 1
        return head + "\n".join(kept) + f"\n\n_… {len(rows) - len(kept)} more moves not shown._\n" + tail
    body = head + table
    left_out = "_… details of 999999 more moves left out._\n"  # reserved: the longest such line
    for i, m in enumerate(result.plan.moves):
        section = _details(m)
        if _units(body) + _units(section) + _units(left_out) + _units(tail) > limit:
            section = _details(m, max_users=3)
            if _units(body) + _units(section) + _units(left_out) + _units(tail) > limit:
                return body + f"_… details of {len(result.plan.moves) - i} more moves left out._\n" + tail
        body += section
    return body
