"""The report's provenance: which judges decided the verdicts (with their agreement with people, as the bundle
recorded it beside them), which code computed each configuration's evidence (a grid resumed from a bundle can hold
rows made by several versions), and which configurations have not finished."""

from __future__ import annotations

from typing import Any

from safepref.judges import agreement_note, format_agreement


def judge_notes(results: dict[str, Any]) -> dict[str, str]:
    """Each judge's agreement with people, as the bundle recorded it with the judge's verdicts; a judge it has no
    record of gets the shipped judge's."""
    names = {r["judge"] for rows in results["targets"].values() for row in rows.values() for r in row["safety"]}
    recorded = results.get("judges") or {}
    return {name: format_agreement(recorded[name].get("agreement")) if name in recorded else agreement_note(name)
            for name in names}


def _code_text(entry: dict[str, Any]) -> str:
    return f"safepref {entry.get('safepref') or '?'}" + (f" ({entry['commit']})" if entry.get("commit") else "")


def provenance_markdown(results: dict[str, Any]) -> list[str]:
    """Which code computed each configuration's evidence (a resumed grid can hold rows of several versions), and
    which configurations are still incomplete."""
    entries = [(target, entry) for target, configurations in (results.get("provenance") or {}).items()
               for entry in configurations.values()]
    if not entries:
        return []
    codes = {(_code_text(e), tuple(sorted(e.get("stage_versions", {}).items()))) for _, e in entries}
    incomplete = [f"{target} {e['label']}" for target, e in entries if not e["complete"]]
    lines = [""]
    if len(codes) == 1:
        lines.append(f"Evidence: every configuration computed by {_code_text(entries[0][1])}.")
    else:
        lines += ["Evidence: configurations computed by different code (stage versions in brackets):", "",
                  "| target | configuration | configuration key | code | stage versions |", "|---|---|---|---|---|"]
        lines += [f"| {target} | {e['label']} | {e['key']} | {_code_text(e)} | "
                  + ", ".join(f"{k} {v}" for k, v in sorted(e.get("stage_versions", {}).items())) + " |"
                  for target, e in entries]
    if incomplete:
        lines += ["", "Incomplete (a stage has not finished): " + ", ".join(incomplete) + "."]
    return lines
