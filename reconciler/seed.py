"""Read a platform seed (YAML or JSON) and check that every reference in it resolves."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
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
from reconciler.model import ID_PATTERN, PropertyDef, property_defs
from reconciler.schema import PathTuple, json_path, kind_of, short
from reconciler.yamlsafe import MAX_INT_DIGITS, Doc, decode, stream_items

MAX_SEED_BYTES = 1024 * 1024 * 1024


@dataclass
class Seed:
    """A checked seed document, normalised: every optional collection present; `warnings` for references
    outside their scope (a half-done move leaves them; an export must always seed again)."""

    doc: dict[str, Any]
    warnings: list[Diagnostic] = field(default_factory=list)


def read(file: str) -> Seed:
    """Parse and check a seed file, the whole document in memory; every problem is listed in one
    PlatformError. (platform init streams instead: `stream`.)"""
    s = stream(file)
    customers = list(s.customers())
    warnings = s.finish()
    return Seed(doc={**s.header, "customers": customers}, warnings=warnings)


def stream(file: str) -> Stream:
    """Parse a seed file and check its schema, customer by customer (the users of one customer at a time in
    memory); the reference checks run as `Stream.customers()` is read, and `Stream.finish()` raises them."""
    try:
        with open(file, "rb") as fh:
            raw = fh.read(MAX_SEED_BYTES + 1)
    except OSError as e:
        raise PlatformError(f"{file}: cannot read the seed: {e.strerror or e}") from None
    if len(raw) > MAX_SEED_BYTES:
        raise PlatformError(f"{file}: the seed is larger than 1 GiB")
    text, bad = decode(raw, file)
    del raw
    if bad is not None or text is None:
        raise PlatformError(bad.format() if bad else f"{file}: cannot decode")
    schema_pass = _SchemaPass()
    read_parts = _json_parts if file.endswith(".json") else _yaml_parts
    parts = read_parts(file, text, schema_pass)
    problems = schema_pass.problems(parts.doc)
    if problems:
        _refuse(file, problems)
    return Stream(parts)


def _refuse(file: str, problems: list[Diagnostic]) -> None:
    listed = "\n".join(p.format() for p in problems)
    raise PlatformError(f"{file}: the seed has {len(problems)} problem(s); nothing was created:\n{listed}")


@dataclass
class _Parts:
    """A seed document as parts: `doc` holds every top-level key, its customers without their users (the
    skeleton, with the positions of its nodes when YAML); `customers()` yields each customer in full with
    the Doc that places its nodes."""

    doc: Doc
    customers: Callable[[], Iterator[tuple[Any, Doc]]]


class _SchemaPass:
    """JSON Schema for the skeleton, pydantic for the users, one customer at a time: a 250,000-user seed
    checks in a second, in the memory of its largest customer.

    Both describe the same user shape (schemas/platform.schema.json stays the reference for editors)."""

    def __init__(self) -> None:
        self.user_problems: list[Diagnostic] = []

    def customer(self, i: int, c: Any, doc: Doc) -> Any:
        """Check customer i's users; its skeleton."""
        if not (isinstance(c, dict) and isinstance(c.get("users"), list)):
            return c
        try:
            if not _plain_users(c["users"]):
                _USERS.validate_python(c["users"])
        except ValidationError as e:
            for err in e.errors()[:50]:
                path: PathTuple = ("customers", i, "users", *(x for x in err["loc"] if isinstance(x, (str, int))))
                line, col = doc.position(path) if doc.marks else (None, None)
                self.user_problems.append(error("schema", f"{json_path(path)}: {err['msg']}", json_path(path))
                                          .at(doc.file, line, col))
        return {**c, "users": []}

    def problems(self, skeleton: Doc) -> list[Diagnostic]:
        out: list[Diagnostic] = []
        for d, path, at_key in schema.iter_diagnostics("platform", skeleton.data):
            line, col = skeleton.position(path, at_key) if skeleton.marks else (None, None)
            out.append(d.at(skeleton.file, line, col))
        return out + self.user_problems


def _whole(doc: Doc, schema_pass: _SchemaPass) -> _Parts:
    """A document already in memory (YAML, or JSON the streaming reader leaves to json.loads)."""
    data = doc.data
    if not (isinstance(data, dict) and isinstance(data.get("customers"), list)):
        return _Parts(doc, lambda: iter(()))
    customers = data["customers"]
    skeleton = [schema_pass.customer(i, c, doc) for i, c in enumerate(customers)]
    head = Doc(file=doc.file, index=doc.index, line=doc.line, data={**data, "customers": skeleton},
               marks=doc.marks, key_marks=doc.key_marks)
    return _Parts(head, lambda: ((c, doc) for c in customers))


def _yaml_parts(file: str, text: str, schema_pass: _SchemaPass) -> _Parts:
    """A YAML seed read customer by customer (parsed again when the customers are written: YAML parsing sets
    the time, the largest customer the memory); a document the streaming reader does not follow is loaded
    whole, with load_all's own diagnostics."""
    skeleton: list[Any] = []
    kept: dict[PathTuple, tuple[int, int]] = {}
    kept_keys: dict[PathTuple, tuple[int, int]] = {}
    for got in stream_items(text, file, "customers"):
        if isinstance(got, list):
            schema_pass.user_problems.clear()
            return _whole(_one_document(file, got), schema_pass)
        if isinstance(got, Doc):
            if got.data.get("customers") == []:  # the sequence streamed (else a value composed as it is)
                got.data["customers"] = skeleton
            got.marks.update(kept)
            got.key_marks.update(kept_keys)

            def customers() -> Iterator[tuple[Any, Doc]]:
                for item in stream_items(text, file, "customers"):
                    if isinstance(item, tuple):
                        yield item[1], item[2]

            return _Parts(got, customers)
        i, c, doc = got
        skeleton.append(schema_pass.customer(i, c, doc))
        # the skeleton's positions: everything of the customer but what lies inside its users
        kept.update((p, m) for p, m in doc.marks.items() if len(p) <= 3 or p[2] != "users")
        kept_keys.update((p, m) for p, m in doc.key_marks.items() if len(p) <= 3 or p[2] != "users")
    raise AssertionError("stream_items ends with the document")


def _one_document(file: str, items: list[Doc | Diagnostic]) -> Doc:
    doc: Doc | None = None
    for item in items:
        if isinstance(item, Diagnostic):
            raise PlatformError(item.format())
        if doc is not None:
            raise PlatformError(f"{file}:{item.line}:1: error[yaml]: a seed holds one document")
        doc = item
    if doc is None or doc.data is None:
        raise PlatformError(f"{file}: the seed is empty")
    return doc


_WS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]  # `*` always matches


def _json_parts(file: str, text: str, schema_pass: _SchemaPass) -> _Parts:
    """A JSON seed read value by value: the top-level object's members, and each customer of its customers
    array on its own (read again, from its offset, when the customers are written). Anything the scanner
    does not follow (an error, a duplicate key, another shape) goes to json.loads of the whole text, so the
    messages are json's own."""
    decoder = json.JSONDecoder(parse_int=_json_int)
    doc = Doc(file=file, index=0, line=1, data=None)
    try:
        scanned = _scan_json(text, decoder, schema_pass, doc)
    except (ValueError, RecursionError):
        scanned = None
    if scanned is None:
        schema_pass.user_problems.clear()
        doc.data = _json_loads(file, text)
        if doc.data is None:
            raise PlatformError(f"{file}: the seed is empty")
        return _whole(doc, schema_pass)
    doc.data, offsets = scanned

    def customers() -> Iterator[tuple[Any, Doc]]:
        for at in offsets:
            yield decoder.raw_decode(text, at)[0], doc

    return _Parts(doc, customers)


def _scan_json(text: str, decoder: json.JSONDecoder,
               schema_pass: _SchemaPass, doc: Doc) -> tuple[dict[str, Any], list[int]] | None:
    """The top-level object member by member; None where it is not the plain shape this follows."""
    pos = _skip(text, 0)
    if text[pos:pos + 1] != "{":
        return None
    header: dict[str, Any] = {}
    offsets: list[int] = []
    pos = _skip(text, pos + 1)
    more = text[pos:pos + 1] != "}"
    if not more:
        pos += 1
    while more:
        if text[pos:pos + 1] != '"':
            return None
        key, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        pos = _skip(text, pos)
        if text[pos:pos + 1] != ":" or key in header:
            return None
        pos = _skip(text, pos + 1)
        if key == "customers" and text[pos:pos + 1] == "[":
            skeleton: list[Any] = []
            pos = _skip(text, pos + 1)
            if text[pos:pos + 1] == "]":
                pos += 1
            else:
                while True:
                    offsets.append(pos)
                    value, pos = decoder.raw_decode(text, pos)
                    skeleton.append(schema_pass.customer(len(skeleton), value, doc))
                    del value
                    pos = _skip(text, pos)
                    sep = text[pos:pos + 1]
                    pos = _skip(text, pos + 1)
                    if sep == "]":
                        break
                    if sep != ",":
                        return None
            header[key] = skeleton
        else:
            header[key], pos = decoder.raw_decode(text, pos)
        pos = _skip(text, pos)
        sep = text[pos:pos + 1]
        pos = _skip(text, pos + 1)
        if sep == "}":
            more = False
        elif sep != ",":
            return None
    if _skip(text, pos) != len(text):
        return None
    return header, offsets


def _json_loads(file: str, text: str) -> Any:
    try:
        return json.loads(text, parse_int=_json_int)
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
_ID = re.compile(ID_PATTERN)
_USER_KEYS = frozenset({"id", "services", "hold"})
_USER_SERVICE_KEYS = frozenset({"sal", "overrides"})


def _plain_users(users: list[Any]) -> bool:
    """True only for users that _USERS surely accepts, checked in plain Python (a quarter of its time: its
    patterns call back into Python's re); False means "ask pydantic", which says what is wrong."""
    match = _ID.match
    for u in users:
        if type(u) is not dict or not u.keys() <= _USER_KEYS:
            return False
        uid = u.get("id")
        if type(uid) is not str or match(uid) is None:
            return False
        hold = u.get("hold")
        if hold is not None and type(hold) is not str:
            return False
        services = u.get("services")
        if services is None:
            continue
        if type(services) is not dict:
            return False
        for sid, us in services.items():
            if type(sid) is not str or match(sid) is None or type(us) is not dict:
                return False
            if not us.keys() <= _USER_SERVICE_KEYS:
                return False
            sal = us.get("sal")
            if type(sal) is not str or match(sal) is None:
                return False
            overrides = us.get("overrides")
            if overrides is None:
                continue
            if type(overrides) is not dict:
                return False
            for k, v in overrides.items():
                if type(k) is not str or match(k) is None or not _plain_value(v):
                    return False
    return True


def _plain_value(v: Any) -> bool:
    t = type(v)
    if t is str or t is bool or v is None:
        return True
    if t is int:
        return bool(-(2 ** 63) <= v < 2 ** 63)
    return t is float and math.isfinite(v)


def check(doc: Doc) -> list[Diagnostic]:
    """Every problem of a document in memory: schema problems alone if any, else the reference problems."""
    schema_pass = _SchemaPass()
    parts = _whole(doc, schema_pass)
    problems = schema_pass.problems(parts.doc)
    if problems:
        return problems
    s = Stream(parts)
    for _ in s.customers():
        pass
    return s.problems


class Stream:
    """A schema-valid seed: its header (every top-level collection present, customers without their users)
    and its customers in full, one at a time, each checked as it passes (references, then scope); after the
    last one `finish()` raises every reference problem at once, or returns the scope warnings."""

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts
        self.file = parts.doc.file
        header = dict(parts.doc.data)
        for key in ("locations", "services", "customers", "requests"):
            header[key] = header.get(key) or []
        self.header = header
        self.problems: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.done = False

    def customers(self) -> Iterator[dict[str, Any]]:
        head = self.parts.doc
        ctx = _Context(self.header)
        self._add(self.problems, error, ctx.head_problems(), head)
        for i, (c, doc) in enumerate(self.parts.customers()):
            self._add(self.problems, error, ctx.customer_problems(i, c), doc)
            self._add(self.warnings, warning, _scope_problems(i, c, ctx.by_id), doc)
            yield c
        self._add(self.problems, error, ctx.request_problems(), head)
        self.done = True

    def _add(self, into: list[Diagnostic], kind: Callable[..., Diagnostic],
             found: Iterable[tuple[PathTuple, str]], doc: Doc) -> None:
        for path, message in found:
            line, col = doc.position(path) if doc.marks else (None, None)
            into.append(kind("seed", f"{json_path(path)}: {message}", json_path(path)).at(self.file, line, col))

    def finish(self) -> list[Diagnostic]:
        """After every customer was read: raise the problems (nothing is created), or the scope warnings."""
        assert self.done, "read every customer first"
        if self.problems:
            _refuse(self.file, self.problems)
        return self.warnings


def _scope_problems(i: int, c: dict[str, Any], by_id: dict[str, Any]) -> Iterator[tuple[PathTuple, str]]:
    parent = by_id.get(c.get("parent") or "")
    if parent is None:
        return
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
    offered_sals = {svc: (offered.get(svc) or {}).get("sals") or {} for svc in subs}
    for j, u in enumerate(c.get("users") or []):
        for svc, us in (u.get("services") or {}).items():
            if svc in subs and us["sal"] not in offered_sals[svc]:
                yield ((*p, "users", j, "services", svc, "sal"),
                       f"user {short(u['id'])}: SAL {short(us['sal'])} of {short(svc)} is not offered by "
                       f"{short(pid)}, the parent of customer {short(cid)}")


def catalog_of(data: dict[str, Any]) -> dict[str, dict[str, PropertyDef]]:
    return {s["id"]: property_defs(s.get("properties")) for s in data.get("services") or []}


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


class _Context:
    """What the reference checks know before the customers stream by: the header, the skeleton customers,
    every plan and SAL the resellers offer; and the user ids seen so far."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.catalog = catalog_of(data)
        self.by_id: dict[str, Any] = {c["id"]: c for c in data["customers"]}
        self.plans: dict[str, set[str]] = {}
        self.sals: dict[str, set[str]] = {}
        self.locations: set[str] = set()
        self.users_seen: dict[str, str] = {}

    def head_problems(self) -> Iterator[tuple[PathTuple, str]]:
        data = self.data

        def dup(kind: str, items: list[Any], section: str) -> set[str]:
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item["id"] in seen:
                    dups.append(((section, i, "id"), f"duplicate {kind} id {short(item['id'])}"))
                seen.add(item["id"])
            return seen

        dups: list[tuple[PathTuple, str]] = []
        self.locations = dup("location", data["locations"], "locations")
        dup("service", data["services"], "services")
        customers = data["customers"]
        dup("customer", customers, "customers")
        yield from dups
        catalog = self.catalog
        for i, c in enumerate(customers):
            for svc, off in ((c.get("reseller") or {}).get("services") or {}).items():
                p: PathTuple = ("customers", i, "reseller", "services", svc)
                if svc not in catalog:
                    yield p, f"unknown service {short(svc)}"
                    continue
                self.plans.setdefault(svc, set()).update(off.get("plans") or [])
                for sal, props in (off.get("sals") or {}).items():
                    self.sals.setdefault(svc, set()).add(sal)
                    yield from _props(props, svc, catalog, (*p, "sals", sal))

    def customer_problems(self, i: int, c: dict[str, Any]) -> Iterator[tuple[PathTuple, str]]:
        catalog, by_id, plans, sals, users_seen = self.catalog, self.by_id, self.plans, self.sals, self.users_seen
        p: PathTuple = ("customers", i)
        cid = c["id"]
        if c["location"] not in self.locations:
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
            uid = u["id"]
            if uid in users_seen:
                yield ((*p, "users", j, "id"),
                       f"duplicate user id {short(uid)} (also in customer {short(users_seen[uid])})")
            users_seen[uid] = cid
            for svc, us in (u.get("services") or {}).items():
                if svc in subs and us["sal"] in sals.get(svc, ()) and not us.get("overrides"):
                    continue  # the common case, with nothing to say: no paths built (250,000 users)
                usp: PathTuple = (*p, "users", j, "services", svc)
                if svc not in catalog:
                    yield usp, f"user {short(uid)}: unknown service {short(svc)}"
                    continue
                if svc not in subs:
                    yield usp, f"user {short(uid)}: customer {short(cid)} does not subscribe to {short(svc)}"
                if us["sal"] not in sals.get(svc, set()):
                    yield (*usp, "sal"), f"user {short(uid)}: unknown SAL {short(us['sal'])} of {short(svc)}"
                yield from _props(us.get("overrides"), svc, catalog, (*usp, "overrides"))

    def request_problems(self) -> Iterator[tuple[PathTuple, str]]:
        seen_rq: set[str] = set()
        for i, r in enumerate(self.data["requests"]):
            if r["id"] in seen_rq:
                yield ("requests", i, "id"), f"duplicate request id {short(r['id'])}"
            seen_rq.add(r["id"])
            if r["customer"] not in self.by_id:
                yield (("requests", i, "customer"),
                       f"request {short(r['id'])}: unknown customer {short(r['customer'])}")


def _cycle(cid: str, by_id: dict[str, Any]) -> bool:
    seen = {cid}
    cur = by_id[cid].get("parent")
    while cur is not None and cur in by_id:
        if cur in seen:
            return True
        seen.add(cur)
        cur = by_id[cur].get("parent")
    return False
