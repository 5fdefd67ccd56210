"""Executes a plan through a platform: journal each request, submit it, wait for it, record what the platform says."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType

from reconciler import audit
from reconciler.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted, PlatformError, RequestConflict
from reconciler.model import TERMINAL, Customer, MoveOrder, Request, customer_fingerprint, utcnow
from reconciler.planner import PlannedMove
from reconciler.platforms.base import Platform
from reconciler.results import ApplyResult
from reconciler.state import Journal, ManifestRef, MoveRecord, RequestRecord, State

Progress = Callable[[PlannedMove, int, int], None]
POLL_FIRST, POLL_MAX = 0.05, 2.0  # seconds between polls of a request that is not final yet


class Signals:
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
    def installed(self) -> Iterator[Signals]:
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


# -- what the platform says ---------------------------------------------------------------------------
def wait(platform: Platform, req: Request, deadline: float) -> Request:
    """Poll a request with backoff until it is final or the deadline (time.monotonic()) passes."""
    delay = POLL_FIRST
    while not req.final and time.monotonic() < deadline:
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, POLL_MAX)
        got = platform.request(req.id)
        if got is None:  # the platform forgot a request it accepted: nothing more to wait for
            return Request(req.id, req.type, req.customer, "Failed",
                           error=f"the platform no longer knows request {req.id}")
        req = got
    return req


def record_request(rec: RequestRecord, req: Request) -> None:
    d = req.to_json()
    for k in ("status", "sub_requests", "failed_sub_requests", "error", "submitted_at", "completed_at"):
        setattr(rec, k, d[k])


def verdict(platform: Platform, rec: MoveRecord, req: Request,
            order: MoveOrder | None = None) -> tuple[bool, str | None, Customer | None]:
    """(applied?, why not, the customer as the platform shows it now) for a final request.

    "Applied" only when the platform agrees: the request is Provisioned AND the platform shows the
    customer under the destination (with the subscriptions the move set, when the order is known). A
    request id the platform knew from before (another run, another starting point) proves nothing."""
    found = platform.customers([rec.customer])
    cust = found.get(rec.customer)
    if req.status != "Provisioned":
        return False, req.error or req.status, cust
    if cust is None:
        return False, f"the platform reports request {req.id} Provisioned but has no customer {rec.customer}", cust
    if cust.parent != rec.to_reseller:
        return False, (f"the platform reports request {req.id} Provisioned, but shows {rec.customer} under "
                       f"{cust.parent}, not {rec.to_reseller}: the move did not happen"), cust
    if order is not None and cust.subscriptions != order.subscriptions:
        return False, (f"the platform reports request {req.id} Provisioned, but {rec.customer}'s subscriptions "
                       "differ from what the move set: the move did not happen as planned"), cust
    return True, None, cust


def record_outcome(st: State, rec: MoveRecord, platform: Platform, req: Request, who: str,
                   order: MoveOrder | None = None) -> str | None:
    """Record a final request's outcome on its move; returns the error when the move is not applied."""
    ok, why, cust = verdict(platform, rec, req, order)
    rec.status = "applied" if ok else "failed"
    rec.applied_at = req.completed_at or utcnow()
    rec.applied_by = who
    rec.applied_serial = st.serial + 1
    rec.customer_fingerprint = None
    if cust is not None:
        parent = platform.customers([cust.parent]).get(cust.parent) if cust.parent else None
        rec.customer_fingerprint = customer_fingerprint(cust, parent)
    last = rec.last_request
    if not ok and last is not None and last.error is None:
        last.error = why
    return why


def refresh(st: State, platform: Platform, names: set[str] | None = None, who: str | None = None) -> bool:
    """Ask the platform about unfinished requests and record their outcome; True if anything changed."""
    changed = False
    for name, rec in st.moves.items():
        if names and name not in names:
            continue
        last = rec.last_request
        if last is None or (last.status in TERMINAL and rec.status != "in-progress"):
            continue
        req = platform.request(last.id)
        if req is None:
            continue  # journaled, never received: the next apply submits it
        if req.status == last.status and not req.final:
            continue
        record_request(last, req)
        if req.final:
            record_outcome(st, rec, platform, req, who or audit.actor())
        changed = True
    return changed


# -- execution ---------------------------------------------------------------------------------------
def todo(the_plan: list[PlannedMove], st: State) -> list[PlannedMove]:
    """What apply does: every move, and every no-op found at the destination that is not recorded yet."""
    return [m for m in the_plan if m.action == "move" or
            (m.reason == "already-at-destination" and not _done(st, m.name))]


def _done(st: State, name: str) -> bool:
    rec = st.moves.get(name)
    return rec is not None and rec.done


def _groups(moves: list[PlannedMove]) -> Iterator[list[PlannedMove]]:
    """Moves journaled together: a few per state write, and a customer at most once per group
    (its applied_serial must order its moves)."""
    size = max(4, min(256, len(moves) // 16))
    group: list[PlannedMove] = []
    customers: set[str] = set()
    for pm in moves:
        if len(group) >= size or pm.customer in customers:
            yield group
            group, customers = [], set()
        group.append(pm)
        customers.add(pm.customer)
    if group:
        yield group


def execute(moves: list[PlannedMove], st: State, platform: Platform, writer: Journal, result: ApplyResult,
            commit: str | None, progress: Progress | None, sig: Signals, wait_timeout: float = 3600.0) -> None:
    """Journal a group's requests in one write, submit them one by one, record the outcomes in one write.

    Every request is in the state before it is submitted, as contract section 7 asks; grouping keeps a
    1,000-move apply from rewriting the whole state file 2,000 times.
    """
    who = audit.actor()  # once per run: it may ask git
    deadline = time.monotonic() + wait_timeout
    done = 0
    for group in _groups(moves):
        def tick(pm: PlannedMove, k: int, offset: int = done) -> None:
            if progress:
                progress(pm, offset + k, len(moves))

        stopped = _execute_group(group, st, platform, writer, result, commit, who, sig, tick, deadline)
        done += len(group)
        if stopped:
            result.pending += [m.name for m in moves[done:]]
            return


def _execute_group(group: list[PlannedMove], st: State, platform: Platform, writer: Journal,
                   result: ApplyResult, commit: str | None, who: str, sig: Signals,
                   progress: Callable[[PlannedMove, int], None], deadline: float) -> bool:
    """True when apply stops here (a request failed, or the deadline passed with one still running)."""
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
            prev = before[pm.name]
            resumed = prev is not None and prev.last_request is not None and prev.last_request.id == pm.request_id
            with sig.move_in_flight():
                try:
                    req = _submit(platform, pm.request_id, pm.order, resumed)
                except PlatformError as e:
                    # A submit lost on the way back (a reset, a timeout) may have reached the platform: the
                    # journaled id stays, and the next run asks for it before submitting again.
                    if e.outcome_unknown:
                        submitted.add(pm.name)
                    raise
                submitted.add(pm.name)
                req = wait(platform, req, deadline)
                rec = st.moves[pm.name]
                last = rec.last_request
                assert last is not None
                record_request(last, req)
                result.requests.append(last)
                error = None
                if req.final:
                    error = record_outcome(st, rec, platform, req, who, pm.order)
            if not req.final:
                result.in_progress.append(pm.name)
                result.pending += [m.name for m in group[k + 1:]]
                return True
            if error is not None:
                result.failed.append((pm.name, error))
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


def _submit(platform: Platform, request_id: str, order: MoveOrder, resumed: bool) -> Request:
    """A resumed request is asked for first: submitted only when the platform does not know it."""
    known = platform.request(request_id) if resumed else None
    if known is not None:
        return known
    try:
        return platform.submit(request_id, order)
    except RequestConflict as e:  # someone else's request under this id: this move failed, recorded as such
        return Request(request_id, "CustomerMove", order.customer, "Failed", error=e.message, completed_at=utcnow())


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
