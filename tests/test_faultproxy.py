"""The fault proxy (tests/faultproxy.py) does what it says, against a small counting upstream on loopback.

The exactly-once tests trust its counts; this proves each kind of fault: whether the request reached the
upstream (how many times), and what the client saw.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from peers import Proxy


class Upstream(http.server.ThreadingHTTPServer):
    hits: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        assert isinstance(self.server, Upstream)
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n)
        self.server.hits += 1
        out = b'{"echo": "' + body + b'", "path": "' + self.path.encode() + b'"}'
        self.send_response(201 if self.command == "PUT" else 200)
        self.send_header("content-type", "application/json")
        self.send_header("retry-after", "0")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=10)


def url_of(server: Upstream) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def put(url: str) -> httpx.Response:
    with httpx.Client(timeout=10) as c:
        return c.put(f"{url}/v1/requests/r1", content=b"abc", headers={"content-type": "application/json"})


@pytest.mark.parametrize(("kind", "hits", "seen"), [
    ("reset", 0, "error"),
    ("lost", 1, "error"),
    ("503", 0, 503),
    ("502-after", 1, 502),
    ("duplicate", 2, 201),
    ("delay", 1, 201),
])
def test_each_fault(upstream: Upstream, tmp_path: Path, kind: str, hits: int, seen: int | str) -> None:
    with Proxy(url_of(upstream), tmp_path / "proxy", "--rate", "1", "--faults", kind, "--max-delay", "0.05") as p:
        try:
            got: int | str = put(p.url).status_code
        except httpx.TransportError:
            got = "error"
        assert got == seen
        deadline = time.monotonic() + 10  # a duplicate's second delivery may land just after the answer
        while upstream.hits < hits and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.hits == hits
        counts = p.faults()
        assert counts[kind] == 1 and counts["faults"] == 1 and counts["requests"] == 1
    assert p.proc is not None and p.proc.returncode == 0
    assert 'faults {"' + kind + '": 1' in p.output()


def test_no_fault_passes_everything_through(upstream: Upstream, tmp_path: Path) -> None:
    with Proxy(url_of(upstream), tmp_path / "proxy", "--rate", "0") as p, httpx.Client(timeout=10) as c:
        r = c.put(f"{p.url}/v1/requests/r1?x=1", content=b"abc")
        assert (r.status_code, r.json()) == (201, {"echo": "abc", "path": "/v1/requests/r1?x=1"})
        assert r.headers["retry-after"] == "0"
        for _ in range(5):  # one kept-alive connection, many requests
            assert c.get(f"{p.url}/v1/x").status_code == 200
        assert p.faults() == {**dict.fromkeys(("reset", "lost", "503", "502-after", "duplicate", "delay"), 0),
                              "faults": 0, "requests": 6}
    assert upstream.hits == 6


def test_a_seeded_rate_is_reproducible(upstream: Upstream, tmp_path: Path) -> None:
    seen = []
    for run in range(2):
        with Proxy(url_of(upstream), tmp_path / f"proxy{run}", "--rate", "0.5", "--seed", "7",
                   "--faults", "503") as p:
            with httpx.Client(timeout=10) as c:
                seen.append([c.get(f"{p.url}/v1/x").status_code for _ in range(20)])
            assert p.faults()["503"] == seen[-1].count(503)
    assert seen[0] == seen[1] and 0 < seen[0].count(503) < 20


@pytest.mark.parametrize("args", [["--upstream", "http://example.com"], ["--upstream", "http://127.0.0.1:1",
                                                                       "--listen", "0.0.0.0:0"],
                                  ["--upstream", "http://127.0.0.1:1", "--faults", "fire"]])
def test_loopback_only_and_known_faults(args: list[str]) -> None:
    import subprocess
    import sys

    from peers import FAULTPROXY

    r = subprocess.run([sys.executable, str(FAULTPROXY), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "error:" in r.stderr
