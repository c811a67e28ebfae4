"""The report's "mitigations" section: every debiased configuration next to its original.

A configuration is a mitigation when its recipe names a ``base`` (the runner records it in the manifest entry).
Per pair of rows: separability (each audited feature set), ASR per harmful suite and judge with a Newcombe 95%
interval for the difference (debiased minus original: below 0 means the mitigation lowered ASR), over-refusal and
other refusal rates, general ability, the late DPO loss, and how many pairs the debias step kept.
"""

from __future__ import annotations

from typing import Any

from safepref.core.stats import difference_interval


def _debias_counts(entry: dict[str, Any]) -> dict[str, Any] | None:
    counts = entry.get("debias")
    return {"method": counts["method"], "n_in": counts["n_in"], "n_out": counts["n_out"]} if counts else None


def _asr_rows(row: dict[str, Any], original: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for mine in row["safety"]:
        if mine["attack"] != "none" or mine.get("suite") == "xstest" or mine["asr"] is None:
            continue
        theirs = next((r for r in original["safety"] if r["attack"] == "none" and r["judge"] == mine["judge"]
                       and r.get("suite") == mine.get("suite") and r["asr"] is not None), None)
        if theirs is None:
            continue
        k1, k2 = round(mine["asr"] * mine["n"]), round(theirs["asr"] * theirs["n"])
        out.append({"suite": mine.get("suite"), "judge": mine["judge"], "n": mine["n"], "debiased": mine["asr"],
                    "original": theirs["asr"], "difference": mine["asr"] - theirs["asr"],
                    "difference_ci95": list(difference_interval(k1, mine["n"], k2, theirs["n"]))})
    return out


def _paired(row: dict[str, Any], original: dict[str, Any], read) -> dict[str, Any]:
    return {"debiased": read(row), "original": read(original)}


def mitigation_rows(manifest: dict[str, Any], targets: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per target, one comparison per mitigation whose original ran in the same grid."""
    out: dict[str, list[dict[str, Any]]] = {}
    for target, configurations in manifest.get("targets", {}).items():
        rows = targets.get(target, {})
        for name, entry in configurations.items():
            base = entry.get("base")
            if not base or base not in rows or name not in rows:
                continue
            row, original = rows[name], rows[base]
            features = sorted(set((row.get("audit") or {}).get("features") or {})
                              | set((original.get("audit") or {}).get("features") or {}))
            refusal_measures = sorted({r["measure"] for r in row["refusal"] if r["attack"] == "none"})
            tasks = sorted(set(row.get("general") or {}) & set(original.get("general") or {}))
            out.setdefault(target, []).append({
                "configuration": row["label"], "original": original["label"], "debias": _debias_counts(entry),
                "separability": {f: _paired(row, original, lambda r, f=f: (((r.get("audit") or {}).get("features")
                                                                         or {}).get(f) or {}).get("accuracy"))
                                 for f in features},
                "asr": _asr_rows(row, original),
                "refusal": {m: _paired(row, original, lambda r, m=m: next(
                    (x["rate"] for x in r["refusal"] if x["attack"] == "none" and x["measure"] == m), None))
                    for m in refusal_measures},
                "general": {t: _paired(row, original, lambda r, t=t: (r["general"].get(t) or {}).get("value"))
                            for t in tasks},
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

    return f"{show(mine)} vs {show(theirs)}"


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
            low, high = found["difference_ci95"] if found else (0, 0)
            cells.append(f"{found['debiased']:.2f} vs {found['original']:.2f}: {found['difference']:+.2f} "
                         f"[{low:+.2f}, {high:+.2f}] (n={found['n']})" if found else "–")
        cells += [_pair_text(c["refusal"][m]) if m in c["refusal"] else "–" for m in measures]
        cells += [_pair_text(c["general"][t]) if t in c["general"] else "–" for t in tasks]
        cells.append(_pair_text(c["late_loss"], 3))
        body.append(cells)
    return header, body


def mitigations_markdown(mitigations: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
    for target, comparisons in mitigations.items():
        header, body = mitigation_table(comparisons)
        lines += ["", f"### Mitigations, {target} (debiased vs original; Δ = debiased − original ASR, Newcombe 95% CI)",
                  "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines
