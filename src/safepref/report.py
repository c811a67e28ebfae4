"""Stage 7, report: one self-contained HTML page (figures embedded) and ``results.json`` for a run folder.

Reads ``RUN_DIR/manifest.json`` (written by the runner) and the artifacts it names: safety summaries, general
ability results, audits, training dynamics. Figures follow the paper's: attack success rate per configuration,
grouped as SFT | multi-model pairs | pairs ranked by a reward model, with 95% intervals and n on every rate.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import yaml

from safepref.errors import InputError
from safepref.io import iter_jsonl, write_json_atomic, write_text_atomic
from safepref.judges import agreement_note
from safepref.report_benign import add_collapse_check, benign_html, benign_markdown
from safepref.report_mitigations import mitigation_rows, mitigation_table, mitigations_markdown
from safepref.stats import difference_interval

LABELS = {"sft": "SFT", "hc_self": "HC+Self", "gpt4o_self": "GPT4o+Self", "stronger_self": "Stronger+Self",
          "peer_rm": "Peer+RM", "all_rm": "All+RM", "original": "Original", "self_rm": "Self+RM"}
MULTI_MODEL = ("hc_self", "gpt4o_self", "stronger_self")
GROUP_COLORS = {"sft": "#7f7f7f", "multi": "#d62728", "rm": "#1f77b4", "other": "#9467bd"}
JUDGE_HATCH = {0: "", 1: "//", 2: "..", 3: "xx"}


def _group(configuration: str) -> str:
    if configuration == "sft":
        return "sft"
    if configuration in MULTI_MODEL:
        return "multi"
    return "rm" if configuration in LABELS else "other"


def _order(configurations: list[str]) -> list[str]:
    known = [c for c in LABELS if c in configurations]
    return known + sorted(c for c in configurations if c not in LABELS)


def recipe_label(name: str) -> str:
    """A recipe's own label (mitigation variants carry one), else its name."""
    from safepref.recipes import RECIPES_DIR, load_recipe

    if not (RECIPES_DIR / f"{name}.yaml").is_file():
        return name
    return load_recipe(name).label or name


def _load_json(path: str | None) -> Any:
    if not path or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- collect


def collect_results(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, gathered from the manifest's artifacts into one JSON-able dict."""
    manifest = _load_json(str(run_dir / "manifest.json"))
    if manifest is None:
        raise InputError("no manifest.json: not a safepref run folder (run `safepref run CONFIG.yaml` first)",
                         path=run_dir)
    targets: dict[str, Any] = {}
    for target, configurations in manifest.get("targets", {}).items():
        rows = {}
        for name in _order(list(configurations)):
            entry = configurations[name]
            row: dict[str, Any] = {"label": LABELS.get(name) or recipe_label(name), "group": _group(name)}
            safety = [s for s in (_load_json(p) for p in entry.get("safety", [])) if s]
            row["safety"] = [dict(r, suite=s.get("suite")) for s in safety for r in s.get("results", [])]
            row["refusal"] = [dict(r, suite=s.get("suite")) for s in safety for r in s.get("refusal", [])]
            row["judge_agreement"] = [dict(r, suite=s.get("suite")) for s in safety for r in s.get("judge_agreement", [])]
            general = _load_json(entry.get("general"))
            row["general"] = general.get("tasks") if general else None
            row["benign"] = _load_json(entry.get("benign"))
            audit = _load_json(entry.get("audit"))
            if audit:
                row["audit"] = {
                    "n_pairs": audit["n_pairs"], "risk": audit.get("risk"), "verdict": audit.get("verdict"),
                    "features": {k: {"accuracy": v["accuracy"], "accuracy_ci": v["accuracy_ci"],
                                     "control_accuracy": v["control_accuracy"]} for k, v in audit["features"].items()},
                    "pair_diagnostics": audit.get("pair_diagnostics"),
                }
            if entry.get("data"):
                row["data"] = entry["data"]
            training = entry.get("training")
            if training:
                dynamics_path = Path(training["dynamics"])
                dynamics = [r for _, r in iter_jsonl(dynamics_path)] if dynamics_path.is_file() and \
                    dynamics_path.stat().st_size else []
                row["training"] = {"final_loss": training.get("final_loss"), "late_loss": late_loss(dynamics),
                                   "steps": training.get("steps"),
                                   "dynamics": dynamics}
            rows[name] = row
        targets[target] = rows
    return {"name": manifest.get("name"), "config": manifest.get("config"), "versions": manifest.get("versions"),
            "seed": manifest.get("seed"), "timings": manifest.get("timings"),
            "n_training_prompts": manifest.get("n_training_prompts"),
            "training_prompt_set": manifest.get("training_prompt_set"), "targets": targets,
            "paper_checks": {target: add_collapse_check(paper_checks(rows), rows) for target, rows in targets.items()},
            "warnings": {target: data_warnings(rows) for target, rows in targets.items()},
            "mitigations": mitigation_rows(manifest, targets)}


# ---------------------------------------------------------------------------------------------- warnings


def prompt_set_warning(rows: dict[str, Any]) -> str | None:
    """A warning when configurations of one target train on different prompt sets (their rates compare different
    data), naming each set's configurations and size."""
    sets: dict[str, list[str]] = {}
    for row in rows.values():
        if row.get("data"):
            sets.setdefault(row["data"]["prompt_set"], []).append(f"{row['label']} ({row['data']['n_prompts']})")
    if len(sets) < 2:
        return None
    groups = "; ".join(f"set {key}: {', '.join(names)}" for key, names in sets.items())
    return f"configurations train on different prompt sets (n prompts in brackets), so they compare different data: {groups}"


def unjudged_warnings(rows: dict[str, Any]) -> list[str]:
    """One line per rate whose judge left more than 5% of its rows unjudged (or all of them)."""
    lines = []
    for row in rows.values():
        for result in [*row["safety"], *row["refusal"]]:
            what = result.get("judge") or result.get("measure")
            total = result["n"] + result.get("unjudged", 0)
            if result.get("all_unjudged"):
                lines.append(f"{row['label']}, {result.get('suite')} {result['attack']} {what}: all {total} rows "
                             "unjudged (no rate)")
            elif result.get("unjudged_flag"):
                lines.append(f"{row['label']}, {result.get('suite')} {result['attack']} {what}: "
                             f"{result['unjudged']} of {total} rows unjudged ({result['unjudged_share']:.0%}), "
                             "left out of the rate")
    return lines


def data_warnings(rows: dict[str, Any]) -> list[str]:
    prompt_sets = prompt_set_warning(rows)
    return ([prompt_sets] if prompt_sets else []) + unjudged_warnings(rows)


# ---------------------------------------------------------------------------------------------- the paper's claims

SELF_RM = "self_rm"


def late_loss(dynamics: list[dict[str, Any]]) -> float | None:
    """Mean DPO loss over the last quarter of the steps (at least 3): one step's loss on a batch of 4 pairs swings
    between 0.0 and 1.6 in a small run, too noisy to compare configurations by."""
    losses = [r["loss"] for r in dynamics if r.get("loss") is not None]
    if not losses:
        return None
    tail = losses[-max(3, len(losses) // 4):]
    return sum(tail) / len(tail)


def _asr_result(row: dict[str, Any], suite: str | None, judge: str, attack: str = "none") -> dict[str, Any] | None:
    return next((r for r in row["safety"] if r["attack"] == attack and r["judge"] == judge and r.get("suite") == suite
                 and r["asr"] is not None), None)


def _comparison_text(comparison: dict[str, Any], gap_word: str) -> str:
    collapsed = " (answers collapsed)" if comparison.get("collapsed") else ""
    text = f"{comparison['configuration']}{collapsed} {comparison['value']:.2f}"
    if "difference_ci95" in comparison:
        text += f" ({gap_word} {comparison['difference']:+.2f} {_ci(comparison['difference_ci95'])})"
    return text


def paper_checks(rows: dict[str, Any]) -> list[dict[str, Any]]:
    """Does this run reproduce the paper's three findings? Each multi-model configuration against Self+RM.

    1. ASR (per judge, harmful suites, no attack): Self+RM lower, with a 95% interval of the difference.
    2. Separability: multi-model pairs more linearly separable than Self+RM's (probe accuracy, per feature set).
    3. Training dynamics: DPO loss ends lower on multi-model pairs (the shortcut is easy to learn).
    A finding "holds" when every multi-model configuration differs from Self+RM in the paper's direction and,
    for ASR, the interval of the difference excludes 0; "direction only" when the direction holds on average;
    otherwise "reversed", or for ASR "no measurable difference" when no interval excludes 0 the other way.
    """
    multi = [name for name in MULTI_MODEL if name in rows]
    if SELF_RM not in rows or not multi:
        return []
    base = rows[SELF_RM]
    checks = []
    harmful = [r for r in base["safety"] if r["attack"] == "none" and r.get("suite") != "xstest"]
    for reference in harmful:
        claim = f"Self+RM has lower ASR ({reference.get('suite')}, {reference['judge']} judge, n={reference['n']})"
        unjudged = [rows[name]["label"] for name in [SELF_RM, *multi] if _all_unjudged(rows[name], reference)]
        if reference["asr"] is None:
            checks.append({"claim": claim, "self_rm": None, "comparisons": [], "all_unjudged": unjudged,
                           "verdict": "all unjudged" if unjudged else "not measured"})
            continue
        comparisons = []
        for name in multi:
            other = _asr_result(rows[name], reference.get("suite"), reference["judge"])
            if other:
                k1, k2 = round(other["asr"] * other["n"]), round(reference["asr"] * reference["n"])
                comparisons.append({"configuration": rows[name]["label"], "value": other["asr"],
                                    "difference": other["asr"] - reference["asr"],
                                    "difference_ci95": list(difference_interval(k1, other["n"], k2, reference["n"]))})
        check = _verdict(claim, reference["asr"], comparisons, needs_ci=True)
        if unjudged:  # a configuration whose judge decided nothing is named, not silently left out
            check["all_unjudged"] = unjudged
        checks.append(check)
    for feature, result in ((base.get("audit") or {}).get("features") or {}).items():
        comparisons = [{"configuration": rows[name]["label"], "value": feature_result["accuracy"],
                        "difference": feature_result["accuracy"] - result["accuracy"]}
                       for name in multi if (feature_result := ((rows[name].get("audit") or {}).get("features") or {})
                                             .get(feature))]
        checks.append(_verdict(f"multi-model pairs are more separable (probe accuracy, {feature} features)",
                               result["accuracy"], comparisons, needs_ci=False))
    if (base.get("training") or {}).get("late_loss") is not None:
        comparisons = [{"configuration": rows[name]["label"], "value": rows[name]["training"]["late_loss"],
                        "difference": base["training"]["late_loss"] - rows[name]["training"]["late_loss"]}
                       for name in multi if (rows[name].get("training") or {}).get("late_loss") is not None]
        checks.append(_verdict("DPO loss ends lower on multi-model pairs (mean loss over the last quarter of steps)",
                               base["training"]["late_loss"], comparisons, needs_ci=False))
    return checks


def _all_unjudged(row: dict[str, Any], reference: dict[str, Any]) -> bool:
    return any(r.get("all_unjudged") for r in row["safety"] if r["attack"] == reference["attack"]
               and r["judge"] == reference["judge"] and r.get("suite") == reference.get("suite"))


def _check_value(check: dict[str, Any]) -> str:
    if check["self_rm"] is not None:
        return f"{check['self_rm']:.2f}"
    return "all unjudged" if check.get("all_unjudged") else ""


def _check_detail(check: dict[str, Any], gap_word: str) -> str:
    detail = "; ".join(_comparison_text(c, gap_word) for c in check["comparisons"])
    if check.get("all_unjudged"):
        detail += ("; " if detail else "") + "all rows unjudged: " + ", ".join(check["all_unjudged"])
    return detail


def _verdict(claim: str, self_rm_value: float, comparisons: list[dict[str, Any]], needs_ci: bool) -> dict[str, Any]:
    """``difference`` is oriented so that > 0 is the paper's direction."""
    if not comparisons:
        verdict = "not measured"
    elif all(c["difference"] > 0 and (not needs_ci or c["difference_ci95"][0] > 0) for c in comparisons):
        verdict = "holds"
    elif sum(c["difference"] for c in comparisons) > 0:
        verdict = "direction only"
    elif needs_ci and not any(c["difference_ci95"][1] < 0 for c in comparisons):
        verdict = "no measurable difference"
    else:
        verdict = "reversed"
    return {"claim": claim, "self_rm": self_rm_value, "comparisons": comparisons, "verdict": verdict}


# ---------------------------------------------------------------------------------------------- figures


def _figure_to_data_uri(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _error_bar(value: float, low: float, high: float) -> list[list[float]]:
    # a rate of exactly 1 has a Wilson upper bound a rounding error below 1: matplotlib refuses negative bar lengths
    return [[max(0.0, value - low)], [max(0.0, high - value)]]


def asr_figure(target: str, rows: dict[str, Any], attack: str, suite: str) -> str | None:
    """Bars of ASR per configuration, one bar per judge, 95% Wilson intervals, n under each label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configurations = [c for c in rows if any(r["attack"] == attack and r.get("suite") == suite
                                             for r in rows[c]["safety"])]
    judges = sorted({r["judge"] for c in configurations for r in rows[c]["safety"]
                     if r["attack"] == attack and r.get("suite") == suite})
    if not configurations or not judges:
        return None
    figure, axis = plt.subplots(figsize=(1.1 * len(configurations) + 2.5, 3.8))
    width = 0.8 / len(judges)
    for j, judge in enumerate(judges):
        for i, name in enumerate(configurations):
            found = [r for r in rows[name]["safety"] if r["attack"] == attack and r["judge"] == judge
                     and r.get("suite") == suite]
            if not found or found[0]["asr"] is None:
                continue
            result = found[0]
            low, high = result["asr_ci95"]
            axis.bar(i + (j - (len(judges) - 1) / 2) * width, result["asr"], width,
                     color=GROUP_COLORS[rows[name]["group"]], hatch=JUDGE_HATCH[j % 4], edgecolor="black",
                     yerr=_error_bar(result["asr"], low, high), capsize=3,
                     label=judge if i == 0 else None)
    n_values = {r["n"] for c in configurations for r in rows[c]["safety"] if r["attack"] == attack
                and r.get("suite") == suite}
    axis.set_xticks(range(len(configurations)))
    axis.set_xticklabels([rows[c]["label"] for c in configurations], rotation=20)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("attack success rate")
    axis.set_title(f"{target} — {suite}, attack '{attack}' (n={'/'.join(map(str, sorted(n_values)))} prompts, "
                   f"95% Wilson CI)\ngrey: SFT, red: multi-model pairs, blue: RM-ranked / original pairs; "
                   f"hatching: judge", fontsize=9)
    axis.legend(title="judge", fontsize=8)
    return _figure_to_data_uri(figure)


def separability_figure(target: str, rows: dict[str, Any], judge: str, feature: str) -> str | None:
    """Separability (probe accuracy) against ASR per configuration: the paper's mechanism in one picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for name, row in rows.items():
        audit = (row.get("audit") or {}).get("features", {}).get(feature)
        asr = [r for r in row["safety"] if r["judge"] == judge and r["attack"] == "none" and r["asr"] is not None]
        if audit and asr:
            points.append((name, row, audit, asr[0]))
    if len(points) < 2:
        return None
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for _name, row, audit, asr in points:
        x_low, x_high = audit["accuracy_ci"]
        y_low, y_high = asr["asr_ci95"]
        axis.errorbar(audit["accuracy"], asr["asr"], xerr=_error_bar(audit["accuracy"], x_low, x_high),
                      yerr=_error_bar(asr["asr"], y_low, y_high), fmt="o", color=GROUP_COLORS[row["group"]],
                      capsize=3)
        axis.annotate(row["label"], (audit["accuracy"], asr["asr"]), textcoords="offset points", xytext=(5, 5),
                      fontsize=8)
    axis.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel(f"chosen-vs-rejected probe accuracy ({feature} features, 95% CI)")
    axis.set_ylabel(f"ASR ({judge} judge, 95% CI)")
    axis.set_title(f"{target}: separability vs attack success (n pairs = "
                   f"{'/'.join(sorted({str(p[2] and p[1]['audit']['n_pairs']) for p in points}))})", fontsize=9)
    return _figure_to_data_uri(figure)


def training_figure(target: str, rows: dict[str, Any]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [(name, row) for name, row in rows.items() if (row.get("training") or {}).get("dynamics")]
    if not trained:
        return None
    figure, (loss_axis, margin_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for _name, row in trained:
        steps = [r["step"] for r in row["training"]["dynamics"] if "loss" in r]
        style = "-" if row["group"] == "multi" else "--"
        loss_axis.plot(steps, [r["loss"] for r in row["training"]["dynamics"] if "loss" in r], style, label=row["label"])
        margin_axis.plot(steps, [r.get("rewards/margins") for r in row["training"]["dynamics"] if "loss" in r], style,
                         label=row["label"])
    loss_axis.axhline(0.693, color="grey", linestyle=":", linewidth=1)
    loss_axis.set_title(f"{target}: DPO loss per step (dotted: ln 2)", fontsize=9)
    margin_axis.set_title("reward margin (chosen - rejected) per step", fontsize=9)
    for axis in (loss_axis, margin_axis):
        axis.set_xlabel("step")
    loss_axis.legend(fontsize=7)
    return _figure_to_data_uri(figure)


# ---------------------------------------------------------------------------------------------- page


def _unjudged_text(result: dict[str, Any]) -> str:
    """The unjudged count of a rate, flagged when above 5% of its rows."""
    count = result.get("unjudged", 0)
    return f"{count} ⚠ {result['unjudged_share']:.0%}" if result.get("unjudged_flag") else str(count)


def _rate_cell(result: dict[str, Any] | None, value: str, ci: str) -> str:
    """A headline cell: rate and interval, the unjudged count when it is flagged, or 'all unjudged'."""
    if result is None:
        return "–"
    if result.get("all_unjudged"):
        return f"all unjudged ({result['unjudged']})"
    if result[value] is None:
        return "–"
    text = f"{result[value]:.2f} {_ci(result[ci])}"
    return text + f" ⚠ {result['unjudged']} unjudged" if result.get("unjudged_flag") else text


def _ci(values: list[float] | None) -> str:
    return f"[{values[0]:.2f}, {values[1]:.2f}]" if values else ""


PAIR_DIAGNOSTICS_HEADER = ["configuration", "n pairs", "harmful: chosen", "harmful: rejected", "gap (95% CI)",
                           "refusal: chosen", "refusal: rejected", "gap (95% CI)", "mean words: chosen / rejected"]


def pair_diagnostics_rows(rows: dict[str, Any]) -> list[list[str]]:
    """One row per configuration with audited pairs: is the chosen side the safer one, or only the longer one?"""
    def side(block: dict[str, Any] | None) -> list[str]:
        if not block or not block["gap"]["n"]:
            return ["–", "–", "–"]
        gap = block["gap"]
        return [f"{block['chosen']['rate']:.2f}", f"{block['rejected']['rate']:.2f}",
                f"{gap['difference']:+.2f} [{gap['ci95'][0]:+.2f}, {gap['ci95'][1]:+.2f}]"]

    body = []
    for row in rows.values():
        found = (row.get("audit") or {}).get("pair_diagnostics")
        if not found:
            continue
        length = found["length"]
        body.append([row["label"], str(found["n_pairs"]), *side(found["harmful"]), *side(found["refusal"]),
                     f"{length['chosen']['mean']:.1f} / {length['rejected']['mean']:.1f}"])
    return body


def _table(header: list[str], body: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render_html(results: dict[str, Any]) -> str:
    parts = [f"<h1>safepref report: {html.escape(str(results['name']))}</h1>",
             f"<p>Training prompts: n={results.get('n_training_prompts')} (set "
             f"{html.escape(str(results.get('training_prompt_set')))}); seed {results.get('seed')}. "
             "Every rate shows n and a 95% interval.</p>"]
    for target, rows in results["targets"].items():
        parts.append(f"<h2>Target: {html.escape(target)}</h2>")
        warnings = (results.get("warnings") or {}).get(target) or []
        if warnings:
            parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{html.escape(w)}</li>"
                                                                            for w in warnings) + "</ul></div>")
        data = [[row["label"], row["data"]["n_pairs"], row["data"]["n_prompts"], row["data"]["prompt_set"]]
                for row in rows.values() if row.get("data")]
        if data:
            parts.append("<h3>Training data per configuration</h3>" + _table(
                ["configuration", "pairs", "prompts", "prompt set (hash of the prompt ids)"], data))
        checks = (results.get("paper_checks") or {}).get(target) or []
        if checks:
            body = [[check["claim"], _check_value(check), check.get("detail") or _check_detail(check, "Δ"), check["verdict"]]
                    for check in checks]
            parts.append("<h3>Does the paper's finding reproduce? (multi-model configurations against Self+RM)</h3>"
                         + _table(["claim", "Self+RM", "multi-model (Δ: gap in the paper's direction, 95% CI)",
                                   "verdict"], body))
        attacks = sorted({(r.get("suite"), r["attack"]) for row in rows.values() for r in row["safety"]},
                         key=lambda x: (str(x[0]), x[1] != "none", x[1]))
        for suite, attack in attacks:
            image = asr_figure(target, rows, attack, suite)
            if image:
                parts.append(f'<img alt="ASR {html.escape(str(suite))} {html.escape(attack)}" src="{image}">')
        body = [[row["label"], r.get("suite"), r["attack"], r["judge"] + agreement_note(r["judge"]), r["n"],
                 ("all unjudged" if r.get("all_unjudged") else "") if r["asr"] is None else f"{r['asr']:.2f}",
                 _ci(r.get("asr_ci95")), _unjudged_text(r),
                 "" if r.get("mean_score") is None else f"{r['mean_score']:.2f}"]
                for row in rows.values() for r in row["safety"]]
        parts.append("<h3>Attack success rate</h3>" + _table(
            ["configuration", "suite", "attack", "judge", "n", "ASR", "95% CI", "unjudged", "mean 1-5 score"], body))
        agreement = [[row["label"], a["attack"], " vs ".join(a["judges"]), a["n"],
                      "" if a["agreement"] is None else f"{a['agreement']:.2f}",
                      "" if a["kappa"] is None else f"{a['kappa']:.2f}"]
                     for row in rows.values() for a in row["judge_agreement"]]
        if agreement:
            parts.append("<h3>Agreement between judges</h3>" + _table(
                ["configuration", "attack", "judges", "n", "agreement", "Cohen's kappa"], agreement))
        parts.append(benign_html(rows, _table))
        refusal = [[row["label"], r.get("suite"), r["attack"], r["measure"], r["n"],
                    ("all unjudged" if r.get("all_unjudged") else "") if r["rate"] is None else f"{r['rate']:.2f}",
                    _ci(r.get("ci95")), _unjudged_text(r)]
                   for row in rows.values() for r in row["refusal"]]
        if refusal:
            parts.append("<h3>Refusal and over-refusal</h3>" + _table(
                ["configuration", "suite", "attack", "measure", "n", "rate", "95% CI", "unjudged"], refusal))
        audits = [[row["label"], feature, row["audit"]["n_pairs"], f"{v['accuracy']:.2f}", _ci(v["accuracy_ci"]),
                   f"{v['control_accuracy']:.2f}", row["audit"].get("risk", "")]
                  for row in rows.values() if row.get("audit") for feature, v in row["audit"]["features"].items()]
        if audits:
            parts.append("<h3>Separability of chosen vs rejected (linear probe, grouped 5-fold CV)</h3>" + _table(
                ["configuration", "features", "n pairs", "accuracy", "95% CI", "shuffled control", "shortcut risk"],
                audits))
            judges = sorted({r["judge"] for row in rows.values() for r in row["safety"]})
            features = sorted({f for row in rows.values() if row.get("audit") for f in row["audit"]["features"]})
            judge = next((j for j in ("harm", "classifier") if j in judges), judges[0] if judges else None)
            feature = "embed" if "embed" in features else (features[0] if features else None)
            image = separability_figure(target, rows, judge, feature) if judge and feature else None
            if image:
                parts.append(f'<img alt="separability vs ASR" src="{image}">')
        diagnostics = pair_diagnostics_rows(rows)
        if diagnostics:
            judge = next(r["audit"]["pair_diagnostics"]["harm_judge"] for r in rows.values()
                         if (r.get("audit") or {}).get("pair_diagnostics"))
            parts.append(f"<h3>Chosen vs rejected answers (harm judge: {html.escape(judge)}; refusal judge; "
                         "gap = chosen minus rejected, Newcombe paired 95% CI)</h3>"
                         + _table(PAIR_DIAGNOSTICS_HEADER, diagnostics))
        tasks = sorted({t for row in rows.values() if row.get("general") for t in row["general"]})
        if tasks:
            body = []
            for row in rows.values():
                general = row.get("general") or {}
                cells = []
                for task in tasks:
                    result = general.get(task)
                    cells.append("" if not result or result["value"] is None else
                                 f"{result['value']:.3f} ± {result['stderr'] or 0:.3f} (n={result['n']})")
                body.append([row["label"], *cells])
            metric = {t: next((row["general"][t]["metric"] for row in rows.values()
                               if row.get("general") and t in row["general"]), "") for t in tasks}
            parts.append("<h3>General ability (lm-evaluation-harness, value ± stderr)</h3>" + _table(
                ["configuration", *[f"{t} ({metric[t]})" for t in tasks]], body))
        if (results.get("mitigations") or {}).get(target):
            parts.append("<h3>Mitigations: each debiased configuration against its original (debiased vs original; "
                         "Δ = debiased − original ASR with a Newcombe 95% interval)</h3>"
                         + _table(*mitigation_table(results["mitigations"][target])))
        image = training_figure(target, rows)
        if image:
            trained = [[row["label"], row["training"]["steps"],
                        "" if row["training"]["final_loss"] is None else f"{row['training']['final_loss']:.3f}",
                        "" if row["training"].get("late_loss") is None else f"{row['training']['late_loss']:.3f}"]
                       for row in rows.values() if row.get("training")]
            parts.append("<h3>DPO training dynamics</h3>" + f'<img alt="training curves" src="{image}">'
                         + _table(["configuration", "steps", "final loss", "mean loss, last quarter of steps"], trained))
    timings = results.get("timings") or {}
    parts.append("<h2>Run details</h2>" + _table(["step", "seconds"], [[k, v] for k, v in timings.items()]))
    parts.append("<h3>Versions</h3>" + _table(["package", "version"], list((results.get("versions") or {}).items())))
    parts.append("<h3>Config</h3><pre>" + html.escape(yaml.safe_dump(results.get("config"), sort_keys=False)) + "</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px}th{background:#f0f0f0}img{max-width:100%;display:block;margin:1em 0}"
             "pre{background:#f7f7f7;padding:1em;font-size:12px}"
             ".warn{background:#fff4e0;border:1px solid #e0a040;padding:0.3em 1em;margin:1em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>safepref: {html.escape(str(results['name']))}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def _metric_of(rows: dict[str, Any], task: str) -> str:
    return next((row["general"][task]["metric"] for row in rows.values() if row.get("general") and task in row["general"]),
                "")


def render_markdown(results: dict[str, Any]) -> str:
    """The headline table per target (a row per configuration) and the paper checks, for a README or an issue."""
    lines = [f"# {results['name']}: {results.get('n_training_prompts')} training prompts, seed {results.get('seed')}"]
    for target, rows in results["targets"].items():
        harm = sorted({(r.get("suite"), r["judge"]) for row in rows.values() for r in row["safety"]
                       if r["attack"] == "none" and r.get("suite") != "xstest"}, key=str)
        refusal = sorted({(r.get("suite"), r["measure"]) for row in rows.values() for r in row["refusal"]
                          if r["attack"] == "none"}, key=str)
        features = sorted({f for row in rows.values() if row.get("audit") for f in row["audit"]["features"]})
        tasks = sorted({t for row in rows.values() if row.get("general") for t in row["general"]})
        n_of = {}
        for row in rows.values():
            for r in row["safety"]:
                n_of.setdefault((r.get("suite"), r["judge"]), r["n"])
            for r in row["refusal"]:
                n_of.setdefault((r.get("suite"), r["measure"]), r["n"])
        header = ([f"ASR {judge}{agreement_note(judge)}, {suite} (n={n_of[(suite, judge)]})" for suite, judge in harm]
                  + [f"{measure.replace('_', '-')}, {suite} (n={n_of[(suite, measure)]})" for suite, measure in refusal]
                  + [f"probe accuracy, {feature}" for feature in features] + ["DPO loss, last quarter (steps)"]
                  + [f"{task} {_metric_of(rows, task)}" for task in tasks])
        lines += ["", f"## {target}", "", "| configuration | " + " | ".join(header) + " |",
                  "|---" * (len(header) + 1) + "|"]
        for row in rows.values():
            cells = []
            for suite, judge in harm:
                found = next((r for r in row["safety"] if r["attack"] == "none" and r["judge"] == judge
                              and r.get("suite") == suite), None)
                cells.append(_rate_cell(found, "asr", "asr_ci95"))
            for suite, measure in refusal:
                found = next((r for r in row["refusal"] if r["attack"] == "none" and r["measure"] == measure
                              and r.get("suite") == suite), None)
                cells.append(_rate_cell(found, "rate", "ci95"))
            for feature in features:
                found = ((row.get("audit") or {}).get("features") or {}).get(feature)
                cells.append(f"{found['accuracy']:.2f} {_ci(found['accuracy_ci'])}" if found else "–")
            training = row.get("training") or {}
            cells.append(f"{training['late_loss']:.2f} ({training['steps']})" if training.get("late_loss") is not None
                         else "–")
            for task in tasks:
                found = (row.get("general") or {}).get(task)
                cells.append(f"{found['value']:.2f} ± {found['stderr'] or 0:.2f}" if found and found["value"] is not None
                             else "–")
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        data = [row for row in rows.values() if row.get("data")]
        if data:
            lines += ["", "Training data: " + "; ".join(f"{row['label']} {row['data']['n_pairs']} pairs from "
                                                        f"{row['data']['n_prompts']} prompts (set {row['data']['prompt_set']})"
                                                        for row in data)]
        for warning in (results.get("warnings") or {}).get(target) or []:
            lines += ["", f"**Warning:** {warning}"]
        diagnostics = pair_diagnostics_rows(rows)
        if diagnostics:
            lines += ["", "Chosen vs rejected answers (gap = chosen minus rejected, 95% CI):", "",
                      "| " + " | ".join(PAIR_DIAGNOSTICS_HEADER) + " |", "|---" * len(PAIR_DIAGNOSTICS_HEADER) + "|",
                      *("| " + " | ".join(cells) + " |" for cells in diagnostics)]
        lines += benign_markdown(rows)
        checks = (results.get("paper_checks") or {}).get(target) or []
        if checks:
            lines += ["", "Does the paper's finding reproduce (multi-model configurations against Self+RM)?", ""]
            for check in checks:
                detail = check.get("detail") or _check_detail(check, "gap")
                value = _check_value(check)
                lines.append(f"- {check['claim']}: **{check['verdict']}** ({f'Self+RM {value}; ' if value else ''}{detail})")
    lines += mitigations_markdown(results.get("mitigations") or {})
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Write ``report.html``, ``summary.md`` and ``results.json`` into the run folder; returns their paths."""
    run_dir = Path(run_dir)
    results = collect_results(run_dir)
    results_path = write_json_atomic(run_dir / "results.json", results)
    markdown_path = write_text_atomic(run_dir / "summary.md", render_markdown(results))
    html_path = write_text_atomic(run_dir / "report.html", render_html(results))
    return {"report": str(html_path), "results": str(results_path), "summary": str(markdown_path)}
