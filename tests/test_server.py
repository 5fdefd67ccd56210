"""The reference server (`reconcile platform serve`), over real loopback sockets: the Platform API document,
auth with the write and the read-only token, idempotent submit, asynchronous provisioning, kill -9 and
SIGTERM, bounded bodies, paging."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RECONCILE_BIN, SECRETS, SEED, generated_seed, init_platform, subprocess_env
from peers import READ_TOKEN, TOKEN, Served, serving, until

from reconciler.model import MoveOrder, Subscription, conceal
from reconciler.platforms import server
from reconciler.platforms.sqlite import SqlitePlatform

ROOT = Path(__file__).resolve().parents[1]

# vault -> woodgrove (the fixture's move with a sensitive override), as apply would submit it.
VAULT_ORDER = MoveOrder("vault", "woodgrove",
                        {"hosted-exchange": Subscription("exchange-basic", "standard",
                                                         {"journalPassword": "new-Secret-7d1"})},
                        {"hosted-exchange": {"standard": "standard"}})
ACME_ORDER = MoveOrder("acme", "northwind",
                       {"hosted-exchange": Subscription("nw-exchange", "nw-standard", {}),
                        "sharepoint": Subscription("sp-basic", "standard", {})},
                       {"hosted-exchange": {"standard": "nw-standard", "premium": "premium"},
                        "sharepoint": {"standard": "standard"}})


@pytest.fixture
def db(tmp_path: Path) -> str:
    return init_platform(tmp_path)


def _wait_status(s: Served, rid: str, statuses: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
    with s.client() as c:
        def done() -> dict[str, Any] | None:
            r = c.get(f"/v1/requests/{rid}")
            return r.json() if r.status_code == 200 and r.json()["status"] in statuses else None

        return until(done, timeout)  # type: ignore[no-any-return]


def _fixture_orders() -> None:
    """The orders above are valid for the fixture seed (else the lifecycle tests below would test a refusal)."""
    doc = yaml.safe_load(SEED.read_text())
    by = {c["id"]: c for c in doc["customers"]}
    for o in (VAULT_ORDER, ACME_ORDER):
        offers = by[o.to_reseller]["reseller"]["services"]
        for svc, sub in o.subscriptions.items():
            assert sub.plan in offers[svc]["plans"] and sub.sal in offers[svc]["sals"], (svc, sub)


# -- the document ----------------------------------------------------------------------------------------
def test_api_document_is_valid_openapi_3_1_and_shipped() -> None:
    from openapi_spec_validator import validate

    doc = yaml.safe_load((ROOT / "schemas" / "platform-api.yaml").read_text())
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert server.api_document() == doc
    assert doc["paths"]["/v1/health"]["get"]["security"] == []
    put = doc["paths"]["/v1/requests/{id}"]["put"]["responses"]
    assert {"200", "201", "403", "409"} <= set(put)


def test_orders_fit_the_fixture() -> None:
    _fixture_orders()


# -- auth ------------------------------------------------------------------------------------------------
ROUTES = [("GET", "/v1/catalog", None), ("POST", "/v1/customers/query", {"ids": ["acme"]}),
          ("POST", "/v1/users/query", {"customers": ["acme"]}), ("POST", "/v1/usage/query", {"resellers": ["contoso"]}),
          ("POST", "/v1/requests/query", {"customers": ["acme"]}), ("GET", "/v1/requests/rq-1", None),
          ("PUT", "/v1/requests/rq-1", VAULT_ORDER.to_json()), ("GET", "/v1/export", None),
          ("GET", "/v1/search?q=acme", None)]


def test_every_route_but_health_needs_a_token_and_read_token_cannot_submit(db: str, tmp_path: Path) -> None:
    with serving(db, tmp_path) as s:
        with s.client(token=None) as anon:
            assert anon.get("/v1/health").json() == {"status": "ok"}
            for method, path, body in ROUTES:
                r = anon.request(method, path, json=body)
                assert r.status_code == 401, (method, path)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["status"] == 401 and r.headers["www-authenticate"].startswith("Bearer")
        with s.client(token="not-the-token") as wrong:
            assert wrong.get("/v1/catalog").status_code == 401
        with s.client(token=READ_TOKEN) as ro:
            for method, path, body in ROUTES:
                r = ro.request(method, path, json=body)
                want = 403 if method == "PUT" else (404 if path == "/v1/requests/rq-1" else 200)
                assert r.status_code == want, (method, path, r.text)
            assert ro.put("/v1/requests/rq-1", json=VAULT_ORDER.to_json()).json()["detail"] == (
                "the read-only token cannot submit requests; use the write token")
        with s.client() as rw:  # nothing was submitted by the read token
            assert rw.get("/v1/requests/rq-1").status_code == 404


def test_read_token_never_sees_a_sensitive_value(db: str, tmp_path: Path) -> None:
    with serving(db, tmp_path) as s:
        with s.client() as rw:
            assert rw.put("/v1/requests/rq-vault-1", json=VAULT_ORDER.to_json()).status_code == 201
        done = _wait_status(s, "rq-vault-1", ("Provisioned", "Failed"))
        assert done["status"] == "Provisioned", done
        with s.client() as rw:
            full = rw.get("/v1/requests/rq-vault-1").json()
            assert full["replaced"]["subscriptions"]["hosted-exchange"]["overrides"] == {
                "journalPassword": "old-Secret-9f2"}
            assert "user-Secret-4b8" in rw.get("/v1/export").text
        with s.client(token=READ_TOKEN) as ro:
            req = ro.get("/v1/requests/rq-vault-1")
            exported = ro.get("/v1/export")
            # the reads planning makes: a digest in place of each sensitive value, so plans still compare them
            customers = ro.post("/v1/customers/query", json={"ids": ["vault", "northwind", "contoso"]})
            users = ro.post("/v1/users/query", json={"customers": ["vault"]})
        for r in (customers, users):
            assert r.status_code == 200 and not any(secret in r.text for secret in SECRETS), r.text
        digest = customers.json()["customers"]["vault"]["services"]["hosted-exchange"]["overrides"]["journalPassword"]
        assert digest.startswith("(sensitive sha256:") and digest == conceal(digest), digest
        assert req.json()["replaced"]["subscriptions"]["hosted-exchange"]["overrides"] == {"journalPassword": None}
        assert req.json()["replaced"]["parent"] == "contoso"
        for secret in SECRETS:
            assert secret not in req.text and secret not in exported.text
        vault = next(c for c in exported.json()["customers"] if c["id"] == "vault")
        assert vault["services"]["hosted-exchange"]["overrides"] == {"journalPassword": None}
        assert vault["users"][0]["services"]["hosted-exchange"]["overrides"] == {"journalPassword": None}


# -- submit ----------------------------------------------------------------------------------------------
def test_submit_is_idempotent_by_client_chosen_id(db: str, tmp_path: Path) -> None:
    with serving(db, tmp_path, "--provision-seconds", "30") as s, s.client() as c:
        first = c.put("/v1/requests/rq-acme-1", json=ACME_ORDER.to_json())
        assert first.status_code == 201 and first.json()["status"] == "Requested", first.text
        # JSON-equal (keys in another order): the same request
        reordered = dict(reversed(list(ACME_ORDER.to_json().items())))
        again = c.put("/v1/requests/rq-acme-1", json=reordered)
        assert again.status_code == 200 and again.json()["id"] == "rq-acme-1"
        other = c.put("/v1/requests/rq-acme-1", json=VAULT_ORDER.to_json())
        assert other.status_code == 409
        assert other.json()["detail"] == ("request rq-acme-1 exists with a different body: someone else "
                                          "submitted it")
        listed = c.post("/v1/requests/query", json={"customers": ["acme", "vault"], "pending_only": True}).json()
        assert [r["id"] for r in listed["requests"]["acme"]] == ["rq-acme-1"] and "vault" not in listed["requests"]


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400), (b"NaN", 400), (b'{"customer": "acme"}', 422), (b"[]", 422),
    (json.dumps({**ACME_ORDER.to_json(), "extra": 1}).encode(), 422),
])
def test_a_bad_body_is_a_problem_never_a_5xx(db: str, tmp_path: Path, body: bytes, status: int) -> None:
    with serving(db, tmp_path) as s, s.client() as c:
        r = c.put("/v1/requests/rq-x", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert c.get("/v1/requests/rq-x").status_code == 404


def test_request_bodies_are_bounded(db: str, tmp_path: Path) -> None:
    big = json.dumps({"ids": ["x" * 100] * 50_000}).encode()
    assert len(big) > server.MAX_BODY
    with serving(db, tmp_path) as s, s.client() as c:
        r = c.post("/v1/customers/query", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["title"] == "Content Too Large"

        def chunks() -> Any:  # no Content-Length: counted as it arrives
            for i in range(0, len(big), 65536):
                yield big[i:i + 65536]

        r = c.post("/v1/customers/query", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get("/v1/catalog").status_code == 200  # and the server is fine


# -- asynchronous provisioning ---------------------------------------------------------------------------
def test_request_lifecycle_requested_inprogress_provisioned(db: str, tmp_path: Path) -> None:
    with serving(db, tmp_path, "--provision-seconds", "1.5", "--workers", "2") as s, s.client() as c:
        created = c.put("/v1/requests/rq-a", json=ACME_ORDER.to_json())
        assert created.status_code == 201 and created.json()["status"] == "Requested"
        # the same customer's second request waits for the first: one customer's requests in order
        assert c.put("/v1/requests/rq-b", json=ACME_ORDER.to_json()).status_code == 201
        assert _wait_status(s, "rq-a", ("InProgress",), 10)["status"] == "InProgress"
        assert c.get("/v1/requests/rq-b").json()["status"] == "Requested"
        assert c.post("/v1/customers/query", json={"ids": ["acme"]}).json()["customers"]["acme"]["parent"] == "contoso"
        done = _wait_status(s, "rq-a", ("Provisioned", "Failed"), 20)
        assert done["status"] == "Provisioned" and done["completed_at"] and done["sub_requests"] == 6
        assert c.post("/v1/customers/query", json={"ids": ["acme"]}).json()["customers"]["acme"]["parent"] == (
            "northwind")
        # the second one ran after it, against the moved customer: the engine refuses nothing here either
        second = _wait_status(s, "rq-b", ("Provisioned", "Failed"), 20)
        assert second["status"] == "Provisioned"


def test_kill_9_mid_request_then_restart_finishes_it_exactly_once(db: str, tmp_path: Path) -> None:
    with serving(db, tmp_path, "--provision-seconds", "60") as s:
        with s.client() as c:
            assert c.put("/v1/requests/rq-k", json=ACME_ORDER.to_json()).status_code == 201
        _wait_status(s, "rq-k", ("InProgress",), 10)
        s.proc.send_signal(signal.SIGKILL)
        assert s.proc.wait(timeout=10) == -signal.SIGKILL
    with serving(db, tmp_path, "--provision-seconds", "0") as s2:
        done = _wait_status(s2, "rq-k", ("Provisioned", "Failed"), 20)
        assert done["status"] == "Provisioned"
        with s2.client() as c:  # a retried submit after the restart: the same request, not a second one
            assert c.put("/v1/requests/rq-k", json=ACME_ORDER.to_json()).status_code == 200
        assert s2.stop() == 0
    p = SqlitePlatform.open(db)
    try:
        reqs = [r for r in p.export()["requests"] if r["customer"] == "acme"]
        assert [(r["id"], r["status"]) for r in reqs] == [("rq-k", "Provisioned")]
        assert p.customers(["acme"])["acme"].parent == "northwind"
        assert p.accepted() == []
    finally:
        p.close()


def test_sigterm_finishes_the_request_in_hand_and_exits_0(db: str, tmp_path: Path) -> None:
    with serving(db, tmp_path, "--provision-seconds", "1.5") as s:
        with s.client() as c:
            assert c.put("/v1/requests/rq-t", json=ACME_ORDER.to_json()).status_code == 201
        _wait_status(s, "rq-t", ("InProgress",), 10)
        assert s.stop(signal.SIGTERM) == 0
        assert "Traceback" not in s.stderr()
    p = SqlitePlatform.open(db)
    try:
        got = p.request("rq-t")
        assert got is not None and got.status == "Provisioned"
    finally:
        p.close()


def test_sigint_on_an_idle_server_exits_0(db: str, tmp_path: Path) -> None:
    with serving(db, tmp_path) as s:
        assert s.ready_line == f"serving {db} at {s.url}\n"
        assert s.stop(signal.SIGINT) == 0


# -- paging ----------------------------------------------------------------------------------------------
def test_users_page_by_cursor_covers_every_user_once_in_order(db: str) -> None:
    p = SqlitePlatform.open(db)
    try:
        customers = ["acme", "vault", "nobody", "contoso"]
        want = {c: [u.to_json() for u in us] for c, us in p.users(customers).items()}
        for limit in (1, 2, 3, 100):
            got: dict[str, list[dict[str, Any]]] = {}
            cursor = None
            for _ in range(50):
                page = json.loads(server.users_page(p, customers, limit, cursor))
                assert sum(len(v) for v in page["users"].values()) <= limit
                for cid, us in page["users"].items():
                    got.setdefault(cid, []).extend(us)
                cursor = page["next"]
                if cursor is None:
                    break
            assert got == want, limit
    finally:
        p.close()


def test_a_page_of_a_big_customer_costs_what_it_returns(tmp_path: Path) -> None:
    """A customer of 2,600 users paged 500 at a time: every user once, in order, and the last page costs the
    database no more than the first (the old paging re-read the whole customer for each of its pages)."""
    url = init_platform(tmp_path, generated_seed(tmp_path / "seed.json", {"few": 3, "whale": 2600, "none": 0}))
    p = SqlitePlatform.open(url)
    try:
        customers = ["few", "whale", "none", "ghost"]
        want = {c: [u.to_json() for u in us] for c, us in p.users(customers).items()}
        steps: list[int] = []

        def count() -> int:
            steps[-1] += 1
            return 0

        p._conn.set_progress_handler(count, 100)
        got: dict[str, list[dict[str, Any]]] = {}
        cursor = None
        while True:
            steps.append(0)
            page = json.loads(server.users_page(p, customers, 500, cursor))
            for cid, us in page["users"].items():
                got.setdefault(cid, []).extend(us)
            cursor = page["next"]
            if cursor is None:
                break
            assert sum(len(v) for v in page["users"].values()) == 500
        assert got == want and len(got["whale"]) == 2600 and got["none"] == got["ghost"] == []
        assert len(steps) == 6 and max(steps[1:]) <= 2 * steps[0], steps
    finally:
        p.close()


def test_a_cursor_of_another_list_or_server_is_refused(db: str) -> None:
    p = SqlitePlatform.open(db)
    try:
        first = json.loads(server.users_page(p, ["acme", "contoso"], 1, None))
        assert first["next"] is not None
        with pytest.raises(server.Problem) as e:
            server.users_page(p, ["acme"], 1, server._encode_cursor(5, 0))
        assert (e.value.status, e.value.detail) == (400, "the cursor does not fit the customers sent")
        for bad in ("MTox", "@@", "dTox"):  # an index cursor of the old paging; not base64; no ord
            with pytest.raises(server.Problem) as e:
                server.users_page(p, ["acme"], 1, bad)
            assert e.value.status == 400
    finally:
        p.close()


def test_users_route_pages_at_least_500(db: str, tmp_path: Path) -> None:
    with serving(db, tmp_path) as s, s.client(token=READ_TOKEN) as c:
        assert c.post("/v1/users/query", json={"customers": ["acme"], "limit": 10}).status_code == 422
        page = c.post("/v1/users/query", json={"customers": ["acme", "zz"]}).json()
        assert page["next"] is None and page["users"]["zz"] == [] and len(page["users"]["acme"]) == 3
        assert c.post("/v1/users/query", json={"customers": ["acme"], "cursor": "@@"}).status_code == 400


# -- the command -----------------------------------------------------------------------------------------
def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RECONCILE_BIN), "platform", "serve", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env=subprocess_env(**env))


def test_serve_refuses_without_token_off_loopback_without_tls_and_equal_tokens(db: str, tmp_path: Path) -> None:
    r = _serve(tmp_path, "--platform", db, "--listen", "127.0.0.1:0")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: the server needs a write token: set RECONCILE_SERVER_TOKEN or pass "
                               "--token-file FILE\n")
    r = _serve(tmp_path, "--platform", db, "--listen", "0.0.0.0:0", RECONCILE_SERVER_TOKEN="t")
    assert r.returncode == 1
    assert r.stderr.startswith("error: listening on 0.0.0.0, which is not loopback, needs TLS")
    r = _serve(tmp_path, "--platform", db, RECONCILE_SERVER_TOKEN="t", RECONCILE_SERVER_READ_TOKEN="t")
    assert (r.returncode, r.stderr) == (1, "error: the read-only token is the write token: give them different "
                                           "values\n")
    r = _serve(tmp_path, "--platform", db, "--listen", "nonsense", RECONCILE_SERVER_TOKEN="t")
    assert r.returncode == 1 and r.stderr.startswith("error: --listen 'nonsense' is not HOST:PORT")
    r = _serve(tmp_path, "--platform", f"sqlite:///{tmp_path}/missing.db", RECONCILE_SERVER_TOKEN="t")
    assert r.returncode == 1 and r.stderr.startswith(f"error: no platform database at {tmp_path}/missing.db")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    r = _serve(tmp_path, "--platform", db, "--token-file", str(empty))
    assert (r.returncode, r.stderr) == (1, f"error: --token-file {empty}: the file is empty\n")


def test_token_files_are_read(db: str, tmp_path: Path) -> None:
    (tmp_path / "w").write_text("file-write-token\n")
    (tmp_path / "r").write_text("file-read-token\n")
    with serving(db, tmp_path, "--token-file", str(tmp_path / "w"), "--read-token-file", str(tmp_path / "r"),
                 env={"RECONCILE_SERVER_TOKEN": "", "RECONCILE_SERVER_READ_TOKEN": ""}) as s:
        with s.client(token="file-write-token") as c:
            assert c.get("/v1/catalog").status_code == 200
        with s.client(token="file-read-token") as c:
            assert c.put("/v1/requests/rq-1", json=ACME_ORDER.to_json()).status_code == 403
        with s.client(token=TOKEN) as c:
            assert c.get("/v1/catalog").status_code == 401


def test_tls_serves_https_with_a_verified_certificate(db: str, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with serving(db, tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)) as s:
        assert s.url.startswith("https://127.0.0.1:")
        with s.client(verify=ssl.create_default_context(cafile=str(cert))) as c:
            assert c.get("/v1/catalog").status_code == 200


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_without_the_server_extra_serve_says_what_to_install(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from conftest import run_main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `reconciler[server]` were not installed
    r = run_main("platform", "serve", "--platform", db, env={"RECONCILE_SERVER_TOKEN": "t"})
    assert (r.code, r.out) == (1, "")
    assert r.err == ("error: `reconcile platform serve` needs the server extra, which is not installed: install "
                     "reconciler[server]\n  hint: pip install 'reconciler[server]'\n")
