"""Diagnostic values: the parsable one-line form, JSON shape, counting."""

from __future__ import annotations

from reconciler.diagnostics import Diagnostic, count, error, has_errors, warning


def test_format_with_a_full_position() -> None:
    d = error("schema", "$.spec: 'location' is required", "$.spec").at("moves/a.yaml", 7, 3)
    assert d.format() == "moves/a.yaml:7:3: error[schema]: $.spec: 'location' is required"


def test_format_degrades_without_line_or_column_or_file() -> None:
    assert warning("empty", "the file holds no manifest").at("a.yaml", None, None).format() == (
        "a.yaml: warning[empty]: the file holds no manifest")
    assert error("yaml", "x").at("a.yaml", 2, None).format() == "a.yaml:2: error[yaml]: x"
    assert error("io", "no file").format() == "error[io]: no file"


def test_json_shape_is_exactly_the_contract_keys_in_order() -> None:
    d = error("sal-unknown", "m", "$.spec.services.x.sals.y").at("f.yaml", 4, 9)
    assert list(d.to_json()) == ["severity", "code", "message", "file", "line", "column", "path"]
    assert d.to_json() == {"severity": "error", "code": "sal-unknown", "message": "m", "file": "f.yaml",
                           "line": 4, "column": 9, "path": "$.spec.services.x.sals.y"}


def test_at_returns_a_new_value() -> None:
    d = error("yaml", "m")
    moved = d.at("f", 1, 1)
    assert (d.file, moved.file) == (None, "f")
    assert isinstance(moved, Diagnostic)


def test_counting_and_has_errors() -> None:
    ds = [error("a", "m"), warning("b", "m"), warning("c", "m")]
    assert count(ds) == (1, 2)
    assert has_errors(ds)
    assert not has_errors([warning("b", "m")])
    assert [d.is_error for d in ds] == [True, False, False]
