"""render: the text plan for people, the markdown PR comment, the plan JSON; escapes and secrets in all of them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRETS, Workspace, generated_seed, init_platform, manifest, manifest_yaml, run_main

from reconciler import app
from reconciler.config import Settings
from reconciler.render import clean, value
from reconciler.render import markdown as md_out

SGR = re.compile(r"\x1b\[([0-9;]*)m")
ANY_ESCAPE = re.compile(r"[\x1b\x9b]")


def colour_codes(text: str) -> list[str]:
    """SGR parameters that set a colour (foreground/background, 8/16/256/true colour)."""
    out = []
    for params in SGR.findall(text):
        for p in params.split(";"):
            if p.isdigit() and (30 <= int(p) <= 49 or 90 <= int(p) <= 107):
                out.append(p)
    return out


@pytest.fixture
def batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A generated platform: `big` (25 users), `small` (2 users), both moved from src to dst; cwd inside it."""
    root = tmp_path / "ws"
    (root / "moves").mkdir(parents=True)
    url = init_platform(root, generated_seed(root / "seed.json", {"big": 25, "small": 2}))
    for cid in ("big", "small"):
        (root / "moves" / f"{cid}.yaml").write_text(manifest_yaml(manifest(f"{cid}-to-dst", cid, "dst", "eu")))
    monkeypatch.chdir(root)
    monkeypatch.setenv("RECONCILE_PLATFORM", url)
    monkeypatch.setenv("RECONCILE_STATE", str(root / "state.json"))
    return Workspace(root=root, url=url, state=root / "state.json", moves=root / "moves")


# -- clean() and value() ------------------------------------------------------------------------
@pytest.mark.parametrize("raw, shown", [
    ("plain", "plain"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("bell\x07", "bell\\x07"),
    ("a\nb\rc\td", "a\\x0ab\\x0dc\td"),  # a value must not forge a line; a tab is layout
    ("\x9b2J", "\\x9b2J"),
    ("\x7f", "\\x7f"),
    ("rtl\u202eevil", "rtl\\u202eevil"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    (None, "null"),
    (3, "3"),
])
def test_clean(raw: Any, shown: str) -> None:
    assert clean(raw) == shown


@pytest.mark.parametrize("raw, shown", [(None, "(unset)"), (True, "true"), (False, "false"), (8192, "8192"),
                                        ("\x1b]0;x\x07", "\\x1b]0;x\\x07")])
def test_value(raw: Any, shown: str) -> None:
    assert value(raw) == shown


# -- text ---------------------------------------------------------------------------------------
def test_text_plan_summary_first_then_each_move(workspace: Workspace) -> None:
    r = run_main("plan", "moves")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0] == ("Plan: 2 to move, 0 no-op, 0 invalid; 4 users change; 2 requests; 0 errors, 0 warnings")
    text = r.out
    assert "~ acme-to-northwind  acme: contoso → northwind  (moves/acme-to-northwind.yaml:1)" in text
    assert "    hosted-exchange  plan exchange-basic → nw-exchange" in text
    assert "      SAL standard → nw-standard (mapped), premium → premium (same id)" in text
    assert "    sharepoint  plan sp-basic" in text
    assert "    users: 3 of 3 change" in text
    assert re.search(r"^      alice@acme\.example +hosted-exchange +premium +mailboxQuotaMB 10240 → 20480", text,
                     re.M)
    assert re.search(r"^ +sharepoint +standard +externalSharing false → true, storageMB 1024 → 5120", text, re.M)
    assert re.search(r"^    request rq-[0-9a-f]+: CustomerMove, 6 sub-requests$", text, re.M)
    assert lines[-1] == "Run `reconcile apply moves` to make these changes."
    assert text.index("acme-to-northwind") < text.index("vault-to-woodgrove")


def test_text_user_table_is_capped_at_20(batch: Workspace) -> None:
    r = run_main("plan", "moves")
    assert r.code == 0, r
    users = re.findall(r"^      (u\d{3}@big\.example) ", r.out, re.M)
    assert users == [f"u{j:03d}@big.example" for j in range(20)]
    assert "    users: 25 of 25 change" in r.out
    assert re.search(r"^ +… and 5 more users \(--show-users all lists them\)$", r.out, re.M)
    assert len(re.findall(r"^      u\d{3}@small\.example ", r.out, re.M)) == 2
    assert r.out.count("more users") == 1


def test_text_show_users_all_and_n(batch: Workspace) -> None:
    r = run_main("plan", "--show-users", "all", "moves")
    assert r.code == 0, r
    assert len(re.findall(r"^      u\d{3}@big\.example ", r.out, re.M)) == 25
    assert "more users" not in r.out
    r = run_main("plan", "--show-users", "3", "moves")
    assert len(re.findall(r"^      u\d{3}@big\.example ", r.out, re.M)) == 3
    assert re.search(r"^ +… and 22 more users \(--show-users all lists them\)$", r.out, re.M)
    r = run_main("plan", "--show-users", "0", "moves")
    assert r.code == 0
    assert not re.search(r"u\d{3}@", r.out)
    assert "    users: 25 of 25 change" in r.out and "    users: 2 of 2 change" in r.out


@pytest.mark.parametrize("bad", ["-1", "many", "2.5"])
def test_text_show_users_must_be_a_number_or_all(batch: Workspace, bad: str) -> None:
    r = run_main("plan", "--show-users", bad, "moves")
    assert r.code == 1
    assert "--show-users" in r.err and r.out == ""


def test_no_terminal_gives_no_escapes(workspace: Workspace) -> None:
    r = run_main("plan", "moves", "--show-users", "all")
    assert r.code == 0
    assert not ANY_ESCAPE.search(r.out) and not ANY_ESCAPE.search(r.err)


def test_a_terminal_gets_colour_but_not_with_no_color(workspace: Workspace) -> None:
    # FORCE_COLOR makes rich treat the output as a terminal: colour is on (this test can fail) ...
    coloured = run_main("plan", "moves", env={"FORCE_COLOR": "1"})
    assert coloured.code == 0
    assert colour_codes(coloured.out), "expected colour on a terminal"
    # ... and NO_COLOR takes the colour away.
    plain = run_main("plan", "moves", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.code == 0
    assert colour_codes(plain.out) == []
    assert SGR.sub("", plain.out) == SGR.sub("", coloured.out)


def test_invalid_moves_show_their_diagnostics_with_codes(workspace: Workspace) -> None:
    workspace.write("moves/bad.yaml", manifest_yaml(manifest("acme-to-fabrikam", "acme", "fabrikam")))
    r = run_main("plan", "moves/bad.yaml")
    assert r.code == 1
    assert r.out.splitlines()[0] == ("Plan: 0 to move, 0 no-op, 1 invalid; 0 users change; 0 requests; "
                                     "2 errors, 0 warnings")
    assert "✗ acme-to-fabrikam  acme: contoso → fabrikam  (moves/bad.yaml:1)" in r.out
    assert "Cannot be applied: fix the errors above" in r.out
    assert "moves/bad.yaml:8:13: error[location-mismatch]: " in r.err


def test_text_move_diagnostics_name_their_code(workspace: Workspace) -> None:
    workspace.write("moves/bad.yaml", manifest_yaml(manifest("acme-to-fabrikam", "acme", "fabrikam")))
    r = run_main("plan", "moves/bad.yaml")
    assert "    error[location-mismatch]: 'acme' is in 'eu-west' but 'fabrikam' is in 'us-east'" in r.out


def test_text_noop_and_no_changes(workspace: Workspace) -> None:
    workspace.write("moves2/initech.yaml", manifest_yaml(manifest("initech-stays", "initech", "northwind")))
    r = run_main("plan", "moves2")
    assert r.code == 0, r
    assert "= initech-stays  initech: northwind → northwind" in r.out
    assert "    no-op: already at the destination: apply records it as adopted" in r.out
    assert r.out.rstrip().endswith("No changes: the platform matches the manifests.")


# -- escapes from manifests ----------------------------------------------------------------------
NASTY = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\r"


def nasty_manifests(ws: Workspace) -> None:
    doc = manifest(description=NASTY, ticket="T-" + NASTY)
    ws.write("moves/a-nasty.yaml", manifest_yaml(doc))
    # id-like values that fail the schema: their values end up in messages
    bad = manifest("bad-move", customer="acme" + NASTY, to="north\x1b[31mwind", location="eu\x07")
    bad["metadata"]["name"] = "x\x1b[5m"
    bad["spec"]["services"] = {"svc\x1b[1m": {"sals": {"a\x07": "b"}}}
    ws.write("moves/b-bad.yaml", manifest_yaml(bad))
    ws.write("moves/c-\x1b[31mfile.yaml", manifest_yaml(manifest("c-file", "initech", "northwind")))


@pytest.mark.parametrize("fmt", ["text", "markdown", "github", "json"])
def test_control_characters_from_manifests_are_neutralised(workspace: Workspace, fmt: str) -> None:
    nasty_manifests(workspace)
    r = run_main("plan", "--format", fmt, "--show-users", "all", "moves")
    assert r.code == 1, r  # b-bad.yaml fails the schema
    assert "Traceback" not in r.err
    for stream in (r.out, r.err):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", stream.replace("\r\n", "\n")), \
            repr(stream[:2000])
    assert "schema" in r.err


def test_validate_neutralises_control_characters(workspace: Workspace) -> None:
    nasty_manifests(workspace)
    for fmt in ("text", "json", "github"):
        r = run_main("validate", "--format", fmt, "moves")
        assert r.code == 1
        for stream in (r.out, r.err):
            assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", stream), (fmt, repr(stream[:2000]))


# -- markdown -------------------------------------------------------------------------------------
def test_markdown_starts_with_the_marker_and_summarises(workspace: Workspace) -> None:
    r = run_main("plan", "--format", "markdown", "moves")
    assert r.code == 0, r
    assert r.out.startswith("<!-- reconcile-plan -->\n## reconcile plan: 🔀 changes\n")
    assert "| 2 | 0 | 0 | 4 | 2 | 0 | 0 |" in r.out
    assert "```mermaid" in r.out
    assert r.out.count("<details>") == r.out.count("</details>") == 2


def test_markdown_description_is_inert(workspace: Workspace) -> None:
    evil = "</details><script>alert(1)</script> ``` `code` [link](javascript:x) | pipe <img src=x onerror=y>"
    workspace.write("moves/acme-to-northwind.yaml", manifest_yaml(manifest(
        services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}},
        description=evil, ticket="`CHG`</details>")))
    r = run_main("plan", "--format", "markdown", "moves")
    assert r.code == 0, r
    out = r.out
    assert "<script" not in out and "<img" not in out
    assert out.count("</details>") == out.count("<details>") == 2
    assert "`code`" not in out and "``` " not in out
    assert "&lt;/details&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&#96;code&#96;" in out
    quote = next(line for line in out.splitlines() if line.startswith("> "))
    assert "`" not in quote and "<" not in quote and "|" not in quote


def md_result(root: Path, paths: list[str], url: str) -> app.PlanResult:
    cwd = os.getcwd()
    os.chdir(root)  # relative paths: the comment's size must not depend on where tmp_path is
    try:
        return app.plan(paths, Settings(platform_url=url, state=str(root / "state.json")))
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[app.PlanResult]:
    """500 moves x 50 users, from a generated JSON seed."""
    root = tmp_path_factory.mktemp("huge")
    names = {f"c{i:03d}": 50 for i in range(500)}
    url = init_platform(root, generated_seed(root / "seed.json", names, secret="Huge-Secret-0"))
    (root / "moves").mkdir()
    for cid in names:  # a template: yaml.safe_dump of 500 documents costs more than the rest of the setup
        (root / "moves" / f"{cid}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata:\n  name: {cid}-to-dst\n"
            f"  description: \"</details><script>alert(1)</script> `x`\"\nspec:\n  customer: {cid}\n"
            "  toReseller: dst\n  location: eu\n")
    yield md_result(root, ["moves"], url)


def test_markdown_of_500_moves_by_50_users_is_truncated_with_a_note(huge: app.PlanResult) -> None:
    assert huge.plan.summary()["moves"] == 500 and huge.plan.summary()["users_changed"] == 25_000
    out = md_out.plan(huge)
    assert out.startswith("<!-- reconcile-plan -->\n")
    assert "| 500 | 0 | 0 | 25000 | 500 | 0 | 0 |" in out
    assert out.rstrip().endswith("_Truncated to fit a comment: the plan JSON artifact has every move and user._")
    assert "<script" not in out
    assert "Huge-Secret-0" not in out
    assert out.count("<details>") == out.count("</details>")


def test_markdown_of_500_moves_by_50_users_stays_under_65000(huge: app.PlanResult) -> None:
    assert len(md_out.plan(huge)) < 65_000


def test_markdown_never_exceeds_its_limit(batch: Workspace) -> None:
    result = md_result(batch.root, ["moves"], batch.url)
    over = [(limit, len(md_out.plan(result, limit))) for limit in range(1000, 8000, 7)
            if len(md_out.plan(result, limit)) > limit]
    assert over == []


def test_markdown_table_only_when_even_the_table_is_too_long(huge: app.PlanResult) -> None:
    out = md_out.plan(huge, limit=8_000)
    assert len(out) <= 8_000
    assert "<details>" not in out
    assert re.search(r"_… \d+ more moves not shown\._", out)


# -- JSON -----------------------------------------------------------------------------------------
TOP = {"format_version", "tool_version", "platform", "prior_state", "git_commit", "applyable", "summary", "moves",
       "diagnostics", "partial"}
SUMMARY = {"moves", "noop", "invalid", "users_changed", "requests", "errors", "warnings"}
MOVE = {"name", "file", "line", "manifest_sha256", "customer", "from_reseller", "to_reseller", "location", "action",
        "allow_large", "reason", "diagnostics", "services", "users", "requests"}
SERVICE = {"service", "plan", "sal_mappings", "customer_properties"}
DIAG = {"severity", "code", "message", "file", "line", "column", "path"}


def test_json_keys_match_the_contract(workspace: Workspace) -> None:
    workspace.write("moves/zz-bad.yaml", "apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata: {name: x}\n"
                                         "spec: {customer: acme}\n")
    workspace.write("moves/zz-fabrikam.yaml", manifest_yaml(manifest("initech-away", "initech", "fabrikam")))
    r = run_main("plan", "--format", "json", "moves")
    assert r.code == 1
    doc = json.loads(r.out)
    assert set(doc) == TOP
    assert doc["format_version"] == "1.0" and doc["tool_version"] == "0.1.0"
    assert set(doc["platform"]) == {"url", "fingerprint"} and doc["platform"]["url"] == workspace.url
    assert doc["platform"]["fingerprint"].startswith("sha256:")
    assert doc["prior_state"] is None and doc["applyable"] is False
    assert set(doc["summary"]) == SUMMARY
    assert doc["summary"] == {"moves": 2, "noop": 0, "invalid": 1, "users_changed": 4, "requests": 2,
                              "errors": 5, "warnings": 0}
    for m in doc["moves"]:
        assert set(m) == MOVE
        for s in m["services"]:
            assert set(s) == SERVICE
            assert set(s["plan"]) == {"from", "to"}
            for x in s["sal_mappings"]:
                assert set(x) == {"from", "to", "source"} and x["source"] in ("explicit", "name")
            for ch in s["customer_properties"].values():
                assert set(ch) == {"from", "to"}
        for u in m["users"]:
            assert set(u) == {"user", "services"}
            for us in u["services"]:
                assert set(us) == {"service", "sal", "properties"}
                assert set(us["sal"]) == {"from", "to"}
        for rq in m["requests"]:
            assert set(rq) == {"id", "type", "customer", "sub_requests"}
        for d in m["diagnostics"]:
            assert set(d) == DIAG
    for d in doc["diagnostics"]:
        assert set(d) == DIAG
    assert [d["path"] for d in doc["diagnostics"]] == ["$.spec", "$.spec"]
    acme = doc["moves"][0]
    assert (acme["name"], acme["file"], acme["line"], acme["action"], acme["reason"]) == (
        "acme-to-northwind", "moves/acme-to-northwind.yaml", 1, "move", None)
    assert [u["user"] for u in acme["users"]] == sorted(u["user"] for u in acme["users"])
    invalid = doc["moves"][2]
    assert invalid["action"] == "invalid" and invalid["requests"] == [] and invalid["users"] == []
    assert [d["code"] for d in invalid["diagnostics"]] == ["location-mismatch", "plan-unmatched", "sal-unmatched"]
    assert all(d["file"] == "moves/zz-fabrikam.yaml" and d["line"] and d["column"] for d in invalid["diagnostics"])


def test_json_plan_is_what_app_to_json_gives(workspace: Workspace) -> None:
    r = run_main("plan", "--format", "json", "moves")
    settings = Settings(platform_url=workspace.url, state=str(workspace.state))
    assert json.loads(r.out) == app.plan(["moves"], settings).to_json()


# -- secrets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "github"])
def test_sensitive_values_never_appear(workspace: Workspace, fmt: str) -> None:
    # the vault move sets journalPassword (sensitive); a second manifest sets it with the wrong type
    workspace.write("moves2/vault.yaml", (workspace.moves / "vault-to-woodgrove.yaml").read_text())
    workspace.write("moves3/typed.yaml", manifest_yaml(manifest(
        "vault-typed", "vault", "woodgrove",
        services={"hosted-exchange": {"properties": {"journalPassword": 99887766}}})))
    r = run_main("plan", "--format", fmt, "--show-users", "all", "moves2")
    assert r.code == 0, r
    both = r.out + r.err
    for secret in SECRETS:
        assert secret not in both
    assert "(sensitive)" in both
    r = run_main("plan", "--format", fmt, "moves3")
    assert r.code == 1
    assert "99887766" not in r.out + r.err
    assert "property-type" in r.out + r.err


def test_sensitive_values_are_masked_in_the_json_diff(workspace: Workspace) -> None:
    r = run_main("plan", "--format", "json", "moves/vault-to-woodgrove.yaml")
    (move,) = json.loads(r.out)["moves"]
    (svc,) = move["services"]
    assert svc["customer_properties"] == {"journalPassword": {"from": "(sensitive)", "to": "(sensitive)"}}
    (user,) = move["users"]
    assert user["user"] == "u1@vault.example"
    assert user["services"][0]["properties"] == {"journalPassword": {"from": "(sensitive)", "to": "(sensitive)"}}
