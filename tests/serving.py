"""`reconcile platform serve` as a real subprocess on loopback, for the HTTP tests (every wait bounded)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from conftest import RECONCILE_BIN, subprocess_env

WRITE_TOKEN = "write-tok-5e1f0c2a9b"
READ_TOKEN = "read-tok-77d0aa31c4"
READY = re.compile(r"serving (\S+) at (https?://\S+)")


@dataclass
class Served:
    url: str
    db_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    ready_line: str = ""

    def client(self, token: str | None = WRITE_TOKEN, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kw)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal it and wait (a kill past `timeout`); its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"the server did not exit within {timeout} s of signal {signum}") from None

    def stderr(self) -> str:
        return self.log.read_text("utf-8", "replace")


def start(db_url: str, workdir: Path, *args: str, env: dict[str, str] | None = None,
          listen: str = "127.0.0.1:0", timeout: float = 30) -> Served:
    """Start `reconcile platform serve` and wait (bounded) for its `serving ... at URL` line."""
    environment = subprocess_env(RECONCILE_SERVER_TOKEN=WRITE_TOKEN, RECONCILE_SERVER_READ_TOKEN=READ_TOKEN)
    environment.update(env or {})
    log = workdir / f"server-{time.monotonic_ns()}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(RECONCILE_BIN), "platform", "serve", "--platform", db_url, "--listen", listen,
                                 *args], cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                env=environment)
    assert proc.stdout is not None
    fd, buf = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            m = READY.search(buf.decode("utf-8", "replace"))
            if m and buf.endswith(b"\n"):
                return Served(m.group(2), m.group(1), proc, log, args, environment, buf.decode())
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
    proc.kill()
    proc.wait(timeout=10)
    raise AssertionError(f"the server printed no ready line within {timeout} s: stdout {buf!r}, "
                         f"stderr {log.read_text('utf-8', 'replace')[-2000:]}")


@contextlib.contextmanager
def serving(db_url: str, workdir: Path, *args: str, **kw: Any) -> Iterator[Served]:
    served = start(db_url, workdir, *args, **kw)
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(timeout=10)
        if served.proc.stdout is not None:
            served.proc.stdout.close()


def until(what: Callable[[], Any], timeout: float = 20, step: float = 0.05) -> Any:
    """Poll `what` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what}")
        time.sleep(step)
