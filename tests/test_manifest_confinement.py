"""A manifest path that resolves outside the repository is refused without being read (issue 9 item 4)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import MOVES, run_main

SECRET = "ghp_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
GOOD = (MOVES / "acme-to-northwind.yaml").read_text("utf-8")


def refused(link: str, real: Path, what: str, root: Path) -> str:
    return (f"{link}: error[yaml]: resolves to {real}, outside {what} ({root}); not read: a manifest must be a "
            "file of the repository, not a link out of it")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file with a token, somewhere that is not the repository (or the directory) given."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    f = d / "token.yaml"
    f.write_text(f"{SECRET}: 1\n", encoding="utf-8")
    return f


def run(*args: str) -> tuple[int, str]:
    r = run_main(*args)
    assert SECRET[:8] not in r.out + r.err, r
    return r.code, r.err


def test_outside_git_a_link_out_of_the_directory_given_is_refused(tmp_path: Path, outside: Path) -> None:
    moves = tmp_path / "moves"
    moves.mkdir()
    (moves / "a.yaml").write_text(GOOD, encoding="utf-8")
    (moves / "x.yaml").symlink_to(outside)
    code, err = run("validate", str(moves))
    assert code == 1
    assert err == refused(f"{moves}/x.yaml", outside, "the directory given on the command line", moves) + "\n"


def test_outside_git_a_file_argument_that_links_out_of_its_directory_is_refused(tmp_path: Path,
                                                                                outside: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "x.yaml").symlink_to(outside)
    code, err = run("validate", str(here / "x.yaml"))
    assert code == 1
    assert err == refused(f"{here}/x.yaml", outside, "the directory of the file given", here) + "\n"


def test_a_link_to_a_fifo_outside_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    moves = tmp_path / "moves"
    moves.mkdir()
    (moves / "x.yaml").symlink_to(fifo)
    code, err = run("validate", str(moves))
    assert code == 1
    assert err == refused(f"{moves}/x.yaml", fifo, "the directory given on the command line", moves) + "\n"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_in_git_links_may_point_anywhere_in_the_work_tree_but_not_out_of_it(tmp_path: Path, outside: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "moves").mkdir(parents=True)
    (repo / "shared").mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "shared" / "acme.yaml").write_text(GOOD, encoding="utf-8")
    (repo / "moves" / "a.yaml").symlink_to("../shared/acme.yaml")  # inside the work tree: fine
    (repo / "moves" / "b.yaml").symlink_to(outside)
    (repo / "moves" / "c.yaml").symlink_to("/etc/passwd")
    monkeypatch.chdir(repo)
    code, err = run("validate", "moves")
    assert code == 1
    assert err == (refused("moves/b.yaml", outside, "the git work tree", repo) + "\n"
                   + refused("moves/c.yaml", Path("/etc/passwd"), "the git work tree", repo) + "\n")
    (repo / "moves" / "b.yaml").unlink()
    (repo / "moves" / "c.yaml").unlink()
    r = run_main("validate", "moves")
    assert r.code == 0, r


def test_an_unknown_key_is_quoted_shortened(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(GOOD + f"{SECRET}: 1\nshort-key: 2\n", encoding="utf-8")
    r = run_main("validate", str(f))
    assert r.code == 1
    assert SECRET not in r.err and SECRET[:38] in r.err
    assert r.err.splitlines() == [
        f"{f}:15:1: error[schema]: $: unknown key '{SECRET[:38]}… (allowed here: apiVersion, kind, metadata, spec)",
        f"{f}:16:1: error[schema]: $.short-key: unknown key 'short-key' (allowed here: apiVersion, kind, metadata, "
        "spec)"]


def test_a_long_service_key_is_quoted_shortened(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(GOOD + f"    {SECRET}!: {{}}\n", encoding="utf-8")
    r = run_main("validate", str(f))
    assert r.code == 1
    assert SECRET not in r.err, r
    assert r.err.splitlines() == [
        f"{f}:15:5: error[schema]: $.spec.services: key '{SECRET[:38]}… does not match "
        "^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"]


def test_a_link_swapped_in_after_the_check_is_refused_not_followed(tmp_path: Path, outside: Path) -> None:
    """What is read is what was checked: the file is opened by its checked real path, refusing a link there."""
    from reconciler import manifests

    moves = tmp_path / "moves"
    moves.mkdir()
    f = moves / "a.yaml"
    f.write_text(GOOD, encoding="utf-8")
    confine = manifests.Confine.of(str(moves), True)
    real, problem = confine.check(str(f))
    assert (real, problem) == (str(f.resolve()), None)
    f.unlink()
    f.symlink_to(outside)  # the swap, between the check and the read
    raw, diags = manifests.read_raw(str(f), real=real)
    assert raw is None and len(diags) == 1
    assert diags[0].message == ("became a symbolic link after it was checked; not read (is something changing the "
                                "repository while reconcile runs?)")
    assert manifests.read_raw(str(f))[0] == outside.read_bytes()  # unchecked, the link would have been followed
