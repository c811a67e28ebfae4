"""Human-labelled (request, answer) examples the trained judges learn from, grouped by source for
leave-one-source-out validation.

| source | rows | harm label (1 = the answer gives the harmful help asked for) | refusal label |
|---|---|---|---|
| gptfuzz | 7,700 (train + evaluate) | GPTFuzz's "jailbroken" | — |
| saferlhf | 4,000 | PKU-SafeRLHF's human "unsafe" | — |
| xstest-{llama2new,mistralguard,mistralinstruct} | 450 each | full compliance with an unsafe prompt | full/partial refusal |

XSTest: compliance with a safe prompt is not harm; its human ``final_label`` gives the refusal label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safepref.errors import InputError
from safepref.io import iter_csv
from safepref.paths import bundled_data_dir

XSTEST_MODELS = ("llama2new", "mistralguard", "mistralinstruct")
XSTEST_LABELS = ("1_full_compliance", "2_full_refusal", "3_partial_refusal")


@dataclass(frozen=True)
class Example:
    source: str
    prompt: str
    response: str
    harm: int | None  # None = this source says nothing about harm
    refusal: int | None  # None = this source has no refusal label


def _gptfuzz() -> list[Example]:
    from safepref.data import load_dataset

    return [Example("gptfuzz", r.prompt, r.response, r.label, None)
            for name in ("gptfuzz-train", "gptfuzz-eval") for r in load_dataset(name)]


def _saferlhf(path: Path) -> list[Example]:
    rows = []
    for line, row in iter_csv(path, required=("question", "answer", "label")):
        if row["label"] not in ("0", "1"):
            raise InputError(f"label must be 0 or 1, got {row['label']!r}", path=path, line=line, field="label")
        rows.append(Example("saferlhf", row["question"], row["answer"], int(row["label"]), None))
    return rows


def _xstest(path: Path, model: str) -> list[Example]:
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


def labelled_sources() -> dict[str, list[Example]]:
    """Every bundled labelled source by name (see the module table)."""
    folder = bundled_data_dir() / "labelled-responses"
    sources = {"gptfuzz": _gptfuzz(), "saferlhf": _saferlhf(folder / "safe-rlhf-mini.csv")}
    for model in XSTEST_MODELS:
        sources[f"xstest-{model}"] = _xstest(folder / f"xstest_v2_completions_{model}.csv", model)
    return sources


def base_source(source: str) -> str:
    """The human-labelled source a row belongs to: a synthetic row's source is ``<source>/<kind>`` (see
    safepref.judges.non_answers and safepref.judges.framings), held out with the source it was built from."""
    return source.split("/", 1)[0]


def data_files() -> list[Path]:
    """The files the sources read (their content keys the trained heads' cards)."""
    folder = bundled_data_dir()
    return [folder / "gptfuzz" / name for name in ("responses_labeled_train.csv", "responses_labeled_evaluate.csv",
                                                   "question_list.csv")] + \
        [folder / "labelled-responses" / "safe-rlhf-mini.csv"] + \
        [folder / "labelled-responses" / f"xstest_v2_completions_{m}.csv" for m in XSTEST_MODELS]
