"""The embedded platform: a real SQLite database with its own provisioning engine."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reconciler import seed as seeds
from reconciler.errors import PlatformError
from reconciler.model import (
    Customer,
    MoveOrder,
    Offering,
    Request,
    Service,
    Subscription,
    User,
    UserService,
    canonical_json,
    customer_digest,
    utcnow,
)

FORMAT = "reconciler-platform/1"
LOCK_TIMEOUT = float(os.environ.get("RECONCILE_DB_TIMEOUT", "10"))

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE locations (id TEXT PRIMARY KEY, name TEXT, ord INTEGER NOT NULL);
CREATE TABLE services (id TEXT PRIMARY KEY, name TEXT, properties TEXT NOT NULL, ord INTEGER NOT NULL);
CREATE TABLE customers (
  id TEXT PRIMARY KEY, name TEXT, location TEXT NOT NULL, parent TEXT,
  offerings TEXT,                 -- JSON: service -> {plans, sals, maxUsers}; NULL: not a reseller
  subscriptions TEXT NOT NULL,    -- JSON: service -> {plan, sal, overrides}
  digest TEXT NOT NULL,           -- fingerprint of the customer and all its users
  ord INTEGER NOT NULL);
CREATE TABLE users (id TEXT PRIMARY KEY, customer TEXT NOT NULL, hold TEXT, ord INTEGER NOT NULL);
CREATE TABLE user_services (
  user TEXT NOT NULL, customer TEXT NOT NULL, service TEXT NOT NULL, sal TEXT NOT NULL,
  overrides TEXT NOT NULL, PRIMARY KEY (user, service));
CREATE TABLE requests (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
  customer TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
  sub_requests INTEGER NOT NULL DEFAULT 0, failed_sub_requests INTEGER NOT NULL DEFAULT 0,
  submitted_at TEXT, completed_at TEXT, body TEXT);
"""

# In the order of model.Request's fields.
REQUEST_COLUMNS = ("id, type, customer, status, error, sub_requests, failed_sub_requests, submitted_at, "
                   "completed_at")

# Built after the bulk load of a seed: inserting into indexed tables is several times slower.
INDEXES = """
CREATE INDEX customers_parent ON customers (parent);
CREATE INDEX users_customer ON users (customer, ord);
CREATE INDEX user_services_customer ON user_services (customer, service, sal);
CREATE INDEX requests_customer ON requests (customer, status);
"""


def damaged(path: Path, e: Exception) -> PlatformError:
    return PlatformError(f"{path} is a damaged platform database ({e})",
                         hint="restore it from a backup, or re-create it with `reconcile platform init --force`")


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    return {} if text == "{}" else json.loads(text)


def path_of(url: str) -> Path:
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise PlatformError(f"not an embedded platform URL: {url!r}", hint="use sqlite:///PATH")
    return Path(url[len("sqlite:///"):])


def _connect(path: Path, create: bool = False) -> sqlite3.Connection:
    mode = "rwc" if create else "rw"
    uri = "file:" + str(path.resolve()).replace("?", "%3f").replace("#", "%23") + f"?mode={mode}"
    timeout = float(os.environ.get("RECONCILE_DB_TIMEOUT") or LOCK_TIMEOUT)  # read now: tests and callers set it late
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    # WAL: readers never block the engine. synchronous=NORMAL loses no committed transaction when a
    # process is killed; on power loss the newest may roll back, which apply tolerates by design: the
    # state journals each request before submitting it, and a re-run resubmits it under the same id.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class SqlitePlatform:
    def __init__(self, url: str, conn: sqlite3.Connection) -> None:
        self.url = url
        self._conn = conn

    # -- lifecycle -------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, seed: str | None = None) -> SqlitePlatform:
        path = path_of(url)
        if not path.exists():
            if seed is None:
                raise PlatformError(f"no platform database at {path}",
                                    hint="create it with `reconcile platform init --seed FILE`")
            init(url, seed)
        try:
            conn = _connect(path)
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as e:
            raise PlatformError(f"{path} is not a reconciler platform database ({e})",
                                hint="point --platform at a database made by `reconcile platform init`") from None
        if row is None or row[0] != FORMAT:
            conn.close()
            raise PlatformError(f"{path} is not a reconciler platform database (format {row and row[0]!r})",
                                hint="point --platform at a database made by `reconcile platform init`")
        return cls(url, conn)

    def close(self) -> None:
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
        except sqlite3.OperationalError as e:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise PlatformError(f"the platform database refused the change: {e}; nothing of it was applied",
                                hint="free disk space or fix permissions, then run apply again: it resumes") from None
        except sqlite3.DatabaseError as e:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise damaged(path_of(self.url), e) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise

    def _q(self, sql: str, args: Iterable[Any] = ()) -> Iterator[Any]:
        """Rows of a query; SQLite's errors, raised at execute or while iterating, become PlatformErrors."""
        try:
            yield from self._conn.execute(sql, tuple(args))
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise PlatformError(f"the platform database {path_of(self.url)} is locked by another process ({e})",
                                    hint="wait for it to finish, or raise RECONCILE_DB_TIMEOUT") from None
            raise PlatformError(f"the platform database {path_of(self.url)} failed: {e}") from None
        except sqlite3.DatabaseError as e:
            raise damaged(path_of(self.url), e) from None

    def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return next(self._q(sql, args), None)

    # -- reads -------------------------------------------------------------------------
    def catalog(self) -> dict[str, Service]:
        from reconciler.model import PropertyDef

        out: dict[str, Service] = {}
        for sid, name, props in self._q("SELECT id, name, properties FROM services ORDER BY ord"):
            defs = {n: PropertyDef(n, p["type"], bool(p.get("sensitive", False)))
                    for n, p in json.loads(props).items()}
            out[sid] = Service(sid, name or sid, defs)
        return out

    def customers(self, ids: Iterable[str]) -> dict[str, Customer]:
        wanted = sorted(set(ids))
        out: dict[str, Customer] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._q(f"SELECT id, name, location, parent, offerings, subscriptions, digest "
                               f"FROM customers WHERE id IN ({marks})", chunk):
                out[row[0]] = _customer(row)
        return out

    def users(self, customer: str) -> Iterator[User]:
        cur = self._q(
            "SELECT u.id, u.hold, s.service, s.sal, s.overrides FROM users u "
            "LEFT JOIN user_services s ON s.user = u.id WHERE u.customer = ? ORDER BY u.ord, s.service",
            (customer,))
        uid: str | None = None
        hold: str | None = None
        services: dict[str, UserService] = {}
        for row in cur:
            if row[0] != uid:
                if uid is not None:
                    yield User(uid, services, hold)
                uid, hold, services = row[0], row[1], {}
            if row[2] is not None:
                services[row[2]] = UserService(row[3], _loads(row[4]))
        if uid is not None:
            yield User(uid, services, hold)

    def usage(self, reseller: str) -> dict[str, int]:
        rows = self._q("SELECT s.service, COUNT(*) FROM customers c JOIN user_services s ON s.customer = c.id "
                       "WHERE c.parent = ? GROUP BY s.service", (reseller,))
        return {svc: n for svc, n in rows}

    def pending_requests(self, customers: Iterable[str]) -> dict[str, list[str]]:
        wanted = sorted(set(customers))
        out: dict[str, list[str]] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for cid, rid in self._q(f"SELECT customer, id FROM requests WHERE customer IN ({marks}) "
                                    "AND status IN ('Requested', 'InProgress') ORDER BY seq", chunk):
                out.setdefault(cid, []).append(rid)
        return out

    def request(self, request_id: str) -> Request | None:
        row = self._one(f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?", (request_id,))
        return Request(*row) if row else None

    # -- the provisioning engine ----------------------------------------------------------
    def submit(self, request_id: str, order: MoveOrder) -> Request:
        """Record the request, then execute it Requested -> InProgress -> Provisioned | Failed, atomically."""
        with self._tx() as db:
            existing = self.request(request_id)
            if existing is not None:
                return existing
            now = utcnow()
            db.execute("INSERT INTO requests (id, type, customer, status, submitted_at, body) "
                       "VALUES (?, 'CustomerMove', ?, 'Requested', ?, ?)",
                       (request_id, order.customer, now, canonical_json(order.to_json())))
            db.execute("UPDATE requests SET status = 'InProgress' WHERE id = ?", (request_id,))
            n_users = db.execute("SELECT COUNT(*) FROM users WHERE customer = ?", (order.customer,)).fetchone()[0]
            subs = 1 + len(order.subscriptions) + n_users
            problems, failed = self._refusals(order)
            if problems:
                db.execute("UPDATE requests SET status = 'Failed', error = ?, sub_requests = ?, "
                           "failed_sub_requests = ?, completed_at = ? WHERE id = ?",
                           ("; ".join(problems), subs, failed, utcnow(), request_id))
            else:
                self._execute(db, order)
                db.execute("UPDATE requests SET status = 'Provisioned', sub_requests = ?, completed_at = ? "
                           "WHERE id = ?", (subs, utcnow(), request_id))
        got = self.request(request_id)
        assert got is not None
        return got

    def _refusals(self, order: MoveOrder) -> tuple[list[str], int]:
        rows = self.customers([order.customer, order.to_reseller])
        cust, dest = rows.get(order.customer), rows.get(order.to_reseller)
        if cust is None:
            return [f"customer {order.customer} does not exist"], 1
        if dest is None:
            return [f"reseller {order.to_reseller} does not exist"], 1
        if not dest.is_reseller:
            return [f"{order.to_reseller} is not a reseller"], 1
        if cust.is_reseller:
            return [f"customer {order.customer} is a reseller and cannot be moved"], 1
        if cust.location != dest.location:
            return [f"{order.to_reseller} is in {dest.location}, {order.customer} in {cust.location}"], 1
        held = list(self._q("SELECT id, hold FROM users WHERE customer = ? AND hold IS NOT NULL ORDER BY ord",
                            (order.customer,)))
        return [f"user {uid} cannot be provisioned: {reason}" for uid, reason in held], len(held)

    def _execute(self, db: sqlite3.Connection, order: MoveOrder) -> None:
        subs = {s: {"plan": x.plan, "sal": x.sal, "overrides": x.overrides}
                for s, x in order.subscriptions.items()}
        db.execute("UPDATE customers SET parent = ?, subscriptions = ? WHERE id = ?",
                   (order.to_reseller, canonical_json(subs), order.customer))
        for service, mapping in order.sal_map.items():
            changing = {f: t for f, t in mapping.items() if f != t}
            if not changing:
                continue
            cases = " ".join("WHEN ? THEN ?" for _ in changing)
            args: list[Any] = [x for pair in changing.items() for x in pair]
            marks = ",".join("?" * len(changing))
            db.execute(f"UPDATE user_services SET sal = CASE sal {cases} END "
                       f"WHERE customer = ? AND service = ? AND sal IN ({marks})",
                       (*args, order.customer, service, *changing))
        self._refresh_digest(db, order.customer)

    def _refresh_digest(self, db: sqlite3.Connection, cid: str) -> None:
        row = db.execute("SELECT id, name, location, parent, offerings, subscriptions FROM customers WHERE id = ?",
                         (cid,)).fetchone()
        users = (_user_doc(u.id, {s: {"sal": x.sal, "overrides": x.overrides} for s, x in u.services.items()},
                           u.hold) for u in self.users(cid))
        db.execute("UPDATE customers SET digest = ? WHERE id = ?", (customer_digest(_digest_head(row), users), cid))

    # -- export ------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"apiVersion": "reconciler/v1", "kind": "Platform"}
        doc["locations"] = [{"id": i, "name": n} for i, n in self._q("SELECT id, name FROM locations ORDER BY ord")]
        doc["services"] = [
            {"id": i, "name": n, "properties": json.loads(p)}
            for i, n, p in self._q("SELECT id, name, properties FROM services ORDER BY ord")]
        users_of: dict[str, list[dict[str, Any]]] = {}
        current: dict[str, Any] | None = None
        for uid, cid, hold, svc, sal, ov in self._q(
                "SELECT u.id, u.customer, u.hold, s.service, s.sal, s.overrides FROM users u "
                "LEFT JOIN user_services s ON s.user = u.id ORDER BY u.customer, u.ord, s.service"):
            if current is None or current["id"] != uid:
                current = _user_doc(uid, {}, hold)
                users_of.setdefault(cid, []).append(current)
            if svc is not None:
                current["services"][svc] = {"sal": sal, "overrides": _loads(ov)}
        customers = []
        for row in self._q("SELECT id, name, location, parent, offerings, subscriptions FROM customers ORDER BY ord"):
            c = _digest_head(row)
            if c.get("reseller") is None:
                c.pop("reseller")
            c["users"] = users_of.get(row[0], [])
            customers.append(c)
        doc["customers"] = customers
        doc["requests"] = [
            {**Request(*r[:-1]).to_json(), **({"order": json.loads(r[-1])} if r[-1] else {})}
            for r in self._q(f"SELECT {REQUEST_COLUMNS}, body FROM requests ORDER BY seq")]
        return doc


def _overrides_json(overrides: dict[str, Any]) -> str:
    return canonical_json(overrides) if overrides else "{}"


# One shape for a customer and a user, whether read from a seed or from the database: the customer
# digest is computed over it at init and after every move, and export writes it.
def _customer_doc(cid: str, name: str | None, location: str, parent: str | None,
                  offerings: dict[str, Any] | None, subscriptions: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "name": name, "location": location, "parent": parent,
            "reseller": None if offerings is None else {"services": offerings}, "services": subscriptions}


def _user_doc(uid: str, services: dict[str, dict[str, Any]], hold: str | None) -> dict[str, Any]:
    return {"id": uid, "services": services, "hold": hold}


def _digest_head(row: tuple[Any, ...]) -> dict[str, Any]:
    return _customer_doc(row[0], row[1], row[2], row[3], _loads(row[4]), _loads(row[5]))


def _customer(row: tuple[Any, ...]) -> Customer:
    cid, name, location, parent, offerings, subscriptions, digest = row
    offs = _loads(offerings)
    return Customer(
        id=cid, name=name or cid, location=location, parent=parent,
        offerings=None if offs is None else {
            s: Offering(s, tuple(o.get("plans") or ()), {k: dict(v or {}) for k, v in (o.get("sals") or {}).items()},
                        o.get("maxUsers"))
            for s, o in offs.items()},
        subscriptions={s: Subscription(x["plan"], x["sal"], dict(x.get("overrides") or {}))
                       for s, x in _loads(subscriptions).items()},
        digest=digest,
    )


def init(url: str, seed_file: str, force: bool = False) -> dict[str, int]:
    """Create the platform from a seed, all or nothing: built beside the target, then renamed over it."""
    path = path_of(url)
    if path.exists() and not force:
        raise PlatformError(f"a platform already exists at {path}",
                            hint="pass --force to replace it (its data and requests are lost)")
    seed = seeds.read(seed_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.init"):  # left by an init that was killed
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".init", dir=path.parent)
    os.close(fd)
    try:
        conn = _connect(Path(tmp), create=True)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(SCHEMA)
            counts = _write(conn, seed.doc)
            conn.executescript(INDEXES)
            conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            conn.commit()
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):  # the old database's, never the new one's
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return counts


def _write(conn: sqlite3.Connection, doc: dict[str, Any]) -> dict[str, int]:
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO locations VALUES (?, ?, ?)",
                     [(x["id"], x.get("name"), i) for i, x in enumerate(doc["locations"])])
    conn.executemany("INSERT INTO services VALUES (?, ?, ?, ?)",
                     [(x["id"], x.get("name"), canonical_json(x.get("properties") or {}), i)
                      for i, x in enumerate(doc["services"])])
    n_users = 0
    user_rows: list[tuple[Any, ...]] = []
    service_rows: list[tuple[Any, ...]] = []
    customer_rows: list[tuple[Any, ...]] = []
    for i, c in enumerate(doc["customers"]):
        reseller = c.get("reseller")
        offerings = None
        if reseller is not None:
            offerings = {s: {"plans": list(o.get("plans") or []),
                             "sals": {k: dict(v or {}) for k, v in (o.get("sals") or {}).items()},
                             **({"maxUsers": o["maxUsers"]} if o.get("maxUsers") is not None else {})}
                         for s, o in (reseller.get("services") or {}).items()}
        subs = {s: {"plan": x["plan"], "sal": x["sal"], "overrides": dict(x.get("overrides") or {})}
                for s, x in (c.get("services") or {}).items()}
        head = _customer_doc(c["id"], c.get("name"), c["location"], c.get("parent"), offerings, subs)
        udocs = []
        for j, u in enumerate(c.get("users") or []):
            usvc = {s: {"sal": x["sal"], "overrides": dict(x.get("overrides") or {})}
                    for s, x in sorted((u.get("services") or {}).items())}
            udocs.append(_user_doc(u["id"], usvc, u.get("hold")))
            user_rows.append((u["id"], c["id"], u.get("hold"), j))
            service_rows.extend((u["id"], c["id"], s, x["sal"], _overrides_json(x["overrides"]))
                                for s, x in usvc.items())
        n_users += len(udocs)
        customer_rows.append((c["id"], c.get("name"), c["location"], c.get("parent"),
                              None if offerings is None else canonical_json(offerings), canonical_json(subs),
                              customer_digest(head, udocs), i))
        if len(service_rows) > 50_000:
            conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", user_rows)
            conn.executemany("INSERT INTO user_services VALUES (?, ?, ?, ?, ?)", service_rows)
            user_rows, service_rows = [], []
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", customer_rows)
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", user_rows)
    conn.executemany("INSERT INTO user_services VALUES (?, ?, ?, ?, ?)", service_rows)
    for r in doc["requests"]:
        conn.execute("INSERT INTO requests (id, type, customer, status, error, sub_requests, failed_sub_requests, "
                     "submitted_at, completed_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (r["id"], r["type"], r["customer"], r["status"], r.get("error"), r.get("sub_requests", 0),
                      r.get("failed_sub_requests", 0), r.get("submitted_at"), r.get("completed_at"),
                      canonical_json(r["order"]) if r.get("order") else None))
    return {"locations": len(doc["locations"]), "services": len(doc["services"]),
            "customers": len(doc["customers"]), "users": n_users, "requests": len(doc["requests"])}
