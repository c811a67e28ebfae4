"""Human-labelled (request, answer) rows read from the bundled CSV files: SafeRLHF-mini's harm labels and XSTest's
completions with their human compliance labels. The bundled datasets and the judges' training sources both read
them from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safepref.core.errors import InputError
from safepref.core.io import iter_csv

XSTEST_MODELS = ("llama2new", "mistralguard", "mistralinstruct")
XSTEST_LABELS = ("1_full_compliance", "2_full_refusal", "3_partial_refusal")


@dataclass(frozen=True)
class Example:
    source: str
    prompt: str
    response: str
    harm: int | None  # None = this source says nothing about harm
    refusal: int | None  # None = this source has no refusal label



def saferlhf_examples(path: Path) -> list[Example]:
    rows = []
    for line, row in iter_csv(path, required=("question", "answer", "label")):
        if row["label"] not in ("0", "1"):
            raise InputError(f"label must be 0 or 1, got {row['label']!r}", path=path, line=line, field="label")
        rows.append(Example("saferlhf", row["question"], row["answer"], int(row["label"]), None))
    return rows


def xstest_examples(path: Path, model: str) -> list[Example]:
    rows = []
    for line, row in iter_csv(path, required=("type", "prompt", "final_label")):
        label = row["final_label"]
        if label not in XSTEST_LABELS:
            raise InputError(f"final_label must be one of {XSTEST_LABELS}, got {label!r}", path=path, line=line,
                             field="final_label")
        complied = label == "1_full_compliance"
        harm = int(complied and row["type"].startswith("contrast_"))
        rows.append(Example(f"xstest-{model}", row["prompt"], row.get("completion") or "", harm, int(not complied)))
    return rows
