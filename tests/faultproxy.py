"""A fault-injecting HTTP proxy for tests: between `reconcile` and the Platform API, on loopback.

  python tests/faultproxy.py --upstream URL [--listen HOST:PORT] [--seed N] [--rate R]
                             [--faults reset,lost,503,502-after,duplicate,delay] [--max-delay S]

Prints `proxy at http://HOST:PORT` (one line, flushed) when ready. Each request it receives draws a
fault with probability R (0.2 by default), the kind uniformly among --faults, from a seeded random
generator:

  reset       the connection is reset before anything is forwarded (the request never happened)
  lost        the request is forwarded and takes effect, then the client's connection is reset
              (the response is lost: the client cannot tell this from `reset`)
  503         503 Service Unavailable before forwarding (the request never happened)
  502-after   the request is forwarded and takes effect, then 502 Bad Gateway instead of its answer
  duplicate   the request is delivered twice, at once (a duplicate on the network); the client gets
              the answer of the first delivery
  delay       the request waits up to --max-delay seconds, then goes through

`GET /_faults` (never faulted) answers the counts so far as JSON: per kind, plus `requests` (all
requests proxied) and `faults` (the total). SIGTERM or SIGINT prints the same counts as one line
`faults {...}` on stdout and exits 0. It listens on loopback only and forwards to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from reconciler.urls import is_loopback

KINDS = ("reset", "lost", "503", "502-after", "duplicate", "delay")
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
IDLE_SECONDS = 120.0  # a client connection idle this long is closed
UPSTREAM_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "host", "content-length", "accept-encoding", "content-encoding"}


@dataclass
class Incoming:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    keep_alive: bool


@dataclass
class Proxy:
    upstream: str
    rng: random.Random
    rate: float
    kinds: tuple[str, ...]
    max_delay: float
    counts: Counter[str] = field(default_factory=Counter)
    client: httpx.AsyncClient | None = None

    def summary(self) -> dict[str, int]:
        out = {k: self.counts.get(k, 0) for k in self.kinds}
        out["faults"] = sum(out.values())
        out["requests"] = self.counts.get("requests", 0)
        return out

    def draw(self) -> str | None:
        if self.kinds and self.rng.random() < self.rate:
            return self.rng.choice(self.kinds)
        return None

    async def forward(self, req: Incoming) -> httpx.Response:
        assert self.client is not None
        headers = [(k, v) for k, v in req.headers if k.lower() not in HOP_BY_HOP]
        r = await self.client.request(req.method, self.upstream + req.target, headers=headers, content=req.body)
        await r.aread()
        return r

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    req = await asyncio.wait_for(read_request(reader), IDLE_SECONDS)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError,
                        asyncio.LimitOverrunError):
                    return
                if req is None:
                    return
                if req.method == "GET" and req.target.split("?")[0] == "/_faults":
                    await respond(writer, 200, [("content-type", "application/json")],
                                  json.dumps(self.summary()).encode(), req.keep_alive)
                else:
                    self.counts["requests"] += 1
                    if not await self.serve(req, writer):
                        return
                if not req.keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def serve(self, req: Incoming, writer: asyncio.StreamWriter) -> bool:
        """Answer one request, with its fault if one is drawn; False: the connection is gone."""
        fault = self.draw()
        if fault:
            self.counts[fault] += 1
        if fault == "reset":
            reset(writer)
            return False
        if fault == "503":
            await respond(writer, 503, *problem(503, "Service Unavailable (injected by the fault proxy)"),
                          req.keep_alive)
            return True
        if fault == "delay":
            await asyncio.sleep(self.rng.uniform(0, self.max_delay))
        try:
            if fault == "duplicate":
                first, _ = await asyncio.gather(self.forward(req), self.forward(req))
                answer = first
            else:
                answer = await self.forward(req)
        except httpx.HTTPError as e:  # the upstream is down (a server killed on purpose): say so, as a gateway does
            await respond(writer, 502, *problem(502, f"upstream unreachable: {type(e).__name__}"), req.keep_alive)
            return True
        if fault == "lost":
            reset(writer)
            return False
        if fault == "502-after":
            await respond(writer, 502, *problem(502, "Bad Gateway (injected by the fault proxy, after forwarding)"),
                          req.keep_alive)
            return True
        headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in HOP_BY_HOP]
        await respond(writer, answer.status_code, headers, answer.content, req.keep_alive, answer.reason_phrase)
        return True


def problem(status: int, title: str) -> tuple[list[tuple[str, str]], bytes]:
    body = json.dumps({"type": "about:blank", "title": title, "status": status}).encode()
    return [("content-type", "application/problem+json")], body


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0): the client sees `connection reset by peer`."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def read_request(reader: asyncio.StreamReader) -> Incoming | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None  # the client closed between requests
        raise
    if len(head) > MAX_HEAD:
        raise ValueError("head too large")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
    h = {k.lower(): v for k, v in headers}
    if "chunked" in h.get("transfer-encoding", "").lower():
        body = await read_chunked(reader)
    else:
        n = int(h.get("content-length", "0") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        body = await reader.readexactly(n)
    conn = h.get("connection", "").lower()
    keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
    return Incoming(method, target, headers, body, keep)


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if len(body) > MAX_BODY:
            raise ValueError("body too large")
        await reader.readexactly(2)


async def respond(writer: asyncio.StreamWriter, status: int, headers: list[tuple[str, str]], body: bytes,
                  keep_alive: bool, reason: str = "") -> None:
    from http import HTTPStatus

    reason = reason or (HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
    out = [f"HTTP/1.1 {status} {reason}"]
    out += [f"{k}: {v}" for k, v in headers]
    out.append(f"content-length: {len(body)}")
    out.append("connection: keep-alive" if keep_alive else "connection: close")
    writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()




async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--upstream", required=True, help="the Platform API to forward to (loopback only)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT on loopback (port 0: any free one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0.2, help="probability that a request gets a fault")
    ap.add_argument("--faults", default=",".join(KINDS), help="comma-separated kinds: " + ",".join(KINDS))
    ap.add_argument("--max-delay", type=float, default=0.3, help="the longest `delay`, in seconds")
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.faults.split(",") if k)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not 0 <= args.rate <= 1:
        ap.error(f"unknown fault kinds {unknown}" if unknown else "--rate must be within [0, 1]")
    up = urlsplit(args.upstream)
    host, _, port = args.listen.rpartition(":")
    if up.scheme != "http" or not up.hostname or not is_loopback(up.hostname) or not is_loopback(host):
        ap.error("the proxy forwards from loopback to a plain-http loopback upstream only")
    proxy = Proxy(args.upstream.rstrip("/"), random.Random(args.seed), args.rate, kinds, args.max_delay)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, limits=httpx.Limits(max_connections=64)) as client:
        proxy.client = client
        server = await asyncio.start_server(proxy.handle, host, int(port), limit=MAX_HEAD)
        bound = server.sockets[0].getsockname()
        sys.stdout.write(f"proxy at http://{bound[0]}:{bound[1]}\n")
        sys.stdout.flush()
        await stop.wait()
        server.close()  # no wait_closed(): idle keep-alive connections would hold it up to IDLE_SECONDS
    sys.stdout.write(f"faults {json.dumps(proxy.summary())}\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
