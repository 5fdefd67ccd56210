"""The state in PostgreSQL (`--state postgresql://...`): one row per state name, compare-and-swap writes,
every version in a history table, and an advisory lock on a dedicated connection that dies with its session."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from reconciler import __version__
from reconciler.audit import login_name
from reconciler.errors import LockHeld, StateError
from reconciler.state.base import describe_holder, holder_info
from reconciler.state.model import Fragments, State, dumps_text, parse
from reconciler.urls import redact

if TYPE_CHECKING:  # psycopg is an extra: imported when a store connects, not when this module loads
    import psycopg
    from psycopg import sql

URL_FORM = "postgresql://[user@]host[:port]/db[?schema=NAME&name=STATE]"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_STATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}\Z")
CONNECT_TIMEOUT = "10"  # seconds; the URL's connect_timeout wins

# Each entry takes the tables from the version before it to its own; the position is the version.
# Tables are created in the URL's schema ({schema}); nothing outside it is touched.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {schema}.reconciler_states (
               name text PRIMARY KEY,
               lineage text NOT NULL,
               serial bigint NOT NULL,
               document text NOT NULL,
               updated_at timestamptz NOT NULL DEFAULT now(),
               updated_by text NOT NULL)""",
        # Every committed version: the whole document when a write may have changed anything (a push),
        # else the move records it changed; replaying them in serial order gives any version back.
        """CREATE TABLE {schema}.reconciler_state_history (
               name text NOT NULL,
               serial bigint NOT NULL,
               lineage text NOT NULL,
               written_at timestamptz NOT NULL DEFAULT now(),
               written_by text NOT NULL,
               git_commit text,
               operation text,
               tool_version text NOT NULL,
               changes jsonb,
               document text,
               PRIMARY KEY (name, serial))""",
        # Who holds a state's advisory lock. A row is believed only while its backend holds that lock
        # (pg_locks): a holder whose connection died leaves a row that names nobody.
        """CREATE TABLE {schema}.reconciler_locks (
               lock_key bigint PRIMARY KEY,
               name text NOT NULL,
               backend_pid integer NOT NULL,
               info jsonb NOT NULL,
               acquired_at timestamptz NOT NULL DEFAULT now())""",
        "GRANT SELECT ON {schema}.reconciler_locks TO PUBLIC",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StateError("a postgresql:// state needs the psycopg driver, which is not installed",
                         hint="install reconciler[postgres] (pip install 'reconciler[postgres]')") from None
    return psycopg


def _key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key, the same in every process and on every machine."""
    digest = hashlib.sha256("\x1f".join(("reconciler", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Target:
    """A parsed state URL: what libpq needs, and how to name it in a message (never with the password)."""

    url: str
    params: dict[str, str]
    schema: str
    name: str

    @property
    def host(self) -> str:
        return self.params.get("host") or "localhost"

    @property
    def port(self) -> str:
        return self.params.get("port") or os.environ.get("PGPORT") or "5432"

    @property
    def dbname(self) -> str:
        return self.params.get("dbname", "")

    @property
    def user(self) -> str:
        return self.params.get("user") or os.environ.get("PGUSER") or login_name()

    @property
    def where(self) -> str:
        host = self.host
        at = f"{host} (Unix socket, port {self.port})" if host.startswith("/") else f"{host}:{self.port}"
        return f'PostgreSQL at {at}, database "{self.dbname}"'


def parse_url(url: str) -> Target:
    """`postgresql://[user[:password]@]host[:port]/db[?schema=NAME&name=STATE&libpq options]`."""
    shown = redact(url)

    def bad(why: str) -> StateError:
        return StateError(f"bad state URL {shown}: {why} (expected {URL_FORM}); nothing was changed")

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise bad(str(e)) from None
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise bad("the scheme is not postgresql://")
    if parts.fragment:
        raise bad("a URL fragment (#...) has no meaning here")
    params: dict[str, str] = {}
    if parts.hostname:
        params["host"] = unquote(parts.hostname)
    if port is not None:
        params["port"] = str(port)
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    db = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not db or "/" in db:
        raise bad("it names no database" if not db else f"{db!r} is not a database name")
    params["dbname"] = db
    schema, name = "public", "default"
    seen: set[str] = set()
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise bad("the query string does not parse") from None
    for k, v in pairs:
        if k in seen:
            raise bad(f"{k}= is given twice")
        seen.add(k)
        if k == "schema":
            schema = v
        elif k == "name":
            name = v
        elif k in ("dbname", "user", "port") or (k == "host" and "host" in params):
            raise bad(f"{k}= repeats what the URL says")
        else:
            params[k] = v  # a libpq option (sslmode, connect_timeout, host=/socket/dir, ...): libpq checks it
    if not _SCHEMA_NAME.match(schema):
        raise bad(f"schema={schema!r} is not a plain SQL name (letters, digits, _; at most 63)")
    if not _STATE_NAME.match(name):
        raise bad(f"name={name!r} is not a state name (letters, digits and ._:@/+-, at most 200)")
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return Target(url=url, params=params, schema=schema, name=name)


class PostgresStore:
    """`--state postgresql://...`: the state document of one name in the URL's schema."""

    def __init__(self, url: str) -> None:
        self.target = parse_url(url)
        _psycopg()  # a clear message now when the driver is missing, not a failure later
        self._sql = _Statements(self.target.schema)
        self.key = _key("state", self.target.schema, self.target.name)
        self.schema_key = _key("schema", self.target.schema)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._ready = False  # the tables exist at SCHEMA_VERSION (checked once per store)
        self._seen: tuple[str, int] | None | bool = False  # (lineage, serial) last read or written; False: unknown
        self._fragments = Fragments()
        self._operation: str | None = None
        self._git_commit: str | None = None
        self._by: str | None = None

    # -- StateStore -----------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return redact(self.target.url)

    def lock(self, operation: str, timeout: float = 0.0) -> contextlib.AbstractContextManager[None]:
        return self._lock(operation, timeout)

    def holder(self) -> str | None:
        conn = self._data(write=False)
        if conn is None:
            return None
        info = self._holder_info(conn)
        return None if info is None else describe_holder(info)

    def load(self) -> State | None:
        conn = self._data(write=False)
        self._fragments.clear()
        if conn is None:
            self._seen = None
            return None
        with self._guard("read the state"):
            row = conn.execute(self._sql.load, (self.target.name,)).fetchone()
        if row is None:
            self._seen = None
            return None
        state = parse(row[0].encode("utf-8"), f"{self.target.name!r} in {self.target.where}",
                      f"every earlier version is kept in {self.target.schema}.reconciler_state_history; "
                      "`reconcile state push FILE` replaces it")
        self._seen = (state.lineage, state.serial)
        return state

    def write(self, state: State, changed: Iterable[str] | None = None) -> None:
        names = self._fragments.forget(changed)
        doc = dumps_text(state, self._fragments)
        # The records this write changed, from the texts dumps_text just made (null: a record removed)
        changes = None if names is None else "{" + ",".join(
            f"{json.dumps(n, ensure_ascii=False)}:{self._fragments.get(n, 'null')}" for n in names) + "}"
        conn = self._data(write=True)
        assert conn is not None
        pg = _psycopg()
        name = self.target.name
        try:
            with self._guard("write the state"), conn.transaction():
                row = conn.execute(self._sql.current, (name,)).fetchone()
                current = None if row is None else (str(row[0]), int(row[1]))
                self._check_swap(current, state)
                by = self._writer()
                if current is None:
                    conn.execute(self._sql.insert, (name, state.lineage, state.serial, doc, by))
                else:
                    conn.execute(self._sql.update, (state.lineage, state.serial, doc, by, name))
                conn.execute(self._sql.history, (name, state.serial, state.lineage, by, self._git_commit,
                                                 self._operation, __version__, changes,
                                                 doc if names is None else None))
        except pg.errors.UniqueViolation:  # two first writers: the other one inserted the row first
            self._fragments.clear()
            raise self._lost(None, state) from None
        except StateError:
            self._fragments.clear()
            raise
        self._seen = (state.lineage, state.serial)

    def missing_hint(self) -> str | None:
        return None

    def close(self) -> None:
        for conn in (self._conn, self._lock_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._conn = self._lock_conn = None

    # -- beyond the protocol: what app asks a store that keeps history ------------------------------
    def annotate(self, operation: str | None = None, git_commit: str | None = None) -> None:
        """What the next writes come from: recorded with each version in the history table."""
        self._operation, self._git_commit = operation, git_commit

    def versions(self) -> list[dict[str, Any]]:
        """Every committed version of this state, oldest first: serial, lineage, when, by whom, git commit,
        and the moves it changed (None: the whole document, as a push writes it)."""
        conn = self._data(write=False)
        if conn is None:
            return []
        with self._guard("read the state history"):
            rows = conn.execute(self._sql.versions, (self.target.name,)).fetchall()
        return [{"serial": int(r[0]), "lineage": r[1], "written_at": r[2], "written_by": r[3], "git_commit": r[4],
                 "operation": r[5], "tool_version": r[6], "changed": r[7]} for r in rows]

    # -- internals ------------------------------------------------------------------------------------
    def _writer(self) -> str:
        if self._by is None:
            from reconciler.audit import actor

            info = holder_info(self._operation or "write")
            self._by = f"{actor()} ({info['user']}@{info['host']}, pid {info['pid']})"
        return self._by

    def _check_swap(self, current: tuple[str, int] | None, state: State) -> None:
        """The compare-and-swap: the stored (lineage, serial) must be the one this store last read or wrote,
        and the new serial above it; else another writer got there first and nothing is written."""
        if self._seen is False:  # never loaded: the documented rule, one above the stored serial
            if current is not None and (current[0] != state.lineage or current[1] != state.serial - 1):
                raise self._lost(current, state)
            return
        if current != self._seen:
            raise self._lost(current, state)
        if current is not None and state.serial <= current[1]:
            raise StateError(f"refusing to write serial {state.serial} of the state {self.target.name!r} in "
                             f"{self.target.where}: it is not above the stored serial {current[1]}; nothing was "
                             "written")

    def _lost(self, current: tuple[str, int] | None, state: State) -> StateError:
        now = "it now exists" if current is None else f"it is now at lineage {current[0]} serial {current[1]}"
        seen = self._seen
        if isinstance(seen, tuple):
            was = f"serial {seen[1]}"
        else:
            was = "no state" if seen is None else f"serial {state.serial - 1}"
        return StateError(f"the state {self.target.name!r} in {self.target.where} was changed by another writer "
                          f"while this run held {was}: {now}; serial {state.serial} was not written",
                          hint="run the command again: it starts from the stored state (and another run "
                               "wrote it without the lock, or this run's lock connection was lost)")

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """A driver error while talking to the server becomes a StateError naming host and database."""
        pg = _psycopg()
        try:
            yield
        except pg.Error as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise StateError(self._scrub(f"cannot {doing} in {self.target.where}: {first}; nothing more was "
                                         "written")) from None

    def _scrub(self, text: str) -> str:
        pw = self.target.params.get("password")
        return text.replace(pw, "***") if pw else text

    def _connect(self, purpose: str) -> psycopg.Connection[Any]:
        pg = _psycopg()
        params = dict(self.target.params)
        params.setdefault("application_name", f"reconcile {purpose} pid {os.getpid()}"[:63])
        try:
            conn: psycopg.Connection[Any] = pg.connect(autocommit=True, **params)
        except pg.ProgrammingError as e:  # libpq refused the options themselves
            why = (str(e).strip().splitlines() or ["invalid options"])[0]
            raise StateError(self._scrub(f"bad state URL {self.location}: {why} (expected {URL_FORM}); "
                                         "nothing was changed")) from None
        except pg.Error as e:
            raise StateError(self._scrub(self._connect_failure(str(e)))) from None
        return conn

    def _connect_failure(self, text: str) -> str:
        t = self.target
        low = text.lower()
        fatal = text.split("FATAL:", 1)[1].strip().splitlines()[0] if "FATAL:" in text else ""
        if "password authentication failed" in low or "no password supplied" in low or "authentication failed" \
                in low:
            why = ("no password was given" if "no password supplied" in low else "the password was refused")
            return (f'{t.where} refused the login of user "{t.user}": {why} (the password comes from PGPASSWORD, '
                    "~/.pgpass or the URL); nothing was changed")
        if "database" in low and "does not exist" in low:
            return (f'the database "{t.dbname}" does not exist on PostgreSQL at {t.host}:{t.port}: create it '
                    f"(createdb) or fix the state URL; nothing was changed")
        if "role" in low and "does not exist" in low:
            return f'{t.where} has no user "{t.user}": fix the state URL or PGUSER; nothing was changed'
        if "resolve host" in low or "could not translate host name" in low:
            return f"cannot reach {t.where}: the host name does not resolve; nothing was changed"
        if "connection refused" in low:
            return f"cannot reach {t.where}: connection refused (is the server running?); nothing was changed"
        if "timeout expired" in low or "timed out" in low:
            return f"cannot reach {t.where}: no answer within {t.params['connect_timeout']} s; nothing was changed"
        if "no such file or directory" in low:
            return f"cannot reach {t.where}: no server listens on that socket; nothing was changed"
        detail = fatal or next((line.strip() for line in reversed(text.splitlines()) if line.strip()), text)
        detail = detail.split(" failed: ", 1)[-1]
        return f"cannot connect to {t.where}: {detail}; nothing was changed"

    def _data(self, write: bool) -> psycopg.Connection[Any] | None:
        """The connection for reads and writes; None when reading and the tables do not exist yet."""
        if self._conn is None:
            self._conn = self._connect("state")
        if not self._ready and not self._migrate(self._conn, write):
            return None
        return self._conn

    def _migrate(self, conn: psycopg.Connection[Any], write: bool) -> bool:
        """Bring this store's tables to SCHEMA_VERSION under a lock of the schema; refuse a newer version.
        A read (write=False) of a schema with no tables creates nothing: a read-only role can plan."""
        version = self._schema_version(conn)
        if version == SCHEMA_VERSION:
            self._ready = True
            return True
        self._refuse_newer(version)
        if version is None and not write:
            return False
        with self._guard("create or upgrade the state tables"), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.schema_key,))
            version = self._schema_version(conn)  # again: another run may have migrated while we waited
            self._refuse_newer(version)
            if version is None:
                exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                      (self.target.schema,)).fetchone()
                if exists is None:
                    conn.execute(self._sql.format("CREATE SCHEMA {schema}"))
                conn.execute(self._sql.format(
                    "CREATE TABLE {schema}.reconciler_schema (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
                    "version integer NOT NULL)"))
                conn.execute(self._sql.format("INSERT INTO {schema}.reconciler_schema (version) VALUES (0)"))
                version = 0
            for n in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[n - 1]:
                    conn.execute(self._sql.format(stmt))
                conn.execute(self._sql.format("UPDATE {schema}.reconciler_schema SET version = %s"), (n,))
        self._ready = True
        return True

    def _schema_version(self, conn: psycopg.Connection[Any]) -> int | None:
        with self._guard("read the state tables' version"):
            # pg_class itself, not to_regclass(): a name lookup's cache may still say "no such table" after
            # another session created it while this one waited for the schema lock.
            row = conn.execute("SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON "
                               "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'reconciler_schema'",
                               (self.target.schema,)).fetchone()
            if row is None:
                return None
            got = conn.execute(self._sql.format("SELECT version FROM {schema}.reconciler_schema")).fetchone()
        return None if got is None else int(got[0])

    def _refuse_newer(self, version: int | None) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise StateError(f"the state tables in schema {self.target.schema} of {self.target.where} are at "
                             f"version {version}; this reconciler {__version__} knows versions up to "
                             f"{SCHEMA_VERSION} only; nothing was changed",
                             hint="upgrade reconciler: a newer one made these tables")

    def _holder_info(self, conn: psycopg.Connection[Any]) -> Any:
        u = self.key & (2**64 - 1)
        with self._guard("read the state lock"):
            row = conn.execute(self._sql.holder, (self.key, u >> 32, u & 0xFFFFFFFF)).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def _lock(self, operation: str, timeout: float) -> Iterator[None]:
        pg = _psycopg()
        self._operation = self._operation or operation
        conn = self._connect(f"{operation} lock")
        held = False
        try:
            self._migrate(conn, write=True)
            with self._guard("take the state lock"):
                held = bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0])  # type: ignore[index]
                if not held and timeout > 0:
                    # The server waits for us (no polling): lock_timeout bounds it; a holder whose session
                    # ends releases the lock to us at once.
                    conn.execute(self._sql.format("SET lock_timeout = {ms}", ms=f"{max(int(timeout * 1000), 1)}"))
                    try:
                        conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
                        held = True
                    except pg.errors.LockNotAvailable:
                        held = False
                    conn.execute("SET lock_timeout = 0")
            if not held:
                info = self._holder_info(conn)
                holder = describe_holder(info) if info is not None else "another process (it left no details)"
                waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
                raise LockHeld(f"the state lock of {self.location} is held by {holder}{waited}",
                               hint="wait for that run to finish, or pass --lock-timeout SECONDS to wait for it")
            with self._guard("record the state lock's holder"):
                conn.execute(self._sql.claim, (self.key, self.target.name, json.dumps(holder_info(operation))))
            self._lock_conn = conn
            yield
        finally:
            if held:
                with contextlib.suppress(Exception):  # a dead connection holds nothing anyway
                    conn.execute(self._sql.release, (self.key,))
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            with contextlib.suppress(Exception):
                conn.close()
            self._lock_conn = None


class _Statements:
    """The SQL of one schema, composed once (identifiers quoted by psycopg.sql)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.load = self.format("SELECT document FROM {schema}.reconciler_states WHERE name = %s")
        self.current = self.format("SELECT lineage, serial FROM {schema}.reconciler_states WHERE name = %s FOR UPDATE")
        self.insert = self.format("INSERT INTO {schema}.reconciler_states (name, lineage, serial, document, "
                                  "updated_by) VALUES (%s, %s, %s, %s, %s)")
        self.update = self.format("UPDATE {schema}.reconciler_states SET lineage = %s, serial = %s, document = %s, "
                                  "updated_at = now(), updated_by = %s WHERE name = %s")
        self.history = self.format("INSERT INTO {schema}.reconciler_state_history (name, serial, lineage, "
                                   "written_by, git_commit, operation, tool_version, changes, document) "
                                   "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)")
        self.versions = self.format(
            "SELECT serial, lineage, to_char(written_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
            "written_by, git_commit, operation, tool_version, "
            "CASE WHEN changes IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_object_keys(changes)) END "
            "FROM {schema}.reconciler_state_history WHERE name = %s ORDER BY serial")
        self.claim = self.format(
            "INSERT INTO {schema}.reconciler_locks (lock_key, name, backend_pid, info) "
            "VALUES (%s, %s, pg_backend_pid(), %s::jsonb) ON CONFLICT (lock_key) DO UPDATE SET "
            "name = excluded.name, backend_pid = excluded.backend_pid, info = excluded.info, acquired_at = now()")
        self.release = self.format("DELETE FROM {schema}.reconciler_locks WHERE lock_key = %s "
                                   "AND backend_pid = pg_backend_pid()")
        # Believed only while that backend holds the advisory lock (a bigint key shows as classid, objid).
        self.holder = self.format(
            "SELECT l.info FROM {schema}.reconciler_locks l WHERE l.lock_key = %s AND EXISTS ("
            "SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.backend_pid "
            "AND k.classid = %s::bigint::oid AND k.objid = %s::bigint::oid AND k.objsubid = 1)")

    def format(self, text: str, **extra: str) -> sql.Composed:
        from psycopg import sql

        return sql.SQL(text).format(schema=sql.Identifier(self.schema),
                                    **{k: sql.SQL(v) for k, v in extra.items()})
