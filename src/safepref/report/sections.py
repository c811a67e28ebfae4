"""The report's sections on comparisons and seeds: the note on how configurations are compared, each configuration
against SFT prompt by prompt, ASR per category of the suites that have categories, and each seed's rate beside a
rate pooled over seeds. HTML tables come from the caller's ``table(header, body)``."""

from __future__ import annotations

import html
from typing import Any

from safepref.report.benign import interval_text
from safepref.report.comparisons import COMPARISON_HEADER, comparison_cells


def spread_text(spread: dict[str, Any] | None) -> str:
    """Seeds' range and standard deviation, after a rate pooled over seeds."""
    if not spread:
        return ""
    return f" (seeds {spread['min']:.2f}–{spread['max']:.2f}, sd {spread['sd']:.2f})"


def seed_cells(result: dict[str, Any], value: str, ci: str) -> str:
    """Each seed's rate with its Wilson interval, then the spread."""
    seeds = result.get("seeds")
    if not seeds:
        return ""
    cells = "; ".join(f"seed {s['seed']}: " + ("–" if s[value] is None else f"{s[value]:.2f} {interval_text(s[ci])}")
                      for s in seeds)
    spread = result.get("seed_spread")
    return cells + (f"; sd {spread['sd']:.2f}" if spread else "")


COMPARISONS_NOTE = ("Two configurations answered the same prompts, so they are compared prompt by prompt: the "
                    "difference with a paired 95% interval (Newcombe's method 10; with seeds pooled, a bootstrap over "
                    "prompts keeping each prompt's seeds together), McNemar's exact p (seeds pooled: sign flips within "
                    "prompts), the discordant prompts, and the smallest difference the comparison could detect (80% "
                    "power, two-sided 5%, Connor 1987). Verdicts read the interval and that resolution together: "
                    "'no measurable difference' means the interval rules out every difference the comparison could "
                    "detect; 'direction only' and 'too little evidence' mean it could not tell. Comparisons marked "
                    "unpaired compare different prompt sets.")


def seeds_text(results: dict[str, Any]) -> str:
    seeds = results.get("seeds") or [results.get("seed")]
    if len(seeds) > 1:
        return (f"training seeds {', '.join(map(str, seeds))} (each configuration trained and evaluated once per "
                "seed on the same pairs; rates pooled over seeds, each seed's beside them)")
    return f"seed {seeds[0]}"


def html_categories(rows: dict[str, Any], table) -> list[str]:
    """ASR per category of suites whose behaviours carry one (JailbreakBench, HarmBench), with n per category."""
    parts = []
    suites = sorted({c["suite"] for row in rows.values() for c in row.get("categories") or []}, key=str)
    for suite in suites:
        header, body = category_table(rows, suite)
        parts.append(f"<h3>ASR per category, {html.escape(str(suite))} (n prompts per category in brackets)</h3>"
                     + table(header, body))
    return parts


def category_table(rows: dict[str, Any], suite: str) -> tuple[list[str], list[list[str]]]:
    """Rows: configuration x attack x judge; columns: the suite's categories, "ASR (n)"."""
    found = [c for row in rows.values() for c in row.get("categories") or [] if c["suite"] == suite]
    categories = sorted({c["category"] for c in found})
    header = ["configuration", "attack", "judge", *categories]
    body = []
    for row in rows.values():
        keys = sorted({(c["attack"], c["judge"]) for c in row.get("categories") or [] if c["suite"] == suite})
        for attack, judge in keys:
            cells = {c["category"]: c for c in row["categories"]
                     if (c["suite"], c["attack"], c["judge"]) == (suite, attack, judge)}
            body.append([row["label"], attack, judge, *[
                "–" if cells.get(k) is None or cells[k]["asr"] is None else f"{cells[k]['asr']:.2f} ({cells[k]['n']})"
                for k in categories]])
    return header, body


AGAINST_SFT_HEADER = ["configuration", "suite", "attack", "measure", "rate", "SFT", *COMPARISON_HEADER, "verdict"]


def against_sft_rows(comparisons: list[dict[str, Any]]) -> list[list[str]]:
    """One row per configuration x suite x attack x measure: both rates, the paired comparison, its verdict."""
    return [[c["configuration"], str(c["suite"]), c["attack"], c["measure"], f"{c['value']:.2f}", f"{c['sft']:.2f}",
             *comparison_cells(c), c["verdict_text"]] for c in comparisons]


def html_against_sft(results: dict[str, Any], target: str, table) -> list[str]:
    comparisons = (results.get("against_sft") or {}).get(target) or []
    if not comparisons:
        return []
    return ["<h3>Each configuration against SFT, prompt by prompt (Δ = configuration − SFT; discordant: prompts "
            "positive under the configuration only / under SFT only)</h3>"
            + table(AGAINST_SFT_HEADER, against_sft_rows(comparisons))]


def markdown_against_sft(comparisons: list[dict[str, Any]]) -> list[str]:
    if not comparisons:
        return []
    return ["", "Each configuration against SFT, prompt by prompt (Δ = configuration − SFT):", "",
            "| " + " | ".join(AGAINST_SFT_HEADER) + " |", "|---" * len(AGAINST_SFT_HEADER) + "|",
            *("| " + " | ".join(cells) + " |" for cells in against_sft_rows(comparisons))]
