"""The reference server of the Platform API (schemas/platform-api.yaml): an embedded platform served over HTTP.

`reconcile platform serve` runs it: Starlette on uvicorn (the optional extra `reconciler[server]`), a write
token and a read-only one, and asynchronous provisioning by worker threads (`Provisioner`), which run one
customer's requests in submission order and pick up, after a restart, every request accepted before it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import ConfigError, PlatformError
from reconciler.model import (
    ID_RE,
    MoveOrder,
    Secrets,
    canonical_json,
    conceal_customer,
    conceal_user,
    secrets_of,
)
from reconciler.platforms.sqlite import SqlitePlatform
from reconciler.urls import is_loopback

if TYPE_CHECKING:  # the server extra is optional: imported when serving only
    from starlette.requests import Request as HttpRequest
    from starlette.responses import Response

log = logging.getLogger("reconciler.server")

MAX_BODY = 4 * 1024 * 1024  # bytes: a batch of 5,000 ids is ~700 KB
MAX_IDS = 5000
PAGE_DEFAULT, PAGE_MIN, PAGE_MAX = 1000, 500, 5000  # users per page of POST /v1/users/query
DEFAULT_LISTEN = "127.0.0.1:8700"
GRACE = 10.0  # seconds an open connection gets to finish on SIGTERM
RUN_ATTEMPTS = 5  # a request whose execution failed (the database was busy) is tried this often, then left
WRITE, READ = "write", "read"


def missing_extra() -> ConfigError:
    return ConfigError("`reconcile platform serve` needs the server extra, which is not installed: "
                       "install reconciler[server]", hint="pip install 'reconciler[server]'")


@cache
def api_document() -> dict[str, Any]:
    """The Platform API document shipped in the package (or the source tree)."""
    import yaml

    try:
        text = (resources.files("reconciler.schemas") / "platform-api.yaml").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        text = (Path(__file__).resolve().parents[2] / "schemas" / "platform-api.yaml").read_text("utf-8")
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


REF = "#/components/schemas/"
# The batch reads' bodies (the document declares them inline, per route). Their lists of ids are checked item
# by item by `_ids` (jsonschema takes ~20 us an item: 5,000 ids a page cost a tenth of a second each time).
IDS = {"type": "array", "maxItems": MAX_IDS}
BODIES: dict[str, dict[str, Any]] = {
    "UsersQuery": {"type": "object", "required": ["customers"], "additionalProperties": False,
                   "properties": {"customers": IDS,
                                  "limit": {"type": "integer", "minimum": PAGE_MIN, "maximum": PAGE_MAX},
                                  "cursor": {"type": ["string", "null"], "maxLength": 200}}},
    "UsageQuery": {"type": "object", "required": ["resellers"], "additionalProperties": False,
                   "properties": {"resellers": IDS}},
    "RequestsQuery": {"type": "object", "required": ["customers"], "additionalProperties": False,
                      "properties": {"customers": IDS, "pending_only": {"type": "boolean"}}},
}


def _ids(body: Mapping[str, Any], key: str) -> None:
    """Each item of the list `key` of a valid batch body is an id (schema Id), as jsonschema would say it."""
    for i, x in enumerate(body[key]):
        if not isinstance(x, str) or not ID_RE.match(x):
            raise Problem(422, "Unprocessable Content", f"{key}/{i}: {x!r} does not match {ID_RE.pattern!r}"[:500])


def _inline(node: Any, schemas: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """`node` with each reference to a component schema replaced by the schema itself (a recursive one stays a
    reference): jsonschema resolves a $ref on every use, 5,000 times for a batch of 5,000 ids."""
    if isinstance(node, list):
        return [_inline(v, schemas, seen) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF) and len(node) == 1 and ref[len(REF):] not in seen:
        name = ref[len(REF):]
        return _inline(schemas[name], schemas, seen | {name})
    return {k: _inline(v, schemas, seen) for k, v in node.items()}


@cache
def _validator(name: str) -> Any:
    """A validator of a component schema of the document, or of a batch read's body (BODIES), made once."""
    from jsonschema import Draft202012Validator

    components = api_document()["components"]
    schema = BODIES.get(name) or {"$ref": REF + name}
    return Draft202012Validator({**_inline(schema, components["schemas"]), "components": components})


# -- asynchronous provisioning -------------------------------------------------------------------------
class Provisioner:
    """Worker threads that run accepted requests: one customer's in submission order, up to `workers` at once.

    Each request is held InProgress for `hold` seconds and then executed by the embedded engine, atomically.
    `stop()` lets the requests in hand finish; the ones still queued stay accepted in the database and are
    picked up by the next server (so are the ones a `kill -9` interrupted).
    """

    def __init__(self, platform: SqlitePlatform, workers: int = 16, hold: float = 0.0) -> None:
        self.platform = platform
        self.hold = hold
        self._cond = threading.Condition()
        self._queue: list[tuple[str, str, int]] = []  # (request id, customer, attempt), in submission order
        self._busy: set[str] = set()  # customers with a request in hand
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"provision-{i}", daemon=True)
                         for i in range(max(1, workers))]

    def start(self) -> None:
        for rid, customer in self.platform.accepted():  # resume what a previous server accepted
            self.add(rid, customer)
        for t in self._threads:
            t.start()

    def add(self, request_id: str, customer: str, attempt: int = 1) -> None:
        with self._cond:
            self._queue.append((request_id, customer, attempt))
            self._cond.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self, timeout: float) -> bool:
        """Stop taking requests; wait up to `timeout` seconds for those in hand. True when all finished."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def _next(self) -> tuple[str, str, int] | None:
        with self._cond:
            while not self._stopping:
                for i, (rid, customer, attempt) in enumerate(self._queue):
                    if customer not in self._busy:  # the first of each customer's: submission order
                        del self._queue[i]
                        self._busy.add(customer)
                        return rid, customer, attempt
                self._cond.wait(0.5)
            return None

    def _work(self) -> None:
        while (item := self._next()) is not None:
            rid, customer, attempt = item
            retry = False
            try:
                self.platform.start(rid)
                if self.hold > 0:
                    time.sleep(self.hold)
                self.platform.run(rid)
            except Exception as e:  # the database was busy, say: the request stays accepted
                retry = attempt < RUN_ATTEMPTS
                log.warning("request %s (attempt %d) failed to run: %s", rid, attempt, e)
                if retry:
                    time.sleep(min(2.0, 0.1 * 2 ** attempt))
            finally:
                with self._cond:
                    self._busy.discard(customer)
                    if retry:  # first in line again: the customer's later requests wait for it
                        self._queue.insert(0, (rid, customer, attempt + 1))
                    self._cond.notify_all()


# -- the ASGI application ------------------------------------------------------------------------------
class Problem(Exception):
    """An RFC 9457 problem: raised by a route, answered as application/problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(title)
        self.status, self.title, self.detail = status, title, detail
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Tokens:
    write: str
    read: str | None = None

    def role(self, header: str | None) -> str:
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Problem(401, "Unauthorized", "send Authorization: Bearer TOKEN",
                          {"WWW-Authenticate": 'Bearer realm="reconciler"'})
        given = given.strip()
        if hmac.compare_digest(given.encode(), self.write.encode()):
            return WRITE
        if self.read is not None and hmac.compare_digest(given.encode(), self.read.encode()):
            return READ
        raise Problem(401, "Unauthorized", "the token is not valid for this server",
                      {"WWW-Authenticate": 'Bearer realm="reconciler", error="invalid_token"'})


def _redact_props(props: Any, names: set[str]) -> Any:
    if not isinstance(props, dict) or not names:
        return props
    return {k: (None if k in names else v) for k, v in props.items()}


def _redact_subscriptions(subs: Any, sens: Mapping[str, set[str]]) -> None:
    for svc, sub in (subs or {}).items():
        if isinstance(sub, dict) and "overrides" in sub:
            sub["overrides"] = _redact_props(sub["overrides"], sens.get(svc, set()))


def redact_replaced(replaced: dict[str, Any] | None, sens: Mapping[str, set[str]]) -> dict[str, Any] | None:
    """What a request replaced, without a sensitive value (for the read-only token); in place, like
    redact_export: each caller has just decoded it."""
    if replaced is not None:
        _redact_subscriptions(replaced.get("subscriptions"), sens)
    return replaced


def redact_export(doc: dict[str, Any], sens: Mapping[str, set[str]]) -> dict[str, Any]:
    """A seed document without a sensitive value: each is null (still a valid seed)."""
    for c in doc.get("customers") or []:
        for svc, off in ((c.get("reseller") or {}).get("services") or {}).items():
            sals = off.get("sals") or {}
            off["sals"] = {k: _redact_props(v, sens.get(svc, set())) for k, v in sals.items()}
        _redact_subscriptions(c.get("services"), sens)
        for u in c.get("users") or []:
            _redact_subscriptions(u.get("services"), sens)
    for r in doc.get("requests") or []:
        if r.get("order"):
            _redact_subscriptions(r["order"].get("subscriptions"), sens)
        if r.get("replaced") is not None:
            r["replaced"] = redact_replaced(r["replaced"], sens)
    return doc


def _encode_cursor(pos: int, ord_: int) -> str:
    return base64.urlsafe_b64encode(f"u{pos}:{ord_}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, n: int) -> tuple[int, int]:
    """The (position in the customers sent, ord) of the last user a page returned; (-1, -1) for the first page."""
    if not cursor:
        return -1, -1
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("u"):
            raise ValueError(raw)
        pos, ord_ = (int(x) for x in raw[1:].split(":"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "Bad Request", "the cursor is not one this server gave") from None
    if not (0 <= pos < n and ord_ >= 0):
        raise Problem(400, "Bad Request", "the cursor does not fit the customers sent")
    return pos, ord_


def users_page(platform: SqlitePlatform, customers: list[str], limit: int, cursor: str | None,
               secret: Secrets | None = None) -> bytes:
    """One page of users of `customers` (each customer's in platform order) and the cursor of the next, as the
    JSON body of the answer: the users' documents come from SQLite as text and are not parsed again here,
    unless `secret` names sensitive properties to conceal (the read-only token): then each user's is.

    The cursor is the (position, ord) of the page's last user: the next page reads on from there (one
    query with a LIMIT), so a page costs what it returns, however many pages came before."""
    limit = int(limit)  # JSON Schema counts 1000.0 as an integer; a slice does not
    after = _decode_cursor(cursor, len(customers))
    rows = platform.users_after(customers, after, limit + 1)  # one more: is there a next page?
    out: dict[str, list[str]] = {c: [] for c in customers} if cursor is None else {}
    conceal = secret is not None and any(secret.values())
    for pos, _, doc in rows[:limit]:
        if conceal:
            doc = json.dumps(conceal_user(json.loads(doc), secret or {}), ensure_ascii=False)
        out.setdefault(customers[pos], []).append(doc)
    nxt = _encode_cursor(*rows[limit - 1][:2]) if len(rows) > limit else None
    users = ",".join(f"{json.dumps(cid, ensure_ascii=False)}:[{','.join(docs)}]" for cid, docs in out.items())
    return f'{{"users":{{{users}}},"next":{json.dumps(nxt)}}}'.encode()


def create_app(platform: SqlitePlatform, tokens: Tokens, provisioner: Provisioner) -> Any:
    """The Starlette application serving `platform` through the Platform API."""
    try:
        from jsonschema.exceptions import ValidationError
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise missing_extra() from None

    secret = secrets_of(platform.catalog())  # what the read-only token never sees; the catalog is fixed

    class ProblemResponse(JSONResponse):
        media_type = "application/problem+json"

    def problem(status: int, title: str, detail: str | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
        if detail:
            body["detail"] = detail
        return ProblemResponse(body, status_code=status, headers=dict(headers or {}))

    async def body_of(request: HttpRequest) -> Any:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            raise Problem(413, "Content Too Large", f"a request body holds at most {MAX_BODY} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise Problem(413, "Content Too Large", f"a request body holds at most {MAX_BODY} bytes")

        def no_constant(name: str) -> Any:
            raise ValueError(f"{name} is not JSON")

        try:
            return json.loads(bytes(data), parse_constant=no_constant)
        except (ValueError, RecursionError):
            raise Problem(400, "Bad Request", "the body is not JSON") from None

    def check(value: Any, schema: str) -> None:
        try:
            _validator(schema).validate(value)
        except ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "the body"
            raise Problem(422, "Unprocessable Content", f"{where}: {e.message}"[:500]) from None
        for key, sub in BODIES.get(schema, {}).get("properties", {}).items():
            if sub is IDS:
                _ids(value, key)

    def authorized(request: HttpRequest, write: bool = False) -> str:
        role = tokens.role(request.headers.get("authorization"))
        if write and role != WRITE:
            raise Problem(403, "Forbidden", "the read-only token cannot submit requests; use the write token")
        return role

    def route(method: Callable[[HttpRequest], Awaitable[Any]]) -> Callable[[HttpRequest], Awaitable[Response]]:
        async def endpoint(request: HttpRequest) -> Response:
            try:
                result = await method(request)
            except Problem as p:
                return problem(p.status, p.title, p.detail, p.headers)
            except PlatformError as e:  # the database is busy or failing: the client retries
                log.warning("%s %s: %s", request.method, request.url.path, e.message)
                return problem(503, "Service Unavailable", e.message, {"Retry-After": "1"})
            if isinstance(result, bytes):  # a body made as JSON text already
                return Response(result, media_type="application/json")
            if isinstance(result, tuple):
                status, doc = result
                return JSONResponse(doc, status_code=status)
            return JSONResponse(result)

        return endpoint

    async def health(request: HttpRequest) -> Any:
        return {"status": "ok"}

    async def catalog(request: HttpRequest) -> Any:
        authorized(request)
        services = await run_in_threadpool(platform.catalog)
        return {"services": [s.to_json() for s in services.values()]}

    async def customers(request: HttpRequest) -> Any:
        role = authorized(request)
        body = await body_of(request)
        check(body, "IdQuery")
        found = await run_in_threadpool(platform.customers, body["ids"])
        docs = {cid: c.to_json() for cid, c in found.items()}
        if role != WRITE:  # the read-only token sees a sensitive value's digest, never the value
            docs = {cid: conceal_customer(d, secret) for cid, d in docs.items()}
        return {"customers": docs}

    async def users(request: HttpRequest) -> Any:
        role = authorized(request)
        body = await body_of(request)
        check(body, "UsersQuery")
        wanted = list(dict.fromkeys(body["customers"]))
        # the read-only token sees a sensitive value's digest, never the value
        return await run_in_threadpool(users_page, platform, wanted, body.get("limit", PAGE_DEFAULT),
                                       body.get("cursor"), None if role == WRITE else secret)

    async def usage(request: HttpRequest) -> Any:
        authorized(request)
        body = await body_of(request)
        check(body, "UsageQuery")
        return {"usage": await run_in_threadpool(platform.usage, list(dict.fromkeys(body["resellers"])))}

    async def requests_of(request: HttpRequest) -> Any:
        authorized(request)
        body = await body_of(request)
        check(body, "RequestsQuery")
        found = await run_in_threadpool(platform.requests_of, list(dict.fromkeys(body["customers"])),
                                        bool(body.get("pending_only", False)))
        return {"requests": {cid: [r.to_json() for r in rs] for cid, rs in found.items()}}

    def request_id(request: HttpRequest) -> str:
        rid = str(request.path_params["id"])
        if not ID_RE.match(rid):
            raise Problem(422, "Unprocessable Content", "a request id matches ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
        return rid

    def request_doc(rid: str, role: str) -> dict[str, Any] | None:
        req = platform.request(rid)
        if req is None:
            return None
        doc = req.to_json()
        replaced = req.replaced
        if replaced is not None and role != WRITE:
            replaced = redact_replaced(replaced, secret)
        doc["replaced"] = replaced
        return doc

    async def get_request(request: HttpRequest) -> Any:
        role = authorized(request)
        rid = request_id(request)
        doc = await run_in_threadpool(request_doc, rid, role)
        if doc is None:
            raise Problem(404, "Not Found", f"no request {rid}")
        return doc

    def submit_sync(rid: str, order: MoveOrder) -> tuple[int, dict[str, Any]]:
        req, created = platform.enqueue(rid, order)
        if created:
            provisioner.add(rid, order.customer)
            return 201, req.to_json()
        known = platform.order_of(rid)
        # A request without a recorded order (imported from a seed) cannot be compared: it is the one asked for.
        if known is not None and canonical_json(known.to_json()) != canonical_json(order.to_json()):
            raise Problem(409, "Conflict", f"request {rid} exists with a different body: someone else submitted it")
        return 200, req.to_json()

    async def submit(request: HttpRequest) -> Any:
        authorized(request, write=True)
        rid = request_id(request)
        body = await body_of(request)
        check(body, "MoveOrder")
        if provisioner.stopping:
            raise Problem(503, "Service Unavailable", "the server is shutting down", {"Retry-After": "2"})
        return await run_in_threadpool(submit_sync, rid, MoveOrder.from_json(body))

    def export_sync(role: str) -> dict[str, Any]:
        doc = platform.export()
        return doc if role == WRITE else redact_export(doc, secret)

    async def export(request: HttpRequest) -> Any:
        role = authorized(request)
        return await run_in_threadpool(export_sync, role)

    async def search(request: HttpRequest) -> Any:
        authorized(request)
        q = request.query_params.get("q", "")
        raw_limit = request.query_params.get("limit", "3")
        if not 1 <= len(q) <= 128:
            raise Problem(422, "Unprocessable Content", "q: give 1 to 128 characters")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise Problem(422, "Unprocessable Content", "limit: give an integer") from None
        if not 1 <= limit <= 20:
            raise Problem(422, "Unprocessable Content", "limit: give 1 to 20")
        return {"ids": await run_in_threadpool(platform.search, q, limit)}

    async def http_error(request: HttpRequest, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else None
        return problem(status, {404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error"), detail,
                       getattr(exc, "headers", None))

    async def internal_error(request: HttpRequest, exc: Exception) -> Response:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return problem(500, "Internal Server Error", "the server failed; see its log")

    routes = [
        Route("/v1/health", route(health), methods=["GET"]),
        Route("/v1/catalog", route(catalog), methods=["GET"]),
        Route("/v1/customers/query", route(customers), methods=["POST"]),
        Route("/v1/users/query", route(users), methods=["POST"]),
        Route("/v1/usage/query", route(usage), methods=["POST"]),
        Route("/v1/requests/query", route(requests_of), methods=["POST"]),
        Route("/v1/requests/{id}", route(get_request), methods=["GET"]),
        Route("/v1/requests/{id}", route(submit), methods=["PUT"]),
        Route("/v1/export", route(export), methods=["GET"]),
        Route("/v1/search", route(search), methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})


# -- `reconcile platform serve` ------------------------------------------------------------------------
def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {listen!r} is not HOST:PORT", hint="e.g. 127.0.0.1:8700 (port 0 picks a free one)")
    return host.strip("[]"), int(port)




def read_token(env: str, file: str | None, option: str) -> str | None:
    """A token from its file (when given) or its environment variable; never from a command-line value."""
    if file is not None:
        try:
            token = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{option} {file}: cannot read it ({e})") from None
        if not token:
            raise ConfigError(f"{option} {file}: the file is empty")
        return token
    return os.environ.get(env) or None


@dataclass(frozen=True)
class ServeOptions:
    platform_url: str
    listen: str = DEFAULT_LISTEN
    workers: int = 16
    provision_seconds: float = 0.0
    token_file: str | None = None
    read_token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(256)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                          hint="pick another --listen address (port 0 picks a free one)") from None
    sock.set_inheritable(True)
    return sock


def serve(opts: ServeOptions, options: Mapping[str, Any] | None = None) -> None:
    """Serve the embedded platform until SIGTERM/SIGINT; then finish the requests in hand and return."""
    try:
        import uvicorn
    except ImportError:
        raise missing_extra() from None
    from reconciler.platforms import sqlite

    host, port = parse_listen(opts.listen)
    tls = opts.tls_cert is not None or opts.tls_key is not None
    if tls and not (opts.tls_cert and opts.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not tls and not is_loopback(host):
        raise ConfigError(f"listening on {host}, which is not loopback, needs TLS: tokens would cross the "
                          "network in the clear", hint="pass --tls-cert FILE --tls-key FILE, or listen on 127.0.0.1")
    write = read_token("RECONCILE_SERVER_TOKEN", opts.token_file, "--token-file")
    if not write:
        raise ConfigError("the server needs a write token: set RECONCILE_SERVER_TOKEN or pass --token-file FILE",
                          hint="e.g. RECONCILE_SERVER_TOKEN=$(openssl rand -hex 24)")
    read = read_token("RECONCILE_SERVER_READ_TOKEN", opts.read_token_file, "--read-token-file")
    if read is not None and hmac.compare_digest(read.encode(), write.encode()):
        raise ConfigError("the read-only token is the write token: give them different values")
    if opts.workers < 1:
        raise ConfigError("--workers takes a number >= 1")

    url = sqlite.anchor(opts.platform_url, options or {})
    platform = SqlitePlatform.open(url)
    sock: socket.socket | None = None
    provisioner = Provisioner(platform, opts.workers, opts.provision_seconds)
    try:
        app = create_app(platform, Tokens(write, read), provisioner)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=int(GRACE), server_header=False,
                                ssl_certfile=opts.tls_cert, ssl_keyfile=opts.tls_key)
        try:
            config.load()
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise ConfigError(f"cannot use --tls-cert/--tls-key: {e}") from None
        sock = _bind(host, port)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if tls else "http"
        provisioner.start()
        server = _Server(config)

        async def main() -> None:
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.02)
            if server.started:
                sys.stdout.write(f"serving {url} at {scheme}://{shown}:{bound}\n")
                sys.stdout.flush()
            await task

        asyncio.run(main())
    finally:
        finished = provisioner.stop(opts.provision_seconds + 60.0)
        if not finished:
            log.warning("requests still running at exit stay accepted; the next server finishes them")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        platform.close()


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the signal after a graceful shutdown (serve exits 0)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

    return Server


def _Server(config: Any) -> Any:  # noqa: N802 - a class made lazily, used like one
    return _server_class()(config)
