"""The embedded platform: a real SQLite database with its own provisioning engine (`sqlite:///PATH`)."""

from __future__ import annotations

import contextlib
import difflib
import functools
import itertools
import json
import os
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.errors import ConfigError, PlatformError
from reconciler.model import (
    PENDING,
    Customer,
    MoveOrder,
    Request,
    Service,
    Subscription,
    User,
    UserService,
    canonical_json,
    property_defs,
    utcnow,
)
from reconciler.platforms.base import refusals

if TYPE_CHECKING:
    from reconciler.seed import Stream

FORMAT = "reconciler-platform/2"
FORMATS = ("reconciler-platform/1", FORMAT)  # /1 lacks the request columns of /2: added on open
LOCK_TIMEOUT = float(os.environ.get("RECONCILE_DB_TIMEOUT", "10"))
PREFIX = "sqlite:///"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE locations (id TEXT PRIMARY KEY, name TEXT, ord INTEGER NOT NULL);
CREATE TABLE services (id TEXT PRIMARY KEY, name TEXT, properties TEXT NOT NULL, ord INTEGER NOT NULL);
CREATE TABLE customers (
  id TEXT PRIMARY KEY, name TEXT, location TEXT NOT NULL, parent TEXT,
  offerings TEXT,                 -- JSON: service -> {plans, sals, maxUsers}; NULL: not a reseller
  subscriptions TEXT NOT NULL,    -- JSON: service -> {plan, sal, overrides}
  ord INTEGER NOT NULL);
CREATE TABLE users (id TEXT PRIMARY KEY, customer TEXT NOT NULL, hold TEXT, ord INTEGER NOT NULL);
CREATE TABLE user_services (
  user TEXT NOT NULL, customer TEXT NOT NULL, service TEXT NOT NULL, sal TEXT NOT NULL,
  overrides TEXT NOT NULL, PRIMARY KEY (user, service));
CREATE TABLE requests (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
  customer TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
  sub_requests INTEGER NOT NULL DEFAULT 0, failed_sub_requests INTEGER NOT NULL DEFAULT 0,
  submitted_at TEXT, completed_at TEXT, body TEXT,
  replaced TEXT,                  -- JSON: what the request replaced (parent, subscriptions, users' SALs)
  accepted INTEGER NOT NULL DEFAULT 0);  -- 1: accepted by this engine, to run (again, after a restart)
"""
MIGRATE_1_TO_2 = ("ALTER TABLE requests ADD COLUMN replaced TEXT",
                  "ALTER TABLE requests ADD COLUMN accepted INTEGER NOT NULL DEFAULT 0")

# In the order of model.Request's fields.
REQUEST_COLUMNS = ("id, type, customer, status, error, sub_requests, failed_sub_requests, submitted_at, "
                   "completed_at, replaced")

# Built after the bulk load of a seed: inserting into indexed tables is several times slower.
INDEXES = """
CREATE INDEX customers_parent ON customers (parent);
CREATE INDEX users_customer ON users (customer, ord);
CREATE INDEX user_services_customer ON user_services (customer, service, sal);
CREATE INDEX requests_customer ON requests (customer, status);
"""
CHUNK = 500  # ids per IN (...): well below SQLite's limit on host parameters
USERS_WINDOW = 64  # customers a users page reads first (then 4x as many, and so on, while it comes back short)
USERS_WINDOW_MAX = 4096  # 2 host parameters each: well below SQLite's limit of 32,766


def damaged(path: Path, e: Exception) -> PlatformError:
    return PlatformError(f"{path} is a damaged platform database ({e})",
                         hint="restore it from a backup, or re-create it with `reconcile platform init --force`")


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    return {} if text == "{}" else json.loads(text)


def path_of(url: str) -> Path:
    if not url.startswith(PREFIX) or len(url) == len(PREFIX):
        raise ConfigError(f"not an embedded platform URL: {url!r}", hint="use sqlite:///PATH")
    return Path(url[len(PREFIX):])


def anchor(url: str, options: Mapping[str, Any]) -> str:
    """A relative path in reconcile.toml is relative to that file (options["config_dir"]); else to the cwd."""
    p = path_of(url)
    base = options.get("config_dir")
    if not p.is_absolute() and base:
        return PREFIX + str(Path(str(base)) / p)
    return url


def provider(url: str, options: Mapping[str, Any]) -> SqlitePlatform:
    """The entry point of `sqlite:///PATH`; `seed` in [platform] creates the database when it is missing."""
    url = anchor(url, options)
    seed = options.get("seed")
    if seed is not None:
        base = options.get("config_dir")
        seed = str(Path(str(base)) / str(seed)) if base else str(seed)
    return SqlitePlatform.open(url, seed=seed)


def _connect(path: Path, create: bool = False) -> sqlite3.Connection:
    mode = "rwc" if create else "rw"
    uri = "file:" + str(path.resolve()).replace("?", "%3f").replace("#", "%23") + f"?mode={mode}"
    timeout = float(os.environ.get("RECONCILE_DB_TIMEOUT") or LOCK_TIMEOUT)  # read now: tests and callers set it late
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    # WAL: readers never block the engine. synchronous=NORMAL loses no committed transaction when a
    # process is killed; on power loss the newest may roll back, which apply tolerates by design: the
    # state journals each request before submitting it, and a re-run resubmits it under the same id.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """One connection, many threads (apply runs moves in parallel): one call at a time, and SQLite's own
    errors become PlatformErrors here, so nothing above this module ever sees sqlite3."""

    @functools.wraps(method)
    def wrapper(self: SqlitePlatform, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "busy" in str(e):
                    raise PlatformError(f"the platform database {self.path} is locked by another process ({e})",
                                        hint="wait for it to finish, or raise RECONCILE_DB_TIMEOUT") from None
                raise PlatformError(f"the platform database {self.path} failed: {e}; nothing of the change was "
                                    "applied", hint="free disk space or fix permissions, then run again") from None
            except sqlite3.DatabaseError as e:
                raise damaged(self.path, e) from None
            except sqlite3.Error as e:
                raise PlatformError(f"the platform database {self.path} failed: {e}") from None

    return wrapper  # type: ignore[return-value]


class SqlitePlatform:
    def __init__(self, url: str, conn: sqlite3.Connection) -> None:
        self.url = url
        self.path = path_of(url)
        self._conn = conn
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, seed: str | None = None) -> SqlitePlatform:
        path = path_of(url)
        if not path.exists():
            if seed is None:
                raise PlatformError(f"no platform database at {path}",
                                    hint="create it with `reconcile platform init --seed FILE`")
            create_from_seed(url, seed)
        try:
            conn = _connect(path)
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as e:
            raise PlatformError(f"{path} is not a reconciler platform database ({e})",
                                hint="point --platform at a database made by `reconcile platform init`") from None
        if row is None or row[0] not in FORMATS:
            conn.close()
            raise PlatformError(f"{path} is not a reconciler platform database (format {row and row[0]!r})",
                                hint="point --platform at a database made by `reconcile platform init`")
        platform = cls(url, conn)
        if row[0] != FORMAT:
            platform._migrate()
        return platform

    @_guarded
    def _migrate(self) -> None:
        with self._tx() as db:
            columns = {r[1] for r in db.execute("PRAGMA table_info(requests)")}
            for stmt in MIGRATE_1_TO_2:
                if stmt.split()[5] not in columns:
                    db.execute(stmt)
            db.execute("UPDATE meta SET value = ? WHERE key = 'format'", (FORMAT,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise PlatformError(f"the platform database is busy: {e}",
                                hint="another process holds it; try again, or raise RECONCILE_DB_TIMEOUT") from None
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise

    def _rows(self, sql: str, ids: Collection[str], extra: tuple[Any, ...] = ()) -> Iterator[Any]:
        """Rows of `sql` (with `{marks}` for the ids) over the ids, CHUNK at a time: the cursors chained (a
        generator resumed per row costs a third of reading 100,000 rows)."""
        wanted = sorted(set(ids))
        return itertools.chain.from_iterable(
            self._conn.execute(sql.format(marks=",".join("?" * len(chunk))), (*chunk, *extra))
            for chunk in (wanted[i:i + CHUNK] for i in range(0, len(wanted), CHUNK)))

    # -- reads -------------------------------------------------------------------------
    @_guarded
    def catalog(self) -> dict[str, Service]:
        out: dict[str, Service] = {}
        for sid, name, props in self._conn.execute("SELECT id, name, properties FROM services ORDER BY ord"):
            out[sid] = Service(sid, name or sid, property_defs(json.loads(props)))
        return out

    @_guarded
    def customers(self, ids: Iterable[str]) -> dict[str, Customer]:
        return {row[0]: _customer(row) for row in self._rows(
            "SELECT id, name, location, parent, offerings, subscriptions FROM customers WHERE id IN ({marks})",
            list(ids))}

    @_guarded
    def users(self, customers: Collection[str]) -> dict[str, list[User]]:
        # Two plain index reads, no join (user_services.customer is the engine's copy of the user's customer,
        # and nothing moves a user): the users in order, then their services in (customer, service) order,
        # so each user's services come in name order. Users holding the same (service, SAL, overrides) share
        # one UserService: read-only, like everything a read returns (and the planner's diff computes the
        # change of each shared one once).
        out: dict[str, list[User]] = {c: [] for c in customers}
        by_id: dict[str, User] = {}
        for cid, uid, hold in self._rows(
                "SELECT customer, id, hold FROM users WHERE customer IN ({marks}) ORDER BY customer, ord", customers):
            out[cid].append(user := User(uid, {}, hold))
            by_id[uid] = user
        shared: dict[tuple[str, str, str], UserService] = {}
        for uid, svc, sal, ov in self._rows(
                "SELECT user, service, sal, overrides FROM user_services WHERE customer IN ({marks}) "
                "ORDER BY customer, service", customers):
            us = shared.get((svc, sal, ov))
            if us is None:
                us = shared[(svc, sal, ov)] = UserService(sal, _loads(ov))
            holder = by_id.get(uid)
            if holder is not None:
                holder.services[svc] = us
        return out

    @_guarded
    def users_after(self, customers: Sequence[str], after: tuple[int, int], limit: int) -> list[tuple[int, int, str]]:
        """Up to `limit` users of `customers` as (position in `customers`, ord, the user's JSON document: the
        shape of User.to_json, made by SQLite), ordered by (position, ord): those strictly after `after`, a
        (position, ord) cursor ((-1, -1): from the start). The served platform's users pages.

        A page costs what it returns: the customers are read a window at a time from the cursor's position
        (windows growing while they come back short), and within the cursor's customer the index starts at
        its ord, so neither a big customer nor a long list is re-read page after page."""
        pos, last = after
        out: list[tuple[int, int, str]] = []
        start, span = max(pos, 0), USERS_WINDOW
        while start < len(customers) and len(out) < limit:
            window = customers[start:start + span]
            values = ",".join(f"(?{4 + 2 * i},?{5 + 2 * i})" for i in range(len(window)))
            args = [x for i, cid in enumerate(window, start) for x in (i, cid)]
            out.extend(self._conn.execute(
                f"WITH wanted(pos, id) AS (VALUES {values}), "
                "page AS (SELECT w.pos, u.ord, u.id, u.hold FROM wanted w JOIN users u ON u.customer = w.id "
                "AND u.ord > CASE WHEN w.pos = ?1 THEN ?2 ELSE -1 END WHERE (w.pos, u.ord) > (?1, ?2) "
                "ORDER BY w.pos, u.ord LIMIT ?3) "
                "SELECT p.pos, p.ord, json_object('id', p.id, 'services', (SELECT json_group_object(s.service, "
                "json_object('sal', s.sal, 'overrides', json(s.overrides))) FROM (SELECT service, sal, overrides "
                "FROM user_services WHERE user = p.id ORDER BY service) s), 'hold', p.hold) "
                "FROM page p ORDER BY p.pos, p.ord",
                (pos, last, limit - len(out), *args)))
            start += len(window)
            span = min(span * 4, USERS_WINDOW_MAX)
        return out

    @_guarded
    def usage(self, resellers: Collection[str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {r: {} for r in resellers}
        # Counted per customer and service on the (customer, service) index, then summed: a join grouped
        # by (parent, service) sorts every user service row of the resellers (5x slower at 250,000 users).
        for parent, svc, n in self._rows(
                "SELECT c.parent, v.id, SUM((SELECT COUNT(*) FROM user_services s WHERE s.customer = c.id "
                "AND s.service = v.id)) FROM customers c, services v WHERE c.parent IN ({marks}) "
                "GROUP BY c.parent, v.id", resellers):
            if n:
                out[parent][svc] = n
        return out

    @_guarded
    def requests_of(self, customers: Collection[str], pending_only: bool = False) -> dict[str, list[Request]]:
        out: dict[str, list[Request]] = {}
        where = " AND status IN ('Requested', 'InProgress')" if pending_only else ""
        # Without what each request replaced: planning never needs it (revert asks for one request)
        rows = sorted(self._rows(f"SELECT seq, {REQUEST_COLUMNS.replace('replaced', 'NULL')} FROM requests "
                                 f"WHERE customer IN ({{marks}}){where}", customers))
        for row in rows:
            req = _request(row[1:])
            out.setdefault(req.customer, []).append(req)
        return out

    @_guarded
    def request(self, request_id: str) -> Request | None:
        return self._request(request_id)

    def _request(self, request_id: str) -> Request | None:
        row = self._conn.execute(f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?", (request_id,)).fetchone()
        return _request(row) if row else None

    @_guarded
    def search(self, text: str, limit: int = 3) -> list[str]:
        # Candidates by SQL (same first two characters, or containing the text), ranked by difflib: a platform
        # of 250,000 customers is never read whole for a typo.
        like = text[:2].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        inner = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        ids = [r[0] for r in self._conn.execute(
            "SELECT id FROM customers WHERE id LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\' LIMIT 5000",
            (like + "%", "%" + inner + "%"))]
        return difflib.get_close_matches(text, ids, n=limit, cutoff=0.6)

    # -- the provisioning engine ----------------------------------------------------------
    @_guarded
    def submit(self, request_id: str, order: MoveOrder) -> Request:
        """Record the request and execute it Requested -> InProgress -> Provisioned | Failed, in one transaction."""
        with self._tx() as db:
            existing = self._request(request_id)
            if existing is not None:
                return existing
            self._insert(db, request_id, order, accepted=False)
            self._execute(db, request_id, order)
        got = self._request(request_id)
        assert got is not None
        return got

    @_guarded
    def enqueue(self, request_id: str, order: MoveOrder) -> tuple[Request, bool]:
        """Accept a request to run later (the served platform's workers run it): (request, created).

        A known id returns the existing request and False; the caller compares bodies (`order_of`)."""
        with self._tx() as db:
            existing = self._request(request_id)
            if existing is not None:
                return existing, False
            self._insert(db, request_id, order, accepted=True)
        got = self._request(request_id)
        assert got is not None
        return got, True

    @_guarded
    def order_of(self, request_id: str) -> MoveOrder | None:
        row = self._conn.execute("SELECT body FROM requests WHERE id = ?", (request_id,)).fetchone()
        return MoveOrder.from_json(json.loads(row[0])) if row and row[0] else None

    @_guarded
    def accepted(self) -> list[tuple[str, str]]:
        """(request id, customer) of the accepted requests still to run, in submission order."""
        return [(r[0], r[1]) for r in self._conn.execute(
            "SELECT id, customer FROM requests WHERE accepted = 1 AND status IN ('Requested', 'InProgress') "
            "ORDER BY seq")]

    @_guarded
    def start(self, request_id: str) -> None:
        """An accepted request is picked up: InProgress."""
        self._conn.execute("UPDATE requests SET status = 'InProgress' WHERE id = ? AND status = 'Requested'",
                           (request_id,))

    @_guarded
    def run(self, request_id: str) -> Request:
        """Execute an accepted request now, atomically, exactly as submit() does; a final one is left as it is."""
        with self._tx() as db:
            req = self._request(request_id)
            if req is None:
                raise PlatformError(f"no request {request_id}")
            if req.status in PENDING:
                row = db.execute("SELECT body FROM requests WHERE id = ?", (request_id,)).fetchone()
                self._execute(db, request_id, MoveOrder.from_json(json.loads(row[0])))
        got = self._request(request_id)
        assert got is not None
        return got

    def _insert(self, db: sqlite3.Connection, request_id: str, order: MoveOrder, accepted: bool) -> None:
        db.execute("INSERT INTO requests (id, type, customer, status, submitted_at, body, accepted) "
                   "VALUES (?, 'CustomerMove', ?, 'Requested', ?, ?, ?)",
                   (request_id, order.customer, utcnow(), canonical_json(order.to_json()), int(accepted)))

    def _execute(self, db: sqlite3.Connection, request_id: str, order: MoveOrder) -> None:
        db.execute("UPDATE requests SET status = 'InProgress' WHERE id = ?", (request_id,))
        n_users = db.execute("SELECT COUNT(*) FROM users WHERE customer = ?", (order.customer,)).fetchone()[0]
        subs = 1 + len(order.subscriptions) + n_users
        problems, failed = self._refusals(order)
        if problems:
            db.execute("UPDATE requests SET status = 'Failed', error = ?, sub_requests = ?, "
                       "failed_sub_requests = ?, completed_at = ?, accepted = 0 WHERE id = ?",
                       ("; ".join(problems), subs, failed, utcnow(), request_id))
            return
        replaced = self._move(db, order)
        db.execute("UPDATE requests SET status = 'Provisioned', sub_requests = ?, completed_at = ?, replaced = ?, "
                   "accepted = 0 WHERE id = ?", (subs, utcnow(), canonical_json(replaced), request_id))

    def _refusals(self, order: MoveOrder) -> tuple[list[str], int]:
        rows = {row[0]: _customer(row) for row in self._conn.execute(
            "SELECT id, name, location, parent, offerings, subscriptions FROM customers WHERE id IN (?, ?)",
            (order.customer, order.to_reseller))}
        held = list(self._conn.execute(
            "SELECT id, hold FROM users WHERE customer = ? AND hold IS NOT NULL ORDER BY ord", (order.customer,)))
        return refusals(order, rows.get(order.customer), rows.get(order.to_reseller), held)

    def _move(self, db: sqlite3.Connection, order: MoveOrder) -> dict[str, Any]:
        """Re-parent the customer, set its subscriptions, map its users' SALs; returns what it replaced."""
        parent, subs_json = db.execute("SELECT parent, subscriptions FROM customers WHERE id = ?",
                                       (order.customer,)).fetchone()
        replaced: dict[str, Any] = {"parent": parent, "subscriptions": _loads(subs_json), "users": {}}
        subs = {s: x.to_json() for s, x in order.subscriptions.items()}
        db.execute("UPDATE customers SET parent = ?, subscriptions = ? WHERE id = ?",
                   (order.to_reseller, canonical_json(subs), order.customer))
        for service, mapping in order.sal_map.items():
            changing = {f: t for f, t in mapping.items() if f != t}
            if not changing:
                continue
            marks = ",".join("?" * len(changing))
            for uid, sal in db.execute(f"SELECT user, sal FROM user_services WHERE customer = ? AND service = ? "
                                       f"AND sal IN ({marks})", (order.customer, service, *changing)):
                replaced["users"].setdefault(uid, {})[service] = sal
            cases = " ".join("WHEN ? THEN ?" for _ in changing)
            args: list[Any] = [x for pair in changing.items() for x in pair]
            db.execute(f"UPDATE user_services SET sal = CASE sal {cases} END "
                       f"WHERE customer = ? AND service = ? AND sal IN ({marks})",
                       (*args, order.customer, service, *changing))
        return replaced

    # -- export ------------------------------------------------------------------------
    @_guarded
    def export(self) -> dict[str, Any]:
        db = self._conn
        doc: dict[str, Any] = {"apiVersion": "reconciler/v1", "kind": "Platform"}
        # A name is optional in a seed: an unnamed one is left out, so that every export seeds again.
        doc["locations"] = [_named({"id": i}, n) for i, n in db.execute("SELECT id, name FROM locations ORDER BY ord")]
        doc["services"] = [
            {**_named({"id": i}, n), "properties": json.loads(p)}
            for i, n, p in db.execute("SELECT id, name, properties FROM services ORDER BY ord")]
        users_of: dict[str, list[dict[str, Any]]] = {}
        current: dict[str, Any] | None = None
        for uid, cid, hold, svc, sal, ov in db.execute(
                "SELECT u.id, u.customer, u.hold, s.service, s.sal, s.overrides FROM users u "
                "LEFT JOIN user_services s ON s.user = u.id ORDER BY u.customer, u.ord, s.service"):
            if current is None or current["id"] != uid:
                current = {"id": uid, "services": {}, "hold": hold}
                users_of.setdefault(cid, []).append(current)
            if svc is not None:
                current["services"][svc] = {"sal": sal, "overrides": _loads(ov)}
        customers = []
        for row in db.execute("SELECT id, name, location, parent, offerings, subscriptions FROM customers "
                              "ORDER BY ord"):
            c = _customer(row).to_json()
            if row[1] is None:
                c.pop("name", None)
            c["users"] = users_of.get(row[0], [])
            customers.append(c)
        doc["customers"] = customers
        requests = []
        for row in db.execute(f"SELECT {REQUEST_COLUMNS}, body FROM requests ORDER BY seq"):
            r = _request(row[:-1])
            d = r.to_json()
            if row[-1]:
                d["order"] = json.loads(row[-1])
            if r.replaced is not None:
                d["replaced"] = r.replaced
            requests.append(d)
        doc["requests"] = requests
        return doc


def _named(d: dict[str, Any], name: str | None) -> dict[str, Any]:
    if name is not None:
        d["name"] = name
    return d


def _customer(row: tuple[Any, ...]) -> Customer:
    cid, name, location, parent, offerings, subscriptions = row
    offs = _loads(offerings)
    return Customer.from_json({"id": cid, "name": name, "location": location, "parent": parent,
                               "reseller": None if offs is None else {"services": offs},
                               "services": _loads(subscriptions)})


def _request(row: tuple[Any, ...]) -> Request:
    return Request(*row[:-1], replaced=_loads(row[-1]))  # type: ignore[misc]


def _say(message: str) -> None:
    from reconciler.render import clean

    print(clean(message), file=sys.stderr, flush=True)


def create_from_seed(url: str, seed: str) -> None:
    """The database is missing and [platform] names a seed: create it, once, and say so.

    Exclusive: two runs that both find it missing (a plan and an apply started together) never replace
    each other's database; the second finds the first's and uses it."""
    path = path_of(url)
    try:
        counts = init(url, seed, exclusive=True)
    except PlatformError:
        if path.exists():  # created by another run in the meantime: that one is the platform now
            return
        raise
    from reconciler.render import counts as tally

    _say(f"created {path} from seed {seed}: {tally(counts)}")


def init(url: str, seed_file: str, force: bool = False, exclusive: bool = False) -> dict[str, int]:
    """Create the platform from a seed, all or nothing: built beside the target, then put in its place.

    Without `force`, the new database is linked into place only if nothing is there (never replacing
    a database another process created meanwhile, nor its live -wal/-shm files)."""
    path = path_of(url)
    if path.exists() and not force:
        raise PlatformError(f"a platform already exists at {path}",
                            hint="pass --force to replace it (its data and requests are lost)")
    from reconciler import seed as seeds  # only init reads a seed: its models stay out of every other command

    seed = seeds.stream(seed_file)  # schema problems raise here; reference problems once the rows are written
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # created here, deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.init"):  # left by an init that was killed
        with contextlib.suppress(OSError):
            if not exclusive:  # a concurrent exclusive creation may be building one right now
                stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".init", dir=path.parent)
    os.close(fd)
    try:
        conn = _connect(Path(tmp), create=True)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(SCHEMA)
            counts = _write(conn, seed)
            for w in seed.warnings:  # references outside their scope: created as they are, but said (stderr)
                _say(w.format())
            conn.executescript(INDEXES)
            conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            conn.commit()
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if force:
            for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):  # the old database's, never the new one's
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if anything is there: creation is exclusive
            except FileExistsError:
                raise PlatformError(f"a platform already exists at {path}",
                                    hint="pass --force to replace it (its data and requests are lost)") from None
            os.unlink(tmp)
    except sqlite3.Error as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise PlatformError(f"cannot create the platform database {path}: {e}; nothing was created") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        for d in made:  # a seed with problems creates nothing, not even a directory
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return counts


def _write(conn: sqlite3.Connection, seed: Stream) -> dict[str, int]:
    """The rows of a seed, streamed customer by customer as the seed checks them. Its reference problems are
    raised once every customer has gone by (the caller drops the half-built database); a database error
    before that waits for them, so that a seed with problems always lists them."""
    failed: list[sqlite3.Error] = []

    def insert(sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not failed:
            try:
                conn.executemany(sql, rows)
            except sqlite3.Error as e:
                failed.append(e)

    doc = seed.header
    conn.execute("BEGIN")
    insert("INSERT INTO locations VALUES (?, ?, ?)",
           [(x["id"], x.get("name"), i) for i, x in enumerate(doc["locations"])])
    insert("INSERT INTO services VALUES (?, ?, ?, ?)",
           [(x["id"], x.get("name"), canonical_json(x.get("properties") or {}), i)
            for i, x in enumerate(doc["services"])])
    n_users = 0
    user_rows: list[tuple[Any, ...]] = []
    service_rows: list[tuple[Any, ...]] = []
    customer_rows: list[tuple[Any, ...]] = []
    for i, c in enumerate(seed.customers()):
        cust = Customer.from_json(c)
        offerings = None if cust.offerings is None else {s: o.to_json() for s, o in cust.offerings.items()}
        subs = {s: x.to_json() for s, x in cust.subscriptions.items()}
        for j, u in enumerate(c.get("users") or []):
            user_rows.append((u["id"], c["id"], u.get("hold"), j))
            service_rows.extend((u["id"], c["id"], s, x["sal"], _overrides_json(x.get("overrides") or {}))
                                for s, x in sorted((u.get("services") or {}).items()))
            n_users += 1
        customer_rows.append((c["id"], c.get("name"), c["location"], c.get("parent"),
                              None if offerings is None else canonical_json(offerings), canonical_json(subs), i))
        if len(service_rows) > 50_000:
            insert("INSERT INTO users VALUES (?, ?, ?, ?)", user_rows)
            insert("INSERT INTO user_services VALUES (?, ?, ?, ?, ?)", service_rows)
            user_rows, service_rows = [], []
    seed.finish()  # the seed's problems, if any: nothing is created
    if failed:
        raise failed[0]
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)", customer_rows)
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", user_rows)
    conn.executemany("INSERT INTO user_services VALUES (?, ?, ?, ?, ?)", service_rows)
    for r in doc["requests"]:
        conn.execute("INSERT INTO requests (id, type, customer, status, error, sub_requests, failed_sub_requests, "
                     "submitted_at, completed_at, body, replaced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (r["id"], r["type"], r["customer"], r["status"], r.get("error"), r.get("sub_requests", 0),
                      r.get("failed_sub_requests", 0), r.get("submitted_at"), r.get("completed_at"),
                      canonical_json(r["order"]) if r.get("order") else None,
                      canonical_json(r["replaced"]) if r.get("replaced") is not None else None))
    return {"locations": len(doc["locations"]), "services": len(doc["services"]),
            "customers": len(customer_rows), "users": n_users, "requests": len(doc["requests"])}


def _overrides_json(overrides: dict[str, Any]) -> str:
    return canonical_json(overrides) if overrides else "{}"


__all__ = ["SqlitePlatform", "Subscription", "anchor", "init", "provider"]
