"""Read a platform seed (YAML or JSON) and check that every reference in it resolves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from reconciler import schema
from reconciler.diagnostics import Diagnostic, error, warning
from reconciler.errors import PlatformError
from reconciler.model import ID_PATTERN, PropertyDef
from reconciler.schema import PathTuple, json_path, kind_of, short
from reconciler.yamlsafe import MAX_INT_DIGITS, Doc, decode, load_all

MAX_SEED_BYTES = 1024 * 1024 * 1024


@dataclass
class Seed:
    """A checked seed document, normalised: every optional collection present; `warnings` for references
    outside their scope (a half-done move leaves them; an export must always seed again)."""

    doc: dict[str, Any]
    warnings: list[Diagnostic] = field(default_factory=list)


def read(file: str) -> Seed:
    """Parse and check a seed file; every problem is listed in one PlatformError."""
    try:
        with open(file, "rb") as fh:
            raw = fh.read(MAX_SEED_BYTES + 1)
    except OSError as e:
        raise PlatformError(f"{file}: cannot read the seed: {e.strerror or e}") from None
    if len(raw) > MAX_SEED_BYTES:
        raise PlatformError(f"{file}: the seed is larger than 1 GiB")
    text, bad = decode(raw, file)
    if bad is not None or text is None:
        raise PlatformError(bad.format() if bad else f"{file}: cannot decode")
    doc: Doc | None = None
    if file.endswith(".json"):
        try:
            data = json.loads(text, parse_int=_json_int)
        except RecursionError:
            raise PlatformError(error("yaml", "not valid JSON: nested too deeply for a seed").at(file, None, None)
                                .format()) from None
        except _TooLong as e:
            raise PlatformError(error("yaml", f"not valid JSON: {e}").at(file, None, None).format()) from None
        except ValueError as e:
            line = getattr(e, "lineno", None)
            col = getattr(e, "colno", None)
            raise PlatformError(error("yaml", f"not valid JSON: {getattr(e, 'msg', e)}")
                                .at(file, line, col).format()) from None
        doc = Doc(file=file, index=0, line=1, data=data)
    else:
        for item in load_all(text, file):
            if isinstance(item, Diagnostic):
                raise PlatformError(item.format())
            if doc is not None:
                raise PlatformError(f"{file}:{item.line}:1: error[yaml]: a seed holds one document")
            doc = item
    if doc is None or doc.data is None:
        raise PlatformError(f"{file}: the seed is empty")
    problems = check(doc)
    if problems:
        listed = "\n".join(p.format() for p in problems)
        raise PlatformError(f"{file}: the seed has {len(problems)} problem(s); nothing was created:\n{listed}")
    data = doc.data
    found = scope_warnings(doc)
    for key in ("locations", "services", "customers", "requests"):
        data[key] = data.get(key) or []
    return Seed(doc=data, warnings=found)


class _TooLong(ValueError):
    pass


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _TooLong(f"an integer of {digits} digits is too long (at most {MAX_INT_DIGITS})")
    return int(text)


Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Value = StrictStr | StrictInt | StrictFloat | StrictBool | None


class _UserService(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")
    sal: Id
    overrides: dict[Id, Value] | None = None


class _User(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")
    id: Id
    services: dict[Id, _UserService] | None = None
    hold: str | None = None


_USERS: TypeAdapter[list[_User]] = TypeAdapter(list[_User])


def _schema_problems(data: Any) -> Iterator[tuple[Diagnostic, PathTuple, bool]]:
    """JSON Schema for the document, but pydantic for the users: a 250,000-user seed checks in a second.

    Both describe the same user shape (schemas/platform.schema.json stays the reference for editors).
    """
    users: dict[int, Any] = {}
    skeleton = data
    if isinstance(data, dict) and isinstance(data.get("customers"), list):
        customers = []
        for i, c in enumerate(data["customers"]):
            if isinstance(c, dict) and isinstance(c.get("users"), list):
                users[i] = c["users"]
                c = {**c, "users": []}
            customers.append(c)
        skeleton = {**data, "customers": customers}
    yield from schema.iter_diagnostics("platform", skeleton)
    for i, us in users.items():
        try:
            _USERS.validate_python(us)
        except ValidationError as e:
            for err in e.errors()[:50]:
                path: PathTuple = ("customers", i, "users", *(x for x in err["loc"] if isinstance(x, (str, int))))
                yield error("schema", f"{json_path(path)}: {err['msg']}", json_path(path)), path, False


def check(doc: Doc) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for d, path, at_key in _schema_problems(doc.data):
        line, col = doc.position(path, at_key) if doc.marks else (None, None)
        out.append(d.at(doc.file, line, col))
    if out:
        return out
    for path, message in _reference_problems(doc.data):
        line, col = doc.position(path) if doc.marks else (None, None)
        out.append(error("seed", f"{json_path(path)}: {message}", json_path(path)).at(doc.file, line, col))
    return out


def scope_warnings(doc: Doc) -> list[Diagnostic]:
    """References that resolve, but outside their scope: a plan or SAL that the customer's parent does not
    offer, a customer in another location than its parent. A move half done on the platform leaves these
    (and `platform export` must seed again), so they are warnings; `check` has already passed."""
    out: list[Diagnostic] = []
    for path, message in _scope_problems(doc.data):
        line, col = doc.position(path) if doc.marks else (None, None)
        out.append(warning("seed", f"{json_path(path)}: {message}", json_path(path)).at(doc.file, line, col))
    return out


def _scope_problems(data: dict[str, Any]) -> Iterator[tuple[PathTuple, str]]:
    customers = data.get("customers") or []
    by_id = {c["id"]: c for c in customers}
    for i, c in enumerate(customers):
        parent = by_id.get(c.get("parent") or "")
        if parent is None:
            continue
        cid, pid = c["id"], parent["id"]
        p: PathTuple = ("customers", i)
        if c["location"] != parent["location"]:
            yield (*p, "location"), (f"customer {short(cid)} is in location {short(c['location'])}, its parent "
                                     f"{short(pid)} in {short(parent['location'])}")
        offered = ((parent.get("reseller") or {}).get("services")) or {}
        subs = c.get("services") or {}
        for svc, sub in subs.items():
            off = offered.get(svc) or {}
            sp: PathTuple = (*p, "services", svc)
            if sub["plan"] not in (off.get("plans") or []):
                yield (*sp, "plan"), (f"customer {short(cid)}: plan {short(sub['plan'])} of {short(svc)} is not "
                                      f"offered by its parent {short(pid)}")
            if sub["sal"] not in (off.get("sals") or {}):
                yield (*sp, "sal"), (f"customer {short(cid)}: SAL {short(sub['sal'])} of {short(svc)} is not "
                                     f"offered by its parent {short(pid)}")
        for j, u in enumerate(c.get("users") or []):
            for svc, us in (u.get("services") or {}).items():
                if svc in subs and us["sal"] not in ((offered.get(svc) or {}).get("sals") or {}):
                    yield ((*p, "users", j, "services", svc, "sal"),
                           f"user {short(u['id'])}: SAL {short(us['sal'])} of {short(svc)} is not offered by "
                           f"{short(pid)}, the parent of customer {short(cid)}")


def catalog_of(data: dict[str, Any]) -> dict[str, dict[str, PropertyDef]]:
    return {
        s["id"]: {n: PropertyDef(n, p["type"], bool(p.get("sensitive", False)))
                  for n, p in (s.get("properties") or {}).items()}
        for s in data.get("services") or []
    }


def _props(props: dict[str, Any] | None, service: str, catalog: dict[str, dict[str, PropertyDef]],
           path: PathTuple) -> Iterator[tuple[PathTuple, str]]:
    defs = catalog.get(service, {})
    for name, value in (props or {}).items():
        pd = defs.get(name)
        if pd is None:
            yield (*path, name), f"unknown property {short(name)} of service {short(service)}"
        elif not pd.accepts(value):
            shown = kind_of(value) if pd.sensitive else short(value)
            yield (*path, name), f"property {short(name)} must be {pd.type}, got {shown}"


def _reference_problems(data: dict[str, Any]) -> Iterator[tuple[PathTuple, str]]:
    def dup(kind: str, items: list[Any], section: str) -> set[str]:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item["id"] in seen:
                dups.append(((section, i, "id"), f"duplicate {kind} id {short(item['id'])}"))
            seen.add(item["id"])
        return seen

    dups: list[tuple[PathTuple, str]] = []
    locations = dup("location", data.get("locations") or [], "locations")
    dup("service", data.get("services") or [], "services")
    customers = data.get("customers") or []
    dup("customer", customers, "customers")
    yield from dups
    catalog = catalog_of(data)
    by_id = {c["id"]: c for c in customers}
    plans: dict[str, set[str]] = {}
    sals: dict[str, set[str]] = {}
    for i, c in enumerate(customers):
        for svc, off in ((c.get("reseller") or {}).get("services") or {}).items():
            p: PathTuple = ("customers", i, "reseller", "services", svc)
            if svc not in catalog:
                yield p, f"unknown service {short(svc)}"
                continue
            plans.setdefault(svc, set()).update(off.get("plans") or [])
            for sal, props in (off.get("sals") or {}).items():
                sals.setdefault(svc, set()).add(sal)
                yield from _props(props, svc, catalog, (*p, "sals", sal))
    users_seen: dict[str, str] = {}
    for i, c in enumerate(customers):
        p = ("customers", i)
        cid = c["id"]
        if c["location"] not in locations:
            yield (*p, "location"), f"customer {short(cid)}: unknown location {short(c['location'])}"
        parent = c.get("parent")
        if parent is None:
            if c.get("reseller") is None:
                yield (*p, "parent"), f"customer {short(cid)} has no parent; only a top-level reseller may"
        elif parent not in by_id:
            yield (*p, "parent"), f"customer {short(cid)}: unknown parent {short(parent)}"
        elif by_id[parent].get("reseller") is None:
            yield (*p, "parent"), f"customer {short(cid)}: parent {short(parent)} is not a reseller"
        elif _cycle(cid, by_id):
            yield (*p, "parent"), f"customer {short(cid)}: the parent chain loops back to it"
        subs = c.get("services") or {}
        for svc, sub in subs.items():
            sp: PathTuple = (*p, "services", svc)
            if svc not in catalog:
                yield sp, f"customer {short(cid)}: unknown service {short(svc)}"
                continue
            if sub["plan"] not in plans.get(svc, set()):
                yield (*sp, "plan"), f"customer {short(cid)}: unknown plan {short(sub['plan'])} of {short(svc)}"
            if sub["sal"] not in sals.get(svc, set()):
                yield (*sp, "sal"), f"customer {short(cid)}: unknown SAL {short(sub['sal'])} of {short(svc)}"
            yield from _props(sub.get("overrides"), svc, catalog, (*sp, "overrides"))
        for j, u in enumerate(c.get("users") or []):
            up: PathTuple = (*p, "users", j)
            uid = u["id"]
            if uid in users_seen:
                yield (*up, "id"), f"duplicate user id {short(uid)} (also in customer {short(users_seen[uid])})"
            users_seen[uid] = cid
            for svc, us in (u.get("services") or {}).items():
                usp: PathTuple = (*up, "services", svc)
                if svc not in catalog:
                    yield usp, f"user {short(uid)}: unknown service {short(svc)}"
                    continue
                if svc not in subs:
                    yield usp, f"user {short(uid)}: customer {short(cid)} does not subscribe to {short(svc)}"
                if us["sal"] not in sals.get(svc, set()):
                    yield (*usp, "sal"), f"user {short(uid)}: unknown SAL {short(us['sal'])} of {short(svc)}"
                yield from _props(us.get("overrides"), svc, catalog, (*usp, "overrides"))
    seen_rq: set[str] = set()
    for i, r in enumerate(data.get("requests") or []):
        if r["id"] in seen_rq:
            yield ("requests", i, "id"), f"duplicate request id {short(r['id'])}"
        seen_rq.add(r["id"])
        if r["customer"] not in by_id:
            yield ("requests", i, "customer"), f"request {short(r['id'])}: unknown customer {short(r['customer'])}"


def _cycle(cid: str, by_id: dict[str, Any]) -> bool:
    seen = {cid}
    cur = by_id[cid].get("parent")
    while cur is not None and cur in by_id:
        if cur in seen:
            return True
        seen.add(cur)
        cur = by_id[cur].get("parent")
    return False
