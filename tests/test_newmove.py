"""new-move: a ready manifest; plain ids unquoted, anything else safely quoted; move names."""

from __future__ import annotations

import pytest
import yaml

from reconciler.newmove import move_name
from reconciler.newmove import yaml_scalar as _scalar


@pytest.mark.parametrize("value", ["acme", "nw-standard", "alice@acme.example", "a.b_c"])
def test_plain_ids_stay_unquoted(value: str) -> None:
    assert _scalar(value) == value


@pytest.mark.parametrize("value", ["yes", "y", "N", "010", "0o10", "12:30", "1_000", "null", "123", "1.5", "~",
                                   "a: b", "#x", "&a", "*a", "!t", "@x",
                                   "x\u001b[31m", "a\nb", " lead", "`tick"])
def test_anything_else_is_quoted_and_reads_back_the_same(value: str) -> None:
    out = _scalar(value)
    assert out != value
    assert yaml.safe_load(f"k: {out}") == {"k": value}
    assert out.isprintable()  # control characters are escaped, never written raw


@pytest.mark.parametrize(("customer", "reseller", "name"), [
    ("acme", "northwind", "acme-to-northwind"),
    ("Acme_Ltd", "North.Wind", "acme-ltd-to-north-wind"),
    ("alice@acme.example", "r", "alice-acme-example-to-r"),
    ("x" * 80, "y", "x" * 63),
])
def test_move_name_is_a_valid_metadata_name(customer: str, reseller: str, name: str) -> None:
    got = move_name(customer, reseller)
    assert got == name
    import re

    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", got) and len(got) <= 63
