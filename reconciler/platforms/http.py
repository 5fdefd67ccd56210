"""The Platform API client (`http://`, `https://`): httpx, retries by stamina, batch reads paged by cursor.

The token comes from RECONCILE_TOKEN only; it is never printed, never put in a URL and never sent over
plain http to a host other than loopback. Every failure becomes a PlatformError naming the (redacted) URL.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import stamina

from reconciler import __version__
from reconciler.errors import ConfigError, PlatformError, RequestConflict
from reconciler.model import Customer, MoveOrder, Request, Service, User
from reconciler.urls import is_loopback, redact

TOKEN_ENV = "RECONCILE_TOKEN"
CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 120.0  # seconds; an export of a large platform takes a while
ATTEMPTS, RETRY_BUDGET = 8, 120.0  # per call: attempts, and seconds across all of them
RETRY_AFTER_MAX = 60.0  # a Retry-After is honoured up to this many seconds
RETRY_STATUSES = (429, 502, 503, 504)
MAX_IDS = 5000  # ids per batch call: the API's limit
PAGE_SIZE = 1000  # users per page
MAX_PAGES = 100_000

log = logging.getLogger("reconciler.http")
T = TypeVar("T")


class _Retry(Exception):
    """An answer worth another attempt (429, 502, 503, 504)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response




def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, min(float(raw), RETRY_AFTER_MAX))
    except ValueError:
        pass
    try:
        return max(0.0, min(parsedate_to_datetime(raw).timestamp() - time.time(), RETRY_AFTER_MAX))
    except (TypeError, ValueError, IndexError):
        return None


def _certificate_failure(e: BaseException) -> bool:
    seen: BaseException | None = e
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _backoff(e: Exception) -> bool | float:
    """stamina's hook: retry connection errors and 429/502/503/504 (after Retry-After when given); nothing else."""
    if isinstance(e, _Retry):
        after = _retry_after(e.response)
        return True if after is None else after
    return isinstance(e, httpx.TransportError) and not _certificate_failure(e)


def ssl_context() -> ssl.SSLContext:
    """Verification always on; SSL_CERT_FILE (or SSL_CERT_DIR) names the trusted CAs, else certifi's."""
    cafile, capath = os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        import certifi

        cafile = certifi.where()
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load the trusted certificates of SSL_CERT_FILE/SSL_CERT_DIR: {e}") from None


def provider(url: str, options: Mapping[str, Any]) -> HttpPlatform:
    """The entry point of `http(s)://HOST[:PORT][/PREFIX]`: the token from RECONCILE_TOKEN."""
    return HttpPlatform(url, os.environ.get(TOKEN_ENV) or None,
                        connect_timeout=float(options.get("connect_timeout", CONNECT_TIMEOUT)),
                        read_timeout=float(options.get("read_timeout", READ_TIMEOUT)))


class HttpPlatform:
    """A platform behind the Platform API v1 (schemas/platform-api.yaml)."""

    def __init__(self, url: str, token: str | None, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, page_size: int = PAGE_SIZE) -> None:
        shown = redact(url)
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ConfigError(f"the platform URL {shown!r} does not parse") from None
        if parts.scheme not in ("http", "https") or not host:
            raise ConfigError(f"the platform URL {shown!r} is not http(s)://HOST[:PORT][/PATH]")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigError(f"the platform URL {shown!r} carries credentials, a query or a fragment",
                              hint=f"give http(s)://HOST[:PORT][/PATH]; the token goes in {TOKEN_ENV}")
        if not token:
            raise ConfigError(f"{TOKEN_ENV} is not set: the platform at {shown} needs a token",
                              hint=f"set {TOKEN_ENV} to the platform's token (a read-only one is enough for plan)")
        if parts.scheme == "http" and not is_loopback(host):
            raise ConfigError(f"refusing to send the token in {TOKEN_ENV} over plain http to {host}, which is not "
                              "loopback: anyone on the way could read it",
                              hint=f"use https://{parts.netloc}{parts.path}")
        self.url = shown.rstrip("/")
        self.page_size = page_size
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        try:
            self._client = httpx.Client(
                base_url=base, timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
                verify=ssl_context() if parts.scheme == "https" else True, trust_env=False,
                follow_redirects=False,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                         "User-Agent": f"reconciler/{__version__}"})
        except ValueError as e:
            raise ConfigError(f"the platform URL {shown!r} cannot be used: {e}") from None

    # -- one call --------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None,
              ok: Collection[int] = (200,)) -> httpx.Response:
        """The answer to one call, retried as far as that is safe (every route is a read or an idempotent PUT)."""
        attempt = 0
        try:
            for trying in stamina.retry_context(on=_backoff, attempts=ATTEMPTS, timeout=RETRY_BUDGET,
                                                wait_initial=0.1, wait_max=5.0, wait_jitter=0.5):
                with trying:
                    attempt += 1
                    start = time.monotonic()
                    try:
                        resp = self._client.request(method, path, json=body, params=params)
                    except httpx.TransportError as e:
                        log.info("%s %s -> %s %.0fms attempt %d", method, path, type(e).__name__,
                                 (time.monotonic() - start) * 1000, attempt)
                        if _certificate_failure(e):
                            raise PlatformError(f"the platform at {self.url} failed the certificate check: {e}",
                                                hint="fix the server's certificate, or point SSL_CERT_FILE at the "
                                                     "CA that signed it") from None
                        raise
                    log.info("%s %s -> %d %.0fms attempt %d", method, path, resp.status_code,
                             (time.monotonic() - start) * 1000, attempt)
                    if resp.status_code in RETRY_STATUSES and resp.status_code not in ok:
                        raise _Retry(resp)
                    return resp
        except _Retry as e:
            raise self._unknown(method, self._refused(method, path, e.response, attempt)) from None
        except httpx.TimeoutException as e:
            raise self._unknown(method, PlatformError(
                f"the platform at {self.url} did not answer {method} {path} in time ({type(e).__name__}, "
                f"{attempt} attempt(s))", hint="check that it is up; raise read_timeout in [platform] for a slow "
                                               "one")) from None
        except httpx.TransportError as e:
            raise self._unknown(method, PlatformError(
                f"cannot reach the platform at {self.url}: {type(e).__name__}: {e} ({attempt} attempt(s))",
                hint="check the URL and that the server is up")) from None
        raise PlatformError(f"no answer from the platform at {self.url}")  # pragma: no cover - stamina re-raises

    @staticmethod
    def _unknown(method: str, e: PlatformError) -> PlatformError:
        """A PUT that got no final answer may have taken effect: the caller keeps its id to ask for it."""
        e.outcome_unknown = method == "PUT"
        return e

    def _refused(self, method: str, path: str, resp: httpx.Response, attempts: int = 1) -> PlatformError:
        detail = _problem_text(resp)
        if resp.status_code == 401:
            return PlatformError(f"the platform at {self.url} refused the token in {TOKEN_ENV} (401 Unauthorized"
                                 f"{': ' + detail if detail else ''})",
                                 hint=f"set {TOKEN_ENV} to a token this platform accepts")
        if resp.status_code == 403:
            return PlatformError(f"the platform at {self.url} does not let the token in {TOKEN_ENV} do {method} "
                                 f"{path} (403 Forbidden{': ' + detail if detail else ''})",
                                 hint="a read-only token plans but cannot apply: apply with the write token")
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return PlatformError(f"the platform at {self.url} answered {resp.status_code} to {method} {path}{tried}"
                             f"{': ' + detail if detail else ''}")

    def _json(self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        resp = self._call(method, path, body, params)
        if resp.status_code != 200:
            raise self._refused(method, path, resp)
        return self._decode(resp, method, path)

    def _decode(self, resp: httpx.Response, method: str, path: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise PlatformError(f"the platform at {self.url} answered {method} {path} with something that is not "
                                "JSON") from None

    def _parse(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise PlatformError(f"the platform at {self.url} answered {what} with an unexpected document "
                                f"({type(e).__name__}: {e})", hint="is it a Platform API v1 server?") from None

    # -- reads -----------------------------------------------------------------------------------
    def catalog(self) -> dict[str, Service]:
        doc = self._json("GET", "/v1/catalog")
        return self._parse("the catalog", lambda: {s["id"]: Service.from_json(s) for s in doc["services"]})

    def customers(self, ids: Iterable[str]) -> dict[str, Customer]:
        out: dict[str, Customer] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            doc = self._json("POST", "/v1/customers/query", {"ids": chunk})
            out.update(self._parse("customers", lambda d=doc: {  # type: ignore[misc]
                cid: Customer.from_json(c) for cid, c in d["customers"].items()}))
        return out

    def users(self, customers: Collection[str]) -> dict[str, list[User]]:
        wanted = list(dict.fromkeys(customers))
        out: dict[str, list[User]] = {c: [] for c in wanted}
        for chunk in _chunks(wanted):
            cursor: str | None = None
            seen: set[str] = set()
            for _ in range(MAX_PAGES):
                doc = self._json("POST", "/v1/users/query",
                                 {"customers": chunk, "limit": self.page_size, "cursor": cursor})

                def page(d: Any = doc) -> str | None:
                    for cid, users in d["users"].items():
                        if cid in out:
                            out[cid].extend(User.from_json(u) for u in users)
                    nxt = d.get("next")
                    return None if nxt is None else str(nxt)

                cursor = self._parse("users", page)
                if cursor is None:
                    break
                if cursor in seen:
                    raise PlatformError(f"the platform at {self.url} repeated a users cursor: its paging loops")
                seen.add(cursor)
            else:
                raise PlatformError(f"the platform at {self.url} paged users beyond {MAX_PAGES} pages")
        return out

    def usage(self, resellers: Collection[str]) -> dict[str, dict[str, int]]:
        wanted = list(dict.fromkeys(resellers))
        out: dict[str, dict[str, int]] = {r: {} for r in wanted}
        for chunk in _chunks(wanted):
            doc = self._json("POST", "/v1/usage/query", {"resellers": chunk})
            self._parse("usage", lambda d=doc: out.update(  # type: ignore[misc]
                {r: {s: int(n) for s, n in u.items()} for r, u in d["usage"].items() if r in out}))
        return out

    def requests_of(self, customers: Collection[str], pending_only: bool = False) -> dict[str, list[Request]]:
        out: dict[str, list[Request]] = {}
        for chunk in _chunks(list(dict.fromkeys(customers))):
            doc = self._json("POST", "/v1/requests/query", {"customers": chunk, "pending_only": pending_only})
            self._parse("requests", lambda d=doc: out.update(  # type: ignore[misc]
                {cid: [Request.from_json(r) for r in rs] for cid, rs in d["requests"].items() if rs}))
        return out

    def request(self, request_id: str) -> Request | None:
        path = f"/v1/requests/{quote(request_id, safe='')}"
        resp = self._call("GET", path)
        if resp.status_code in (404, 422):  # 422: not an id the platform could have
            return None
        if resp.status_code != 200:
            raise self._refused("GET", path, resp)
        doc = self._decode(resp, "GET", path)
        return self._parse(f"request {request_id}", lambda: Request.from_json(doc))

    def search(self, text: str, limit: int = 3) -> list[str]:
        if not 1 <= len(text) <= 128:
            return []
        doc = self._json("GET", "/v1/search", params={"q": text, "limit": max(1, min(limit, 20))})
        return self._parse("search", lambda: [str(i) for i in doc["ids"]])

    # -- requests --------------------------------------------------------------------------------
    def submit(self, request_id: str, order: MoveOrder) -> Request:
        """PUT under the client's id: a retried submit (same body) is answered 200, never a second request."""
        path = f"/v1/requests/{quote(request_id, safe='')}"
        resp = self._call("PUT", path, order.to_json(), ok=(200, 201))
        if resp.status_code == 409:
            raise RequestConflict(request_id, f"request {request_id} exists on the platform at {self.url} with "
                                              "another body: someone else submitted it (409 Conflict)")
        if resp.status_code not in (200, 201):
            raise self._refused("PUT", path, resp)
        doc = self._decode(resp, "PUT", path)
        return self._parse(f"request {request_id}", lambda: Request.from_json(doc))

    def export(self) -> dict[str, Any]:
        doc = self._json("GET", "/v1/export")
        if not isinstance(doc, dict) or doc.get("kind") != "Platform":
            raise PlatformError(f"the platform at {self.url} answered the export with something else than a "
                                "Platform document")
        return doc

    def close(self) -> None:
        self._client.close()


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), MAX_IDS):
        yield ids[i:i + MAX_IDS]


def _problem_text(resp: httpx.Response) -> str:
    """The title/detail of a problem document, short; never the body of something else."""
    try:
        doc = resp.json()
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    parts = [str(doc[k]) for k in ("title", "detail") if isinstance(doc.get(k), str) and doc.get(k)]
    return ": ".join(parts)[:300]
