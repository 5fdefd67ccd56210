"""manifests: discovery, safe loading with limits, schema diagnostics, moves, digests, duplicate names."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import manifest, manifest_yaml

from reconciler import manifests
from reconciler.errors import ReconcilerError
from reconciler.manifests import MAX_MANIFEST_BYTES, discover, load, read_docs


def touch(root: Path, *rels: str, text: str = "") -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def rel(paths: list[str], root: Path) -> list[str]:
    return [os.path.relpath(p, root) for p in paths]


# -- discover -------------------------------------------------------------------------------
def test_directory_is_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    d = tmp_path / "moves"
    touch(d, "b.yaml", "a.yml", "sub/z.yaml", "sub/a.yaml", "a/x.yaml", "a-b/x.yaml", "C.yaml", "sub/deeper/m.yml")
    assert rel(discover([str(d)]), tmp_path) == [
        "moves/C.yaml", "moves/a/x.yaml", "moves/a-b/x.yaml", "moves/a.yml", "moves/b.yaml",
        "moves/sub/a.yaml", "moves/sub/deeper/m.yml", "moves/sub/z.yaml"]


def test_only_yaml_and_yml_files_are_taken_from_a_directory(tmp_path: Path) -> None:
    touch(tmp_path, "a.yaml", "b.yml", "c.json", "d.txt", "README.md", "e.yaml.bak", "f.yaml~", "noext")
    assert rel(discover([str(tmp_path)]), tmp_path) == ["a.yaml", "b.yml"]


def test_hidden_files_and_directories_are_skipped(tmp_path: Path) -> None:
    touch(tmp_path, ".hidden.yaml", ".git/config.yaml", "sub/.cache/x.yaml", "sub/.x.yml", "sub/ok.yaml", "ok.yaml")
    assert rel(discover([str(tmp_path)]), tmp_path) == ["ok.yaml", "sub/ok.yaml"]


def test_arguments_keep_their_order(tmp_path: Path) -> None:
    touch(tmp_path, "z.yaml", "a.yaml", "dir/b.yaml", "dir/a.yaml")
    z, a, d = str(tmp_path / "z.yaml"), str(tmp_path / "a.yaml"), str(tmp_path / "dir")
    assert discover([z, d, a]) == [z, str(tmp_path / "dir/a.yaml"), str(tmp_path / "dir/b.yaml"), a]


def test_an_explicit_file_is_taken_whatever_its_name(tmp_path: Path) -> None:
    touch(tmp_path, ".hidden.yaml", "move.txt")
    files = [str(tmp_path / ".hidden.yaml"), str(tmp_path / "move.txt")]
    assert discover(files) == files


def test_an_empty_directory_gives_no_files(tmp_path: Path) -> None:
    assert discover([str(tmp_path)]) == []


@pytest.mark.parametrize("missing", ["nope.yaml", "nope/"])
def test_a_missing_path_raises(tmp_path: Path, missing: str) -> None:
    touch(tmp_path, "a.yaml")
    arg = str(tmp_path / missing)
    with pytest.raises(ReconcilerError) as e:
        discover([str(tmp_path / "a.yaml"), arg])
    assert e.value.message == f"{arg}: no such file or directory"
    assert e.value.hint


def test_a_file_named_twice_is_read_once(tmp_path: Path, write_manifest: Callable[..., Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write_manifest("moves/a.yaml", manifest(name="a"))
    monkeypatch.chdir(tmp_path)
    for args in (["moves", "moves/a.yaml"], ["moves", "./moves"], ["moves/a.yaml", str(tmp_path / "moves/a.yaml")]):
        loaded = load(args)
        assert [m.name for m in loaded.moves] == ["a"], (args, [d.format() for d in loaded.diagnostics])
        assert loaded.diagnostics == []


def test_a_symlink_loop_in_a_directory_does_not_hang(tmp_path: Path) -> None:
    d = tmp_path / "moves"
    touch(d, "a.yaml", "sub/b.yaml")
    (d / "sub" / "loop").symlink_to(d, target_is_directory=True)
    (d / "self").symlink_to(d / "self")  # a link to itself
    result: list[list[str]] = []
    t = threading.Thread(target=lambda: result.append(discover([str(d)])), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "discover() hangs on a symlink loop"
    assert "moves/a.yaml" in rel(result[0], tmp_path) and "moves/sub/b.yaml" in rel(result[0], tmp_path)
    assert len(result[0]) == len(set(result[0]))


def test_a_broken_symlink_is_a_yaml_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    loaded = load([str(tmp_path)])
    (d,) = loaded.diagnostics
    assert d.code == "yaml" and d.is_error and d.file == str(tmp_path / "gone.yaml")
    assert d.message.startswith("cannot read")


# -- limits ---------------------------------------------------------------------------------
def test_a_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    good = manifest_yaml(manifest())
    big = tmp_path / "big.yaml"
    big.write_text(good + "#" * (MAX_MANIFEST_BYTES + 1 - len(good)))
    assert big.stat().st_size == MAX_MANIFEST_BYTES + 1
    loaded = load([str(big)])
    assert loaded.moves == []
    (d,) = loaded.diagnostics
    assert (d.code, d.severity, d.file, d.line, d.column) == ("yaml", "error", str(big), 1, 1)
    assert d.message == "file is larger than 1024 KiB; split it into smaller manifests"


def test_a_file_of_exactly_one_mebibyte_is_read(tmp_path: Path) -> None:
    good = manifest_yaml(manifest())
    f = tmp_path / "edge.yaml"
    f.write_text(good + "#" * (MAX_MANIFEST_BYTES - len(good)))
    assert f.stat().st_size == MAX_MANIFEST_BYTES
    loaded = load([str(f)])
    assert [m.name for m in loaded.moves] == ["acme-to-northwind"] and loaded.diagnostics == []


def test_invalid_utf8_is_a_yaml_error_with_position(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(manifest_yaml(manifest(description="café")).encode("latin-1"))
    (d,) = load([str(f)]).diagnostics
    assert (d.code, d.line, d.column) == ("yaml", 5, 19)
    assert d.message.startswith("not valid UTF-8 (byte 0xe9")


def test_a_bom_and_crlf_line_ends_load_with_the_right_positions(tmp_path: Path) -> None:
    f = tmp_path / "win.yaml"
    text = manifest_yaml(manifest()).replace("spec:\n", "spec:\n  colour: blue\n")
    f.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    (d,) = load([str(f)]).diagnostics
    assert (d.code, d.line, d.column) == ("schema", 6, 3)
    f.write_bytes(b"\xef\xbb\xbf" + manifest_yaml(manifest()).replace("\n", "\r\n").encode("utf-8"))
    loaded = load([str(f)])
    assert [m.name for m in loaded.moves] == ["acme-to-northwind"] and loaded.diagnostics == []
    assert loaded.moves[0].digest == load_text_digest(tmp_path, manifest_yaml(manifest()))


def load_text_digest(tmp_path: Path, text: str) -> str:
    f = tmp_path / "plain.yaml"
    f.write_text(text)
    return load([str(f)]).moves[0].digest


# -- empty files ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, message", [
    ("", 1, "the file holds no manifest"),
    ("# nothing yet\n", 1, "the file holds no manifest"),
    ("---\n", 2, "empty document; nothing to plan"),
])
def test_empty_files_give_an_empty_warning(tmp_path: Path, text: str, line: int, message: str) -> None:
    f = tmp_path / "e.yaml"
    f.write_text(text)
    loaded = load([str(f)])
    assert loaded.moves == [] and loaded.files == 1
    (d,) = loaded.diagnostics
    assert (d.code, d.severity, d.file, d.line, d.column, d.message) == ("empty", "warning", str(f), line, 1,
                                                                         message)


def test_an_empty_document_among_good_ones_is_a_warning(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(manifest_yaml(manifest()) + "---\n---\n" + manifest_yaml(manifest(name="second")))
    loaded = load([str(f)])
    assert [m.name for m in loaded.moves] == ["acme-to-northwind", "second"]
    assert [(d.code, d.severity) for d in loaded.diagnostics] == [("empty", "warning")]


# -- one bad document never hides the others ------------------------------------------------------
def test_a_good_document_before_a_broken_one_is_kept(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    good = manifest_yaml(manifest())
    f.write_text(good + "---\nspec: [\n")
    loaded = load([str(f)])
    assert [m.name for m in loaded.moves] == ["acme-to-northwind"]
    (d,) = loaded.diagnostics
    assert d.code == "yaml" and d.file == str(f) and d.line == good.count("\n") + 3


def test_a_schema_invalid_document_does_not_hide_the_next(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(manifest_yaml(manifest(name="first")) + "---\nkind: CustomerMove\n---\n"
                 + manifest_yaml(manifest(name="third")))
    loaded = load([str(f)])
    assert [m.name for m in loaded.moves] == ["first", "third"]
    assert {d.code for d in loaded.diagnostics} == {"schema"}
    assert [d.message for d in loaded.diagnostics] == [
        "$: 'apiVersion' is required", "$: 'metadata' is required", "$: 'spec' is required"]


def test_a_broken_file_does_not_hide_another_file(tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    a = write_manifest("a.yaml", "spec:\n  x: 1\n  x: 2\n")
    b = write_manifest("b.yaml", manifest(name="b-move"))
    c = write_manifest("c.yaml", "\tnot: yaml: at all\n")
    loaded = load([str(a), str(b), str(c)])
    assert [m.name for m in loaded.moves] == ["b-move"]
    assert [(d.file, d.code) for d in loaded.diagnostics] == [(str(a), "yaml"), (str(c), "yaml")]
    assert loaded.diagnostics[0].message == "duplicate key 'x' (first at line 2)"
    assert loaded.files == 3


def test_moves_keep_argument_then_document_order(tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    write_manifest("d/b.yaml", manifest(name="b1"), manifest(name="b2"))
    write_manifest("d/a.yaml", manifest(name="a1"))
    first = write_manifest("first.yaml", manifest(name="z0"))
    loaded = load([str(first), str(tmp_path / "d")])
    assert [m.name for m in loaded.moves] == ["z0", "a1", "b1", "b2"]
    assert [(m.file, m.line) for m in loaded.moves][2:] == [(str(tmp_path / "d/b.yaml"), 1),
                                                              (str(tmp_path / "d/b.yaml"), 10)]


# -- Move and its digest ---------------------------------------------------------------------
def test_move_carries_its_manifest_and_origin(write_manifest: Callable[..., Path]) -> None:
    doc = manifest(services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"},
                                                 "properties": {"mailboxQuotaMB": 8192, "archive": None}}},
                   ticket="CHG-1")
    f = write_manifest("m.yaml", doc)
    (m,) = load([str(f)]).moves
    assert (m.name, m.file, m.line) == ("acme-to-northwind", str(f), 1)
    assert m.spec.customer == "acme" and m.spec.to_reseller == "northwind" and m.spec.location == "eu-west"
    svc = m.spec.services["hosted-exchange"]
    assert svc.plan == "nw-exchange" and svc.sals == {"standard": "nw-standard"}
    assert svc.properties == {"mailboxQuotaMB": 8192, "archive": None}
    assert m.manifest.metadata.ticket == "CHG-1"
    assert m.document == doc


def test_digest_is_sha256_of_canonical_json(write_manifest: Callable[..., Path]) -> None:
    doc = manifest(description="Grüße", ticket="CHG-7")
    f = write_manifest("m.yaml", doc)
    (m,) = load([str(f)]).moves
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert m.digest == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_digest_ignores_key_order_and_formatting(write_manifest: Callable[..., Path]) -> None:
    block = write_manifest("block.yaml", "apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata:\n"
                           "  name: acme-to-northwind\nspec:\n  customer: acme\n  toReseller: northwind\n"
                           "  location: eu-west\n")
    flow = write_manifest("flow.yaml", '# a comment\n{spec: {location: "eu-west", toReseller: northwind,\n'
                          "  customer: 'acme'}, kind: CustomerMove, metadata: {name: acme-to-northwind},\n"
                          "  apiVersion: reconciler/v1}\n")
    crlf = write_manifest("crlf.yaml", block.read_text().replace("\n", "\r\n"))
    digests = {m.digest for f in (block, flow, crlf) for m in load([str(f)]).moves}
    assert len(digests) == 1


def test_digest_covers_metadata(write_manifest: Callable[..., Path]) -> None:
    a = write_manifest("a.yaml", manifest())
    b = write_manifest("b.yaml", manifest(description="now with a reason"))
    c = write_manifest("c.yaml", manifest(ticket="CHG-2"))
    digests = [load([str(f)]).moves[0].digest for f in (a, b, c)]
    assert len(set(digests)) == 3


def test_the_digest_does_not_depend_on_the_file(tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    a = write_manifest("x/a.yaml", manifest())
    b = write_manifest("y/b.yaml", manifest())
    assert load([str(a)]).moves[0].digest == load([str(b)]).moves[0].digest


# -- duplicate names ------------------------------------------------------------------------
def test_duplicate_name_is_reported_on_both_documents(write_manifest: Callable[..., Path]) -> None:
    a = write_manifest("a.yaml", manifest(name="same", customer="acme"))
    b = write_manifest("b.yaml", manifest(name="other", customer="x"), manifest(name="same", customer="initech"))
    loaded = load([str(a), str(b)])
    assert [m.name for m in loaded.moves] == ["other"]
    d1, d2 = loaded.diagnostics
    assert (d1.code, d1.file, d1.line, d1.column, d1.path) == ("duplicate-name", str(a), 4, 9, "$.metadata.name")
    assert d1.message == f"metadata.name 'same' is also used by {b}:10; names must be unique"
    assert (d2.code, d2.file, d2.line, d2.column) == ("duplicate-name", str(b), 13, 9)
    assert d2.message == f"metadata.name 'same' is also used by {a}:1; names must be unique"


def test_three_documents_with_one_name_each_list_the_others(write_manifest: Callable[..., Path]) -> None:
    f = write_manifest("m.yaml", manifest(name="n1"), manifest(name="n1"), manifest(name="n1"))
    loaded = load([str(f)])
    assert loaded.moves == []
    assert [d.message for d in loaded.diagnostics] == [
        f"metadata.name 'n1' is also used by {f}:10, {f}:19; names must be unique",
        f"metadata.name 'n1' is also used by {f}:1, {f}:19; names must be unique",
        f"metadata.name 'n1' is also used by {f}:1, {f}:10; names must be unique"]


def test_a_schema_invalid_document_does_not_take_part_in_names(write_manifest: Callable[..., Path]) -> None:
    bad = manifest(name="same")
    bad["spec"]["colour"] = "blue"
    f = write_manifest("m.yaml", manifest(name="same"), bad)
    loaded = load([str(f)])
    assert [m.name for m in loaded.moves] == ["same"]
    assert [d.code for d in loaded.diagnostics] == ["schema"]


def test_split_duplicates_keeps_unique_names_in_order(write_manifest: Callable[..., Path]) -> None:
    f = write_manifest("m.yaml", manifest(name="a"), manifest(name="b"), manifest(name="a"), manifest(name="c"))
    docs, problems = read_docs(str(f))
    assert problems == []
    moves = [m for m in (manifests._to_move(d) for d in docs) if isinstance(m, manifests.Move)]
    keep, diags = manifests.split_duplicates(moves)
    assert [m.name for m in keep] == ["b", "c"]
    assert [d.code for d in diags] == ["duplicate-name", "duplicate-name"]


# -- YAML 1.1 surprises through the command line (issue 9 item 12) --------------------------------
def test_validate_refuses_a_sal_key_that_yaml_1_1_reads_as_an_octal_number(tmp_path: Path) -> None:
    from conftest import run_main

    f = tmp_path / "m.yaml"
    f.write_text("apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata: {name: x}\nspec:\n  customer: acme\n"
                 "  toReseller: northwind\n  location: eu-west\n  services:\n    hosted-exchange:\n"
                 "      sals:\n        010: gold\n      properties: {mailboxQuotaMB: 12:30}\n", encoding="utf-8")
    r = run_main("validate", str(f))
    assert r.code == 1, r
    assert r.err == (f"{f}:11:9: error[yaml]: YAML 1.1 reads this plain value as an octal number, YAML 1.2 "
                     "does not: quote it if it is text, or write the number plainly\n")


@pytest.mark.parametrize("field, line, col", [("customer", 9, 17), ("toReseller", 10, 19), ("name", 5, 13)])
def test_an_id_or_name_with_a_final_newline_is_a_schema_error_from_the_schema_itself(
        write_manifest: Callable[..., Path], field: str, line: int, col: int) -> None:
    doc = manifest(ticket="T-1")
    where = doc["metadata"] if field == "name" else doc["spec"]
    where[field] = where[field] + "\n"
    f = write_manifest("m.yaml", json.dumps(doc, indent=2))
    pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" if field == "name" else "^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
    path = "$.metadata.name" if field == "name" else f"$.spec.{field}"
    loaded = load([str(f)])
    assert loaded.moves == []
    assert [d.format() for d in loaded.diagnostics] == [
        f"{f}:{line}:{col}: error[schema]: {path}: {where[field]!r} does not match {pattern}"]
