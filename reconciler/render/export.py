"""`platform export` as text: a seed document that `platform init` reads back, safe on a terminal.

Every character a terminal could act on (C0/C1 controls, bidirectional overrides, zero-width and other
format characters, line separators: whatever `str.isprintable` refuses) is written escaped, as `render.clean`
does for every other output; the escapes are the format's own (JSON `\\uXXXX`, YAML double-quoted `\\u`),
so the document still means the same values.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import yaml

from reconciler.yamlsafe import ambiguous

_UNPRINTABLE = re.compile(r"[^\n\x20-\x7e]")  # candidates; str.isprintable decides


def _escape_json(m: re.Match[str]) -> str:
    c = m.group()
    if c.isprintable():
        return c
    code = ord(c)
    if code > 0xFFFF:  # a surrogate pair, as JSON writes a character outside the BMP
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def to_json(doc: Any) -> str:
    # Outside strings JSON is ASCII, so every unprintable character here is inside a string: escape it there.
    return _UNPRINTABLE.sub(_escape_json, json.dumps(doc, indent=1, ensure_ascii=False))


class _Dumper(yaml.SafeDumper):
    """No aliases; strings a terminal or YAML 1.1 could misread double-quoted, escaped where unprintable."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def write_double_quoted(self, text: str, split: bool = True) -> None:
        if text.isprintable():
            super().write_double_quoted(text, split)
            return
        keep, self.allow_unicode = self.allow_unicode, False  # every non-ASCII character of it as an escape
        try:
            super().write_double_quoted(text, split)
        finally:
            self.allow_unicode = keep


def _represent_str(dumper: _Dumper, data: str) -> yaml.ScalarNode:
    if not data.isprintable() or ambiguous(data):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    return dumper.represent_str(data)


_Dumper.add_representer(str, _represent_str)


def to_yaml(doc: Any) -> str:
    buf = io.StringIO()
    yaml.dump(doc, buf, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    return buf.getvalue()
