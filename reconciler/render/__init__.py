"""Reporters: json for machines, text for people, markdown for pull-request comments."""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(value: Any) -> str:
    """Text from a manifest or the platform, safe for a terminal: control characters (newlines too: a value
    must not forge a line of output) and bidi overrides escaped."""
    s = "null" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", s)


def clean_lines(text: str) -> str:
    """A message of several lines of our own (a list of seed problems): each line cleaned."""
    return "\n".join(clean(line) for line in text.split("\n"))


def value(v: Any) -> str:
    """A property value as people read it."""
    if v is None:
        return "(unset)"
    if isinstance(v, bool):
        return "true" if v else "false"
    return clean(v)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 error`, `2 errors`, `0 errors`: English, never `1 errors` or `error(s)`."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def counts(tally: dict[str, int]) -> str:
    """`2 locations, 1 service, 0 requests` from {"locations": 2, "services": 1, "requests": 0}."""
    return ", ".join(count(n, key[:-1] if key.endswith("s") else key, key) for key, n in tally.items())
