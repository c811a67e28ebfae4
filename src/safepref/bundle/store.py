"""The bundle on disk: its format version, its manifest and its evidence files, read strictly and written atomically.

A bundle is a folder: ``manifest.json`` (what the run was: config, versions, weights fingerprints, keys, timings,
seeds, one record per configuration) and one gzip-compressed JSONL file per stage output of each configuration
(``safety/``, ``benign/``, ``pairs/``, ``training/``) beside small JSON files (``audit/``, ``general/``). Every file
goes to a temp file in the same folder and is renamed into place, so a killed writer leaves the previous file or
the new one, never half of one. The gzip stream carries no name and no time, so the same rows give the same bytes
and a committed bundle changes only where its evidence did.

Readers turn a bad bundle into one :class:`InputError` naming the file (and line): an unknown format version, a
truncated or malformed line, a manifest that is not a bundle's.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safepref.core.errors import InputError, input_error_from
from safepref.core.io import json_object

FORMAT = "safepref-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# the report a bundle carries beside its evidence: the Markdown tables are committed, the rest is regenerated
REPORT_FILES = ("summary.md", "results.json", "report.html")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoredVerdict(_Strict):
    """One judge's decision on one answer, with the fingerprint of the judge that made it."""

    label: int | None
    score: float | None = None
    raw: str | None = None
    gold: int | None = None
    fingerprint: str | None = Field(description="the judge's fingerprint (safepref.judges.judge_fingerprints)")


class EvaluatedAnswer(_Strict):
    """One answer of an evaluated model to a jailbreak-suite prompt, and every judge's verdict on it."""

    suite: str
    attack: str
    prompt_id: str = Field(description="the suite prompt's id (the same for every attack)")
    request: str = Field(description="the plain request: what the judges read")
    prompt: str = Field(description="what the model was asked (the request under the attack)")
    answer: str
    decoding: dict[str, Any] = Field(description="the decoding settings and the evaluated weights' fingerprint")
    xstest_label: str | None = None
    category: str | None = Field(None, description="the suite's category of the prompt (JailbreakBench, HarmBench)")
    verdicts: dict[str, StoredVerdict] = Field(default_factory=dict)


class BenignAnswer(_Strict):
    """One greedy answer to a benign prompt: of the evaluated model (``answer``) or of its reference (SFT)."""

    role: Literal["answer", "reference"]
    pool: str
    prompt_id: str
    prompt: str
    answer: str
    reward: float | None = None
    verdicts: dict[str, StoredVerdict] = Field(default_factory=dict)


class SuiteRecord(_Strict):
    """One jailbreak suite a configuration was evaluated on: what the report needs to summarise its answers."""

    suite: str
    n_prompts: int
    attacks: list[str]
    judges: list[str] = Field(description="the judges whose rates the report gives, in the config's order")
    xstest: bool = False
    key: str = Field(description="the eval-safety stage's content key")
    settings: dict[str, Any] = Field(description="the eval-safety settings the key covers")


class CodeVersion(_Strict):
    """What computed a configuration's evidence: the package version, its source commit, the stage versions."""

    safepref: str | None = None
    commit: str | None = None
    stage_versions: dict[str, int] = Field(default_factory=dict)


class EvaluationRecord(_Strict):
    """One evaluated model: its training (none for SFT), its suites, and where its evidence is."""

    seed: int | None = Field(None, description="the training seed, where a configuration trains with several")
    models: dict[str, str] = Field(default_factory=dict, description="role -> weights fingerprint")
    stage_keys: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] | None = None
    safety: list[SuiteRecord] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict, description="evidence kind -> path inside the bundle")


class ConfigurationRecord(EvaluationRecord):
    """One configuration (a target and a recipe) in the bundle: its key, what it trained on, where its evidence is.
    Its own evaluation is its first training seed's; ``seeds`` holds the other seeds' models, evaluated."""

    key: str = Field(description="the configuration's content key: what a resumed run compares")
    label: str
    base: str | None = None
    complete: bool = Field(False, description="every evaluation the config asks for is in the bundle")
    code: CodeVersion = Field(default_factory=CodeVersion)
    data: dict[str, Any] | None = None
    debias: dict[str, Any] | None = None
    seeds: list[EvaluationRecord] = Field(default_factory=list)

    def evaluations(self) -> list[EvaluationRecord]:
        """Every evaluated model of the configuration, its first seed's first."""
        return [self, *self.seeds]

    def all_files(self) -> list[str]:
        return [path for evaluation in self.evaluations() for path in evaluation.files.values()]


class JudgeRecord(_Strict):
    """A judge whose verdicts the bundle holds: its fingerprint and its measured agreement with people."""

    fingerprint: str | None
    agreement: dict[str, Any] | None = None


class BundleManifest(_Strict):
    format: Literal["safepref-bundle"] = FORMAT
    format_version: int = FORMAT_VERSION
    name: str
    config: dict[str, Any]
    versions: dict[str, str] = Field(default_factory=dict)
    seed: int = 0
    seeds: list[int] = Field(default_factory=list)
    precision: dict[str, Any] | None = None
    n_training_prompts: int | None = None
    training_prompt_set: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    judges: dict[str, JudgeRecord] = Field(default_factory=dict)
    targets: dict[str, dict[str, ConfigurationRecord]] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- reading


def is_bundle(folder: str | Path) -> bool:
    """Whether ``folder`` holds a bundle's manifest (a run folder's own manifest is not one)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def read_manifest(folder: str | Path) -> BundleManifest:
    """The bundle's manifest; an unknown format version or a bad field is one error naming the file."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError("not a safepref bundle (no manifest.json)", path=Path(folder))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg})", path=path, line=error.lineno) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a safepref bundle manifest (no \"format\": \"{FORMAT}\")", path=path)
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(f"bundle format version {data.get('format_version')!r}: this safepref reads version "
                         f"{FORMAT_VERSION}", path=path, field="format_version")
    try:
        return BundleManifest.model_validate(data)
    except ValidationError as error:
        raise input_error_from(error, path=path) from None


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row of an evidence file (gzip JSONL); a truncated or malformed line is an error naming its line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("evidence file missing from the bundle", path=path)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8") if path.suffix == ".gz" else \
            path.read_text(encoding="utf-8")
    except (gzip.BadGzipFile, EOFError, OSError):
        raise InputError("truncated or not a gzip file", path=path) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=path) from None
    lines = text.split("\n")
    if lines[-1]:  # every row ends with a newline: a last line without one was cut off
        raise InputError("truncated line (no newline at its end)", path=path, line=len(lines))
    return [json_object(line, path, number) for number, line in enumerate(lines[:-1], start=1)]


def read_records(path: str | Path, record_type: type[BaseModel]) -> list[Any]:
    """An evidence file's rows as typed records; a bad field names the file, line and field."""
    records = []
    for number, row in enumerate(read_rows(path), start=1):
        try:
            records.append(record_type.model_validate(row))
        except ValidationError as error:
            raise input_error_from(error, path=path, line=number) from None
    return records


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError("evidence file missing from the bundle", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg})", path=path, line=error.lineno) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=path)
    return data


# ---------------------------------------------------------------------------------------------- writing


def check_writable(folder: str | Path) -> Path:
    """Create the folder if needed and prove a file can be written in it; otherwise one error naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check.", delete=False)  # noqa: SIM115
        probe.close()
        os.unlink(probe.name)
    except OSError as error:
        raise InputError(f"folder is not writable ({error.strerror or error})", path=folder) from None
    return folder


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def replace_bytes(path: Path, data: bytes) -> None:
    """``data`` into ``path`` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",  # noqa: SIM115
                                         delete=False)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_UMASK)  # a temp file is private; the file it becomes is not
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def rows_bytes(rows: Iterable[BaseModel | dict[str, Any]]) -> bytes:
    """Rows as gzip JSONL bytes that depend on the rows only (no file name, no time in the header)."""
    text = "".join(json.dumps(row.model_dump(mode="json") if isinstance(row, BaseModel) else row,
                              ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", filename="", mtime=0, compresslevel=9) as handle:
        handle.write(text.encode("utf-8"))
    return buffer.getvalue()


def write_rows(path: Path, rows: Iterable[BaseModel | dict[str, Any]]) -> bool:
    """Write an evidence file atomically; returns whether its bytes changed."""
    data = rows_bytes(rows)
    if path.is_file() and path.read_bytes() == data:
        return False
    replace_bytes(path, data)
    return True


def json_text(data: Any) -> str:
    # keys keep their order: configurations, targets and feature sets are listed in the order they ran
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def write_json(path: Path, data: Any) -> bool:
    """Write a JSON file atomically; returns whether its bytes changed."""
    encoded = json_text(data).encode("utf-8")
    if path.is_file() and path.read_bytes() == encoded:
        return False
    replace_bytes(path, encoded)
    return True


def write_text(path: Path, text: str) -> None:
    replace_bytes(path, text.encode("utf-8"))


def write_manifest(folder: Path, manifest: BundleManifest) -> None:
    write_json(folder / MANIFEST, manifest.model_dump(mode="json"))
