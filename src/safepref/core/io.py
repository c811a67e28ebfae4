"""The one set of readers and writers used by every stage.

Readers turn bad input into :class:`InputError` naming the file, line and field. Writers never leave a
half-written final file: whole artifacts go through a temp file and ``os.replace``; stages that resume append to a
log whose torn last line (from a kill) is cut off on reopen.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from safepref.core.errors import InputError, input_error_from
from safepref.core.records import Message, Pair, Side

T = TypeVar("T", bound=BaseModel)

csv.field_size_limit(sys.maxsize)  # jailbreak templates and model answers can be long


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("file not found", path=path)
    if path.is_dir():
        raise InputError("is a folder, expected a file", path=path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path=path)


def json_object(line: str, path: str | Path, line_number: int) -> dict[str, Any]:
    """One JSONL line as a JSON object, or an InputError naming the file and line."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg})", path=path, line=line_number) from None
    if not isinstance(row, dict):
        raise InputError("expected a JSON object", path=path, line=line_number)
    return row


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; each line must be a JSON object."""
    path = Path(path)
    _check_file(path)
    seen = 0
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                row = json_object(line, path, line_number)
                seen += 1
                yield line_number, row
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (wrong format?)", path=path) from None
    except (gzip.BadGzipFile, EOFError):
        raise InputError("not a valid gzip file", path=path) from None
    if seen == 0:
        raise InputError("file has no records", path=path)


def iter_csv(path: str | Path, required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` for each CSV data row; ``required`` columns must exist and be non-empty."""
    path = Path(path)
    _check_file(path)
    required = list(required)
    seen = 0
    try:
        with _open_text(path) as handle:
            reader = csv.DictReader(handle)
            header = [h.lstrip("\ufeff") for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            missing = [c for c in required if c not in header]
            if missing:
                raise InputError(f"missing column (columns are {header})", path=path, line=1, field=missing[0])
            for row in reader:
                line_number = reader.line_num
                for column in required:
                    if row.get(column) in (None, ""):
                        raise InputError("empty value", path=path, line=line_number, field=column)
                seen += 1
                yield line_number, row
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text (wrong format?)", path=path) from None
    except csv.Error as error:
        raise InputError(f"malformed CSV ({error})", path=path) from None
    if seen == 0:
        raise InputError("file has no rows", path=path)


def iter_table(path: str | Path, required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a JSONL, JSON-list or CSV file (chosen by suffix), with required fields checked."""
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffixes in (".jsonl", ".jsonl.gz"):
        rows = iter_jsonl(path)
    elif suffixes == ".csv":
        yield from iter_csv(path, required)
        return
    elif suffixes == ".json":
        rows = _iter_json_list(path)
    else:
        raise InputError(f"unknown file format '{path.suffix}' (expected .jsonl, .json or .csv)", path=path)
    required = list(required)
    for line_number, row in rows:
        for field in required:
            if field not in row or row[field] in (None, ""):
                raise InputError("missing field", path=path, line=line_number, field=field)
        yield line_number, row


def _iter_json_list(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    _check_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg})", path=path, line=error.lineno) from None
    if not isinstance(data, list) or not data:
        raise InputError("expected a non-empty JSON list of objects", path=path)
    for index, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise InputError("expected a JSON object", path=path, line=index)
        yield index, row


def parse_record(record_type: type[T], row: dict[str, Any], *, path: str | Path, line: int) -> T:
    """Validate one row into a typed record; a validation error names the first bad field."""
    try:
        return record_type.model_validate(row)
    except ValidationError as error:
        raise input_error_from(error, path=path, line=line) from None


def read_yaml_record(path: str | Path, record_type: type[T]) -> T:
    """A YAML file validated into a pydantic model; errors name the file and the offending key."""
    path = Path(path)
    _check_file(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise InputError(f"malformed YAML ({getattr(error, 'problem', error)})", path=path,
                         line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise InputError("expected a YAML mapping of settings", path=path)
    try:
        return record_type.model_validate(data)
    except ValidationError as error:
        raise input_error_from(error, path=path) from None


def read_records(path: str | Path, record_type: type[T]) -> list[T]:
    """Read a JSONL artifact into typed records."""
    return [parse_record(record_type, row, path=path, line=n) for n, row in iter_jsonl(path)]


# ---------------------------------------------------------------------------------------------- pairs


def _as_messages(value: Any, *, role: str, path: Path, line: int, field: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise InputError("empty text", path=path, line=line, field=field)
        return [Message(role=role, content=value)]
    if isinstance(value, list) and value:
        try:
            return [Message.model_validate(m) for m in value]
        except ValidationError:
            raise InputError("expected a list of {role, content} messages", path=path, line=line, field=field) from None
    raise InputError("expected a string or a non-empty list of messages", path=path, line=line, field=field)


def pair_from_row(row: dict[str, Any], *, path: str | Path, line: int, default_id: str) -> Pair:
    """Accept TRL's standard (strings) or conversational (message lists) preference format.

    Conversational rows whose chosen/rejected lists repeat the prompt turns (as the More-is-Less files do) are
    split: the shared leading turns become the prompt, the last assistant turn is the answer.
    """
    path = Path(path)
    for field in ("chosen", "rejected"):
        if field not in row:
            raise InputError("missing field", path=path, line=line, field=field)
    chosen = _as_messages(row["chosen"], role="assistant", path=path, line=line, field="chosen")
    rejected = _as_messages(row["rejected"], role="assistant", path=path, line=line, field="rejected")
    if "prompt" in row and row["prompt"] not in (None, "", []):
        prompt = _as_messages(row["prompt"], role="user", path=path, line=line, field="prompt")
        if len(chosen) > 1 and chosen[: len(prompt)] == prompt:
            chosen = chosen[len(prompt):]
        if len(rejected) > 1 and rejected[: len(prompt)] == prompt:
            rejected = rejected[len(prompt):]
    elif len(chosen) > 1:
        prompt, chosen, rejected = chosen[:-1], chosen[-1:], rejected[-1:]
    else:
        raise InputError("missing field (no prompt and no prompt turns in chosen)", path=path, line=line, field="prompt")
    for field, side in (("chosen", chosen), ("rejected", rejected)):
        if side[-1].role != "assistant" or not side[-1].content.strip():
            raise InputError("last turn must be a non-empty assistant answer", path=path, line=line, field=field)
    provenance = {}
    for field in ("chosen_from", "rejected_from"):
        if isinstance(row.get(field), dict):
            provenance[field] = Side.model_validate(row[field])
    if row.get("debias") is not None and not isinstance(row["debias"], dict):
        raise InputError("expected an object (what debias did)", path=path, line=line, field="debias")
    return Pair(
        id=str(row.get("id", default_id)),
        prompt=prompt,
        chosen=chosen[-1:],
        rejected=rejected[-1:],
        recipe=str(row.get("recipe", "")),
        debias=row.get("debias"),
        **provenance,
    )


def read_pairs(path: str | Path) -> list[Pair]:
    """Read a preference file (JSONL/JSON/CSV, TRL standard or conversational) into pairs."""
    path = Path(path)
    return [
        pair_from_row(row, path=path, line=n, default_id=f"{path.stem}-{n}")
        for n, row in iter_table(path)
    ]


# ---------------------------------------------------------------------------------------------- writing


def write_jsonl_atomic(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> Path:
    """Write a whole artifact: to a temp file in the same folder, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below; kept for the rename
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            for row in rows:
                handle.write(to_json_line(row))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a whole text file through a temp file and a rename: readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def to_json_line(row: BaseModel | dict[str, Any]) -> str:
    data = row.model_dump(mode="json", exclude_none=False) if isinstance(row, BaseModel) else row
    return json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n"


class AppendLog:
    """An append-only JSONL log that a stage resumes from.

    Each row has a key (``key_of(row_dict)``); ``done`` holds the keys already written. A kill can leave a torn
    last line: it is cut off when the log is reopened, so every key appears exactly once after a rerun.
    """

    def __init__(self, path: str | Path, key_of: Callable[[dict[str, Any]], str]) -> None:
        self.path = Path(path)
        self.key_of = key_of
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set()
        self._repair_and_load()

    def _repair_and_load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        position = 0
        for raw in data.splitlines(keepends=True):
            position += len(raw)
            if not raw.endswith(b"\n"):
                break  # torn last line: dropped below
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                if position == len(data):
                    break
                raise InputError("malformed JSON in resume log", path=self.path,
                                 line=data[:position].count(b"\n")) from None
            self.done.add(self.key_of(row))
            good_end = position
        if good_end != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)

    def append(self, rows: Iterable[BaseModel | dict[str, Any]]) -> None:
        lines = []
        for row in rows:
            data = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
            key = self.key_of(data)
            if key in self.done:
                continue
            self.done.add(key)
            lines.append(to_json_line(data))
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        return [row for _, row in iter_jsonl(self.path)]


def file_fingerprint(path: str | Path, length: int = 12) -> str:
    """Hash of a file's bytes, for keying artifacts on an input file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
