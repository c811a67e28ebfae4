"""Comparisons of two configurations, as every section of the report makes them.

Both configurations answered the same prompts, so the comparison is paired (:mod:`safepref.core.paired`): McNemar
and Newcombe's paired interval for one seed a side, a bootstrap over prompts when seeds are pooled, a paired mean
difference for scores. Only where the prompt sets differ, or where per-prompt verdicts are missing, does it fall back
to Newcombe's interval for independent samples, and the comparison says so. Each comparison carries its resolution
(the smallest difference it could detect) and a verdict read from the interval and the resolution together.
"""

from __future__ import annotations

from typing import Any

from safepref.core.paired import (
    METHOD_POOLED,
    METHOD_SCORES,
    compare,
    compare_unpaired,
    discordance_words,
    resolution_text,
    verdict,
)
from safepref.report.evidence import decided

UNPAIRED_DIFFERENT_PROMPTS = "unpaired: the two evaluated different prompts"
UNPAIRED_NO_VERDICTS = "unpaired: per-prompt verdicts not found"
DECISIVE = ("holds", "reversed")


EVENTS = {"safety": ("jailbroke", "prompts"), "refusal": ("refused", "prompts"), "general": ("right", "questions")}


def compare_outcomes(first: dict[str, list] | None, second: dict[str, list] | None,
                     first_rate: tuple[int, int] | None = None, second_rate: tuple[int, int] | None = None,
                     kind: str = "safety") -> dict[str, Any]:
    """First minus second: paired over the prompts both decided when both evaluated the same prompts; otherwise
    unpaired from the rates ((positives, n) each), with the reason. ``kind`` (safety, refusal, general) names
    what a discordant prompt means when the comparison is put in words."""
    event, unit = EVENTS[kind]
    if first and second and set(first) == set(second):
        return {**compare(decided(first), decided(second)), "event": event, "unit": unit}
    reason = UNPAIRED_DIFFERENT_PROMPTS if first and second else UNPAIRED_NO_VERDICTS
    if first_rate is None or second_rate is None:
        return {"paired": False, "difference": None, "difference_ci95": None, "resolution": None, "note": reason}
    return {**compare_unpaired(first_rate, second_rate), "note": reason, "event": event, "unit": unit}


def rate_counts(result: dict[str, Any] | None, value: str = "asr") -> tuple[int, int] | None:
    """(positives, n) of a reported rate, for the unpaired fallback."""
    if not result or result.get(value) is None:
        return None
    return round(result[value] * result["n"]), result["n"]


def with_verdict(comparison: dict[str, Any], direction: int = 1) -> dict[str, Any]:
    """The comparison with its verdict; ``direction`` -1 when a negative difference is the expected direction."""
    difference, interval = comparison.get("difference"), comparison.get("difference_ci95")
    if difference is not None and interval is not None and direction < 0:
        difference, interval = -difference, [-interval[1], -interval[0]]
    word = verdict(difference, interval, comparison.get("resolution"))
    return {**comparison, "verdict": word, "verdict_text": verdict_text(word, comparison.get("resolution"))}


def neutral_verdict(comparison: dict[str, Any]) -> str:
    """A comparison without an expected direction: higher, lower, no measurable difference or too little evidence
    (the last two with the resolution)."""
    word = with_verdict(comparison)["verdict"]
    word = {"holds": "higher", "reversed": "lower", "direction only": "too little evidence"}.get(word, word)
    return verdict_text(word, comparison.get("resolution"))


def verdict_text(word: str, resolution: float | None) -> str:
    """The verdict as the report prints it: the undecided ones with the resolution they were read at."""
    if word in (*DECISIVE, "higher", "lower", "not measured") or resolution is None:
        return word
    return f"{word} ({resolution_text(resolution)})"


def p_label(comparison: dict[str, Any]) -> str:
    method = comparison.get("method")
    if method == METHOD_POOLED:
        return "sign-flip p"
    if method == METHOD_SCORES:
        return "paired t p"
    return "McNemar p"


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else "<0.001"


def comparison_text(comparison: dict[str, Any], first: str, second: str) -> str:
    """One line: difference [95% CI], p, the discordant prompts in words, the resolution, how it was compared."""
    if comparison.get("difference") is None:
        return "not measured"
    low, high = comparison["difference_ci95"]
    parts = [f"{comparison['difference']:+.2f} [{low:+.2f}, {high:+.2f}]"]
    if comparison.get("p_value") is not None:
        parts.append(f"{p_label(comparison)} {_p(comparison['p_value'])}")
    words = discordance_words(comparison, first, second, comparison.get("event", "jailbroke"),
                              comparison.get("unit", "prompts"))
    if words:
        parts.append(words)
    if comparison.get("resolution") is not None:
        parts.append(resolution_text(comparison["resolution"]))
    if comparison.get("note"):
        parts.append(comparison["note"])
    elif comparison.get("pooled"):
        parts.append(f"seeds pooled ({comparison['n_seeds'][0]} vs {comparison['n_seeds'][1]})")
    return "; ".join(parts)


def comparison_cells(comparison: dict[str, Any]) -> list[str]:
    """Table cells: Δ [95% CI], p, discordant counts (A only / B only), resolution."""
    if comparison.get("difference") is None:
        return ["–", "–", "–", "–"]
    low, high = comparison["difference_ci95"]
    note = " (unpaired)" if not comparison.get("paired") else ""
    p_value = comparison.get("p_value")
    discordant = (f"{comparison['first_only']} / {comparison['second_only']}"
                  if comparison.get("first_only") is not None else "–")
    return [f"{comparison['difference']:+.2f} [{low:+.2f}, {high:+.2f}]{note}",
            "–" if p_value is None else _p(p_value), discordant,
            "–" if comparison.get("resolution") is None else f"{comparison['resolution']:.2f}"]


COMPARISON_HEADER = ["Δ [95% CI]", "p", "discordant (A only / B only)", "could detect"]
