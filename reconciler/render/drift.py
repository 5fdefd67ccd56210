"""`reconcile drift` for people (text), pull requests and issues (markdown) and workflow annotations."""

from __future__ import annotations

from reconciler.diagnostics import Diagnostic
from reconciler.render import clean, count, value
from reconciler.render.markdown import md
from reconciler.results import DriftReport


def headline(r: DriftReport) -> str:
    if not r.compared:
        return "Drift: no applied move among the manifests to compare."
    if not r.drifted:
        if r.compared == 1:
            return "No drift: the applied move matches the platform."
        return f"No drift: all {r.compared} applied moves match the platform."
    k = len(r.drifted)
    return (f"Drift: {k} of {count(r.compared, 'applied move')} {'has' if k == 1 else 'have'} drifted from the "
            "platform; nothing is moved back silently: write a new move (or `reconcile revert NAME`) to act on it.")


def _difference(d: dict[str, object]) -> str:
    if d.get("expected") is None and d["path"] != "parent":
        return f"{clean(d['path'])}: {clean(d['platform'])}"
    return f"{clean(d['path'])}: platform has {value(d['platform'])}, the move set {value(d['expected'])}"


def text(r: DriftReport) -> str:
    lines = [headline(r)]
    for m in r.drifted:
        lines.append(f"\n~ {clean(m['move'])}  {clean(m['customer'])}  ({clean(m['file'])}:{m['line']})")
        lines += [f"    {_difference(d)}" for d in m["differences"]]
    return "\n".join(lines)


def markdown(r: DriftReport) -> str:
    lines = ["### reconcile drift", "", md(headline(r))]
    if r.drifted:
        lines += ["", "| move | customer | what differs |", "|---|---|---|"]
        for m in r.drifted:
            what = "<br>".join(md(_difference(d)) for d in m["differences"])
            lines.append(f"| {md(m['move'])} | {md(m['customer'])} | {what} |")
    return "\n".join(lines) + "\n"


def diagnostics(r: DriftReport) -> list[Diagnostic]:
    """One warning per drifted move, at its manifest: for workflow annotations."""
    return [Diagnostic(code="drift", severity="warning", file=str(m["file"]), line=int(str(m["line"])), column=1,
                       message=f"{m['customer']!r} no longer matches {m['move']!r}: "
                               + "; ".join(_difference(d) for d in m["differences"]))
            for m in r.drifted]
