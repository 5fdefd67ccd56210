"""audit: the manifests' commit (with -dirty), who applies, and a manifest's git origin."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler import audit


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "ops@example.com")
    git(tmp_path, "config", "user.name", "Ops")
    (tmp_path / "moves").mkdir()
    (tmp_path / "moves" / "a.yaml").write_text("a: 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "add a")
    return tmp_path


def test_commit_of_is_head_and_dirty_only_for_the_manifests(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert audit.commit_of([str(repo / "moves")]) == head
    (repo / "README").write_text("elsewhere\n")  # a change outside the manifests
    assert audit.commit_of([str(repo / "moves")]) == head
    (repo / "moves" / "a.yaml").write_text("a: 2\n")
    assert audit.commit_of([str(repo / "moves")]) == f"{head}-dirty"


def test_commit_of_outside_git_is_none(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("a: 1\n")
    assert audit.commit_of([str(tmp_path / "m.yaml")]) is None
    assert audit.commit_of([]) is None


def test_actor_prefers_the_ci_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    assert audit.actor() == "octocat"


def test_manifest_origin_direct_commit_and_through_a_merge(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    origin = audit.manifest_origin("moves/a.yaml", repo)
    assert origin is not None
    assert (origin["added_by"], origin["added_in"], origin["merged_in"]) == ("Ops <ops@example.com>", first, first)

    git(repo, "checkout", "-qb", "feature")
    (repo / "moves" / "b.yaml").write_text("b: 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "add b")
    added = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "feature", "-m", "Merge PR #7")
    merge = git(repo, "rev-parse", "HEAD")
    origin = audit.manifest_origin("moves/b.yaml", repo / "moves")  # from a subdirectory, path from the top
    assert origin is not None
    assert (origin["added_in"], origin["merged_in"], origin["merge_subject"]) == (added, merge, "Merge PR #7")


def test_manifest_origin_of_an_unknown_file_is_none(repo: Path) -> None:
    assert audit.manifest_origin("moves/nope.yaml", repo) is None
