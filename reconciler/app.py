"""The use cases: validate, plan, apply, status, new-move, platform init/export. Phases are wired here."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from reconciler import __version__, audit, manifests, planner, schema
from reconciler import state as states
from reconciler.config import Settings
from reconciler.diagnostics import Diagnostic
from reconciler.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted, ReconcilerError, StalePlan
from reconciler.manifests import Manifest, Move
from reconciler.model import TERMINAL, sha256_of, utcnow
from reconciler.planner import Plan, PlannedMove, Snapshot
from reconciler.platforms import open_platform
from reconciler.platforms.base import Platform
from reconciler.state import ManifestRef, MoveRecord, RequestRecord, State
from reconciler.yamlsafe import Doc

PLAN_FORMAT = "1.0"


# -- validate -------------------------------------------------------------------------------
@dataclass
class Validation:
    diagnostics: list[Diagnostic]
    moves: int
    files: int

    @property
    def valid(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def validate(paths: Sequence[str]) -> Validation:
    """Offline: YAML, schema, names."""
    loaded = manifests.load(paths)
    return Validation(loaded.diagnostics, len(loaded.moves), loaded.files)


# -- plan -----------------------------------------------------------------------------------
@dataclass
class PlanResult:
    plan: Plan
    platform_url: str
    fingerprint: str
    prior_state: dict[str, Any] | None
    git_commit: str | None
    files: int = 0

    def head(self) -> dict[str, Any]:
        """Everything but the moves (render.json streams those one at a time)."""
        return {
            "format_version": PLAN_FORMAT, "tool_version": __version__,
            "platform": {"url": self.platform_url, "fingerprint": self.fingerprint},
            "prior_state": self.prior_state, "git_commit": self.git_commit,
            "applyable": self.plan.applyable, "summary": self.plan.summary(),
            "diagnostics": [d.to_json() for d in self.plan.diagnostics],
        }

    def to_json(self, with_manifests: bool = False) -> dict[str, Any]:
        moves = []
        for m in self.plan.moves:
            d = m.to_json()
            if with_manifests:
                d["manifest"] = m.move.document
            moves.append(d)
        doc = self.head()
        doc["moves"] = moves
        return doc


def snapshot(platform: Platform, moves: Sequence[Move]) -> tuple[Snapshot, str]:
    """Read only what the batch touches: its customers, their parents, the destinations."""
    ids = {m.customer for m in moves} | {m.to_reseller for m in moves}
    customers = platform.customers(ids)
    parents = {c.parent for c in customers.values() if c.parent and c.parent not in customers}
    customers.update(platform.customers(parents))
    moved = [m.customer for m in moves if m.customer in customers]
    pending = platform.pending_requests(moved)
    h = hashlib.sha256()
    for cid in sorted(customers):
        h.update(f"{cid}={customers[cid].digest};".encode())
    for cid in sorted(pending):
        h.update(f"{cid}:{','.join(pending[cid])};".encode())
    snap = Snapshot(catalog=platform.catalog(), customers=customers, users=platform.users,
                    usage=platform.usage, pending=pending)
    return snap, "sha256:" + h.hexdigest()


def refresh(st: State, platform: Platform, names: Sequence[str] | None = None) -> bool:
    """Ask the platform about unfinished requests and record their outcome; True if anything changed."""
    changed = False
    for name, rec in st.moves.items():
        if names and name not in names:
            continue
        last = rec.last_request
        if last is None or last.status in TERMINAL:
            continue
        req = platform.request(last.id)
        if req is None or req.status == last.status:
            continue
        _record_request(last, req.to_json())
        if req.status in TERMINAL:
            _record_outcome(st, rec, platform, req.status == "Provisioned")
        changed = True
    return changed


def _record_request(rec: RequestRecord, req: dict[str, Any]) -> None:
    for k in ("status", "sub_requests", "failed_sub_requests", "error", "submitted_at", "completed_at"):
        setattr(rec, k, req[k])


def _record_outcome(st: State, rec: MoveRecord, platform: Platform, ok: bool, who: str | None = None) -> None:
    rec.status = "applied" if ok else "failed"
    last = rec.last_request
    rec.applied_at = (last.completed_at if last else None) or utcnow()
    rec.applied_by = who or audit.actor()
    rec.applied_serial = st.serial + 1
    cust = platform.customers([rec.customer]).get(rec.customer)
    rec.customer_fingerprint = cust.digest if cust else None


def build_plan(platform: Platform, moves: Sequence[Move], diagnostics: Sequence[Diagnostic],
               st: State | None, url: str, git_commit: str | None, files: int = 0) -> PlanResult:
    snap, fingerprint = snapshot(platform, moves)
    records = st.moves if st else {}
    latest = st.latest_done() if st else {}
    the_plan = planner.plan(moves, snap, records, latest, diagnostics)
    prior = {"lineage": st.lineage, "serial": st.serial} if st else None
    return PlanResult(the_plan, url, fingerprint, prior, git_commit, files)


def plan(paths: Sequence[str], settings: Settings) -> PlanResult:
    st = states.load(settings.state_path)
    loaded = manifests.load(paths, st.known() if st else None)
    platform = open_platform(settings.platform_url, settings.seed)
    try:
        if st is not None:
            refresh(st, platform)  # in memory only: plan never writes the state
        return build_plan(platform, loaded.moves, loaded.diagnostics, st, settings.platform_url,
                          audit.commit_of(paths), loaded.files)
    finally:
        platform.close()


def write_plan_file(result: PlanResult, out: str) -> None:
    """The plan JSON plus each move's manifest document: what apply --plan applies, as reviewed."""
    from reconciler.render.json import write_plan

    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold sensitive values
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            write_plan(result, fh, with_manifests=True)
    except OSError as e:
        raise ReconcilerError(f"cannot write the plan file {out}: {e.strerror or e}") from None


def read_plan_file(path: str) -> tuple[dict[str, Any], list[Move]]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise ReconcilerError(f"{path}: no such plan file", hint="make one with `reconcile plan --out FILE`") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
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
        moves.append(Move(Manifest.model_validate(data), doc_, digest))
    return doc, moves


# -- apply ----------------------------------------------------------------------------------
@dataclass
class ApplyResult:
    plan: PlanResult
    applied: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, error)
    requests: list[RequestRecord] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # not attempted after a failure
    declined: bool = False
    state_written: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.declined


class _Signals:
    """SIGINT/SIGTERM during apply: a move being provisioned finishes and is recorded; then exit 130/143.

    Outside a move (planning, waiting for approval) the signal stops the run at once: nothing was
    submitted yet, and every state write is atomic.
    """

    def __init__(self) -> None:
        self.caught: int | None = None
        self.deferring = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.caught = signum
        if not self.deferring:
            self.check()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def move_in_flight(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        self.check()

    def check(self) -> None:
        if self.caught is not None:
            code = EXIT_SIGINT if self.caught == signal.SIGINT else EXIT_SIGTERM
            raise Interrupted(f"stopped by {signal.Signals(self.caught).name}; every finished move is recorded "
                              "and the state is consistent: run apply again to continue", code)


Approver = Callable[[PlanResult], bool]
Progress = Callable[[PlannedMove, int, int], None]


def apply(settings: Settings, paths: Sequence[str] = (), plan_file: str | None = None,
          approve: Approver = lambda _: True, progress: Progress | None = None,
          lock_timeout: float = 0.0, on_plan: Callable[[PlanResult], None] | None = None) -> ApplyResult:
    saved: dict[str, Any] | None = None
    if plan_file:
        saved, moves = read_plan_file(plan_file)
        diags: list[Diagnostic] = []
        files = 0
        commit = saved.get("git_commit")
    else:
        moves, diags, files = [], [], 0
        commit = audit.commit_of(paths)
    path = settings.state_path
    with _Signals().installed() as sig, states.lock(path, "apply", lock_timeout):
        loaded_state = states.load(path)
        if saved is None:
            loaded = manifests.load(paths, loaded_state.known() if loaded_state else None)
            moves, diags, files = loaded.moves, loaded.diagnostics, loaded.files
        if saved is not None:
            _check_prior_state(saved, loaded_state, plan_file or "")
        st = loaded_state.model_copy(deep=True) if loaded_state else State()
        platform = open_platform(settings.platform_url, settings.seed)
        try:
            writer = states.Journal(path, st)
            if refresh(st, platform):
                writer.commit(*st.moves)
            result = ApplyResult(build_plan(platform, moves, diags, st if loaded_state else None,
                                            settings.platform_url, commit, files))
            if saved is not None and result.plan.fingerprint != saved.get("platform", {}).get("fingerprint"):
                raise StalePlan(f"{plan_file}: the plan is stale: the platform changed for the customers it moves "
                                "since it was made" + _what_changed(saved, result.plan),
                                hint="make the plan again with `reconcile plan --out FILE`")
            if on_plan:
                on_plan(result.plan)
            the_plan = result.plan.plan
            if not the_plan.applyable:
                raise ReconcilerError("nothing was applied: the plan has errors (see above)",
                                      hint="fix the manifests, then run `reconcile plan` again")
            todo = [m for m in the_plan.moves if m.action == "move" or
                    (m.reason == "already-at-destination" and not _done(st, m.name))]
            if todo and not approve(result.plan):
                result.declined = True
            elif todo:
                _execute(todo, st, platform, writer, result, commit, progress, sig)
            result.state_written = writer.writes > 0
            return result
        finally:
            platform.close()


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
                **{k: m.get(k) for k in ("action", "reason", "from_reseller", "to_reseller")},
                "services": {s.get("service"): s for s in m.get("services") or []},
                "users": {u.get("user"): {s.get("service"): s for s in u.get("services") or []}
                          for u in m.get("users") or []},
            }
        return out

    then = moves(saved.get("moves") or [])
    today = moves([m.to_json() for m in now.plan.moves])
    lines = DeepDiff(then, today, verbose_level=2).pretty().splitlines()
    if not lines:
        return ""
    shown = [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  … and {len(lines) - limit} more differences")
    return "; what would differ now:\n" + "\n".join(shown)


def _done(st: State, name: str) -> bool:
    rec = st.moves.get(name)
    return rec is not None and rec.done


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


def _groups(todo: list[PlannedMove]) -> Iterator[list[PlannedMove]]:
    """Moves journaled together: a few per state write, and a customer at most once per group
    (its applied_serial must order its moves)."""
    size = max(4, min(256, len(todo) // 16))
    group: list[PlannedMove] = []
    customers: set[str] = set()
    for pm in todo:
        if len(group) >= size or pm.customer in customers:
            yield group
            group, customers = [], set()
        group.append(pm)
        customers.add(pm.customer)
    if group:
        yield group


def _execute(todo: list[PlannedMove], st: State, platform: Platform, writer: states.Journal, result: ApplyResult,
             commit: str | None, progress: Progress | None, sig: _Signals) -> None:
    """Journal a group's requests in one write, submit them one by one, record the outcomes in one write.

    Every request is in the state before it is submitted, as contract section 7 asks; grouping keeps a
    1,000-move apply from rewriting the whole state file 2,000 times.
    """
    who = audit.actor()  # once per run: it may ask git
    done = 0
    for group in _groups(todo):
        def tick(pm: PlannedMove, k: int, offset: int = done) -> None:
            if progress:
                progress(pm, offset + k, len(todo))

        stopped = _execute_group(group, st, platform, writer, result, commit, who, sig, tick)
        done += len(group)
        if stopped:
            result.pending += [m.name for m in todo[done:]]
            return


def _execute_group(group: list[PlannedMove], st: State, platform: Platform, writer: states.Journal,
                   result: ApplyResult, commit: str | None, who: str, sig: _Signals,
                   progress: Callable[[PlannedMove, int], None]) -> bool:
    """True when a request failed (apply stops there)."""
    before = {pm.name: (st.moves[pm.name].model_copy(deep=True) if pm.name in st.moves else None) for pm in group}
    for pm in group:
        _journal(pm, st, platform, result, commit, who)
    writer.commit(*before)  # journaled before submitted: a crash from here on resumes under these ids
    submitted: set[str] = set()
    if all(pm.action != "move" for pm in group):
        return False  # adoptions only: recorded already
    try:
        for k, pm in enumerate(group):
            if pm.action != "move":
                continue
            progress(pm, k)
            assert pm.order is not None and pm.request_id is not None
            with sig.move_in_flight():
                req = platform.submit(pm.request_id, pm.order)
                rec = st.moves[pm.name]
                last = rec.last_request
                assert last is not None
                _record_request(last, req.to_json())
                _record_outcome(st, rec, platform, req.status == "Provisioned", who)
                submitted.add(pm.name)
                result.requests.append(last)
            if req.status != "Provisioned":
                result.failed.append((pm.name, req.error or req.status))
                result.pending += [m.name for m in group[k + 1:]]
                return True
            result.applied.append(pm.name)
        return False
    finally:
        # A failure or a signal stopped the group: what was journaled but never submitted did not happen.
        for pm in group:
            if pm.action == "move" and pm.name not in submitted:
                prev = before[pm.name]
                if prev is None:
                    st.moves.pop(pm.name, None)
                else:
                    st.moves[pm.name] = prev
        writer.commit(*before)


def _journal(pm: PlannedMove, st: State, platform: Platform, result: ApplyResult, commit: str | None,
             who: str) -> None:
    """Record an adoption, or the request a move is about to submit, in memory."""
    ref = ManifestRef(file=pm.move.file, sha256=pm.move.digest, git_commit=commit, line=pm.move.line,
                      file_sha256=pm.move.file_sha256)
    if pm.action == "noop":
        old = st.moves.get(pm.name)
        # A failed or unfinished earlier attempt is kept; a journaled request the platform never
        # received is dropped: it did not happen.
        kept = [r for r in (old.requests if old else []) if r.status in TERMINAL or platform.request(r.id)]
        st.moves[pm.name] = MoveRecord(
            manifest=ref, customer=pm.customer, from_reseller=pm.from_reseller, to_reseller=pm.to_reseller,
            location=pm.move.location, status="adopted", applied_at=utcnow(), applied_by=who,
            applied_serial=st.serial + 1, customer_fingerprint=pm.customer_fingerprint, requests=kept)
        result.adopted.append(pm.name)
        return
    assert pm.request_id is not None
    rec = st.moves.get(pm.name)
    if rec is None:
        rec = MoveRecord(manifest=ref, customer=pm.customer, from_reseller=pm.from_reseller,
                         to_reseller=pm.to_reseller, location=pm.move.location, status="in-progress")
        st.moves[pm.name] = rec
    rec.manifest, rec.status = ref, "in-progress"
    rec.from_reseller, rec.to_reseller, rec.location = pm.from_reseller, pm.to_reseller, pm.move.location
    rec.applied_at = rec.applied_by = rec.applied_serial = None
    if rec.last_request is None or rec.last_request.id != pm.request_id:
        rec.requests.append(RequestRecord(id=pm.request_id, status="InProgress",
                                          sub_requests=pm.requests[0]["sub_requests"]))


# -- status ---------------------------------------------------------------------------------
def status(settings: Settings, names: Sequence[str] = (), lock_timeout: float = 0.0) -> State | None:
    """Refresh request statuses from the platform into the state, and return it."""
    path = settings.state_path
    with states.lock(path, "status", lock_timeout):
        st = states.load(path)
        if st is None:
            return None
        unknown = [n for n in names if n not in st.moves]
        if unknown:
            raise ReconcilerError(f"no recorded move named {', '.join(map(repr, unknown))}",
                                  hint="`reconcile status` lists every recorded move")
        platform = open_platform(settings.platform_url, settings.seed)
        try:
            if refresh(st, platform, names):
                states.Journal(path, st).commit(*st.moves)
        finally:
            platform.close()
    if names:
        st.moves = {n: r for n, r in st.moves.items() if n in names}
    return st


# -- platform -------------------------------------------------------------------------------
def platform_init(url: str, seed: str, force: bool = False) -> dict[str, int]:
    from reconciler.platforms import sqlite

    if not url.startswith("sqlite:///"):
        raise ReconcilerError(f"platform init creates the embedded platform only; {url!r} is not sqlite:///PATH")
    return sqlite.init(url, seed, force)


def platform_export(settings: Settings) -> dict[str, Any]:
    platform = open_platform(settings.platform_url, settings.seed)
    try:
        return platform.export()
    finally:
        platform.close()


# -- history --------------------------------------------------------------------------------
def history(settings: Settings, customer: str | None = None) -> list[dict[str, Any]]:
    """Every recorded move, oldest first: when, by whom, from which commit, its requests; and git's side."""
    st = states.load(settings.state_path)
    if st is None:
        return []
    base = settings.state_path.parent
    entries = []
    for name, rec in st.moves.items():
        if customer is not None and rec.customer != customer:
            continue
        entry: dict[str, Any] = {"name": name, **rec.model_dump(mode="json")}
        entry.pop("customer_fingerprint", None)
        entry["git"] = audit.manifest_origin(rec.manifest.file) or audit.manifest_origin(rec.manifest.file, base)
        entries.append(entry)
    # Oldest first; moves recorded by one state write keep the order they were applied in.
    order = {name: i for i, name in enumerate(st.moves)}
    entries.sort(key=lambda e: (e.get("applied_serial") or 1 << 62, order[e["name"]]))
    return entries
