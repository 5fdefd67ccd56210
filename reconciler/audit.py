"""Git: the commit the manifests come from, and who is applying."""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def commit_of(paths: Sequence[str]) -> str | None:
    """HEAD of the repository holding the manifests; `-dirty` when they differ from it."""
    if not paths:
        return None
    first = Path(paths[0])
    where = first if first.is_dir() else first.parent
    where = where if str(where) else Path(".")
    if not where.exists():
        return None
    sha = _git(["rev-parse", "HEAD"], where)
    if not sha:
        return None
    top = _git(["rev-parse", "--show-toplevel"], where)
    rel = [os.path.relpath(Path(p).resolve(), top) for p in paths] if top else list(paths)
    dirty = _git(["status", "--porcelain", "--", *rel], Path(top) if top else where)
    return f"{sha}-dirty" if dirty else sha


def actor() -> str:
    """Who applies: the CI actor, else git's user.email, else the login name."""
    ci = os.environ.get("GITHUB_ACTOR")
    if ci:
        return ci
    email = _git(["config", "user.email"], Path.cwd())
    if email:
        return email
    return login_name()


def login_name() -> str:
    """The login name, else the numeric uid (some containers have no login name)."""
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def manifest_origin(file: str, cwd: Path | None = None) -> dict[str, str | None] | None:
    """Who added a manifest, in which commit, and the merge that brought that commit to HEAD.

    `file` is as apply saw it (relative to where apply ran, usually the repository's top): it is
    looked up from `cwd`, then from the top of the repository holding `cwd`.
    """
    here = cwd or Path.cwd()
    top = _git(["rev-parse", "--show-toplevel"], here)
    for where in (here, Path(top) if top else None):
        if where is not None and (Path(file).is_absolute() or (where / file).exists()):
            return _origin(file, where)
    return _origin(file, here)


def _origin(file: str, where: Path) -> dict[str, str | None] | None:
    out = _git(["log", "--follow", "--diff-filter=A", "--format=%H%x1f%an <%ae>%x1f%aI%x1f%s", "--", file], where)
    if not out:
        return None
    sha, author, date, subject = out.splitlines()[-1].split("\x1f", 3)
    mainline = (_git(["rev-list", "--first-parent", "HEAD"], where) or "").splitlines()
    merged = sha
    if sha not in mainline:  # it came in through a merge: the oldest mainline merge that has it
        merges = _git(["rev-list", "--first-parent", "--merges", "--ancestry-path", f"{sha}..HEAD"], where)
        merged = merges.splitlines()[-1] if merges else sha
    merge_subject = _git(["log", "-1", "--format=%s", merged], where) if merged != sha else subject
    return {"added_by": author, "added_at": date, "added_in": sha, "subject": subject,
            "merged_in": merged, "merge_subject": merge_subject}
