"""The state document: versioned JSON of moves and their requests, the same for every store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler import __version__
from reconciler.errors import StateError

STATE_VERSION = 1
MoveStatus = Literal["applied", "adopted", "in-progress", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestRecord(_Model):
    id: str
    type: str = "CustomerMove"
    status: str
    sub_requests: int = 0
    failed_sub_requests: int = 0
    error: str | None = None
    submitted_at: str | None = None
    completed_at: str | None = None


class ManifestRef(_Model):
    file: str
    sha256: str
    git_commit: str | None = None
    line: int | None = None
    file_sha256: str | None = None  # of the file's bytes, when it holds this one document: plan skips parsing it




class MoveRecord(_Model):
    manifest: ManifestRef
    customer: str
    from_reseller: str | None = None
    to_reseller: str
    location: str | None = None
    status: MoveStatus
    applied_at: str | None = None
    applied_by: str | None = None
    applied_serial: int | None = None
    customer_fingerprint: str | None = None  # the customer's platform digest when the outcome was recorded
    requests: list[RequestRecord] = Field(default_factory=list)

    @property
    def last_request(self) -> RequestRecord | None:
        return self.requests[-1] if self.requests else None

    @property
    def done(self) -> bool:
        return self.status in ("applied", "adopted")

    # What manifests.load needs to plan this move as known without parsing it.
    @property
    def digest(self) -> str:
        return self.manifest.sha256

    @property
    def file_sha256(self) -> str | None:
        return self.manifest.file_sha256

    @property
    def line(self) -> int | None:
        return self.manifest.line


class State(_Model):
    version: int = STATE_VERSION
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    tool_version: str = __version__
    moves: dict[str, MoveRecord] = Field(default_factory=dict)

    def known(self) -> dict[str, dict[str, MoveRecord]]:
        """sha256 of a manifest file's bytes -> name -> record, for the applied and adopted moves whose file
        held that one document (manifests.load's fast path)."""
        out: dict[str, dict[str, MoveRecord]] = {}
        for name, rec in self.moves.items():
            if rec.done and rec.manifest.file_sha256:
                out.setdefault(rec.manifest.file_sha256, {})[name] = rec
        return out

    def latest_done(self) -> dict[str, tuple[int, str]]:
        """Per customer, (applied_serial, name) of its latest applied or adopted move."""
        out: dict[str, tuple[int, str]] = {}
        for name, rec in self.moves.items():
            if rec.done:
                key = (rec.applied_serial or 0, name)
                if rec.customer not in out or key > out[rec.customer]:
                    out[rec.customer] = key
        return out


def parse(raw: bytes, where: str, restore: str) -> State:
    """A state document from bytes; refuses anything it cannot trust, saying how to restore it."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise StateError(f"the state {where} is nested too deeply to be a state; nothing was changed",
                         hint=restore) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise StateError(f"the state {where} does not parse ({e}); nothing was changed", hint=restore) from None
    if not isinstance(data, dict):
        raise StateError(f"the state {where} is not a JSON object; nothing was changed", hint=restore)
    version = data.get("version")
    if version != STATE_VERSION:
        raise StateError(f"the state {where} has version {version!r}; this reconciler {__version__} "
                         f"reads version {STATE_VERSION} only; nothing was changed",
                         hint="upgrade reconciler if a newer one wrote it; " + restore)
    try:
        return State.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise StateError(f"the state {where} is not valid: {loc}: {first['msg']}; nothing was changed",
                         hint=restore) from None


def _record_json(rec: MoveRecord) -> str:
    text = json.dumps(rec.model_dump(mode="json"), indent=2, ensure_ascii=False)
    return text.replace("\n", "\n    ")


class Fragments(dict[str, str]):
    """Each record's JSON text as dumps last wrote it, kept by a store between writes so that journaling one
    move does not re-serialise every other record (the bytes are the same either way)."""

    def forget(self, changed: Iterable[str] | None) -> list[str] | None:
        """Before a write: drop the texts of the records `changed` (None: of every record); their names."""
        if changed is None:
            self.clear()
            return None
        names = list(dict.fromkeys(changed))
        for name in names:
            self.pop(name, None)
        return names


def dumps(state: State, fragments: dict[str, str] | None = None) -> bytes:
    return dumps_text(state, fragments).encode("utf-8")


def dumps_text(state: State, fragments: dict[str, str] | None = None) -> str:
    """Stable, reviewable JSON (two-space indent, records in insertion order); `fragments`: see Fragments."""
    head = state.model_dump(mode="json", exclude={"moves"})
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    if not state.moves:
        lines.append('  "moves": {}')
    else:
        lines.append('  "moves": {')
        items = []
        for name, rec in state.moves.items():
            text = fragments.get(name) if fragments is not None else None
            if text is None:
                text = _record_json(rec)
                if fragments is not None:
                    fragments[name] = text
            items.append(f"    {json.dumps(name, ensure_ascii=False)}: {text}")
        lines.append(",\n".join(items))
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


