"""The report's pages: ``report.html`` (self-contained, figures embedded) and ``summary.md`` (the headline tables),
both drawn from the dict :func:`safepref.report.analysis.collect_results` gathers."""

from __future__ import annotations

import html
from typing import Any

import yaml

from safepref.report.analysis import harm_columns
from safepref.report.benign import benign_html, benign_markdown, interval_text
from safepref.report.comparisons import comparison_text
from safepref.report.figures import asr_figure, separability_figure, training_figure
from safepref.report.mitigations import mitigation_table, mitigations_markdown
from safepref.report.provenance import judge_notes, provenance_markdown
from safepref.report.published import published_html, published_markdown
from safepref.report.sections import (
    COMPARISONS_NOTE,
    category_table,
    html_against_sft,
    html_categories,
    markdown_against_sft,
    seed_cells,
    seeds_text,
    spread_text,
)

# ---------------------------------------------------------------------------------------------- cells


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
    text = f"{result[value]:.2f} {interval_text(result[ci])}" + spread_text(result.get("seed_spread"))
    return text + f" ⚠ {result['unjudged']} unjudged" if result.get("unjudged_flag") else text


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


def _comparison_text(comparison: dict[str, Any], gap_word: str) -> str:
    collapsed = " (answers collapsed)" if comparison.get("collapsed") else ""
    text = f"{comparison['configuration']}{collapsed} {comparison['value']:.2f}"
    if comparison.get("difference_ci95") is not None:
        detail = comparison_text(comparison, comparison["configuration"], "Self+RM")
        text += f" ({gap_word} {detail}: {comparison.get('verdict', '')})"  # the resolution is in the detail
    return text


def check_value(check: dict[str, Any]) -> str:
    """Self+RM's number in a paper check as the report prints it; 'all unjudged' where its judge decided nothing."""
    if check["self_rm"] is not None:
        return f"{check['self_rm']:.2f}"
    return "all unjudged" if check.get("all_unjudged") else ""


def _check_detail(check: dict[str, Any], gap_word: str) -> str:
    detail = "; ".join(_comparison_text(c, gap_word) for c in check["comparisons"])
    if check.get("all_unjudged"):
        detail += ("; " if detail else "") + "all rows unjudged: " + ", ".join(check["all_unjudged"])
    return detail


# ---------------------------------------------------------------------------------------------- HTML page


def render_html(results: dict[str, Any]) -> str:
    parts = [f"<h1>safepref report: {html.escape(str(results['name']))}</h1>",
             f"<p>Training prompts: n={results.get('n_training_prompts')} (set "
             f"{html.escape(str(results.get('training_prompt_set')))}); {html.escape(seeds_text(results))}. "
             "Every rate shows n and a 95% interval. " + html.escape(COMPARISONS_NOTE) + "</p>"]
    for target, rows in results["targets"].items():
        parts += [*_html_overview(results, target, rows), *_html_safety(target, rows, judge_notes(results)),
                  *html_categories(rows, _table), *html_against_sft(results, target, _table), benign_html(rows, _table),
                  *_html_refusal(rows), *_html_separability(target, rows), *_html_pair_diagnostics(rows),
                  *_html_general(rows), *_html_mitigations(results, target), *_html_training(target, rows)]
    parts += published_html(results, _table)
    parts += _html_run_details(results)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px}th{background:#f0f0f0}img{max-width:100%;display:block;margin:1em 0}"
             "pre{background:#f7f7f7;padding:1em;font-size:12px}"
             ".warn{background:#fff4e0;border:1px solid #e0a040;padding:0.3em 1em;margin:1em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>safepref: {html.escape(str(results['name']))}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def _html_overview(results: dict[str, Any], target: str, rows: dict[str, Any]) -> list[str]:
    """The target's heading, its warnings, the training data per configuration and the paper checks."""
    parts = [f"<h2>Target: {html.escape(target)}</h2>"]
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
        body = [[check["claim"], check_value(check), check.get("detail") or _check_detail(check, "Δ"), check["verdict"]]
                for check in checks]
        parts.append("<h3>Does the paper's finding reproduce? (multi-model configurations against Self+RM)</h3>"
                     + _table(["claim", "Self+RM", "multi-model (Δ: gap in the paper's direction, paired 95% CI, "
                               "p, discordant prompts, the gap it could detect: verdict)", "verdict"], body))
    return parts


def _html_safety(target: str, rows: dict[str, Any], notes: dict[str, str]) -> list[str]:
    """An ASR figure per suite and attack, the ASR table and the agreement between judges."""
    parts = []
    attacks = sorted({(r.get("suite"), r["attack"]) for row in rows.values() for r in row["safety"]},
                     key=lambda x: (str(x[0]), x[1] != "none", x[1]))
    for suite, attack in attacks:
        image = asr_figure(target, rows, attack, suite)
        if image:
            parts.append(f'<img alt="ASR {html.escape(str(suite))} {html.escape(attack)}" src="{image}">')
    seeded = any(r.get("seeds") for row in rows.values() for r in row["safety"])
    body = [[row["label"], r.get("suite"), r["attack"], r["judge"] + notes[r["judge"]], r["n"],
             ("all unjudged" if r.get("all_unjudged") else "") if r["asr"] is None else f"{r['asr']:.2f}",
             interval_text(r.get("asr_ci95")), *([seed_cells(r, "asr", "asr_ci95")] if seeded else []), _unjudged_text(r),
             "" if r.get("mean_score") is None else f"{r['mean_score']:.2f}"]
            for row in rows.values() for r in row["safety"]]
    parts.append("<h3>Attack success rate" + (" (pooled over seeds: mean over prompts of each prompt's mean over "
                                              "seeds, 95% bootstrap interval over prompts)" if seeded else "")
                 + "</h3>" + _table(
        ["configuration", "suite", "attack", "judge", "n", "ASR", "95% CI",
         *(["per seed (95% Wilson CI)"] if seeded else []), "unjudged", "mean 1-5 score"], body))
    agreement = [[row["label"], a["attack"], " vs ".join(a["judges"]), a["n"],
                  "" if a["agreement"] is None else f"{a['agreement']:.2f}",
                  "" if a["kappa"] is None else f"{a['kappa']:.2f}"]
                 for row in rows.values() for a in row["judge_agreement"]]
    if agreement:
        parts.append("<h3>Agreement between judges</h3>" + _table(
            ["configuration", "attack", "judges", "n", "agreement", "Cohen's kappa"], agreement))
    return parts


def _html_refusal(rows: dict[str, Any]) -> list[str]:
    refusal = [[row["label"], r.get("suite"), r["attack"], r["measure"], r["n"],
                ("all unjudged" if r.get("all_unjudged") else "") if r["rate"] is None else f"{r['rate']:.2f}",
                interval_text(r.get("ci95")), _unjudged_text(r)]
               for row in rows.values() for r in row["refusal"]]
    if not refusal:
        return []
    return ["<h3>Refusal and over-refusal</h3>" + _table(
        ["configuration", "suite", "attack", "measure", "n", "rate", "95% CI", "unjudged"], refusal)]


def _html_separability(target: str, rows: dict[str, Any]) -> list[str]:
    """The probe accuracies and, with a judge and a feature set to pair, separability against ASR."""
    audits = [[row["label"], feature, row["audit"]["n_pairs"], f"{v['accuracy']:.2f}", interval_text(v["accuracy_ci"]),
               f"{v['control_accuracy']:.2f}", row["audit"].get("risk", "")]
              for row in rows.values() if row.get("audit") for feature, v in row["audit"]["features"].items()]
    if not audits:
        return []
    parts = ["<h3>Separability of chosen vs rejected (linear probe, grouped 5-fold CV)</h3>" + _table(
        ["configuration", "features", "n pairs", "accuracy", "95% CI", "shuffled control", "shortcut risk"],
        audits)]
    judges = sorted({r["judge"] for row in rows.values() for r in row["safety"]})
    features = sorted({f for row in rows.values() if row.get("audit") for f in row["audit"]["features"]})
    judge = next((j for j in ("harm", "classifier") if j in judges), judges[0] if judges else None)
    feature = "embed" if "embed" in features else (features[0] if features else None)
    image = separability_figure(target, rows, judge, feature) if judge and feature else None
    if image:
        parts.append(f'<img alt="separability vs ASR" src="{image}">')
    return parts


def _html_pair_diagnostics(rows: dict[str, Any]) -> list[str]:
    diagnostics = pair_diagnostics_rows(rows)
    if not diagnostics:
        return []
    judge = next(r["audit"]["pair_diagnostics"]["harm_judge"] for r in rows.values()
                 if (r.get("audit") or {}).get("pair_diagnostics"))
    return [f"<h3>Chosen vs rejected answers (harm judge: {html.escape(judge)}; refusal judge; "
            "gap = chosen minus rejected, Newcombe paired 95% CI)</h3>"
            + _table(PAIR_DIAGNOSTICS_HEADER, diagnostics)]


def _html_general(rows: dict[str, Any]) -> list[str]:
    tasks = sorted({t for row in rows.values() if row.get("general") for t in row["general"]})
    if not tasks:
        return []
    body = []
    for row in rows.values():
        general = row.get("general") or {}
        cells = []
        for task in tasks:
            result = general.get(task)
            cells.append("" if not result or result["value"] is None else
                         f"{result['value']:.3f} ± {result['stderr'] or 0:.3f} (n={result['n']})"
                         + spread_text(result.get("seed_spread")))
        body.append([row["label"], *cells])
    metric = {t: next((row["general"][t]["metric"] for row in rows.values()
                       if row.get("general") and t in row["general"]), "") for t in tasks}
    return ["<h3>General ability (lm-evaluation-harness, value ± stderr)</h3>" + _table(
        ["configuration", *[f"{t} ({metric[t]})" for t in tasks]], body)]


def _html_mitigations(results: dict[str, Any], target: str) -> list[str]:
    if not (results.get("mitigations") or {}).get(target):
        return []
    return ["<h3>Mitigations: each debiased configuration against its original (debiased vs original; "
            "Δ = debiased − original, paired 95% interval, p, discordant prompts, the difference it could "
            "detect)</h3>"
            + _table(*mitigation_table(results["mitigations"][target]))]


def _html_training(target: str, rows: dict[str, Any]) -> list[str]:
    image = training_figure(target, rows)
    if not image:
        return []
    trained = [[row["label"], row["training"]["steps"],
                "" if row["training"]["final_loss"] is None else f"{row['training']['final_loss']:.3f}",
                ("" if row["training"].get("late_loss") is None else f"{row['training']['late_loss']:.3f}")
                + _loss_seeds(row["training"])]
               for row in rows.values() if row.get("training")]
    return ["<h3>DPO training dynamics (curves: the first seed)</h3>" + f'<img alt="training curves" src="{image}">'
            + _table(["configuration", "steps", "final loss", "mean loss, last quarter of steps"], trained)]


def _loss_seeds(training: dict[str, Any]) -> str:
    seeds = training.get("seeds")
    if not seeds:
        return ""
    values = ", ".join("–" if s["late_loss"] is None else f"{s['late_loss']:.3f}" for s in seeds)
    spread = training.get("late_loss_spread")
    return f" (mean of seeds: {values}" + (f"; sd {spread['sd']:.3f})" if spread else ")")


def _html_run_details(results: dict[str, Any]) -> list[str]:
    timings = results.get("timings") or {}
    shares = [[r["stage"], r["steps"], f"{r['seconds'] / 60:.1f}", f"{r['share']:.0%}"]
              for r in results.get("stage_shares") or []]
    total = f"{sum(timings.values()) / 60:.1f} minutes of stage time in all"
    return ["<h2>Run details</h2>" + f"<p>{total}</p>"
            + _table(["stage", "steps", "minutes", "share of the run"], shares)
            + _table(["step", "seconds"], [[k, v] for k, v in timings.items()]),
            "<h3>Versions</h3>" + _table(["package", "version"], list((results.get("versions") or {}).items())),
            "<h3>Config</h3><pre>" + html.escape(yaml.safe_dump(results.get("config"), sort_keys=False)) + "</pre>"]


# ---------------------------------------------------------------------------------------------- Markdown summary


def render_markdown(results: dict[str, Any]) -> str:
    """The headline table per target (a row per configuration) and the paper checks, for a README or an issue."""
    lines = [f"# {results['name']}: {results.get('n_training_prompts')} training prompts, {seeds_text(results)}", "",
             COMPARISONS_NOTE]
    for target, rows in results["targets"].items():
        lines += ["", f"## {target}", "", *headline_table(rows, judge_notes(results))]
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
        lines += checks_markdown((results.get("paper_checks") or {}).get(target) or [])
        lines += markdown_against_sft((results.get("against_sft") or {}).get(target) or [])
        for suite in sorted({c["suite"] for row in rows.values() for c in row.get("categories") or []}, key=str):
            header, body = category_table(rows, suite)
            lines += ["", f"ASR per category, {suite} (n prompts per category in brackets):", "",
                      "| " + " | ".join(header) + " |", "|---" * len(header) + "|",
                      *("| " + " | ".join(cells) + " |" for cells in body)]
    lines += mitigations_markdown(results.get("mitigations") or {})
    lines += published_markdown(results)
    lines += _markdown_timings(results) + provenance_markdown(results)
    return "\n".join(lines) + "\n"


def _markdown_timings(results: dict[str, Any]) -> list[str]:
    shares = results.get("stage_shares") or []
    if not shares:
        return []
    total = sum(r["seconds"] for r in shares) / 60
    return ["", f"Stage time: {total:.1f} minutes in all.", "", "| stage | steps | minutes | share of the run |",
            "|---|---|---|---|",
            *(f"| {r['stage']} | {r['steps']} | {r['seconds'] / 60:.1f} | {r['share']:.0%} |" for r in shares)]


def _metric_of(rows: dict[str, Any], task: str) -> str:
    return next((row["general"][task]["metric"] for row in rows.values() if row.get("general") and task in row["general"]),
                "")


def headline_table(rows: dict[str, Any], notes: dict[str, str]) -> list[str]:
    """A column per harmful-suite judge, refusal measure, probe feature set, the late DPO loss and each general task;
    a row per configuration."""
    harm = harm_columns(rows)
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
    header = ([f"ASR {judge}{notes[judge]}, {suite} (n={n_of[(suite, judge)]})" for suite, judge in harm]
              + [f"{measure.replace('_', '-')}, {suite} (n={n_of[(suite, measure)]})" for suite, measure in refusal]
              + [f"probe accuracy, {feature}" for feature in features] + ["DPO loss, last quarter (steps)"]
              + [f"{task} {_metric_of(rows, task)}" for task in tasks])
    lines = ["| configuration | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for row in rows.values():
        cells = _headline_cells(row, harm, refusal, features, tasks)
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return lines


def _headline_cells(row: dict[str, Any], harm: list[tuple], refusal: list[tuple], features: list[str],
                    tasks: list[str]) -> list[str]:
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
        cells.append(f"{found['accuracy']:.2f} {interval_text(found['accuracy_ci'])}" if found else "–")
    training = row.get("training") or {}
    loss_spread = training.get("late_loss_spread")
    cells.append(f"{training['late_loss']:.2f} ({training['steps']})"
                 + (f" (seeds {loss_spread['min']:.2f}–{loss_spread['max']:.2f})" if loss_spread else "")
                 if training.get("late_loss") is not None else "–")
    for task in tasks:
        found = (row.get("general") or {}).get(task)
        cells.append(f"{found['value']:.2f} ± {found['stderr'] or 0:.2f}" + spread_text(found.get("seed_spread"))
                     if found and found["value"] is not None else "–")
    return cells


def checks_markdown(checks: list[dict[str, Any]]) -> list[str]:
    if not checks:
        return []
    lines = ["", "Does the paper's finding reproduce (multi-model configurations against Self+RM)?", ""]
    for check in checks:
        detail = check.get("detail") or _check_detail(check, "gap")
        value = check_value(check)
        lines.append(f"- {check['claim']}: **{check['verdict']}** ({f'Self+RM {value}; ' if value else ''}{detail})")
    return lines
