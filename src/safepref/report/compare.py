"""One comparison of two configurations of a run, in full: what a researcher reads after the report.

Both rates (each seed's too), the paired difference with its 95% interval, the p-value, the resolution and the
verdict, then every discordant prompt: the request, both configurations' answers and every judge's verdict on each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safepref.core.errors import InputError
from safepref.evaluation.suites import load_suite
from safepref.report.analysis import LABELS, recipe_label
from safepref.report.comparisons import compare_outcomes, comparison_text, neutral_verdict
from safepref.report.evidence import (
    HARM_JUDGES,
    answers,
    configuration_outcomes,
    decided,
    seed_evaluations,
    verdicts_by_prompt,
)


def _manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise InputError("no manifest.json: not a safepref run folder", path=run_dir)
    return json.loads(path.read_text(encoding="utf-8"))


def _configuration(configurations: dict[str, Any], wanted: str) -> str:
    """A configuration by its recipe name or its label (case-insensitive)."""
    for name in configurations:
        if wanted.lower() in (name.lower(), (LABELS.get(name) or recipe_label(name)).lower()):
            return name
    raise InputError(f"no configuration '{wanted}' in this run (known: {', '.join(configurations)})")


def _target(manifest: dict[str, Any], wanted: str | None) -> str:
    targets = list(manifest.get("targets") or {})
    if wanted is None:
        if len(targets) != 1:
            raise InputError(f"the run has {len(targets)} targets: name one with --target ({', '.join(targets)})")
        return targets[0]
    if wanted not in targets:
        raise InputError(f"no target '{wanted}' in this run (known: {', '.join(targets)})")
    return wanted


def _measure_key(outcomes: dict[tuple, Any], suite: str | None, attack: str, measure: str | None) -> tuple:
    keys = sorted((k for k in outcomes if (suite is None or k[0] == suite) and k[1] == attack), key=str)
    if not keys:
        known = sorted({f"{k[0]}/{k[1]}" for k in outcomes}, key=str)
        raise InputError(f"no evaluation of suite {suite or '(any)'} under attack '{attack}' (evaluated: "
                         f"{', '.join(known) or 'none'})")
    if measure is None:  # the headline judge first, then any harm judge, then whatever was measured
        measure = next((m for m in ("harm", *HARM_JUDGES) if any(k[2] == m for k in keys)), keys[0][2])
    found = [k for k in keys if k[2] == measure]
    if not found:
        raise InputError(f"no measure '{measure}' for {suite or keys[0][0]} under '{attack}' (measured: "
                         f"{', '.join(sorted({k[2] for k in keys}))})")
    return found[0]


def comparison_in_full(run_dir: str | Path, first: str, second: str, *, suite: str | None = None,
                       attack: str = "none", measure: str | None = None, target: str | None = None) -> dict[str, Any]:
    """``first`` against ``second`` (configuration names or labels) on one suite, attack and judge (or refusal
    measure), with every discordant prompt."""
    run_dir = Path(run_dir)
    manifest = _manifest(run_dir)
    target = _target(manifest, target)
    configurations = manifest["targets"][target]
    names = [_configuration(configurations, wanted) for wanted in (first, second)]
    evaluations = [seed_evaluations(configurations[name]) for name in names]
    outcomes = [configuration_outcomes([e.get("safety") or [] for e in found]) for found in evaluations]
    key = _measure_key(outcomes[0], suite, attack, measure)
    labels = [LABELS.get(name) or recipe_label(name) for name in names]
    kind = "safety" if key[2] in HARM_JUDGES else "refusal"
    comparison = compare_outcomes(outcomes[0].get(key), outcomes[1].get(key), kind=kind)
    summaries = [[_summary_for(e, key[0]) for e in found] for found in evaluations]
    return {
        "run": str(run_dir), "target": target, "suite": key[0], "attack": key[1], "measure": key[2],
        "configurations": [
            {"name": name, "label": label, "seeds": [e.get("seed") for e in found],
             "rates_per_seed": [_seed_rate(outcomes_of.get(key), index) for index in range(len(found))]}
            for name, label, found, outcomes_of in zip(names, labels, evaluations, outcomes, strict=True)],
        "comparison": comparison, "summary": comparison_text(comparison, labels[0], labels[1]),
        "verdict": neutral_verdict(comparison),
        "discordant": _discordant(decided(outcomes[0].get(key)), decided(outcomes[1].get(key)), summaries, key),
    }


def _summary_for(evaluation: dict[str, Any], suite: str | None) -> str | None:
    for path in evaluation.get("safety") or []:
        summary = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
        if summary.get("suite") == suite:
            return path
    return None


def _seed_rate(per_prompt: dict[str, list] | None, index: int) -> dict[str, Any]:
    values = [v[index] for v in (per_prompt or {}).values() if len(v) > index and v[index] is not None]
    return {"n": len(values), "rate": sum(values) / len(values) if values else None}


def _requests(suite: str | None) -> dict[str, str]:
    """Prompt id -> request text of a suite (empty when the suite cannot be loaded any more, e.g. a moved file)."""
    try:
        return {p.id: p.text for p in load_suite(suite)} if suite else {}
    except InputError:
        return {}


def _discordant(first: dict[str, list], second: dict[str, list], summaries: list[list[str | None]],
                key: tuple) -> list[dict[str, Any]]:
    """Prompts whose outcome (mean over seeds) differs between the two, with each side's answers and verdicts."""
    suite, attack, _ = key
    requests = _requests(suite)
    per_side = [[(answers(path, attack), verdicts_by_prompt(path, attack)) if path else ({}, {}) for path in side]
                for side in summaries]
    rows = []
    for prompt in sorted(first.keys() & second.keys()):
        a, b = first[prompt], second[prompt]
        if sum(a) / len(a) == sum(b) / len(b):
            continue
        sides = []
        for outcomes_of, evaluations in ((a, per_side[0]), (b, per_side[1])):
            sides.append({"outcome": outcomes_of, "answers": [
                {"answer": found_answers.get(prompt), "verdicts": found_verdicts.get(prompt, {})}
                for found_answers, found_verdicts in evaluations]})
        rows.append({"prompt_id": prompt, "request": requests.get(prompt), "first": sides[0], "second": sides[1]})
    return rows


def render_comparison(result: dict[str, Any], width: int = 600) -> str:
    """The comparison as text for a terminal: header lines, then one block per discordant prompt."""
    first, second = result["configurations"]
    lines = [f"{result['target']}: {first['label']} vs {second['label']} on {result['suite']}, attack "
             f"'{result['attack']}', {result['measure']}"]
    for side in (first, second):
        seeds = "; ".join(("" if s is None else f"seed {s}: ")
                          + ("–" if r["rate"] is None else f"{r['rate']:.2f} (n={r['n']})")
                          for s, r in zip(side["seeds"], side["rates_per_seed"], strict=True))
        lines.append(f"  {side['label']}: {seeds}")
    comparison = result["comparison"]
    rates = [comparison.get("first"), comparison.get("second")]
    if all(rates):
        lines.append(f"  rates compared: {first['label']} {rates[0]['rate']:.2f}, {second['label']} "
                     f"{rates[1]['rate']:.2f} (n={rates[0]['n']} prompts)")
    lines += [f"  difference ({first['label']} − {second['label']}): {result['summary']}",
              f"  verdict: {result['verdict']}", f"  method: {comparison.get('method', '')}", "",
              f"{len(result['discordant'])} discordant prompts:"]
    for row in result["discordant"]:
        lines += ["", f"[{row['prompt_id']}] {_cut(row['request'] or '', width)}"]
        for side, found in ((first, row["first"]), (second, row["second"])):
            for seed, outcome, answer in zip(side["seeds"], found["outcome"], found["answers"], strict=False):
                verdicts = ", ".join(f"{judge} {v['label']}" + (f" ({v['score']:.2f})" if isinstance(v.get("score"),
                                     float) else "") for judge, v in sorted(answer["verdicts"].items()))
                seed_text = f" seed {seed}" if seed is not None else ""
                lines.append(f"  {side['label']}{seed_text}: {result['measure']} {outcome} | {verdicts}")
                lines.append(f"    {_cut(answer['answer'] or '(answer not found)', width)}")
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
