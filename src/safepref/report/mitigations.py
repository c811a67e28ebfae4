"""The report's "mitigations" section: every debiased configuration next to its original.

A configuration is a mitigation when its recipe names a ``base`` (the runner records it in the manifest entry).
Per pair of rows: separability (each audited feature set), ASR per harmful suite and judge, over-refusal and other
refusal rates and general ability, each compared prompt by prompt (debiased minus original: below 0 means the
mitigation lowered the rate; paired 95% interval, p-value, discordant prompts, resolution, verdict:
:mod:`safepref.report.comparisons`), the late DPO loss, and how many pairs the debias step kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safepref.report.comparisons import compare_outcomes, neutral_verdict, rate_counts


def _debias_counts(entry: dict[str, Any]) -> dict[str, Any] | None:
    path = entry.get("debias")
    if not path or not Path(path).is_file():
        return None
    summary = json.loads(Path(path).read_text(encoding="utf-8"))
    return {"method": summary["method"], "n_in": summary["n_in"], "n_out": summary["n_out"]}


def _asr_rows(row: dict[str, Any], original: dict[str, Any], mine_outcomes: dict, their_outcomes: dict
              ) -> list[dict[str, Any]]:
    out = []
    for mine in row["safety"]:
        if mine["attack"] != "none" or mine.get("suite") == "xstest" or mine["asr"] is None:
            continue
        theirs = next((r for r in original["safety"] if r["attack"] == "none" and r["judge"] == mine["judge"]
                       and r.get("suite") == mine.get("suite") and r["asr"] is not None), None)
        if theirs is None:
            continue
        key = (mine.get("suite"), "none", mine["judge"])
        comparison = compare_outcomes(mine_outcomes.get(key), their_outcomes.get(key), rate_counts(mine),
                                      rate_counts(theirs))
        out.append({"suite": mine.get("suite"), "judge": mine["judge"], "n": mine["n"], "debiased": mine["asr"],
                    "original": theirs["asr"], **comparison, "verdict_text": neutral_verdict(comparison)})
    return out


def _refusal_rows(row: dict[str, Any], original: dict[str, Any], mine_outcomes: dict, their_outcomes: dict
                  ) -> dict[str, dict[str, Any]]:
    """Refusal measures on unattacked prompts, debiased vs original, paired per prompt."""
    out = {}
    for mine in row["refusal"]:
        if mine["attack"] != "none":
            continue
        theirs = next((r for r in original["refusal"] if r["attack"] == "none" and r["measure"] == mine["measure"]
                       and r.get("suite") == mine.get("suite")), None)
        key = (mine.get("suite"), "none", mine["measure"])
        comparison = compare_outcomes(mine_outcomes.get(key), their_outcomes.get(key), rate_counts(mine, "rate"),
                                      rate_counts(theirs, "rate"), kind="refusal") if theirs else {}
        out[mine["measure"]] = {"debiased": mine["rate"], "original": theirs["rate"] if theirs else None,
                                **comparison}
    return out


def _general_rows(row: dict[str, Any], original: dict[str, Any], mine_outcomes: dict, their_outcomes: dict
                  ) -> dict[str, dict[str, Any]]:
    out = {}
    for task in sorted(set(row.get("general") or {}) & set(original.get("general") or {})):
        mine, theirs = row["general"][task], original["general"][task]
        comparison = compare_outcomes(mine_outcomes.get(task), their_outcomes.get(task), rate_counts(mine, "value"),
                                      rate_counts(theirs, "value"), kind="general")
        out[task] = {"debiased": mine.get("value"), "original": theirs.get("value"), **comparison}
    return out


def _paired(row: dict[str, Any], original: dict[str, Any], read) -> dict[str, Any]:
    return {"debiased": read(row), "original": read(original)}


def mitigation_rows(manifest: dict[str, Any], targets: dict[str, dict[str, Any]],
                    outcomes: dict[str, dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per target, one comparison per mitigation whose original ran in the same grid (``outcomes``: each
    configuration's per-prompt verdicts and per-question scores, for the paired comparisons)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for target, configurations in manifest.get("targets", {}).items():
        rows = targets.get(target, {})
        found = (outcomes or {}).get(target) or {}
        for name, entry in configurations.items():
            base = entry.get("base")
            if not base or base not in rows or name not in rows:
                continue
            row, original = rows[name], rows[base]
            mine, theirs = found.get(name) or {}, found.get(base) or {}
            features = sorted(set((row.get("audit") or {}).get("features") or {})
                              | set((original.get("audit") or {}).get("features") or {}))
            out.setdefault(target, []).append({
                "configuration": row["label"], "original": original["label"], "debias": _debias_counts(entry),
                "separability": {f: _paired(row, original, lambda r, f=f: (((r.get("audit") or {}).get("features")
                                                                         or {}).get(f) or {}).get("accuracy"))
                                 for f in features},
                "asr": _asr_rows(row, original, mine.get("safety") or {}, theirs.get("safety") or {}),
                "refusal": _refusal_rows(row, original, mine.get("safety") or {}, theirs.get("safety") or {}),
                "general": _general_rows(row, original, mine.get("general") or {}, theirs.get("general") or {}),
                "late_loss": _paired(row, original, lambda r: (r.get("training") or {}).get("late_loss")),
                "pairs": _paired(row, original, lambda r: (r.get("audit") or {}).get("n_pairs")),
            })
    return out


def _pair_text(values: dict[str, Any], digits: int = 2) -> str:
    mine, theirs = values["debiased"], values["original"]
    if mine is None and theirs is None:
        return "–"
    def show(value: float | None) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    text = f"{show(mine)} vs {show(theirs)}"
    if values.get("difference") is not None:  # a paired comparison came with it
        low, high = values["difference_ci95"]
        text += f": {values['difference']:+.2f} [{low:+.2f}, {high:+.2f}]{_test_text(values)}"
    return text


def _test_text(values: dict[str, Any]) -> str:
    """p, discordant counts and resolution of a comparison, as a bracketed tail."""
    parts = []
    if values.get("p_value") is not None:
        parts.append(f"p {values['p_value']:.3f}")
    if values.get("first_only") is not None:
        parts.append(f"{values['first_only']} only debiased / {values['second_only']} only original")
    if values.get("resolution") is not None:
        parts.append(f"could detect {values['resolution']:.2f}")
    if not values.get("paired", True):
        parts.append("unpaired")
    return f" ({'; '.join(parts)})" if parts else ""


def mitigation_table(comparisons: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and body of the mitigations table (one row per mitigation; cells read "debiased vs original")."""
    features = sorted({f for c in comparisons for f in c["separability"]})
    asr_keys = sorted({(a["suite"], a["judge"]) for c in comparisons for a in c["asr"]}, key=str)
    measures = sorted({m for c in comparisons for m in c["refusal"]})
    tasks = sorted({t for c in comparisons for t in c["general"]})
    header = (["configuration (vs original)", "pairs kept"] + [f"probe accuracy, {f}" for f in features]
              + [f"ASR {judge}, {suite}: Δ [95% CI]" for suite, judge in asr_keys]
              + [m.replace("_", "-") for m in measures] + [f"{t}" for t in tasks] + ["DPO loss, last quarter"])
    body = []
    for c in comparisons:
        counts = c["debias"]
        kept = f"{counts['n_out']}/{counts['n_in']} ({counts['method']})" if counts else \
            f"{c['pairs']['debiased']}/{c['pairs']['original']}" if c["pairs"]["debiased"] is not None else "all"
        cells = [f"{c['configuration']} (vs {c['original']})", kept]
        cells += [_pair_text(c["separability"][f]) if f in c["separability"] else "–" for f in features]
        for suite, judge in asr_keys:
            found = next((a for a in c["asr"] if (a["suite"], a["judge"]) == (suite, judge)), None)
            cells.append(f"{_pair_text(found)}, n={found['n']}: {found['verdict_text']}"
                         if found and found.get("difference") is not None else "–")
        cells += [_pair_text(c["refusal"][m]) if m in c["refusal"] else "–" for m in measures]
        cells += [_pair_text(c["general"][t]) if t in c["general"] else "–" for t in tasks]
        cells.append(_pair_text(c["late_loss"], 3))
        body.append(cells)
    return header, body


def mitigations_markdown(mitigations: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
    for target, comparisons in mitigations.items():
        header, body = mitigation_table(comparisons)
        lines += ["", f"### Mitigations, {target} (debiased vs original; Δ = debiased − original, paired 95% CI, "
                      "p-value, discordant prompts, the difference it could detect)",
                  "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines
