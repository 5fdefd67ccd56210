"""URLs as they may be shown: never with a password or a token in them."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_KEYS = ("password", "passwd", "pwd", "token", "secret", "key", "sslpassword", "auth")


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 (with or without brackets): the only hosts a token may reach over plain
    http, and the only ones a server may listen on without TLS."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def scheme_of(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep and head else ""


def redact(url: str, drop: bool = False) -> str:
    """`postgres://u:pw@db/x?password=p` -> `postgres://u@db/x?password=***`: safe for logs, errors and files.
    With `drop`, secret query parameters are left out instead (`postgres://u@db/x`): what a file records."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that does not parse>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_KEYS for k, _ in pairs):
            kept = [(k, v) for k, v in pairs if k.lower() not in _SECRET_KEYS] if drop else \
                [(k, "***" if k.lower() in _SECRET_KEYS else v) for k, v in pairs]
            query = urlencode(kept, safe="*/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
