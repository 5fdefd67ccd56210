"""The GitHub workflows users copy (examples/github/) and the repository's own, plus the pre-commit hook manifest.

Every workflow is checked against GitHub's workflow schema (check-jsonschema, offline). The example workflows'
security properties are asserted, and their `run:` scripts are executed for real with bash, git, jq and the
installed `reconcile` (a fake `gh` records the GitHub API calls), in scratch repositories.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.render.markdown import MARKER

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GITHUB = EXAMPLES / "github"
PLAN_YML = GITHUB / "plan.yml"
APPLY_YML = GITHUB / "apply.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
BIN = Path(sys.executable).parent  # the venv's bin: reconcile, check-jsonschema, pre-commit

EXAMPLE_WORKFLOWS = [PLAN_YML, APPLY_YML]
REPO_WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
ALL_WORKFLOWS = EXAMPLE_WORKFLOWS + REPO_WORKFLOWS

RUN_URL = "https://github.com/acme-ops/moves/actions/runs/4242"
TOKEN = "ghs_dummyTokenThatMustNeverBePrinted"


def tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=str(BIN))


def load(path: Path) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:  # YAML 1.1 reads the `on:` key as the boolean true
        data["on"] = data.pop(True)
    return data


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def steps(wf: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in wf["jobs"].values() for s in job.get("steps", [])]


def step(wf: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in steps(wf) if s.get("name") == name]
    assert len(found) == 1, f"no single step named {name!r}"
    return found[0]


# -- schema ---------------------------------------------------------------------------------------
def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    exe = tool("check-jsonschema")
    if not exe:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema): workflows not schema-checked")
    return subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=rel)
def test_workflow_matches_the_github_workflow_schema(path: Path) -> None:
    p = check_jsonschema(path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a bad permission level are caught."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\npermissions:\n  contents: banana\njobs:\n  x:\n    runs_on: ubuntu-latest\n"
                   "    steps:\n      - run: echo hi\n")
    p = check_jsonschema(bad)
    assert p.returncode == 1, p.stdout + p.stderr


# -- security properties --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=rel)
def test_no_pull_request_target_and_permissions_declared(path: Path) -> None:
    wf = load(path)
    triggers = wf["on"] if isinstance(wf["on"], (dict, list)) else [wf["on"]]
    assert "pull_request_target" not in triggers
    assert isinstance(wf.get("permissions"), dict), "top-level permissions must be set (least privilege)"
    assert "write" not in wf["permissions"].values(), "top-level permissions must be read-only"


@pytest.mark.parametrize("path", EXAMPLE_WORKFLOWS, ids=rel)
def test_actions_pinned_to_full_commit_shas(path: Path) -> None:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if re.match(r"\s*(- )?uses:", ln)]
    assert lines
    for ln in lines:
        assert re.fullmatch(r"\s*(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", ln), ln


def test_least_privilege_permissions() -> None:
    plan, apply = load(PLAN_YML), load(APPLY_YML)
    assert plan["permissions"] == apply["permissions"] == {"contents": "read"}
    assert plan["jobs"]["plan"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert apply["jobs"]["apply"]["permissions"] == {"contents": "write"}
    for s in steps(plan) + steps(apply):
        if s.get("uses", "").startswith("actions/checkout@"):
            assert s["with"]["persist-credentials"] is False, "no token left on disk while third-party code runs"


@pytest.mark.parametrize("path", EXAMPLE_WORKFLOWS, ids=rel)
def test_secrets_reach_only_the_steps_that_use_the_platform(path: Path) -> None:
    wf = load(path)
    assert "secrets." not in json.dumps({k: v for k, v in wf.items() if k != "jobs"})
    for job in wf["jobs"].values():
        assert "secrets." not in json.dumps({k: v for k, v in job.items() if k != "steps"})
    with_secret = {s["name"] for s in steps(wf) if "secrets." in json.dumps(s)}
    uses_platform = {s["name"] for s in steps(wf) if re.search(r"^reconcile (plan|apply) ", s.get("run", ""), re.M)}
    assert with_secret == uses_platform
    for s in steps(wf):
        if s["name"] in with_secret:
            assert s["env"]["RECONCILE_PLATFORM"] == "${{ secrets.RECONCILE_PLATFORM }}"
            # plan in a pull request holds the read-only token; apply the write token
            token = "RECONCILE_READ_TOKEN" if path.name == "plan.yml" else "RECONCILE_TOKEN"
            assert s["env"]["RECONCILE_TOKEN"] == "${{ secrets." + token + " }}"


@pytest.mark.parametrize("path", EXAMPLE_WORKFLOWS, ids=rel)
def test_run_scripts_take_no_expressions(path: Path) -> None:
    """Untrusted values reach scripts through env, never spliced into the script text (script injection)."""
    wf = load(path)
    assert wf["defaults"] == {"run": {"shell": "bash"}}  # bash -eo pipefail, as the tests below run them
    for s in steps(wf):
        assert "${{" not in s.get("run", ""), s.get("name")


def test_plan_workflow_shape() -> None:
    wf = load(PLAN_YML)
    assert list(wf["on"]) == ["pull_request"]
    assert f"{wf['env']['MANIFESTS']}/**" in wf["on"]["pull_request"]["paths"]
    assert wf["concurrency"] == {"group": "reconcile-plan-${{ github.event.pull_request.number }}",
                                 "cancel-in-progress": True}
    assert step(wf, "Validate the manifests (offline)")["run"] == 'reconcile validate --format github "$MANIFESTS"'
    assert step(wf, "Plan")["run"] == 'reconcile plan --format github "$MANIFESTS"'
    render = step(wf, "Render the plan comment and the plan JSON")
    assert render["if"] == "${{ !cancelled() }}"
    assert 'reconcile plan --format markdown --out plan.json "$MANIFESTS" > comment.md' in render["run"]
    upload = step(wf, "Upload the plan JSON")
    assert upload["uses"].startswith("actions/upload-artifact@") and upload["with"]["path"] == "plan.json"
    comment = step(wf, "Create or update the plan comment")
    assert comment["if"] == ("${{ !cancelled() && github.event.pull_request.head.repo.full_name "
                             "== github.repository }}")
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"


def test_apply_workflow_shape() -> None:
    wf = load(APPLY_YML)
    assert wf["on"]["push"]["branches"] == ["main"]
    assert f"{wf['env']['MANIFESTS']}/**" in wf["on"]["push"]["paths"]
    assert wf["concurrency"] == {"group": "reconcile-apply", "cancel-in-progress": False}
    job = wf["jobs"]["apply"]
    assert job["environment"] == "production"
    checkout = step(wf, "Check out main")
    assert checkout["with"]["ref"] == "${{ github.ref }}"  # the tip of main when the run starts
    assert step(wf, "Apply")["run"] == 'reconcile apply --auto-approve "$MANIFESTS"'
    for name in ("Keep the state file as an artifact", "Commit the state file back"):
        assert step(wf, name)["if"] == "${{ always() && steps.checkout.outcome == 'success' }}"
    assert wf["env"]["RECONCILE_STATE"] == load(PLAN_YML)["env"]["RECONCILE_STATE"]
    assert wf["env"]["RECONCILER_PIP_SPEC"] == load(PLAN_YML)["env"]["RECONCILER_PIP_SPEC"]


# -- the pre-commit hook manifest -------------------------------------------------------------------
def test_pre_commit_hook_manifest() -> None:
    (hook,) = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    assert hook["id"] == "reconcile-validate"
    assert (hook["language"], hook["entry"], hook["pass_filenames"]) == ("python", "reconcile validate", True)
    files = re.compile(hook["files"])
    assert [p for p in ("moves/a.yaml", "moves/b.yml", "a.json", "a.yaml.bak", "notes.txt", "x.ymlx")
            if files.search(p)] == ["moves/a.yaml", "moves/b.yml"]
    pre_commit = tool("pre-commit")
    if not pre_commit:
        pytest.skip("pre-commit is not installed: the manifest is not checked against its schema")
    p = subprocess.run([pre_commit, "validate-manifest", str(HOOKS)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert p.returncode == 0, p.stdout + p.stderr


# -- running the scripts ------------------------------------------------------------------------------
@dataclass
class Step:
    code: int
    out: str
    err: str
    outputs: str


def needs(*tools: str) -> None:
    for t in tools:
        if not shutil.which(t):
            pytest.skip(f"{t} is not installed")


def run_step(wf: dict[str, Any], name: str, cwd: Path, tmp: Path, **given: str) -> Step:
    """Run one step's script as GitHub does (bash -eo pipefail), with the workflow, job and step env.

    Every env value that is a `${{ }}` expression must be `given` by the test.
    """
    job = next(iter(wf["jobs"].values()))
    s = step(wf, name)
    env_spec = {**wf.get("env", {}), **job.get("env", {}), **s.get("env", {})}
    expressions = {k for k, v in env_spec.items() if "${{" in str(v)}
    assert expressions <= set(given), f"give {sorted(expressions - set(given))}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RECONCILE_"))}
    env.update({k: str(v) for k, v in env_spec.items()})
    tmp.mkdir(exist_ok=True)
    outputs, summary = tmp / "github_output", tmp / "step_summary"
    outputs.write_text("")
    env.update(PATH=f"{tmp / 'fakebin'}{os.pathsep}{BIN}{os.pathsep}{env.get('PATH', '')}",
               GITHUB_OUTPUT=str(outputs), GITHUB_STEP_SUMMARY=str(summary), GITHUB_ACTIONS="true",
               GITHUB_SERVER_URL="https://github.com", GITHUB_REPOSITORY="acme-ops/moves", GITHUB_ACTOR="octo-merger")
    env.update(given)
    script = tmp / "step.sh"
    script.write_text(s["run"], encoding="utf-8")
    p = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    return Step(p.returncode, p.stdout, p.stderr, outputs.read_text())


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Olga Ops", "GIT_AUTHOR_EMAIL": "olga@example.com",
           "GIT_COMMITTER_NAME": "Olga Ops", "GIT_COMMITTER_EMAIL": "olga@example.com"}
    p = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert p.returncode == 0, f"git {' '.join(args)}: {p.stderr}"
    return p.stdout.strip()


@pytest.fixture(autouse=True)
def _git_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gitconfig").write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GITHUB_ACTOR"):
        monkeypatch.delenv(var, raising=False)


def gitops_repo(root: Path, platform_db: Path, *moves: Path, seed: Path = EXAMPLES / "platform.yaml") -> Path:
    """A users' GitOps repository: seed, reconcile.toml (platform outside the repo), moves/, .reconcile/ ignored."""
    root.mkdir(parents=True)
    shutil.copyfile(seed, root / "platform.yaml")
    (root / "reconcile.toml").write_text(f'[platform]\nurl = "sqlite:///{platform_db}"\nseed = "platform.yaml"\n'
                                         '[state]\npath = ".reconcile/state.json"\n', encoding="utf-8")
    (root / ".gitignore").write_text(".reconcile/\n")
    (root / "moves").mkdir()
    for m in moves:
        shutil.copyfile(m, root / "moves" / m.name)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "moves")
    return root


# The plan workflow -------------------------------------------------------------------------------
RENDER = "Render the plan comment and the plan JSON"


@pytest.fixture
def plan_wf() -> dict[str, Any]:
    needs("bash", "git")
    return load(PLAN_YML)


def test_plan_steps_on_valid_moves(plan_wf: dict[str, Any], tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path / "repo", tmp_path / "platform.db", EXAMPLES / "moves" / "02-acme-to-northwind.yaml",
                       EXAMPLES / "moves" / "03-globex-to-northwind.yaml")
    head = git(repo, "rev-parse", "HEAD")
    secrets = {"RECONCILE_PLATFORM": "", "RECONCILE_TOKEN": ""}  # an unset secret: reconcile.toml decides

    # Offline: a platform that cannot be reached does not matter.
    v = run_step(plan_wf, "Validate the manifests (offline)", repo, tmp_path / "s1",
                 RECONCILE_PLATFORM="postgres://nowhere")
    assert (v.code, v.out, v.err) == (0, "", "2 file(s), 2 move(s): valid (0 errors, 0 warnings)\n")
    p = run_step(plan_wf, "Plan", repo, tmp_path / "s2", **secrets)
    assert p.code == 0, p.err
    assert "acme-to-northwind" in p.out and "::error" not in p.out

    r = run_step(plan_wf, RENDER, repo, tmp_path / "s3", RUN_URL=RUN_URL, **secrets)
    assert r.code == 0, r.err
    assert r.outputs == "exit-code=0\n"
    comment = (repo / "comment.md").read_text(encoding="utf-8")
    assert comment.splitlines()[0] == MARKER and "| 2 | 0 | 0 |" in comment and "```mermaid" in comment
    assert (tmp_path / "s3" / "step_summary").read_text(encoding="utf-8") == comment
    plan = json.loads((repo / "plan.json").read_text(encoding="utf-8"))
    assert (plan["git_commit"], plan["applyable"], plan["summary"]["moves"]) == (head, True, 2)


def test_plan_steps_fail_the_check_on_an_invalid_move(plan_wf: dict[str, Any], tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path / "repo", tmp_path / "platform.db", EXAMPLES / "moves" / "02-acme-to-northwind.yaml",
                       EXAMPLES / "invalid" / "sal-unmatched.yaml")
    secrets = {"RECONCILE_PLATFORM": "", "RECONCILE_TOKEN": ""}
    assert run_step(plan_wf, "Validate the manifests (offline)", repo, tmp_path / "s1").code == 0

    p = run_step(plan_wf, "Plan", repo, tmp_path / "s2", **secrets)
    assert p.code == 1
    annotations = [ln for ln in p.out.splitlines() if ln.startswith("::")]
    assert len(annotations) == 1
    assert re.fullmatch(r"::error file=moves/sal-unmatched\.yaml,line=\d+,col=\d+,title=reconcile sal-unmatched::"
                        r".+", annotations[0]), annotations

    r = run_step(plan_wf, RENDER, repo, tmp_path / "s3", RUN_URL=RUN_URL, **secrets)
    assert r.code == 1  # the check fails
    assert r.outputs == "exit-code=1\n"
    comment = (repo / "comment.md").read_text(encoding="utf-8")
    assert comment.startswith(MARKER + "\n## reconcile plan: ❌ not applyable")
    assert "sal-unmatched" in comment
    plan = json.loads((repo / "plan.json").read_text(encoding="utf-8"))
    assert plan["applyable"] is False and plan["summary"]["invalid"] == 1


def test_validate_step_annotates_schema_errors(plan_wf: dict[str, Any], tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path / "repo", tmp_path / "platform.db", EXAMPLES / "invalid" / "schema.yaml")
    v = run_step(plan_wf, "Validate the manifests (offline)", repo, tmp_path / "s1")
    assert v.code == 1
    assert v.out.startswith("::error file=moves/schema.yaml,line=")
    assert all(ln.startswith("::error ") and ",title=reconcile schema::" in ln for ln in v.out.splitlines())


def test_render_step_when_no_plan_can_be_made(plan_wf: dict[str, Any], tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path / "repo", tmp_path / "platform.db", EXAMPLES / "moves" / "02-acme-to-northwind.yaml")
    r = run_step(plan_wf, RENDER, repo, tmp_path / "s", RUN_URL=RUN_URL, RECONCILE_PLATFORM="postgres://nowhere",
                 RECONCILE_TOKEN="")
    assert r.code == 1
    assert "unsupported platform URL" in r.err
    assert r.outputs == "exit-code=1\n"
    assert (repo / "comment.md").read_text(encoding="utf-8") == (
        f"{MARKER}\n## reconcile plan: ❌ failed\n\n"
        f"The plan could not be made (exit code 1). See the log of [this run]({RUN_URL}).\n")


FAKE_GH = r'''#!{python}
"""A fake `gh`: GET pages come from $FAKE_GH_PAGES, writes are logged to $FAKE_GH_LOG."""
import json, os, sys
args = sys.argv[1:]
assert args[0] == "api", args
assert os.environ.get("GH_TOKEN"), "GH_TOKEN is not set"
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    if "--paginate" in args:
        log.write(json.dumps({{"method": "GET", "url": args[-1]}}) + "\n")
        for page in json.load(open(os.environ["FAKE_GH_PAGES"])):
            sys.stdout.write(json.dumps(page))  # gh prints one JSON array per page, back to back
    else:
        method = args[args.index("--method") + 1]
        body = json.load(open(args[args.index("--input") + 1]))
        url = next(a for a in args if a.startswith("repos/"))
        log.write(json.dumps({{"method": method, "url": url, "body": body}}) + "\n")
        print("{{}}")
'''


def comment_step(tmp_path: Path, pages: list[list[dict[str, Any]]]) -> tuple[Step, list[dict[str, Any]]]:
    needs("bash", "jq")
    work = tmp_path / "work"
    work.mkdir()
    body = f"{MARKER}\n## reconcile plan: 🔀 changes\n\nquote \" backslash \\ dollar $HOME `tick`\n"
    (work / "comment.md").write_text(body, encoding="utf-8")
    fakebin = tmp_path / "s" / "fakebin"
    fakebin.mkdir(parents=True)
    gh = fakebin / "gh"
    gh.write_text(FAKE_GH.format(python=sys.executable))
    gh.chmod(0o755)
    (tmp_path / "pages.json").write_text(json.dumps(pages))
    log = tmp_path / "gh.log"
    log.touch()
    s = run_step(load(PLAN_YML), "Create or update the plan comment", work, tmp_path / "s", GH_TOKEN=TOKEN,
                 PR_NUMBER="42", FAKE_GH_PAGES=str(tmp_path / "pages.json"), FAKE_GH_LOG=str(log))
    calls = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert calls[0] == {"method": "GET", "url": "repos/acme-ops/moves/issues/42/comments"}
    for c in calls[1:]:
        assert c["body"] == {"body": body}  # the comment file, byte for byte
    return s, calls[1:]


BOT = {"login": "github-actions[bot]"}


def test_comment_step_creates_the_comment_on_the_first_push(tmp_path: Path) -> None:
    s, writes = comment_step(tmp_path, [[{"id": 5, "user": {"login": "olga"}, "body": "LGTM"},
                                         {"id": 6, "user": BOT, "body": "another bot comment"}]])
    assert s.code == 0, s.err
    assert [(w["method"], w["url"]) for w in writes] == [("POST", "repos/acme-ops/moves/issues/42/comments")]
    assert "Created the plan comment." in s.out


def test_comment_step_updates_its_own_comment_in_place(tmp_path: Path) -> None:
    pages = [[{"id": 1001, "user": {"login": "mallory"}, "body": f"{MARKER}\nlooks like a plan"}] +
             [{"id": 1000 + i, "user": {"login": "olga"}, "body": "..."} for i in range(2, 31)],
             [{"id": 2001, "user": BOT, "body": "coverage: 93%"},
              {"id": 2002, "user": BOT, "body": f"{MARKER}\n## reconcile plan: old"}]]
    s, writes = comment_step(tmp_path, pages)
    assert s.code == 0, s.err
    assert [(w["method"], w["url"]) for w in writes] == [("PATCH", "repos/acme-ops/moves/issues/comments/2002")]
    assert "Updated the plan comment 2002." in s.out
    assert TOKEN not in s.out + s.err


def test_comment_step_with_no_comments_at_all(tmp_path: Path) -> None:
    s, writes = comment_step(tmp_path, [[]])
    assert s.code == 0, s.err
    assert [w["method"] for w in writes] == ["POST"]


# The apply workflow ----------------------------------------------------------------------------
COMMIT = "Commit the state file back"


@pytest.fixture
def apply_wf() -> dict[str, Any]:
    needs("bash", "git")
    return load(APPLY_YML)


def runner_checkout(tmp_path: Path, *moves: Path, seed: Path = EXAMPLES / "platform.yaml") -> tuple[Path, Path]:
    """An `origin` bare repository holding main, and the runner's clone of it (as actions/checkout leaves it)."""
    src = gitops_repo(tmp_path / "src", tmp_path / "platform.db", *moves, seed=seed)
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(src), str(origin))
    checkout = tmp_path / "runner"
    git(tmp_path, "clone", "-q", "--branch", "main", str(origin), str(checkout))
    return origin, checkout


def commit_env(outcome: str = "success") -> dict[str, str]:
    return {"GH_TOKEN": TOKEN, "BRANCH": "main", "APPLY_OUTCOME": outcome, "RUN_URL": RUN_URL}


def test_apply_then_commit_the_state_back(apply_wf: dict[str, Any], tmp_path: Path) -> None:
    origin, checkout = runner_checkout(tmp_path, EXAMPLES / "moves" / "02-acme-to-northwind.yaml",
                                       EXAMPLES / "moves" / "03-globex-to-northwind.yaml")
    applied = git(checkout, "rev-parse", "HEAD")
    a = run_step(apply_wf, "Apply", checkout, tmp_path / "s1", RECONCILE_PLATFORM="", RECONCILE_TOKEN="")
    assert a.code == 0, a.err
    assert "Apply complete: 2 applied" in a.out

    c = run_step(apply_wf, COMMIT, checkout, tmp_path / "s2", **commit_env())
    assert c.code == 0, c.err
    assert TOKEN not in c.out + c.err
    # origin/main: one new commit, the state file only (.gitignore'd folder or not), with the agreed message.
    assert git(origin, "rev-parse", "main~1") == applied
    assert git(origin, "log", "-1", "--format=%s", "main") == f"reconcile: apply {applied[:7]} [skip ci]"
    assert git(origin, "log", "-1", "--format=%b", "main") == f"reconcile apply: success; run {RUN_URL}"
    assert git(origin, "log", "-1", "--format=%an <%ae>", "main") == (
        "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>")
    assert git(origin, "diff", "--name-only", "main~1", "main") == ".reconcile/state.json"
    pushed = json.loads(git(origin, "show", "main:.reconcile/state.json"))
    assert {n: (m["status"], m["manifest"]["git_commit"], m["applied_by"]) for n, m in pushed["moves"].items()} == {
        "acme-to-northwind": ("applied", applied, "octo-merger"),
        "globex-to-northwind": ("applied", applied, "octo-merger")}

    # The next run finds nothing to do: the state file is unchanged and nothing is committed.
    a = run_step(apply_wf, "Apply", checkout, tmp_path / "s3", RECONCILE_PLATFORM="", RECONCILE_TOKEN="")
    assert a.code == 0, a.err
    c = run_step(apply_wf, COMMIT, checkout, tmp_path / "s4", **commit_env())
    assert c.code == 0, c.err
    assert c.out == "The state file is unchanged: nothing to commit.\n"
    assert git(origin, "rev-parse", "main~1") == applied


def test_commit_back_rebases_when_main_moved_on(apply_wf: dict[str, Any], tmp_path: Path) -> None:
    origin, checkout = runner_checkout(tmp_path, EXAMPLES / "moves" / "02-acme-to-northwind.yaml")
    assert run_step(apply_wf, "Apply", checkout, tmp_path / "s1", RECONCILE_PLATFORM="", RECONCILE_TOKEN="").code == 0
    # Meanwhile another pull request is merged into main.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    (other / "README.md").write_text("docs\n")
    git(other, "add", "README.md")
    git(other, "commit", "-q", "-m", "Merge pull request #8: docs")
    git(other, "push", "-q", "origin", "main")

    c = run_step(apply_wf, COMMIT, checkout, tmp_path / "s2", **commit_env())
    assert c.code == 0, c.err
    assert "main moved on: rebasing the state commit onto it (attempt 1)" in c.out
    assert git(origin, "log", "--format=%s", "-2", "main").splitlines() == [
        f"reconcile: apply {git(checkout, 'rev-parse', '--short=7', 'HEAD~2')} [skip ci]",
        "Merge pull request #8: docs"]
    assert git(origin, "show", "main:README.md") == "docs"
    assert "acme-to-northwind" in json.loads(git(origin, "show", "main:.reconcile/state.json"))["moves"]


def test_a_failed_apply_still_commits_its_journal(apply_wf: dict[str, Any], tmp_path: Path) -> None:
    seed = yaml.safe_load((EXAMPLES / "platform.yaml").read_text(encoding="utf-8"))
    acme = next(c for c in seed["customers"] if c["id"] == "acme")
    acme["users"][0]["hold"] = "mailbox under legal hold"
    held = tmp_path / "held.yaml"
    held.write_text(yaml.safe_dump(seed, sort_keys=False), encoding="utf-8")
    origin, checkout = runner_checkout(tmp_path, EXAMPLES / "moves" / "02-acme-to-northwind.yaml", seed=held)

    a = run_step(apply_wf, "Apply", checkout, tmp_path / "s1", RECONCILE_PLATFORM="", RECONCILE_TOKEN="")
    assert a.code == 1
    c = run_step(apply_wf, COMMIT, checkout, tmp_path / "s2", **commit_env("failure"))
    assert c.code == 0, c.err
    assert git(origin, "log", "-1", "--format=%b", "main") == f"reconcile apply: failure; run {RUN_URL}"
    record = json.loads(git(origin, "show", "main:.reconcile/state.json"))["moves"]["acme-to-northwind"]
    assert record["status"] == "failed"
    assert "legal hold" in record["requests"][-1]["error"]


def test_commit_step_without_a_state_file(apply_wf: dict[str, Any], tmp_path: Path) -> None:
    """Apply never ran (e.g. the install failed): nothing to commit, and the step says so."""
    origin, checkout = runner_checkout(tmp_path, EXAMPLES / "moves" / "02-acme-to-northwind.yaml")
    before = git(origin, "rev-parse", "main")
    c = run_step(apply_wf, COMMIT, checkout, tmp_path / "s", **commit_env("failure"))
    assert (c.code, c.out) == (0, "No state file at .reconcile/state.json: nothing to commit.\n")
    assert git(origin, "rev-parse", "main") == before


def test_readme_documents_the_secrets_and_placeholders() -> None:
    text = (GITHUB / "README.md").read_text(encoding="utf-8")
    for needle in ("RECONCILE_PLATFORM", "RECONCILER_PIP_SPEC", "production", "reconcile-apply", MARKER,
                   "files:", "pull-requests: write", "contents: write"):
        assert needle in text, needle
    assert textwrap.dedent("""\
        - id: reconcile-validate
    """).strip() in text
