"""Load the JSON Schemas shipped inside the package and turn schema errors into Diagnostics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.diagnostics import Diagnostic, error

if TYPE_CHECKING:  # jsonschema loads on first use: a valid manifest is accepted without it
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

PathTuple = tuple[str | int, ...]


@cache
def load(name: str) -> dict[str, Any]:
    """`name` is e.g. "move" for schemas/move.schema.json (inside the wheel, or the source tree)."""
    fname = f"{name}.schema.json"
    try:
        text = (resources.files("reconciler.schemas") / fname).read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        text = (Path(__file__).resolve().parents[1] / "schemas" / fname).read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@cache
def validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load(name))


def json_path(path: PathTuple) -> str:
    out = "$"
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.replace("_", "a").replace("-", "a").isalnum() and not p[:1].isdigit():
            out += f".{p}"
        else:
            out += "[" + json.dumps(p) + "]"
    return out


KEY_LIMIT = 40  # an unknown key, quoted in a message: short, so that no secret line is ever shown whole


def short(value: Any, limit: int = 60) -> str:
    """A value for a message: JSON-ish, one line, control characters escaped, truncated."""
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TYPE_NAME = {"object": "a mapping", "array": "a list", "string": "a string", "boolean": "a boolean",
              "integer": "an integer", "number": "a number", "null": "null"}
_JSON_TYPE = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
              type(None): "null"}


def kind_of(value: Any) -> str:
    """'an integer', 'a string', ...: what a value is, without showing it."""
    json_type = _JSON_TYPE.get(type(value))
    return _TYPE_NAME[json_type] if json_type else type(value).__name__


# Ends every anchored pattern in schemas/: Python's `$` (jsonschema's `re.search`) also matches before a final
# newline. Messages show the pattern as JSON Schema (ECMA) reads it, where `$` alone already means the end.
_NO_FINAL_NEWLINE = r"(?!\n)"


def _message(e: ValidationError) -> str:
    v = e.validator
    if v == "required":
        return e.message.replace(" is a required property", " is required")
    if v == "type":
        want = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        names = " or ".join(_TYPE_NAME.get(str(t), str(t)) for t in want)
        return f"expected {names}, got {kind_of(e.instance)}"
    if v == "const":
        return f"expected {short(e.validator_value)}, got {short(e.instance)}"
    if v == "enum":
        options: list[Any] = list(e.validator_value) if isinstance(e.validator_value, list) else []
        return f"expected one of {', '.join(map(short, options))}; got {short(e.instance)}"
    if v == "pattern":
        return f"{short(e.instance)} does not match {str(e.validator_value).removesuffix(_NO_FINAL_NEWLINE)}"
    if v == "maxLength":
        return f"{short(e.instance)} is longer than {e.validator_value} characters"
    if v == "minimum":
        return f"{short(e.instance)} is less than {e.validator_value}"
    return e.message if len(e.message) < 300 else e.message[:299] + "…"


def iter_diagnostics(name: str, instance: Any) -> Iterator[tuple[Diagnostic, PathTuple, bool]]:
    """Schema problems as (diagnostic, path, at_key): at_key means point at the key, not the value."""
    for e in sorted(validator(name).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        path: PathTuple = tuple(e.absolute_path)
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = set(e.schema.get("properties") or {})
            for key in [k for k in e.instance if k not in allowed]:
                kp = (*path, key)
                hint = f" (allowed here: {', '.join(sorted(allowed))})" if allowed else ""
                # A key may be a line of any file's content (a token): quoted once, shortened; a long one is
                # placed at its mapping, not spelled out again in the path.
                where = json_path(kp) if len(short(key)) <= KEY_LIMIT else json_path(path)
                yield (error("schema", f"{where}: unknown key {short(key, KEY_LIMIT)}{hint}", where), kp, True)
            continue
        if "propertyNames" in e.schema_path and isinstance(e.instance, str):
            kp = (*path, e.instance)
            message = _message(e)
            where = json_path(kp)
            if len(short(e.instance)) > KEY_LIMIT:  # as an unknown key: shortened, quoted once
                where = json_path(path)
                message = message.replace(short(e.instance), short(e.instance, KEY_LIMIT), 1)
            yield error("schema", f"{where}: key {message}", where), kp, True
            continue
        yield error("schema", f"{json_path(path)}: {_message(e)}", json_path(path)), path, False


Positioner = Callable[[PathTuple, bool], tuple[int, int]]
