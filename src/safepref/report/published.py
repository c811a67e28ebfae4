"""The paper's published attack success rates beside the run's own, so a reader sees both scales at once.

The paper's figure (six 7-8B models, first 100 AdvBench behaviours, 512-token answers) is bundled as data
(``datafiles/more-is-less/published_asr.csv``, see its SOURCE.md); the run's side is each target's ASR on the harmful
suite by the judges the run used, with n and a 95% interval. Only the paper's eight configurations have a published
value; mitigations and custom recipes appear in the run's own tables.
"""

from __future__ import annotations

import html
from typing import Any

from safepref.core.io import iter_csv
from safepref.core.paths import bundled_data_dir
from safepref.report.analysis import LABELS, harm_columns

PAPER_CONFIGURATIONS = ("sft", "hc_self", "gpt4o_self", "stronger_self", "peer_rm", "all_rm", "original", "self_rm")
PUBLISHED_NOTE = ("the paper's figure (Wang et al. 2025, official repository), 7-8B models, first 100 AdvBench "
                  "behaviours; published, not measured here")


def published_asr() -> dict[str, dict[str, float]]:
    """{model: {configuration: ASR}} as the paper's figure gives it."""
    path = bundled_data_dir() / "more-is-less" / "published_asr.csv"
    return {row["model"]: {c: float(row[c]) for c in PAPER_CONFIGURATIONS}
            for _, row in iter_csv(path, required=("model", *PAPER_CONFIGURATIONS))}


def _measured_columns(results: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(target, suite, judge, rows) for every harmful-suite judge the run reported on the unattacked prompts."""

    return [(target, suite, judge, rows) for target, rows in results["targets"].items()
            for suite, judge in harm_columns(rows)]


def _result(row: dict[str, Any] | None, suite: str, judge: str) -> dict[str, Any] | None:
    return next((r for r in (row or {}).get("safety", [])
                 if r["attack"] == "none" and r.get("suite") == suite and r["judge"] == judge), None)


def _measured_cell(rows: dict[str, Any], configuration: str, suite: str, judge: str) -> str:
    result = _result(rows.get(configuration), suite, judge)
    if result is None or result.get("asr") is None:
        return "–"
    if not result.get("asr_ci95"):  # seeds' mean without per-prompt verdicts: no interval over prompts
        return f"{result['asr']:.2f}"
    low, high = result["asr_ci95"]
    return f"{result['asr']:.2f} [{low:.2f}, {high:.2f}]"


def published_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: a row per paper configuration; the run's columns first (n in the header), then the paper's."""

    published = published_asr()
    measured = _measured_columns(results)
    header = ["configuration"]
    for target, suite, judge, rows in measured:
        n = next((result["n"] for row in rows.values() if (result := _result(row, suite, judge))), "?")
        header.append(f"measured: {target}, {judge}, {suite} (n={n})")
    header += [f"paper: {model}" for model in published]
    body = [[LABELS[c], *(_measured_cell(rows, c, suite, judge) for _, suite, judge, rows in measured),
             *(f"{published[model][c]:.2f}" for model in published)] for c in PAPER_CONFIGURATIONS]
    return header, body


def published_markdown(results: dict[str, Any]) -> list[str]:
    if not results.get("targets"):
        return []
    header, body = published_table(results)
    return ["", f"## ASR here and in the paper ({PUBLISHED_NOTE})", "",
            "| " + " | ".join(header) + " |", "|---" * len(header) + "|",
            *("| " + " | ".join(cells) + " |" for cells in body)]


def published_html(results: dict[str, Any], table) -> list[str]:
    if not results.get("targets"):
        return []
    header, body = published_table(results)
    return [f"<h2>ASR here and in the paper</h2><p>{html.escape(PUBLISHED_NOTE)}.</p>" + table(header, body)]
