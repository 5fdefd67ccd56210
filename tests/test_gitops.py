"""The GitOps loop end to end in scratch git repositories: commit -> plan -> apply -> commit the state -> history.

Also: who `applied_by` names, the pull-request comment (`plan --format markdown`) at scale and with hostile
manifest text, and the `reconcile-validate` pre-commit hook through `pre-commit try-repo`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import app, audit, cli, config
from reconciler.render.markdown import MARKER

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

OLGA = ("Olga Ops", "olga@example.com")
BOB = ("Bob Builder", "bob@example.com")
CAROL = ("Carol Merger", "carol@example.com")


# -- helpers ------------------------------------------------------------------------------------
@dataclass
class Run:
    code: int | str | None
    out: str
    err: str


def reconcile(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """`reconcile ARGS` in-process, through the CLI's one error boundary; the exact exit code."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return Run(exc.value.code, out, err)


def git(repo: Path, *args: str, who: tuple[str, str] | None = None) -> str:
    env = dict(os.environ)
    if who:
        env.update(GIT_AUTHOR_NAME=who[0], GIT_AUTHOR_EMAIL=who[1], GIT_COMMITTER_NAME=who[0],
                   GIT_COMMITTER_EMAIL=who[1])
    p = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert p.returncode == 0, f"git {' '.join(args)} failed: {p.stderr}"
    return p.stdout.strip()


def commit(repo: Path, message: str, who: tuple[str, str], *paths: str) -> str:
    git(repo, "add", "--", *(paths or (".",)))
    git(repo, "commit", "-q", "-m", message, who=who)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(autouse=True)
def _git_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No global or system git config, no CI actor: identities come only from each test."""
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GITHUB_ACTOR", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    # audit.actor() is looked up once per process; each test is a new "process" as far as who applies.
    getattr(audit.actor, "cache_clear", lambda: None)()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch GitOps repository built from examples/: the seed, a reconcile.toml, an empty moves/ folder.

    The embedded platform lives outside the repository (like a real one); the state file inside it.
    """
    r = tmp_path / "gitops"
    r.mkdir()
    shutil.copyfile(EXAMPLES / "platform.yaml", r / "platform.yaml")
    (r / "reconcile.toml").write_text(
        "[platform]\n"
        f'url = "sqlite:///{tmp_path / "platform.db"}"\n'
        'seed = "platform.yaml"\n'
        "[state]\n"
        'path = ".reconcile/state.json"\n', encoding="utf-8")
    (r / "moves").mkdir()
    git(r, "init", "-q", "-b", "main")
    monkeypatch.chdir(r)
    return r


def add_move(repo: Path, name: str) -> str:
    """Copy examples/moves/NAME into the scratch repo; returns its path relative to the repo."""
    shutil.copyfile(EXAMPLES / "moves" / name, repo / "moves" / name)
    return f"moves/{name}"


def plan_json(capsys: pytest.CaptureFixture[str], *paths: str) -> dict[str, Any]:
    r = reconcile(capsys, "plan", "--format", "json", *paths)
    assert r.code == 0, r.err
    data: dict[str, Any] = json.loads(r.out)
    return data


def state(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((repo / ".reconcile" / "state.json").read_text(encoding="utf-8"))
    return data


# -- plan: git_commit -----------------------------------------------------------------------------
def test_plan_names_the_commit_and_marks_uncommitted_manifests_dirty(
        repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    add_move(repo, "02-acme-to-northwind.yaml")
    (repo / "README.md").write_text("GitOps repo\n")
    head = commit(repo, "Add acme move", OLGA)

    assert plan_json(capsys, "moves")["git_commit"] == head

    # A manifest modified but not committed: the plan is not what HEAD holds.
    manifest = repo / "moves" / "02-acme-to-northwind.yaml"
    manifest.write_text(manifest.read_text().replace("after Contoso's price change", "(edited)"))
    assert plan_json(capsys, "moves")["git_commit"] == f"{head}-dirty"
    git(repo, "checkout", "-q", "--", "moves")
    assert plan_json(capsys, "moves")["git_commit"] == head

    # A new manifest that git does not know yet is uncommitted too.
    add_move(repo, "03-globex-to-northwind.yaml")
    assert plan_json(capsys, "moves")["git_commit"] == f"{head}-dirty"
    (repo / "moves" / "03-globex-to-northwind.yaml").unlink()

    # A change outside the planned manifests does not make them dirty.
    (repo / "README.md").write_text("GitOps repo, edited\n")
    assert plan_json(capsys, "moves")["git_commit"] == head

    # Manifests outside any git repository: no commit at all.
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copyfile(EXAMPLES / "moves" / "02-acme-to-northwind.yaml", loose / "acme.yaml")
    assert plan_json(capsys, str(loose))["git_commit"] is None


# -- the loop: commit, plan, apply, commit the state, history -------------------------------------
def _merge_history(repo: Path) -> dict[str, str]:
    """main: Olga adds blueyonder; Bob adds acme on a branch; Carol merges it with --no-ff."""
    add_move(repo, "01-blueyonder-to-adatum.yaml")
    c0 = commit(repo, "Start the GitOps repo with the blueyonder move", OLGA)
    git(repo, "checkout", "-q", "-b", "bob/acme")
    add_move(repo, "02-acme-to-northwind.yaml")
    c1 = commit(repo, "Move acme to northwind", BOB)
    git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("Customer moves of the hosting platform.\n")
    commit(repo, "Add a README", OLGA)
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge pull request #7 from bob/acme", "bob/acme", who=CAROL)
    merge = git(repo, "rev-parse", "HEAD")
    return {"c0": c0, "c1": c1, "merge": merge}


def test_gitops_loop_history_shows_move_commit_requests_author_and_merge(
        repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    shas = _merge_history(repo)
    merge = shas["merge"]

    planned = plan_json(capsys, "moves")
    assert planned["git_commit"] == merge
    assert [(m["name"], m["action"]) for m in planned["moves"]] == [
        ("blueyonder-to-adatum", "move"), ("acme-to-northwind", "move")]
    planned_requests = {m["name"]: m["requests"][0]["id"] for m in planned["moves"]}

    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    applied = reconcile(capsys, "apply", "--auto-approve", "moves")
    assert applied.code == 0, applied.err
    assert "Apply complete: 2 applied, 0 adopted, 0 failed, 2 requests submitted." in applied.out

    # The platform really changed.
    export = reconcile(capsys, "platform", "export", "--format", "json")
    parents = {c["id"]: c["parent"] for c in json.loads(export.out)["customers"]}
    assert parents["acme"] == "northwind" and parents["blueyonder"] == "adatum"

    # Commit the state as the apply workflow does.
    short = git(repo, "rev-parse", "--short", "HEAD")
    state_commit = commit(repo, f"reconcile: apply {short} [skip ci]", ("github-actions[bot]", "bot@example.com"),
                          ".reconcile/state.json")
    assert git(repo, "show", "--name-only", "--format=", state_commit).splitlines() == [".reconcile/state.json"]
    assert git(repo, "status", "--porcelain", "--", "moves", ".reconcile/state.json") == ""

    # history --format json: everything about both moves.
    r = reconcile(capsys, "history", "--format", "json")
    assert r.code == 0, r.err
    entries = {e["name"]: e for e in json.loads(r.out)["moves"]}
    assert list(entries) == ["blueyonder-to-adatum", "acme-to-northwind"]
    acme = entries["acme-to-northwind"]
    assert (acme["customer"], acme["from_reseller"], acme["to_reseller"], acme["status"]) == (
        "acme", "contoso", "northwind", "applied")
    assert acme["applied_by"] == "ci-bot"
    assert acme["manifest"]["file"] == "moves/02-acme-to-northwind.yaml"
    assert acme["manifest"]["git_commit"] == merge
    assert [(q["id"], q["status"], q["error"]) for q in acme["requests"]] == [
        (planned_requests["acme-to-northwind"], "Provisioned", None)]
    assert acme["git"] == {
        "added_by": "Bob Builder <bob@example.com>", "added_at": acme["git"]["added_at"], "added_in": shas["c1"],
        "subject": "Move acme to northwind", "merged_in": merge,
        "merge_subject": "Merge pull request #7 from bob/acme"}
    blue = entries["blueyonder-to-adatum"]
    assert blue["manifest"]["git_commit"] == merge
    assert blue["git"]["added_by"] == "Olga Ops <olga@example.com>"
    assert blue["git"]["added_in"] == blue["git"]["merged_in"] == shas["c0"]  # came straight onto main
    assert blue["requests"][0]["id"] == planned_requests["blueyonder-to-adatum"]

    # history (text) says the same.
    r = reconcile(capsys, "history")
    assert r.code == 0, r.err
    text = r.out
    assert "acme-to-northwind: applied  acme: contoso → northwind  by ci-bot" in text
    assert f"manifest moves/02-acme-to-northwind.yaml at commit {merge}" in text
    assert (f"added by Bob Builder <bob@example.com> in {shas['c1'][:12]} (Move acme to northwind); "
            f"merged in {merge[:12]} (Merge pull request #7 from bob/acme)") in text
    assert f"request {planned_requests['acme-to-northwind']} Provisioned submitted " in text
    assert "blueyonder-to-adatum: applied  blueyonder: fabrikam → adatum  by ci-bot" in text

    # --customer filters, in both formats.
    r = reconcile(capsys, "history", "--customer", "acme", "--format", "json")
    assert [e["name"] for e in json.loads(r.out)["moves"]] == ["acme-to-northwind"]
    r = reconcile(capsys, "history", "--customer", "acme")
    assert "acme-to-northwind" in r.out and "blueyonder" not in r.out
    r = reconcile(capsys, "history", "--customer", "nobody")
    assert (r.code, r.out) == (0, "No recorded moves of nobody.\n")
    r = reconcile(capsys, "history", "--customer", "nobody", "--format", "json")
    assert (r.code, json.loads(r.out)) == (0, {"moves": []})

    # A second apply after the merge has nothing to do: no new state, so no noise commit.
    before = (repo / ".reconcile" / "state.json").read_bytes()
    again = reconcile(capsys, "apply", "--auto-approve", "moves")
    assert again.code == 0, again.err
    assert (repo / ".reconcile" / "state.json").read_bytes() == before
    assert git(repo, "status", "--porcelain", "--", ".reconcile/state.json") == ""


def test_history_through_the_installed_command(repo: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """One real subprocess: `python -m reconciler history` in the repository, after an in-process apply."""
    shas = _merge_history(repo)
    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    assert reconcile(capsys, "apply", "--auto-approve", "moves").code == 0
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTOR"}
    p = subprocess.run([sys.executable, "-m", "reconciler", "history", "--customer", "acme", "--format", "json"],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    (entry,) = json.loads(p.stdout)["moves"]
    assert entry["git"]["merged_in"] == shas["merge"] and entry["git"]["added_in"] == shas["c1"]
    assert entry["applied_by"] == "ci-bot"  # recorded at apply time, not who reads the history


def test_history_from_a_subdirectory_keeps_the_git_side(repo: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    shas = _merge_history(repo)
    assert reconcile(capsys, "apply", "--auto-approve", "moves").code == 0
    monkeypatch.chdir(repo / "moves")
    r = reconcile(capsys, "history", "--customer", "acme", "--format", "json")
    assert r.code == 0, r.err
    (entry,) = json.loads(r.out)["moves"]
    assert entry["git"] is not None and entry["git"]["merged_in"] == shas["merge"]


# -- applied_by ---------------------------------------------------------------------------------
def test_applied_by_is_the_ci_actor_else_git_email_else_login_name(repo: Path) -> None:
    """Three real `reconcile apply` processes, as a CI job or an operator runs them."""
    for name in ("01-blueyonder-to-adatum.yaml", "03-globex-to-northwind.yaml", "04-hooli-to-litware.yaml"):
        add_move(repo, name)
    commit(repo, "Three moves", OLGA)
    base = {k: v for k, v in os.environ.items() if k not in ("LOGNAME", "USER", "LNAME", "USERNAME")}
    base["LOGNAME"] = "login-only"

    def apply(manifest: str, **env: str) -> None:
        p = subprocess.run([sys.executable, "-m", "reconciler", "apply", "--auto-approve", manifest], cwd=repo,
                           env={**base, **env}, capture_output=True, text=True, timeout=120, check=False)
        assert p.returncode == 0, p.stderr

    # 1. In CI: GITHUB_ACTOR wins over git's user.email.
    git(repo, "config", "user.email", "ops-local@example.com")
    apply("moves/01-blueyonder-to-adatum.yaml", GITHUB_ACTOR="octo-merger")
    # 2. No CI actor: git's user.email (here the repository's own config).
    apply("moves/03-globex-to-northwind.yaml")
    # 3. Neither: the login name.
    git(repo, "config", "--unset", "user.email")
    apply("moves/04-hooli-to-litware.yaml", GITHUB_ACTOR="")

    moves = state(repo)["moves"]
    assert {n: m["applied_by"] for n, m in moves.items()} == {
        "blueyonder-to-adatum": "octo-merger", "globex-to-northwind": "ops-local@example.com",
        "hooli-to-litware": "login-only"}
    assert {m["status"] for m in moves.values()} == {"applied"}


def test_applied_by_is_looked_up_per_apply_not_per_process(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("01-blueyonder-to-adatum.yaml", "03-globex-to-northwind.yaml"):
        add_move(repo, name)
    commit(repo, "Two moves", OLGA)
    settings = config.resolve()
    monkeypatch.setenv("GITHUB_ACTOR", "first-merger")
    assert app.apply(settings, ["moves/01-blueyonder-to-adatum.yaml"]).ok
    monkeypatch.setenv("GITHUB_ACTOR", "second-merger")
    assert app.apply(settings, ["moves/03-globex-to-northwind.yaml"]).ok
    assert state(repo)["moves"]["globex-to-northwind"]["applied_by"] == "second-merger"


# -- plan --format markdown: the pull-request comment -------------------------------------------
MERMAID_EDGE = re.compile(r'^  r\d+\["(?P<src>[^"]*)"\] -->\|"(?P<label>[^"]*)"\| r\d+\["(?P<dst>[^"]*)"\]$')


def mermaid_edges(md: str) -> dict[tuple[str, str], str]:
    block = re.search(r"^```mermaid\nflowchart LR\n(.*?)^```$", md, re.S | re.M)
    assert block, "no ```mermaid block"
    edges = {}
    for line in block.group(1).splitlines():
        m = MERMAID_EDGE.match(line)
        assert m, f"not an edge: {line!r}"
        edges[(m["src"], m["dst"])] = m["label"]
    return edges


def test_markdown_comment_of_the_examples(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for f in sorted((EXAMPLES / "moves").iterdir()):
        add_move(repo, f.name)
    head = commit(repo, "All example moves", OLGA)
    r = reconcile(capsys, "plan", "--format", "markdown", "moves")
    assert r.code == 0, r.err
    md = r.out
    assert md.splitlines()[0] == MARKER
    assert md.count(MARKER) == 1
    assert "| 6 | 0 | 0 | 27 | 6 | 0 | 0 |" in md
    assert f"Commit `{head}`" in md

    # One edge per (source, destination) reseller pair, labelled with its customers and their users changed:
    # the same count as the table and the plan JSON (blueyonder has 6 users, 5 of them change).
    pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for m in plan_json(capsys, "moves")["moves"]:
        pairs[(m["from_reseller"], m["to_reseller"])].append(f"{m['customer']} ({len(m['users'])} users changed)")
    assert mermaid_edges(md) == {k: ", ".join(v) for k, v in pairs.items()}
    assert mermaid_edges(md)[("contoso", "northwind")] == "acme (5 users changed), globex (6 users changed)"
    assert mermaid_edges(md)[("fabrikam", "adatum")] == "blueyonder (5 users changed)"


def _big_seed(n: int = 500, users: int = 50, k: int = 5) -> dict[str, Any]:
    """k source and k destination resellers; n customers of `users` users each, spread over the sources."""
    customers: list[dict[str, Any]] = []
    for side, quota in (("src", 1), ("dst", 2)):
        for r in range(k):
            customers.append({"id": f"{side}{r}", "name": f"{side}{r}", "location": "eu", "parent": None,
                              "reseller": {"services": {"mail": {"plans": ["p"], "sals": {"std": {"quota": quota}}}}}})
    for i in range(n):
        customers.append({
            "id": f"c{i:03d}", "name": f"Customer {i}", "location": "eu", "parent": f"src{i % k}",
            "services": {"mail": {"plan": "p", "sal": "std", "overrides": {}}},
            "users": [{"id": f"u{j}@c{i:03d}.example", "services": {"mail": {"sal": "std", "overrides": {}}},
                       "hold": None} for j in range(users)]})
    return {"apiVersion": "reconciler/v1", "kind": "Platform", "locations": [{"id": "eu", "name": "EU"}],
            "services": [{"id": "mail", "name": "Mail", "properties": {"quota": {"type": "integer"}}}],
            "customers": customers}


@pytest.fixture(scope="module")
def big_platform(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """500 customers of 50 users (25,000 users) and a manifest file moving every one of them. Built once."""
    from reconciler.platforms import sqlite

    d = tmp_path_factory.mktemp("big")
    (d / "seed.json").write_text(json.dumps(_big_seed()), encoding="utf-8")
    url = f"sqlite:///{d / 'platform.db'}"
    sqlite.init(url, str(d / "seed.json"))
    docs = [{"apiVersion": "reconciler/v1", "kind": "CustomerMove", "metadata": {"name": f"move-c{i:03d}"},
             "spec": {"customer": f"c{i:03d}", "toReseller": f"dst{i % 5}", "location": "eu"}} for i in range(500)]
    (d / "moves.yaml").write_text("---\n".join(yaml.safe_dump(doc) for doc in docs), encoding="utf-8")
    return url, d


def test_markdown_of_500_moves_fits_a_comment_with_the_full_summary(
        big_platform: tuple[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url, d = big_platform
    plan_file = tmp_path / "plan.json"
    r = reconcile(capsys, "plan", "--format", "markdown", "--platform", url, "--state", str(tmp_path / "s.json"),
                  "--out", str(plan_file), str(d / "moves.yaml"))
    assert r.code == 0, r.err
    md = r.out
    assert len(md) < 65_000
    assert len(md.encode("utf-16-le")) // 2 <= 65_536  # GitHub's limit even where astral emoji count twice
    assert md.splitlines()[0] == MARKER
    # The whole summary: every count of the plan, nothing truncated there.
    assert ("| moves | no-op | invalid | users changed | requests | errors | warnings |\n"
            "|---:|---:|---:|---:|---:|---:|---:|\n"
            "| 500 | 0 | 0 | 25000 | 500 | 0 | 0 |") in md
    assert mermaid_edges(md) == {(f"src{r}", f"dst{r}"): "100 customers, 5000 users changed" for r in range(5)}
    assert "the plan JSON artifact has every move and user" in md
    # ... and the artifact has them.
    saved = json.loads(plan_file.read_text(encoding="utf-8"))
    assert len(saved["moves"]) == 500 and saved["summary"]["users_changed"] == 25_000
    assert sum(len(m["users"]) for m in saved["moves"]) == 25_000


HOSTILE = ("</details><script>alert('x')</script> <!-- reconcile-plan --> <img src=x onerror=alert(1)> "
           "```js\nfetch('//evil')\n``` `inline` [link](javascript:alert(1)) | table | @everyone")


def _markdown_with(repo: Path, capsys: pytest.CaptureFixture[str], description: str, ticket: str) -> str:
    text = (EXAMPLES / "moves" / "02-acme-to-northwind.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    doc["metadata"]["description"] = description
    doc["metadata"]["ticket"] = ticket
    (repo / "moves" / "acme.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    r = reconcile(capsys, "plan", "--format", "markdown", "moves")
    assert r.code == 0, r.err
    return r.out


def test_markdown_renders_manifest_text_inert(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    md = _markdown_with(repo, capsys, HOSTILE, "CHG-1`</details>`<script>")
    control = _markdown_with(repo, capsys, "x" * len(HOSTILE), "CHG-1-plain-ticket")
    assert md.splitlines()[0] == MARKER and md.count(MARKER) == 1
    for raw in ("<script", "<img", "</script>", "[link](", "```js", "`inline`", "@everyone"):
        assert raw not in md, raw
    # The manifest adds no backtick and no </details> of its own: the same counts as with a plain description.
    assert md.count("`") == control.count("`")
    assert md.count("</details>") == control.count("</details>") == 1
    assert md.count("<details>") == 1
    # The text is still there for a reviewer to read, escaped.
    assert "&lt;/details&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in md


# -- pre-commit ----------------------------------------------------------------------------------
NETWORK_TROUBLE = ("Temporary failure in name resolution", "NewConnectionError", "Network is unreachable",
                   "Could not find a version that satisfies", "ConnectTimeoutError")


def _working_tree_repo(dst: Path) -> Path:
    """A git repository of the project's working tree as it is now (committed or not), for try-repo.

    try-repo installs the hook from a commit; this commits the current files (the hooks file included) so the
    test checks this checkout, not whatever HEAD happens to hold.
    """
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=False)
    if files.returncode != 0:
        pytest.skip("the project is not a git checkout: nothing for pre-commit try-repo to clone")
    dst.mkdir()
    for rel in filter(None, files.stdout.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    git(dst, "init", "-q", "-b", "main")
    commit(dst, "working tree", OLGA)
    return dst


def test_pre_commit_hook_validates_manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pre_commit = shutil.which("pre-commit") or shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    if not pre_commit:
        pytest.skip("pre-commit is not installed (pip install pre-commit)")
    hook_repo = _working_tree_repo(tmp_path / "reconciler-src")
    assert (hook_repo / ".pre-commit-hooks.yaml").is_file()

    users = tmp_path / "manifests"
    users.mkdir()
    shutil.copyfile(EXAMPLES / "moves" / "02-acme-to-northwind.yaml", users / "acme.yaml")
    (users / "bad.yml").write_text("apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata: {name: Bad}\n"
                                   "spec: {customer: acme, toReseller: northwind, location: eu-west}\n")
    (users / "notes.txt").write_text("not a manifest\n")
    git(users, "init", "-q", "-b", "main")
    commit(users, "manifests", OLGA)

    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    monkeypatch.delenv("PRE_COMMIT", raising=False)

    # One try-repo run: each one builds the hook's environment afresh (~30 s), in a store of its own.
    p = subprocess.run([pre_commit, "try-repo", str(hook_repo), "reconcile-validate",
                        "--files", "acme.yaml", "bad.yml", "notes.txt"],
                       cwd=users, capture_output=True, text=True, timeout=600, check=False)
    out = p.stdout + p.stderr
    if p.returncode == 3 and any(s in out for s in NETWORK_TROUBLE):
        pytest.skip("pre-commit could not install the hook's environment (no network?)")
    assert p.returncode == 1, out
    assert re.search(r"^reconcile validate\.+Failed$", p.stdout, re.M), out
    assert ("bad.yml:3:18: error[schema]: $.metadata.name: 'Bad' does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
            in p.stdout), out
    # Both YAML files were handed to `reconcile validate` (acme.yaml is the valid move); notes.txt, which
    # `files: \.(ya?ml)$` leaves out, was not.
    assert "2 files, 1 move: invalid (1 error, 0 warnings)" in p.stdout, out
    assert "notes.txt" not in p.stdout, out
