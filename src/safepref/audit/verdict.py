"""The audit's verdict: a risk level and one plain sentence per feature set, naming the cues that separate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safepref.audit.config import AuditConfig


def separating_cues(cues: list[dict[str, Any]], top: int = 2) -> list[dict[str, Any]]:
    """The strongest cues whose own accuracy clears chance (CI above 0.5)."""
    return [c for c in cues if c["accuracy_ci"][0] > 0.5][:top]


def _cue_phrase(cue: dict[str, Any]) -> str:
    direction = "higher in chosen" if cue["chosen_mean"] > cue["rejected_mean"] else "higher in rejected"
    d = "d undefined" if cue["cohens_d"] is None else f"d={cue['cohens_d']:+.2f}"
    return f"{cue['cue']} ({cue['accuracy']:.2f} alone, {d}, {direction})"


def verdict_for(name: str, result: dict[str, Any], cues: list[dict[str, Any]], config: AuditConfig) -> tuple[str, str]:
    """(risk level, one plain sentence) for one feature set."""
    accuracy, (low, high) = result["accuracy"], result["accuracy_ci"]
    control = result["control_accuracy"]
    margin = accuracy - control
    head = f"{name}: separable at {accuracy:.2f} ± {(high - low) / 2:.2f} (control {control:.2f})"
    if low <= control:
        risk, sentence = "none", f"{name}: not separable beyond the shuffled-label control ({accuracy:.2f}, " \
                                 f"95% CI {low:.2f}–{high:.2f}; control {control:.2f})"
    else:
        risk = "high" if margin >= config.high_risk_margin else "moderate" if margin >= config.moderate_risk_margin \
            else "low"
        strong = separating_cues(cues)
        cue_list = " and ".join(_cue_phrase(c) for c in strong)
        if name == "shallow":
            by = f"mostly by {cue_list}" if strong else "by no single cue alone (only in combination)"
        else:
            by = f"strongest shallow cues: {cue_list}" if strong else \
                "no single shallow cue separates (the difference is in content or wording beyond the cues)"
        sentence = f"{head}, {by}: {risk} shortcut risk"
    c_low, c_high = result["control_accuracy_ci"]
    if not c_low <= 0.5 <= c_high:
        sentence += f" [warning: control {control:.2f} is off chance, CI {c_low:.2f}–{c_high:.2f}]"
    return risk, sentence
