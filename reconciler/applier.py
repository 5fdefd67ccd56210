"""Executes a plan through a platform: journal each request, submit it, wait for it, record what the platform says."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

from reconciler import audit
from reconciler.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted, PlatformError, RequestConflict
from reconciler.model import (
    TERMINAL,
    Customer,
    MoveOrder,
    Request,
    Secrets,
    Service,
    customer_fingerprint,
    secrets_of,
    utcnow,
)
from reconciler.planner import PlannedMove
from reconciler.platforms.base import Platform
from reconciler.results import ApplyResult
from reconciler.state import Journal, ManifestRef, MoveRecord, RequestRecord, State

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
    def deferred(self) -> Iterator[None]:
        """While moves run: a signal is only noted; the execution stops submitting and winds down."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False

    def check(self) -> None:
        if self.caught is not None:
            code = EXIT_SIGINT if self.caught == signal.SIGINT else EXIT_SIGTERM
            raise Interrupted(f"stopped by {signal.Signals(self.caught).name}; every finished move is recorded "
                              "and the state is consistent: run apply again to continue", code)


# -- what the platform says ---------------------------------------------------------------------------
def wait(platform: Platform, req: Request, deadline: float, stop: threading.Event | None = None) -> Request:
    """Poll a request with backoff until it is final, the deadline (time.monotonic()) passes or `stop` is set."""
    delay = POLL_FIRST
    while not req.final and time.monotonic() < deadline:
        if stop is not None and stop.wait(min(delay, max(0.0, deadline - time.monotonic()))):
            break
        if stop is None:
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
    cust = platform.customers([rec.customer]).get(rec.customer)
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


@dataclass
class Parents:
    """What a run reads to fingerprint recorded outcomes, once per parent: the parent, and the canonical JSON of
    what it offers (customer_fingerprint's cache). A batch moves many customers to the same few resellers."""

    found: dict[str, Customer | None] = field(default_factory=dict)
    offered: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)

    def of(self, platform: Platform, cust: Customer) -> Customer | None:
        if not cust.parent:
            return None
        if cust.parent not in self.found:
            self.found[cust.parent] = platform.customers([cust.parent]).get(cust.parent)
        return self.found[cust.parent]


def record_outcome(st: State, rec: MoveRecord, platform: Platform, req: Request, who: str,
                   order: MoveOrder | None = None, secret: Secrets | None = None,
                   parents: Parents | None = None) -> str | None:
    """Record a final request's outcome on its move; returns the error when the move is not applied."""
    ok, why, cust = verdict(platform, rec, req, order)
    rec.status = "applied" if ok else "failed"
    rec.applied_at = req.completed_at or utcnow()
    rec.applied_by = who
    rec.applied_serial = st.serial + 1
    rec.customer_fingerprint = None
    if cust is not None:
        parents = parents if parents is not None else Parents()
        rec.customer_fingerprint = customer_fingerprint(cust, parents.of(platform, cust), secret, parents.offered)
    last = rec.last_request
    if not ok and last is not None and last.error is None:
        last.error = why
    return why


def refresh(st: State, platform: Platform, names: set[str] | None = None, who: str | None = None,
            catalog: Callable[[], Mapping[str, Service]] | None = None) -> bool:
    """Ask the platform about unfinished requests and record their outcome; True if anything changed.
    The catalog (unless given) and who records are looked up once, when the first outcome is recorded."""
    changed = False
    secret: Secrets | None = None
    parents = Parents()
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
            secret = secret if secret is not None else secrets_of((catalog or platform.catalog)())
            who = who or audit.actor()
            record_outcome(st, rec, platform, req, who, secret=secret, parents=parents)
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


@dataclass(frozen=True)
class Options:
    """How apply runs the moves (contract section 10)."""

    parallelism: int = 4  # moves in flight at once; 1 = strictly one after another
    wait_timeout: float = 3600.0  # seconds, for the whole run: then no new move is submitted
    wait: bool = True  # False (--no-wait): submit, record in-progress, do not wait for the outcome
    until: float | None = None  # time.monotonic() when the apply window closes: then no new move is submitted


class Progress(Protocol):
    """What a reporter hears while moves run (called from the main thread only)."""

    def begin(self, total: int) -> None: ...

    def started(self, pm: PlannedMove) -> None: ...

    def finished(self, pm: PlannedMove, outcome: str, request: Request | None, seconds: float) -> None: ...


FLUSH_SECONDS = 1.0  # recorded outcomes reach the state at least this often (and before any new journal write)
SIGNAL_GRACE = 30.0  # after Ctrl-C/SIGTERM, how long moves in flight get to return before the run stops


@dataclass
class _Flight:
    pm: PlannedMove
    future: Future[Request]
    since: float


def _run_in_thread(fn: Callable[[], Request]) -> Future[Request]:
    """One daemon thread per move in flight (at most --parallelism): a call stuck in the network never keeps
    the process from exiting after a signal; its move is journaled, so the next apply resumes it."""
    fut: Future[Request] = Future()

    def run() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as e:  # handed to the main thread, which decides
            fut.set_exception(e)

    threading.Thread(target=run, daemon=True, name="reconcile-move").start()
    return fut


class _Execution:
    """Runs the moves with up to N in flight. Only the main thread touches the state and the journal.

    Journal-ahead: moves are journaled (their request ids in the state) in chunks before any of them is
    submitted, so a 1,000-move apply writes the state a few dozen times, not 2,000; outcomes are written
    with the next chunk, at least every FLUSH_SECONDS, and at the end. A journaled move that was never
    submitted is rolled back to its previous record when the run stops early (it did not happen)."""

    def __init__(self, moves: list[PlannedMove], st: State, platform: Platform, writer: Journal,
                 result: ApplyResult, commit: str | None, progress: Progress | None, sig: Signals,
                 opts: Options, catalog: Callable[[], Mapping[str, Service]] | None = None) -> None:
        self.moves, self.st, self.platform, self.writer = moves, st, platform, writer
        self.result, self.commit, self.progress, self.sig, self.opts = result, commit, progress, sig, opts
        self.who = audit.actor()  # once per run: it may ask git
        self.secret = secrets_of((catalog or platform.catalog)())  # for the fingerprints of recorded outcomes
        self.parents = Parents()
        self.deadline = time.monotonic() + opts.wait_timeout
        self.stop = threading.Event()  # tells the waiting threads to return what they have
        self.before: dict[str, MoveRecord | None] = {}  # journaled, not yet started: the record to restore
        self.started: set[str] = set()
        self.dirty: set[str] = set()  # records changed since the last write
        self.dirty_customers: set[str] = set()  # customers with an outcome not written yet
        self.last_flush = time.monotonic()
        self.write_failed = False
        self.reported: dict[str, RequestRecord] = {}  # the request each move ran, for the result
        self.chunk = max(opts.parallelism, min(256, len(moves) // 16))

    # -- state --------------------------------------------------------------------------------
    def flush(self) -> None:
        if self.dirty and not self.write_failed:
            try:
                self.writer.commit(*sorted(self.dirty))
            except BaseException:
                self.write_failed = True  # the state on disk is the last good one: never retried in this run
                raise
            self.dirty.clear()
            self.dirty_customers.clear()
        self.last_flush = time.monotonic()

    def journal_ahead(self, first: PlannedMove, queue: list[PlannedMove]) -> None:
        """Journal `first` and the next chunk of queued moves, with the outcomes recorded so far, in one write."""
        rest = [pm for pm in queue if pm is not first and pm.name not in self.before and pm.name not in self.started]
        for pm in [first, *rest[:self.chunk - 1]]:
            self.before[pm.name] = self.st.moves[pm.name].model_copy(deep=True) if pm.name in self.st.moves else None
            _journal(pm, self.st, self.platform, self.result, self.commit, self.who)
            self.dirty.add(pm.name)
        self.flush()  # journaled before submitted: a crash from here on resumes under these ids

    def record(self, flight: _Flight, req: Request | None) -> str:
        """Record what a move's thread returned; the outcome: applied, failed, in-progress."""
        pm = flight.pm
        rec = self.st.moves[pm.name]
        if pm.customer in self.dirty_customers:
            self.flush()  # one customer's outcomes go in separate writes: applied_serial orders its moves
        last = rec.last_request
        assert last is not None
        outcome = "in-progress"
        if req is not None:
            record_request(last, req)
            self.reported[pm.name] = last
            if req.final:
                why = record_outcome(self.st, rec, self.platform, req, self.who, pm.order, self.secret,
                                     self.parents)
                if why is None:
                    self.result.applied.append(pm.name)
                    outcome = "applied"
                else:
                    self.result.failed.append((pm.name, why))
                    outcome = "failed"
        if outcome == "in-progress":
            self.result.in_progress.append(pm.name)
        self.dirty.add(pm.name)
        self.dirty_customers.add(pm.customer)
        if self.progress:
            self.progress.finished(pm, outcome, req, time.monotonic() - flight.since)
        return outcome

    def rollback_unstarted(self) -> None:
        for name, prev in self.before.items():
            if name in self.started:
                continue
            if prev is None:
                self.st.moves.pop(name, None)
            else:
                self.st.moves[name] = prev
            self.dirty.add(name)
        self.before.clear()

    def _report_in_plan_order(self) -> None:
        """Moves finish in any order with N > 1; the result lists them in plan order, for every N."""
        order = {pm.name: i for i, pm in enumerate(self.moves)}
        r = self.result
        r.applied.sort(key=order.__getitem__)
        r.failed.sort(key=lambda f: order[f[0]])
        r.in_progress.sort(key=order.__getitem__)
        r.requests += [self.reported[n] for n in sorted(self.reported, key=order.__getitem__)]

    # -- threads --------------------------------------------------------------------------------
    def launch(self, pm: PlannedMove) -> _Flight:
        assert pm.order is not None and pm.request_id is not None
        prev = self.before.pop(pm.name, None)
        resumed = prev is not None and prev.last_request is not None and prev.last_request.id == pm.request_id
        self.started.add(pm.name)  # from here on it may have reached the platform
        platform, order, rid, opts, deadline, stop = (self.platform, pm.order, pm.request_id, self.opts,
                                                      self.deadline, self.stop)

        def run() -> Request:
            req = _submit(platform, rid, order, resumed)
            return wait(platform, req, deadline, stop) if opts.wait else req

        if self.progress:
            self.progress.started(pm)
        return _Flight(pm, _run_in_thread(run), time.monotonic())

    def run(self) -> None:
        queue = [pm for pm in self.moves if pm.action == "move"]
        adoptions = [pm for pm in self.moves if pm.action != "move"]
        for pm in adoptions:
            _journal(pm, self.st, self.platform, self.result, self.commit, self.who)
            self.dirty.add(pm.name)
        if self.progress:
            self.progress.begin(len(queue))
        in_flight: dict[Future[Request], _Flight] = {}
        stopping: str | None = None  # why no new move is submitted: failed, deadline, signal
        unknown: PlatformError | None = None
        try:
            while queue or in_flight:
                if self.sig.caught is not None and stopping != "signal":
                    stopping = "signal"
                    self.stop.set()
                if stopping is None and time.monotonic() >= min(self.deadline, self.opts.until or self.deadline):
                    stopping = "deadline"
                # launch what may start: free slot, customer not busy, in plan order
                if stopping is None:
                    busy = {f.pm.customer for f in in_flight.values()}
                    waiting: set[str] = set()
                    for pm in list(queue):
                        if len(in_flight) >= self.opts.parallelism:
                            break
                        if pm.customer in busy or pm.customer in waiting:
                            waiting.add(pm.customer)  # a customer's moves go one after another, in plan order
                            continue
                        if pm.name not in self.before:
                            self.journal_ahead(pm, queue)
                        queue.remove(pm)
                        f = self.launch(pm)
                        in_flight[f.future] = f
                        busy.add(pm.customer)
                else:
                    self.result.pending += [pm.name for pm in queue]
                    queue.clear()
                if not in_flight:
                    break
                timeout = SIGNAL_GRACE if stopping == "signal" else 0.2
                done, _ = wait_futures(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
                if stopping == "signal" and not done:
                    break  # the grace is over: what is still running stays in-progress
                for fut in done:
                    flight = in_flight.pop(fut)
                    error = fut.exception()
                    if error is not None:
                        if not isinstance(error, PlatformError):
                            raise error
                        # The submit may have reached the platform (a lost answer): the move stays in-progress
                        # under its journaled id, which the next apply asks for before submitting anything.
                        unknown = unknown or error
                        self.record(flight, None)
                        stopping = stopping or "failed"
                        continue
                    outcome = self.record(flight, fut.result())
                    if outcome == "failed" and stopping is None:
                        stopping = "failed"
                    elif outcome == "in-progress" and self.opts.wait and stopping is None:
                        stopping = "deadline"
                if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
                    self.flush()
        finally:
            self.stop.set()
            for flight in in_flight.values():  # stopped by a signal or an error: left running
                self.result.in_progress.append(flight.pm.name)
            self.result.pending += [pm.name for pm in queue if pm.name not in self.started]
            self.rollback_unstarted()
            self._report_in_plan_order()
            self.flush()
        if unknown is not None:
            raise unknown  # the moves it concerns stay in-progress: the next apply asks before resubmitting
        self.sig.check()


def execute(moves: list[PlannedMove], st: State, platform: Platform, writer: Journal, result: ApplyResult,
            commit: str | None, progress: Progress | None, sig: Signals, opts: Options | None = None,
            catalog: Callable[[], Mapping[str, Service]] | None = None) -> None:
    """Run the planned moves (and record adoptions) with up to opts.parallelism in flight."""
    with sig.deferred():
        _Execution(moves, st, platform, writer, result, commit, progress, sig, opts or Options(), catalog).run()


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
