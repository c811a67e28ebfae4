"""Per-prompt evidence of a run folder: each evaluation's verdict per prompt and its answers, for paired comparisons.

A safety evaluation folder holds ``summary.json`` (the rates) beside ``verdicts.jsonl`` (one row per prompt x
attack x judge) and names its answer files; a general-ability file holds each task's score per question. This module
reads them into plain maps keyed by prompt, the only shape :mod:`safepref.core.paired` needs, so that where the
evidence lives is decided in one place.

An outcome key is ``(suite, attack, measure)``: ``measure`` is a harm judge's name (1 = jailbroken; on XSTest only
its unsafe prompts) or a refusal measure (``over_refusal`` on XSTest's safe prompts, ``refusal_unsafe``, ``refusal``;
1 = refused). Values are ``{prompt id: [outcome per seed]}``; an undecided verdict is ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safepref.core.io import iter_jsonl

HARM_JUDGES = ("harm", "keyword", "classifier", "llm")
REFUSAL_MEASURES = {"safe": "over_refusal", "unsafe": "refusal_unsafe", None: "refusal"}

OutcomeKey = tuple[str | None, str, str]
Outcomes = dict[OutcomeKey, dict[str, list[int | None]]]


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _verdict_rows(safety_summary: str | Path) -> list[dict[str, Any]]:
    path = Path(safety_summary).parent / "verdicts.jsonl"
    if not path.is_file() or not path.stat().st_size:
        return []
    return [row for _, row in iter_jsonl(path)]


def safety_outcomes(safety_summary: str | Path) -> dict[OutcomeKey, dict[str, int | None]]:
    """One safety evaluation's outcome per prompt, per (suite, attack, measure)."""
    summary = _read_json(Path(safety_summary))
    if summary is None:
        return {}
    suite = summary.get("suite")
    found: dict[OutcomeKey, dict[str, int | None]] = {}
    for row in _verdict_rows(safety_summary):
        xstest_label = row.get("xstest_label")
        if row["judge"] in HARM_JUDGES:
            if xstest_label not in (None, "unsafe"):
                continue  # XSTest's ASR counts its unsafe prompts only, as the summary does
            measure = row["judge"]
        elif row["judge"] == "refusal":
            measure = REFUSAL_MEASURES.get(xstest_label, "refusal")
        else:
            continue
        found.setdefault((suite, row["attack"], measure), {})[row["id"]] = row.get("label")
    return found


def configuration_outcomes(evaluations: Iterable[list[str]]) -> Outcomes:
    """Outcomes of one configuration over its seeds: ``evaluations`` holds each seed's safety summary paths."""
    merged: Outcomes = {}
    for summaries in evaluations:
        for summary in summaries:
            for key, labels in safety_outcomes(summary).items():
                slot = merged.setdefault(key, {})
                for prompt, label in labels.items():
                    slot.setdefault(prompt, []).append(label)
    return merged


def general_outcomes(general_files: Iterable[str | None]) -> dict[str, dict[str, list[float]]]:
    """Task -> question id -> score per seed, from each seed's general-ability file (files from before per-question
    scores were kept give nothing)."""
    merged: dict[str, dict[str, list[float]]] = {}
    for path in general_files:
        record = _read_json(Path(path)) if path else None
        for task, result in ((record or {}).get("tasks") or {}).items():
            for question, value in (result.get("per_question") or {}).items():
                merged.setdefault(task, {}).setdefault(question, []).append(value)
    return merged


def decided(outcomes: dict[str, list[int | None]] | None) -> dict[str, list[float]]:
    """The outcomes with undecided verdicts dropped (a prompt with none left is dropped)."""
    kept = {prompt: [v for v in values if v is not None] for prompt, values in (outcomes or {}).items()}
    return {prompt: values for prompt, values in kept.items() if values}


def answers(safety_summary: str | Path, attack: str) -> dict[str, str]:
    """Suite prompt id -> the model's (greedy) answer under ``attack``, from the evaluation's answer file."""
    summary = _read_json(Path(safety_summary)) or {}
    path = (summary.get("answers") or {}).get(attack)
    if not path or not Path(path).is_file() or not Path(path).stat().st_size:
        return {}
    found: dict[str, str] = {}
    for _, row in iter_jsonl(path):
        prompt = str(row["prompt_id"]).removesuffix(f"|{attack}")
        if row.get("sample_index", -1) == -1 or prompt not in found:
            found[prompt] = row["text"]
    return found


def verdicts_by_prompt(safety_summary: str | Path, attack: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Suite prompt id -> judge -> {label, score} of one evaluation under ``attack``."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for row in _verdict_rows(safety_summary):
        if row["attack"] == attack:
            found.setdefault(row["id"], {})[row["judge"]] = {"label": row.get("label"), "score": row.get("score")}
    return found


def seed_evaluations(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A manifest entry's evaluations, one per training seed (an entry without ``seeds`` is one evaluation)."""
    return entry.get("seeds") or [{"seed": None, **{k: entry[k] for k in ("training", "safety", "benign", "general")
                                                    if k in entry}}]
