"""The one error type that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class InputError(Exception):
    """Bad user input: a file, line or field the user can fix.

    The CLI prints ``str(error)`` on one line and exits with code 2, never a traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path if self.line is None else f"{self.path}:{self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


# pydantic's wording for the problems a user makes most, in this project's words
_REASONS = {"missing": "missing field", "extra_forbidden": "unknown key", "unexpected_keyword_argument": "unknown key"}


def input_error_from(error: ValidationError, *, path: str | Path | None = None, line: int | None = None,
                     field_prefix: str | None = None, context: str | None = None) -> InputError:
    """The first problem of a pydantic ``ValidationError`` as a one-line InputError naming the field.

    ``field_prefix`` places the record inside a larger file (``targets[0].training``); ``context`` says what was
    being read (``bad training setting``) and goes before the reason.
    """
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    field = ".".join(part for part in (field_prefix, key) if part) or None
    reason = _REASONS.get(first["type"], first["msg"])
    message = f"{context}: {reason[:1].lower()}{reason[1:]}" if context else reason
    return InputError(message, path=path, line=line, field=field)
