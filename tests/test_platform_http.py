"""The HTTP provider against the real reference server on loopback (and, for retries, a scripted peer on a
real socket): plan and apply over HTTP equal the embedded result; tokens, TLS, retries, 409, --verbose."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stamina
import yaml
from conftest import RECONCILE_BIN, SECRETS, init_platform, subprocess_env
from peers import READ_TOKEN, TOKEN, serving
from test_server import ACME_ORDER, _self_signed

from reconciler.errors import ConfigError, PlatformError
from reconciler.model import conceal_customer, conceal_user, secrets_of
from reconciler.platforms import http as http_provider
from reconciler.platforms import open_platform
from reconciler.platforms.http import HttpPlatform

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SEED = ROOT / "examples" / "platform.yaml"
EXAMPLE_MOVES = ROOT / "examples" / "moves"
CALL = re.compile(r"^(GET|POST|PUT) /v1/\S+ -> (\d{3}|\w+) \d+ms attempt \d+$")


def run(cwd: Path, *args: str, token: str | None = TOKEN,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(**({"RECONCILE_TOKEN": token} if token else {}))
    return subprocess.run([str(RECONCILE_BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


def _workspace(root: Path) -> str:
    root.mkdir(parents=True)
    shutil.copytree(EXAMPLE_MOVES, root / "moves")
    return init_platform(root, EXAMPLE_SEED)


def _comparable_export(doc: dict[str, Any]) -> dict[str, Any]:
    for r in doc["requests"]:
        r.pop("submitted_at", None)
        r.pop("completed_at", None)
    doc["requests"].sort(key=lambda r: r["id"])  # moves run in parallel: submission order varies
    return doc


def _comparable_state(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    return {name: (rec["status"], [(r["id"], r["status"], r["error"]) for r in rec["requests"]])
            for name, rec in doc["moves"].items()}


# -- the whole loop --------------------------------------------------------------------------------------
def _report(out: str) -> str:
    return "".join(line for line in out.splitlines(keepends=True) if not line.startswith(("✓ ", "✗ ", "… ")))


def test_plan_and_apply_over_http_equal_the_embedded_result(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    local_db, remote_db = _workspace(local), _workspace(remote)
    with serving(remote_db, remote, "--provision-seconds", "0.2") as s:
        where_l = ["--platform", local_db, "--state", str(local / "state.json")]
        where_r = ["--platform", s.url, "--state", str(remote / "state.json")]
        plan_l = run(local, "plan", "moves", "--format", "json", *where_l)
        plan_r = run(remote, "plan", "moves", "--format", "json", *where_r, token=READ_TOKEN)
        assert (plan_l.returncode, plan_r.returncode) == (0, 0), plan_r.stderr
        pl, pr = json.loads(plan_l.stdout), json.loads(plan_r.stdout)
        assert pr["platform"]["url"] == s.url
        assert pl["platform"]["fingerprint"] == pr["platform"]["fingerprint"]
        assert pl["moves"] == pr["moves"] and pl["summary"] == pr["summary"]

        apply_l = run(local, "apply", "moves", "--auto-approve", *where_l)
        apply_r = run(remote, "apply", "moves", "--auto-approve", *where_r)
        assert apply_l.returncode == apply_r.returncode, apply_r.stderr
        # the report, without the progress lines (one per move as it finishes: timings and order vary)
        assert _report(apply_l.stdout).replace(local_db, "URL") == _report(apply_r.stdout).replace(s.url, "URL")
        assert _comparable_state(local / "state.json") == _comparable_state(remote / "state.json")

        export_r = run(remote, "platform", "export", "--format", "json", "--platform", s.url)
        export_l = run(local, "platform", "export", "--format", "json", "--platform", local_db)
        assert export_r.returncode == 0, export_r.stderr
        assert _comparable_export(json.loads(export_l.stdout)) == _comparable_export(json.loads(export_r.stdout))
        # and every plan of the batch is a no-op afterwards
        again = run(remote, "plan", "moves", "--format", "json", *where_r, token=READ_TOKEN)
        assert again.returncode == 0 and json.loads(again.stdout)["summary"]["moves"] == 0, again.stdout[:500]


def test_export_and_new_move_through_http_with_the_read_token(tmp_path: Path) -> None:
    db = init_platform(tmp_path)  # tests/fixtures/platform.yaml: vault holds sensitive values
    with serving(db, tmp_path) as s:
        exp = run(tmp_path, "platform", "export", "--platform", s.url, token=READ_TOKEN)
        assert exp.returncode == 0, exp.stderr
        doc = yaml.safe_load(exp.stdout)
        assert doc["kind"] == "Platform" and {c["id"] for c in doc["customers"]} >= {"acme", "vault"}
        for secret in SECRETS:
            assert secret not in exp.stdout + exp.stderr
        nm = run(tmp_path, "new-move", "acme", "northwind", "--platform", s.url, token=READ_TOKEN)
        local = run(tmp_path, "new-move", "acme", "northwind", "--platform", db)
        assert (nm.returncode, nm.stdout) == (0, local.stdout)


def test_a_409_on_submit_is_recorded_as_the_moves_failure(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    db = _workspace(root)
    with serving(db, root) as s:
        where = ["--platform", s.url, "--state", str(root / "state.json")]
        plan = json.loads(run(root, "plan", "moves/02-acme-to-northwind.yaml", "--format", "json", *where).stdout)
        rid = plan["moves"][0]["requests"][0]["id"]
        with s.client() as c:  # someone else takes the id with another body (for another customer: acme's
            # own history, which its request ids derive from, stays as it was)
            order = {**ACME_ORDER.to_json(), "customer": "someone-else"}
            assert c.put(f"/v1/requests/{rid}", json=order).status_code == 201
        r = run(root, "apply", "moves/02-acme-to-northwind.yaml", "--auto-approve", *where)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "Traceback" not in r.stderr
        msg = (f"request {rid} exists on the platform at {s.url} with another body: someone else submitted it "
               "(409 Conflict)")
        assert msg in r.stdout
        rec = json.loads((root / "state.json").read_text())["moves"]["acme-to-northwind"]
        assert rec["status"] == "failed"
        assert [(q["id"], q["status"], q["error"]) for q in rec["requests"]] == [(rid, "Failed", msg)]


# -- tokens ----------------------------------------------------------------------------------------------
def test_token_is_never_sent_over_plain_http_off_loopback(tmp_path: Path) -> None:
    peer = _Peer([])  # a listener that must never be asked
    with peer:
        r = run(tmp_path, "new-move", "acme", "northwind", "--platform", "http://example.invalid:8700")
        assert r.returncode == 1
        assert r.stderr == ("error: refusing to send the token in RECONCILE_TOKEN over plain http to example.invalid, "
                            "which is not loopback: anyone on the way could read it\n"
                            "  hint: use https://example.invalid:8700\n")
        with pytest.raises(ConfigError, match="over plain http to 10.0.0.8"):
            HttpPlatform("http://10.0.0.8:80", "secret-token")
        HttpPlatform(f"http://localhost:{peer.port}", "t").close()  # loopback is fine
        HttpPlatform(f"http://[::1]:{peer.port}", "t").close()
    assert peer.hits == []


def test_token_errors_say_which_variable(tmp_path: Path) -> None:
    db = init_platform(tmp_path)
    with serving(db, tmp_path) as s:
        r = run(tmp_path, "new-move", "acme", "northwind", "--platform", s.url, token=None)
        assert (r.returncode, r.stderr) == (1, f"error: RECONCILE_TOKEN is not set: the platform at {s.url} needs a "
                                               "token\n  hint: set RECONCILE_TOKEN to the platform's token (a "
                                               "read-only one is enough for plan)\n")
        r = run(tmp_path, "new-move", "acme", "northwind", "--platform", s.url, token="wrong-token-123")
        assert r.returncode == 1
        assert r.stderr.startswith(f"error: the platform at {s.url} refused the token in RECONCILE_TOKEN (401 "
                                   "Unauthorized: Unauthorized: the token is not valid for this server)\n")
        assert "wrong-token-123" not in r.stderr
        p = HttpPlatform(s.url, READ_TOKEN)
        try:
            with pytest.raises(PlatformError) as e:
                p.submit("rq-x", ACME_ORDER)
            assert e.value.message.startswith(f"the platform at {s.url} does not let the token in RECONCILE_TOKEN "
                                              "do PUT /v1/requests/rq-x (403 Forbidden")
        finally:
            p.close()


def test_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as e:
        HttpPlatform("https://user:hunter2@platform.example/", "t")
    assert "hunter2" not in str(e.value)
    assert e.value.message == ("the platform URL 'https://user@platform.example/' carries credentials, a query or "
                               "a fragment")


# -- --verbose -------------------------------------------------------------------------------------------
def test_verbose_logs_each_call_without_token_or_values(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    db = _workspace(root)
    with serving(db, root) as s:
        r = run(root, "--verbose", "plan", "moves", "--platform", s.url, "--state", str(root / "state.json"),
                token=READ_TOKEN)
    assert r.returncode == 0, r.stderr
    calls = [line for line in r.stderr.splitlines() if CALL.match(line)]
    assert calls and all(line.endswith("attempt 1") for line in calls)
    assert calls[0].startswith("POST /v1/customers/query -> 200 ")
    # 6 moves of the example: a handful of batch calls, never one per customer or user
    assert len(calls) <= 8, calls
    # one read cache per run: the planner's second look at a customer's users or a reseller's usage (drift,
    # duplicates, capacity) costs no call; the 6 moves' users fit one page
    routes = [" ".join(line.split()[:2]) for line in calls]
    assert routes.count("POST /v1/users/query") == routes.count("POST /v1/usage/query") == 1, calls
    for text in (r.stdout, r.stderr):
        assert READ_TOKEN not in text and "Bearer" not in text
    quiet = run(root, "plan", "moves", "--platform", db, "--state", str(root / "state.json"))
    assert not [line for line in quiet.stderr.splitlines() if CALL.match(line)]


def test_a_run_reads_the_catalog_once_and_searches_for_each_unknown_id_once(tmp_path: Path) -> None:
    """Review of issue 14: the catalog was fetched by the outcome refresh, the snapshot and the execution; a
    reseller id mistyped in two manifests was searched for twice."""
    root = tmp_path / "ws"
    db = _workspace(root)
    typos = root / "typos"
    typos.mkdir()
    for name in ("01-blueyonder-to-adatum.yaml", "02-acme-to-northwind.yaml"):  # two customers, one typo
        text = (root / "moves" / name).read_text("utf-8")
        (typos / name).write_text(re.sub(r"toReseller: \S+", "toReseller: adatumm", text), "utf-8")
    where = ["--state", str(root / "state.json")]

    def routes(r: subprocess.CompletedProcess[str]) -> list[str]:
        return [" ".join(line.split()[:2]) for line in r.stderr.splitlines() if CALL.match(line)]

    with serving(db, root) as s:
        bad = run(root, "--verbose", "plan", "typos", "--platform", s.url, *where)
        assert bad.returncode == 1 and "did you mean 'adatum'?" in bad.stderr, bad.stderr
        assert routes(bad).count("GET /v1/search") == 1, routes(bad)
        applied = run(root, "--verbose", "apply", "moves", "--auto-approve", "--platform", s.url, *where)
        assert applied.returncode == 0, applied.stderr
        assert routes(applied).count("GET /v1/catalog") == 1, routes(applied)


# -- retries, on a scripted peer -------------------------------------------------------------------------
class _Peer:
    """A real HTTP listener on loopback answering from a script: (status, headers, body) per call."""

    def __init__(self, script: list[tuple[int, dict[str, str], Any]]) -> None:
        self.script = list(script)
        self.hits: list[str] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                peer.hits.append(f"{self.command} {self.path} {self.headers.get('Authorization')}")
                status, headers, body = peer.script.pop(0) if peer.script else (500, {}, {"title": "no script"})
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> _Peer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


CATALOG = {"services": [{"id": "mail", "name": "Mail", "properties": {"quota": {"type": "integer"}}}]}


@pytest.fixture
def peer() -> Callable[[list[tuple[int, dict[str, str], Any]]], _Peer]:
    made: list[_Peer] = []

    def make(script: list[tuple[int, dict[str, str], Any]]) -> _Peer:
        p = _Peer(script)
        made.append(p)
        return p.__enter__()

    yield make  # type: ignore[misc]
    for p in made:
        p.__exit__(None, None, None)


def test_retries_502_503_504_and_429_honouring_retry_after(peer: Callable[..., _Peer]) -> None:
    p = peer([(503, {"Retry-After": "1"}, {"title": "busy"}), (502, {}, {}), (504, {}, {}),
              (429, {"Retry-After": "0"}, {}), (200, {}, CATALOG)])
    client = HttpPlatform(p.url, "tok-1")
    try:
        start = time.monotonic()
        assert list(client.catalog()) == ["mail"]
        assert time.monotonic() - start >= 1.0  # Retry-After: 1 was waited for
    finally:
        client.close()
    assert p.hits == ["GET /v1/catalog Bearer tok-1"] * 5


@pytest.mark.parametrize("status", [400, 404, 409, 422, 500])
def test_never_retries_other_statuses(peer: Callable[..., _Peer], status: int) -> None:
    p = peer([(status, {"Content-Type": "application/problem+json"}, {"title": "Nope", "detail": "bad ids"}),
              (200, {}, CATALOG)])
    client = HttpPlatform(p.url, "tok-1")
    try:
        with pytest.raises(PlatformError) as e:
            client.catalog()
    finally:
        client.close()
    assert e.value.message == f"the platform at {p.url} answered {status} to GET /v1/catalog: Nope: bad ids"
    assert len(p.hits) == 1


def test_a_retried_submit_is_answered_by_the_same_request(tmp_path: Path) -> None:
    db = init_platform(tmp_path)
    with serving(db, tmp_path, "--provision-seconds", "30") as s:
        client = HttpPlatform(s.url, TOKEN)
        try:
            first = client.submit("rq-same", ACME_ORDER)
            second = client.submit("rq-same", ACME_ORDER)  # as a retry after a lost answer would
            assert (first.id, first.status, second.id) == ("rq-same", "Requested", "rq-same")
            assert [r.id for r in client.requests_of(["acme"])["acme"]] == ["rq-same"]
            assert client.request("rq-unknown") is None
        finally:
            client.close()


def test_unreachable_is_retried_then_one_clear_error(tmp_path: Path) -> None:
    with _Peer([]) as p:
        url = p.url
    client = HttpPlatform(url, "t")  # nothing listens there any more
    try:
        with stamina.set_testing(True, attempts=3), pytest.raises(PlatformError) as e:
            client.catalog()
    finally:
        client.close()
    assert e.value.message.startswith(f"cannot reach the platform at {url}: ConnectError")
    assert e.value.message.endswith("(3 attempt(s))")


def test_a_failed_certificate_check_is_never_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    cert, key = _self_signed(tmp_path)
    db = init_platform(tmp_path)
    with serving(db, tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)) as s:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        caplog.set_level("INFO", logger="reconciler.http")
        client = HttpPlatform(s.url, TOKEN)
        try:
            with pytest.raises(PlatformError) as e:
                client.catalog()
        finally:
            client.close()
        assert e.value.message.startswith(f"the platform at {s.url} failed the certificate check")
        assert len([r for r in caplog.records if r.name == "reconciler.http"]) == 1
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the CA that signed it: verified, and fine
        monkeypatch.setenv("RECONCILE_TOKEN", TOKEN)
        trusting = open_platform(s.url)
        try:
            assert "hosted-exchange" in trusting.catalog()
        finally:
            trusting.close()


def test_users_are_paged_and_batched(tmp_path: Path) -> None:
    db = init_platform(tmp_path)
    with serving(db, tmp_path) as s:
        client = HttpPlatform(s.url, READ_TOKEN)
        local = open_platform(db)
        try:
            ids = ["acme", "vault", "ghost", "contoso"]
            secret = secrets_of(local.catalog())  # the read token gets a digest in place of each sensitive value
            assert {c: [u.to_json() for u in us] for c, us in client.users(ids).items()} == {
                c: [conceal_user(u.to_json(), secret) for u in us] for c, us in local.users(ids).items()}
            assert client.usage(["northwind", "contoso", "ghost"]) == local.usage(["northwind", "contoso", "ghost"])
            assert {c: x.to_json() for c, x in client.customers(ids).items()} == {
                c: conceal_customer(x.to_json(), secret) for c, x in local.customers(ids).items()}
            assert client.catalog() == local.catalog()
            assert client.search("acm") == local.search("acm") == ["acme"]
            assert client.search("") == []
        finally:
            client.close()
            local.close()


def test_providers_lists_the_builtins(tmp_path: Path) -> None:
    r = run(tmp_path, "platform", "providers")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SCHEME", "DISTRIBUTION", "VERSION"]
    assert [line.split()[:2] for line in lines[1:4]] == [["sqlite://", "reconciler"], ["http://", "reconciler"],
                                                         ["https://", "reconciler"]]


def test_module_constants_keep_the_contract() -> None:
    assert http_provider.PAGE_SIZE >= 500
    assert set(http_provider.RETRY_STATUSES) == {429, 502, 503, 504}


def test_a_submit_without_a_final_answer_may_have_taken_effect(peer: Callable[..., _Peer]) -> None:
    """apply keeps the journaled id of such a submit (and asks for it first next time); a read is just an error."""
    p = peer([(503, {}, {"title": "busy"})] * 4)
    client = HttpPlatform(p.url, "tok-1")
    try:
        with stamina.set_testing(True, attempts=2):
            with pytest.raises(PlatformError) as put:
                client.submit("rq-1", ACME_ORDER)
            with pytest.raises(PlatformError) as get:
                client.request("rq-1")
    finally:
        client.close()
    assert put.value.outcome_unknown is True and get.value.outcome_unknown is False
    assert put.value.message == f"the platform at {p.url} answered 503 to PUT /v1/requests/rq-1 after 2 attempts: busy"
    assert [h.split()[0] for h in p.hits] == ["PUT", "PUT", "GET", "GET"]
