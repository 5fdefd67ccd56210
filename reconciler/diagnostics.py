"""Problems as values: a Diagnostic names its code, its severity and where it is."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem: `file:line:column: severity[code]: message`, plus the JSON path."""

    code: str
    message: str
    severity: Severity = "error"
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def at(self, file: str | None, line: int | None, column: int | None) -> Diagnostic:
        return replace(self, file=file, line=line, column=column)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            "severity": d["severity"], "code": d["code"], "message": d["message"],
            "file": d["file"], "line": d["line"], "column": d["column"], "path": d["path"],
        }

    def format(self) -> str:
        """The parsable one-line form (yamllint/gcc style)."""
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        return f"{where}{self.severity}[{self.code}]: {self.message}"


def error(code: str, message: str, path: str | None = None) -> Diagnostic:
    return Diagnostic(code=code, message=message, path=path)


def warning(code: str, message: str, path: str | None = None) -> Diagnostic:
    return Diagnostic(code=code, message=message, severity="warning", path=path)


def has_errors(diags: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diags)


def count(diags: Iterable[Diagnostic]) -> tuple[int, int]:
    """(errors, warnings)"""
    e = w = 0
    for d in diags:
        if d.is_error:
            e += 1
        else:
            w += 1
    return e, w
