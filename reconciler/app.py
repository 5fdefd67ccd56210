"""The use cases: validate, plan, apply, status, new-move, platform init/export. Phases are wired here."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reconciler import applier, audit, manifests, planner, schema, targeting, validation
from reconciler import policy as policy_
from reconciler import revert as revert_
from reconciler.config import Settings
from reconciler.diagnostics import Diagnostic
from reconciler.errors import ReconcilerError, StalePlan, StateError
from reconciler.manifests import Move
from reconciler.model import Service, User, conceal_customer, concealed, sha256_of
from reconciler.planner import Snapshot
from reconciler.platforms import export, open_platform
from reconciler.platforms.base import Platform
from reconciler.policy import Policy
from reconciler.render import count
from reconciler.results import PLAN_FORMAT, ApplyResult, DriftReport, PlanResult
from reconciler.state import Journal, State, StateStore, is_url, open_store
from reconciler.state.model import dumps, parse
from reconciler.targeting import Partial
from reconciler.urls import redact
from reconciler.yamlsafe import Doc

READ_BATCH = 1000  # customers (or resellers) per batch read: a remote platform pages their users

# -- validate -------------------------------------------------------------------------------
validate = validation.validate  # the CLI imports reconciler.validation itself: not all of this module


Catalog = Callable[[], dict[str, Service]]  # the run's catalog, read on first call (functools.cache)


# -- plan -----------------------------------------------------------------------------------
class _Reads:
    """One read cache per run: each customer's users and each reseller's usage are read once, in batches of
    the customers and resellers the plan will need (a remote platform pages them), never one by one."""

    def __init__(self, platform: Platform, customers: list[str], resellers: list[str]) -> None:
        self.platform = platform
        self.want_customers, self.want_resellers = customers, resellers
        self.read_users: dict[str, list[User]] = {}
        self.read_usage: dict[str, dict[str, int]] = {}

    def users(self, cid: str) -> list[User]:
        if cid not in self.read_users:
            batch = [cid, *[c for c in self.want_customers if c not in self.read_users and c != cid][:READ_BATCH - 1]]
            found = self.platform.users(batch)
            self.read_users.update({c: found.get(c, []) for c in batch})
        return self.read_users.get(cid, [])

    def usage(self, rid: str) -> dict[str, int]:
        if rid not in self.read_usage:
            batch = [rid, *[r for r in self.want_resellers if r not in self.read_usage and r != rid][:READ_BATCH - 1]]
            found_usage = self.platform.usage(batch)
            self.read_usage.update({r: found_usage.get(r, {}) for r in batch})
        return self.read_usage.get(rid, {})


def snapshot(platform: Platform, moves: Sequence[Move], st: State | None,
             catalog: Catalog | None = None) -> tuple[Snapshot, _Reads]:
    """Read only what the batch touches: its customers, their parents, the destinations, their requests;
    users and usage are read as planning asks for them (and cached). `catalog`: the run's catalog reader."""
    ids = {m.customer for m in moves} | {m.to_reseller for m in moves}
    customers = platform.customers(ids)
    parents = {c.parent for c in customers.values() if c.parent and c.parent not in customers}
    customers.update(platform.customers(parents))
    moved = sorted({m.customer for m in moves if m.customer in customers})
    requests = platform.requests_of(moved)
    read_catalog = (catalog or platform.catalog)()
    done = {n for n, r in st.moves.items() if r.done} if st else set()
    open_moves = [m for m in moves if m.name not in done]
    reads = _Reads(platform, list(dict.fromkeys(m.customer for m in open_moves)),
                   list(dict.fromkeys(m.to_reseller for m in open_moves)))
    snap = Snapshot(catalog=read_catalog, customers=customers, users=reads.users, usage=reads.usage, requests=requests)
    return snap, reads


def fingerprint(snap: Snapshot, reads: _Reads) -> str:
    """Over everything planning read (never over a digest the platform keeps): any change to those
    customers, their users, their offerings, the destinations' usage or their requests makes a saved
    plan stale. Sensitive values count through their concealed form (model.conceal), so a plan made with a
    platform's read-only token and an apply with its write token see the same fingerprint."""
    secret = snap.secret
    h = hashlib.sha256()
    h.update(sha256_of({s: {n: [p.type, p.sensitive] for n, p in svc.properties.items()}
                        for s, svc in snap.catalog.items()}).encode())
    for cid in sorted(snap.customers):
        h.update(sha256_of(conceal_customer(snap.customers[cid].to_json(), secret)).encode())
    for cid in sorted(snap.requests):
        h.update(f"{cid}:{','.join(f'{r.id}={r.status}' for r in snap.requests[cid])};".encode())
    for cid in sorted(reads.read_users):
        h.update(_users_key(reads.read_users[cid], secret))
    h.update(sha256_of({r: reads.read_usage[r] for r in sorted(reads.read_usage)}).encode())
    return "sha256:" + h.hexdigest()


def _users_key(users: Sequence[User], secret: Mapping[str, set[str]]) -> bytes:
    """The users of one customer as bytes for the fingerprint: cheap (a plan reads 50,000 of them) and the same
    whichever provider or token read them (services in name order, overrides sorted, sensitive values concealed).
    A UserService shared by many users (a platform read shares them) is put in form once: the users are alive
    throughout, so an id stands for one object."""
    out: list[Any] = []
    add, extend = out.append, out.extend
    seen: dict[int, tuple[str, str, Any]] = {}
    for u in users:
        add(u.id)
        add(u.hold)
        for svc in sorted(u.services) if len(u.services) > 1 else u.services:
            x = u.services[svc]
            part = seen.get(id(x))
            if part is None or part[0] != svc:
                ov: Any = x.overrides
                if ov:
                    names = secret.get(svc)
                    if names and not names.isdisjoint(ov):
                        ov = concealed(ov, names)
                    ov = sorted(ov.items()) if len(ov) > 1 else ov
                part = seen[id(x)] = (svc, x.sal, ov or None)
            extend(part)  # svc, sal, overrides: the same bytes as ever, so saved plans stay comparable
        add(0)  # end of the user
    return repr(out).encode()


def build_plan(platform: Platform, moves: Sequence[Move], diagnostics: Sequence[Diagnostic],
               st: State | None, git_commit: str | None, files: int = 0, paths: Sequence[str] = (),
               store: StateStore | None = None, policy: Policy | None = None,
               partial: Partial | None = None, catalog: Catalog | None = None) -> PlanResult:
    snap, reads = snapshot(platform, moves, st, catalog)
    records = st.moves if st else {}
    latest = st.latest_done() if st else {}
    the_plan = planner.plan(moves, snap, records, latest, diagnostics, policy_.move_check(policy))
    _suggest_ids(platform, the_plan)
    policy_.check(the_plan, policy)
    prior = {"lineage": st.lineage, "serial": st.serial} if st else None
    result = PlanResult(the_plan, platform.url, fingerprint(snap, reads), prior, git_commit, files, tuple(paths),
                        state_location(store.location) if store else None, policy=policy, partial=partial)
    result.sensitive = _sensitive_digests(the_plan, snap)
    hint = store.missing_hint() if store else None
    if hint:
        result.notes.append(hint)
    return result


NOT_FOUND = {"customer-not-found": ("customer", "spec.customer"),
             "reseller-not-found": ("to_reseller", "spec.toReseller")}


def _suggest_ids(platform: Platform, the_plan: planner.Plan) -> None:
    """An unknown customer or reseller id gets "did you mean" (one search call per distinct unknown id) and a hint."""
    from reconciler.newmove import did_you_mean

    guesses: dict[str, str] = {}  # the same unknown id in many manifests is searched for once
    for pm in the_plan.moves:
        for i, d in enumerate(pm.diagnostics):
            if d.code in NOT_FOUND:
                attr, key = NOT_FOUND[d.code]
                wanted = getattr(pm, attr)
                if wanted not in guesses:
                    guesses[wanted] = did_you_mean(platform, wanted)
                guess = guesses[wanted]
                tail = guess or f"; check {key} (ids are exact and case-sensitive)"
                pm.diagnostics[i] = dataclasses.replace(d, message=d.message + tail)


def _sensitive_digests(the_plan: planner.Plan, snap: Snapshot) -> dict[str, dict[str, str]]:
    """Per move, a sha256 of each sensitive value its request would set (the plan shows them as "(sensitive)"):
    the plan file carries them, so that `apply --plan` can tell an edited secret from the reviewed one."""
    out: dict[str, dict[str, str]] = {}
    for pm in the_plan.moves:
        if pm.order is None:
            continue
        digests = {}
        for svc, sub in sorted(pm.order.subscriptions.items()):
            service = snap.catalog.get(svc)
            for key, val in sorted(sub.overrides.items()):
                prop = service.properties.get(key) if service else None
                if prop is not None and prop.sensitive:
                    digests[f"{svc}.{key}"] = sha256_of([pm.name, svc, key, val])
        if digests:
            out[pm.name] = digests
    return out


def state_location(location: str) -> str:
    """Where the state is, as a plan file records it: a file as an absolute path; a URL without its password
    (or any secret query parameter: libpq's own sources give those)."""
    return redact(location, drop=True) if is_url(location) else os.path.abspath(location)


def _open(settings: Settings) -> Platform:
    return open_platform(settings.platform_url, settings.platform_options)


def plan(paths: Sequence[str], settings: Settings, targets: Sequence[str] = (),
         excludes: Sequence[str] = ()) -> PlanResult:
    store = open_store(settings.state)
    try:
        st = store.load()
        loaded = manifests.load(paths, st.known() if st else None)
        moves, partial = targeting.select(loaded.moves, targets, excludes)
        platform = _open(settings)
        try:
            catalog = functools.cache(platform.catalog)  # read once a run, when first needed
            if st is not None:
                applier.refresh(st, platform, catalog=catalog)  # in memory only: plan never writes the state
            return build_plan(platform, moves, loaded.diagnostics, st, audit.commit_of(paths), loaded.files,
                              paths, store, settings.policy, partial, catalog)
        finally:
            platform.close()
    finally:
        store.close()


def write_plan_file(result: PlanResult, out: str) -> None:
    """The plan JSON plus each move's manifest document: what apply --plan applies, as reviewed.

    It may hold sensitive values: written to a new file of mode 0600 beside `out`, then renamed over it, so an
    existing file never keeps a wider mode, a symlink at `out` is replaced (never written through), and a
    reader never sees half a plan."""
    from reconciler.render.json import write_plan

    target = Path(out)
    if target.is_dir() and not target.is_symlink():
        raise ReconcilerError(f"cannot write the plan file {out}: it is a directory")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            write_plan(result, fh, with_manifests=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        raise ReconcilerError(f"cannot write the plan file {out}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def read_plan_file(path: str) -> tuple[dict[str, Any], list[Move]]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise ReconcilerError(f"{path}: no such plan file", hint="make one with `reconcile plan --out FILE`") from None
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ReconcilerError(f"{path}: not a plan file ({e})",
                              hint="make one with `reconcile plan --out FILE`") from None
    if not isinstance(doc, dict) or doc.get("format_version") != PLAN_FORMAT or not isinstance(doc.get("moves"), list):
        raise ReconcilerError(f"{path}: not a plan file of format {PLAN_FORMAT}",
                              hint="make one with `reconcile plan --out FILE` of this reconciler version")
    moves: list[Move] = []
    for i, m in enumerate(doc["moves"]):
        if not isinstance(m, dict) or "manifest" not in m:
            raise ReconcilerError(f"{path}: move {i} carries no manifest; make the plan with `plan --out`")
        data = m["manifest"]
        errors = list(schema.iter_diagnostics("move", data))
        if errors or not isinstance(m.get("manifest_sha256"), str):
            raise StalePlan(f"{path}: the manifest carried for move {m.get('name')!r} is not valid",
                            hint="make the plan again with `reconcile plan --out FILE`")
        digest = sha256_of(data)
        if digest != m["manifest_sha256"]:
            raise StalePlan(f"{path}: the manifest carried for {m.get('name')!r} does not match its digest; "
                            "the plan file was edited", hint="make the plan again with `reconcile plan --out FILE`")
        doc_ = Doc(file=str(m.get("file") or path), index=0, line=int(m.get("line") or 1), data=data)
        moves.append(Move(manifests.Manifest.model_validate(data), doc_, digest))
    return doc, moves


# -- apply ----------------------------------------------------------------------------------
Approver = Callable[[PlanResult], bool]


def _window_check(policies: Sequence[Policy | None], options: applier.Options | None) -> applier.Options | None:
    """Outside any apply window: refuse, naming the next opening. Inside: no new move after the first one closes."""
    windows = list(dict.fromkeys(p.apply_window for p in policies if p is not None and p.apply_window))
    if not windows:
        return options
    now = datetime.now(timezone.utc)
    why = policy_.outside_window(windows, now)
    if why is not None:
        raise ReconcilerError(f"policy-outside-window: nothing was applied: {why}",
                              hint="run apply again inside the window (reconcile.toml [policy.apply_window])")
    left = policy_.seconds_left(windows, now)
    assert left is not None
    return dataclasses.replace(options or applier.Options(), until=time.monotonic() + left)


def require_moves(result: PlanResult, allow_empty: bool, verb: str = "plan", plan_file: str | None = None) -> None:
    """A plan or apply with no move to judge is an error (a wrong path in CI must not stay green), unless the
    operator says they mean it."""
    if result.plan.moves or allow_empty:
        return
    if result.partial is not None:
        n = len(result.partial.left_out)
        raise ReconcilerError(f"no move to {verb}: {result.partial.options()} left out every move "
                              f"({count(n, 'move')}: {', '.join(result.partial.left_out[:10])}"
                              f"{' …' if n > 10 else ''})",
                              hint="patterns are shell-style globs on metadata.name, e.g. --target 'acme-*'")
    if plan_file:
        why = f"the plan file {plan_file} holds no move"
    elif result.files == 0:
        why = f"no manifest (*.yaml, *.yml) found in {', '.join(result.paths) or 'the paths given'}"
    else:
        why = (f"the {result.files} manifest file{'s' if result.files != 1 else ''} found in "
               f"{', '.join(result.paths)} hold{'s' if result.files == 1 else ''} no move")
    raise ReconcilerError(f"no move to {verb}: {why}",
                          hint=f"check the paths; `reconcile {verb} --allow-empty` accepts a run with no move")


def apply(settings: Settings, paths: Sequence[str] = (), plan_file: str | None = None,
          approve: Approver = lambda _: True, progress: applier.Progress | None = None,
          lock_timeout: float = 0.0, on_plan: Callable[[PlanResult], None] | None = None,
          options: applier.Options | None = None, allow_empty: bool = False, targets: Sequence[str] = (),
          excludes: Sequence[str] = ()) -> ApplyResult:
    saved: dict[str, Any] | None = None
    policy, partial = settings.policy, None
    if plan_file:
        saved, moves = read_plan_file(plan_file)
        checked = policy_.from_json(saved.get("policy"), plan_file)
        policy = checked.strictest(settings.policy) if checked else settings.policy
        partial = Partial.from_json(saved.get("partial"))
        # Both windows: the one the plan was reviewed under and the one of the reconcile.toml found now.
        options = _window_check([checked, settings.policy], options)
        diags: list[Diagnostic] = []
        files = 0
        commit = saved.get("git_commit")
        recorded = saved.get("state")
        if settings.state_source != "option" and isinstance(recorded, str) and recorded:
            # The plan's own state, as a Terraform plan records its backend: from any directory, whatever the
            # environment or a reconcile.toml there say; only --state on the command line overrides it.
            settings = dataclasses.replace(settings, state=recorded)
    else:
        moves, diags, files = [], [], 0
        commit = audit.commit_of(paths)
        options = _window_check([settings.policy], options)
    store = open_store(settings.state)
    try:
        store.annotate("apply", commit)
        with applier.Signals().installed() as sig, store.lock("apply", lock_timeout):
            loaded_state = store.load()
            if saved is None:
                loaded = manifests.load(paths, loaded_state.known() if loaded_state else None)
                moves, partial = targeting.select(loaded.moves, targets, excludes)
                diags, files = loaded.diagnostics, loaded.files
            else:
                _check_prior_state(saved, loaded_state, plan_file or "")
            st = loaded_state.model_copy(deep=True) if loaded_state else State()
            platform = _open(settings)
            try:
                writer = Journal(store, st)
                catalog = functools.cache(platform.catalog)  # read once a run, when first needed
                if applier.refresh(st, platform, catalog=catalog):
                    writer.commit(*st.moves)
                result = ApplyResult(build_plan(platform, moves, diags, st if loaded_state else None, commit,
                                                files, paths, store, policy, partial, catalog))
                if any(d.is_error and d.code in policy_.CODES for d in result.plan.plan.all_diagnostics()):
                    if on_plan:  # before the stale checks: a policy the plan breaks now is the reason to say
                        on_plan(result.plan)
                    raise ReconcilerError("nothing was applied: the plan breaks the policy (see above)",
                                          hint="reconcile.toml [policy]; split the batch with --target/--exclude")
                if saved is not None and result.plan.fingerprint != saved.get("platform", {}).get("fingerprint"):
                    raise StalePlan(f"{plan_file}: the plan is stale: the platform changed for the customers it "
                                    "moves since it was made" + _what_changed(saved, result.plan),
                                    hint="make the plan again with `reconcile plan --out FILE`")
                if saved is not None and _reviewed(saved) != _reviewed_now(result.plan):
                    raise StalePlan(f"{plan_file}: the plan is stale: what apply would do differs from what the plan "
                                    "file says was reviewed" + _what_changed(saved, result.plan),
                                    hint="make the plan again with `reconcile plan --out FILE` and review it")
                if on_plan:
                    on_plan(result.plan)
                the_plan = result.plan.plan
                if not the_plan.applyable:
                    raise ReconcilerError("nothing was applied: the plan has errors (see above)",
                                          hint="fix the manifests, then run `reconcile plan` again")
                require_moves(result.plan, allow_empty, "apply", plan_file)
                todo = applier.todo(the_plan.moves, st)
                if todo and not approve(result.plan):
                    result.declined = True
                elif todo:
                    opts = options or applier.Options()
                    result.waited = opts.wait
                    applier.execute(todo, st, platform, writer, result, commit, progress, sig, opts, catalog)
                    result.window_closed = opts.until is not None and time.monotonic() >= opts.until
                result.state_written = writer.writes > 0
                return result
            finally:
                platform.close()
    finally:
        store.close()


def _reviewed(saved: dict[str, Any]) -> str:
    """What the plan file says was reviewed: the plan JSON of its moves and the digests of their sensitive values
    (canonical JSON: 2 and 2.0 differ, as they do on the platform)."""
    moves = [{k: v for k, v in m.items() if k != "manifest"} if isinstance(m, dict) else m
             for m in saved.get("moves") or []]
    return sha256_of(moves)


def _reviewed_moves(now: PlanResult) -> list[dict[str, Any]]:
    """The moves of a plan made now, as a plan file records what was reviewed (without the manifests)."""
    return [{**m.to_json(), "sensitive_sha256": now.sensitive.get(m.name, {})} for m in now.plan.moves]


def _reviewed_now(now: PlanResult) -> str:
    return sha256_of(_reviewed_moves(now))


def _what_changed(saved: dict[str, Any], now: PlanResult, limit: int = 10) -> str:
    """What the reviewed plan would do differently today, for the stale-plan message (deepdiff's words)."""
    from deepdiff import DeepDiff

    def moves(ms: Sequence[dict[str, Any]]) -> dict[str, Any]:
        # Keyed by move, service and user id, so that a difference reads as a path people know.
        out: dict[str, Any] = {}
        for m in ms:
            if not isinstance(m, dict):
                continue
            out[str(m.get("name"))] = {
                **{k: v for k, v in m.items() if k not in ("name", "services", "users", "manifest")},
                "services": {s.get("service"): s for s in m.get("services") or [] if isinstance(s, dict)},
                "users": {u.get("user"): {s.get("service"): s for s in u.get("services") or [] if isinstance(s, dict)}
                          for u in m.get("users") or [] if isinstance(u, dict)},
            }
        return out

    then = moves(saved.get("moves") or [])
    today = moves(_reviewed_moves(now))
    lines = DeepDiff(then, today, verbose_level=2).pretty().splitlines()
    if not lines:
        return ""
    shown = [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  … and {len(lines) - limit} more differences")
    return "; what would differ now:\n" + "\n".join(shown)


def _check_prior_state(saved: dict[str, Any], st: State | None, plan_file: str) -> None:
    prior = saved.get("prior_state")
    now = {"lineage": st.lineage, "serial": st.serial} if st else None
    if prior != now:
        was = f"serial {prior['serial']}" if isinstance(prior, dict) else "no state"
        is_ = f"serial {st.serial}" if st else "no state"
        if isinstance(prior, dict) and st and prior.get("lineage") != st.lineage:
            was, is_ = f"lineage {prior.get('lineage')}", f"lineage {st.lineage}"
        raise StalePlan(f"{plan_file}: the plan is stale: it was made against {was}, the state is now at {is_} "
                        "(a saved plan applies once)", hint="make the plan again with `reconcile plan --out FILE`")


# -- status ---------------------------------------------------------------------------------
def status(settings: Settings, names: Sequence[str] = (), lock_timeout: float = 0.0) -> State | None:
    """Refresh request statuses from the platform into the state, and return it."""
    store = open_store(settings.state)
    try:
        store.annotate("status")
        with store.lock("status", lock_timeout):
            st = store.load()
            if st is None:
                return None
            unknown = [n for n in names if n not in st.moves]
            if unknown:
                raise ReconcilerError(f"no recorded move named {', '.join(map(repr, unknown))}",
                                      hint="`reconcile status` lists every recorded move")
            platform = _open(settings)
            try:
                if applier.refresh(st, platform, set(names)):
                    Journal(store, st).commit(*st.moves)
            finally:
                platform.close()
    finally:
        store.close()
    if names:
        st.moves = {n: r for n, r in st.moves.items() if n in names}
    return st


# -- platform -------------------------------------------------------------------------------
def platform_init(settings: Settings, seed: str, force: bool = False) -> tuple[str, dict[str, int]]:
    """Create the embedded platform (sqlite:/// only): (its URL, what it holds)."""
    from reconciler.platforms import sqlite
    from reconciler.urls import scheme_of

    if scheme_of(settings.platform_url) != "sqlite":
        raise ReconcilerError(f"platform init creates the embedded platform only; {redact(settings.platform_url)!r} "
                              "is not sqlite:///PATH",
                              hint="a remote platform is created by its own tools; `reconcile platform serve` "
                                   "serves an embedded one")
    url = sqlite.anchor(settings.platform_url, settings.platform_options)
    return url, sqlite.init(url, seed, force)


def platform_export(settings: Settings) -> dict[str, Any]:
    platform = _open(settings)
    try:
        return export(platform)
    finally:
        platform.close()


# -- history --------------------------------------------------------------------------------
def history(settings: Settings, customer: str | None = None) -> list[dict[str, Any]]:
    """Every recorded move, oldest first: when, by whom, from which commit, its requests; and git's side."""
    store = open_store(settings.state)
    try:
        st = store.load()
        versions = store.versions() if st is not None else []  # a store that keeps every version: who wrote what
    finally:
        store.close()
    if st is None:
        return []
    touched: dict[str, list[dict[str, Any]]] = {}
    for v in versions:
        for name in (st.moves if v["changed"] is None else v["changed"]):
            touched.setdefault(name, []).append({k: v[k] for k in ("serial", "written_at", "written_by",
                                                                   "git_commit", "operation")})
    entries = []
    for name, rec in st.moves.items():
        if customer is not None and rec.customer != customer:
            continue
        entry: dict[str, Any] = {"name": name, **rec.model_dump(mode="json")}
        entry.pop("customer_fingerprint", None)
        entry["git"] = audit.manifest_origin(rec.manifest.file)
        if versions:
            entry["state_versions"] = touched.get(name, [])
        entries.append(entry)
    # Oldest first; moves recorded by one state write keep the order they were applied in.
    order = {name: i for i, name in enumerate(st.moves)}
    entries.sort(key=lambda e: (e.get("applied_serial") or 1 << 62, order[e["name"]]))
    return entries


# -- state ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pushed:
    location: str
    lineage: str
    serial: int
    replaced: tuple[str, int] | None  # the lineage and serial it replaced; None when there was no state
    forced: bool


def state_pull(settings: Settings) -> bytes:
    """The current state document, as the file store writes it (so `pull > state.json` is a state file)."""
    store = open_store(settings.state)
    try:
        st = store.load()
    finally:
        store.close()
    if st is None:
        raise StateError(f"there is no state at {store.location}",
                         hint="`reconcile apply` creates it; `reconcile state push FILE` uploads one")
    return dumps(st)


def state_push(settings: Settings, file: str, force: bool = False, lock_timeout: float = 0.0) -> Pushed:
    """Replace the state with FILE under the lock: when there is none yet, or FILE has its lineage and a newer
    serial; `force` replaces any, with a serial above both, so that no earlier plan file applies to it."""
    try:
        raw = Path(file).read_bytes()
    except OSError as e:
        raise ReconcilerError(f"cannot read {file}: {e.strerror or e}; nothing was changed") from None
    new = parse(raw, f"file {file}", "push a state file, or what `reconcile state pull` printed")
    store = open_store(settings.state)
    try:
        store.annotate("state push")
        with store.lock("state push", lock_timeout):
            cur = store.load()
            where = store.location
            if cur is not None and not force:
                if cur.lineage != new.lineage:
                    raise StateError(f"{file} has lineage {new.lineage}, the state at {where} has lineage "
                                     f"{cur.lineage}: it is another state, not a newer version of this one; "
                                     "nothing was changed",
                                     hint="`reconcile state pull` shows the current one; `reconcile state push "
                                          "--force FILE` replaces it anyway")
                if new.serial <= cur.serial:
                    raise StateError(f"{file} is at serial {new.serial}, not newer than the state at {where} "
                                     f"(serial {cur.serial}, same lineage); nothing was changed",
                                     hint="`reconcile state push --force FILE` replaces it anyway")
            if cur is not None and force:
                new.serial = max(new.serial, cur.serial) + 1
            store.write(new, None)
    finally:
        store.close()
    return Pushed(where, new.lineage, new.serial, None if cur is None else (cur.lineage, cur.serial), force)


# -- revert ---------------------------------------------------------------------------------
def revert(settings: Settings, name: str) -> revert_.Revert:
    """A manifest moving the customer of the applied move `name` back (contract section 12)."""
    store = open_store(settings.state)
    try:
        st = store.load()
    finally:
        store.close()
    rec = revert_.check_revertible(name, st)
    platform = _open(settings)
    try:
        last = rec.last_request
        req = platform.request(last.id) if last is not None else None
        cust = platform.customers([rec.customer]).get(rec.customer)
        users = platform.users([rec.customer]).get(rec.customer, []) if cust is not None else []
        return revert_.build(name, rec, cust, req.replaced if req is not None else None, users, platform.catalog(),
                             allow_large=_allowed_large(name, rec.manifest.file))
    finally:
        platform.close()


def _allowed_large(name: str, file: str) -> bool:
    """Whether the applied manifest of `name` set spec.allowLarge (read from its file, when it is still there)."""
    if not os.path.isfile(file):
        return False
    loaded = manifests.load([file])
    return any(m.name == name and m.allow_large for m in loaded.moves)


# -- drift ----------------------------------------------------------------------------------
def drift(paths: Sequence[str], settings: Settings) -> DriftReport:
    """Every applied move among the manifests, compared with the platform (contract section 12)."""
    store = open_store(settings.state)
    try:
        st = store.load()
    finally:
        store.close()
    loaded = manifests.load(paths, st.known() if st else None)
    if any(d.is_error for d in loaded.diagnostics):
        raise ReconcilerError("the manifests have errors (see above); drift compares valid manifests only",
                              hint="`reconcile validate` shows every problem")
    if not loaded.moves:  # a wrong path in a scheduled job must not stay green
        raise ReconcilerError(f"no move to compare: no manifest (*.yaml, *.yml) found in {', '.join(paths)}",
                              hint="pass the folder of move manifests, e.g. `reconcile drift moves/`")
    report = DriftReport(diagnostics=loaded.diagnostics)
    if st is None:
        report.skipped = [m.name for m in loaded.moves]
        return report
    latest = st.latest_done()
    applied = []
    for m in loaded.moves:
        if planner.standing(m.name, m.digest, st.moves.get(m.name), latest) == "applied":
            applied.append(m)
        else:
            report.skipped.append(m.name)
    platform = _open(settings)
    try:
        snap, _ = snapshot(platform, applied, None)
        for m in applied:
            report.compared += 1
            diffs = planner.differences(m, snap)
            if diffs:
                report.drifted.append({"move": m.name, "customer": m.customer, "file": m.file, "line": m.line,
                                       "differences": diffs})
    finally:
        platform.close()
    return report
