"""One configuration's row of the report, from its manifest entry: rates, general ability, benign quality, audit and
training, pooled over training seeds when there are several.

With several seeds a rate is the mean over prompts of each prompt's mean over seeds, with a 95% bootstrap interval
over prompts (:func:`safepref.core.paired.pooled_rate`); every seed's own rate and Wilson interval stay beside it,
with their spread, so the report shows both what the seeds agree on and how far they scatter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safepref.core.io import iter_jsonl
from safepref.core.paired import pooled_rate, seed_spread
from safepref.report.evidence import decided


def _load_json(path: str | None) -> Any:
    if not path or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def late_loss(dynamics: list[dict[str, Any]]) -> float | None:
    """Mean DPO loss over the last quarter of the steps (at least 3): one step's loss on a batch of 4 pairs swings
    between 0.0 and 1.6 in a small run, too noisy to compare configurations by."""
    losses = [r["loss"] for r in dynamics if r.get("loss") is not None]
    if not losses:
        return None
    tail = losses[-max(3, len(losses) // 4):]
    return sum(tail) / len(tail)


def configuration_row(entry: dict[str, Any], evaluations: list[dict[str, Any]], found: dict[str, Any], label: str,
                      group: str) -> dict[str, Any]:
    """One configuration's row from its manifest entry, its evaluations (one per seed) and its per-prompt
    outcomes: rates (pooled over seeds, each seed's beside them), audit, training."""
    row: dict[str, Any] = {"label": label, "group": group}
    seeds = [e.get("seed") for e in evaluations]
    if len(evaluations) > 1:
        row["seeds"] = seeds
    per_seed = []
    for evaluation in evaluations:
        safety = [s for s in (_load_json(p) for p in evaluation.get("safety") or []) if s]
        per_seed.append({
            "safety": [dict(r, suite=s.get("suite")) for s in safety for r in s.get("results", [])],
            "refusal": [dict(r, suite=s.get("suite")) for s in safety for r in s.get("refusal", [])],
            "judge_agreement": [dict(r, suite=s.get("suite")) for s in safety for r in s.get("judge_agreement", [])],
            "categories": [dict(r, suite=s.get("suite")) for s in safety for r in s.get("categories", [])],
        })
    for part, value, interval, measure in (("safety", "asr", "asr_ci95", "judge"),
                                           ("refusal", "rate", "ci95", "measure")):
        row[part] = _pooled_results([p[part] for p in per_seed], seeds, found["safety"], value, interval, measure)
    row["judge_agreement"] = per_seed[0]["judge_agreement"]
    row["categories"] = _mean_categories([p["categories"] for p in per_seed])
    generals = [_load_json(e.get("general")) for e in evaluations]
    row["general"] = _general_over_seeds([g.get("tasks") if g else None for g in generals], seeds)
    row["benign"] = _load_json(evaluations[0].get("benign"))
    if len(evaluations) > 1 and row["benign"]:
        benign = [_load_json(e.get("benign")) or {} for e in evaluations]
        row["benign"]["seeds"] = [{"seed": seed, "win_rate_vs_reference": b.get("win_rate_vs_reference"),
                                   "refusal_rate": b.get("refusal_rate")} for seed, b in zip(seeds, benign, strict=True)]
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
    trained = [(e.get("seed"), e["training"]) for e in evaluations if e.get("training")]
    if trained:
        row["training"] = _training_over_seeds([t for _, t in trained], [seed for seed, _ in trained])
    return row


def _pooled_results(per_seed: list[list[dict[str, Any]]], seeds: list, outcomes: dict, value: str, interval: str,
                    measure: str) -> list[dict[str, Any]]:
    """The first seed's results; with several seeds each result's rate is pooled over seeds (mean over prompts of
    each prompt's mean over seeds, 95% interval from a bootstrap over prompts) and carries every seed's own rate
    with its Wilson interval and their spread."""
    if len(per_seed) == 1:
        return per_seed[0]
    pooled = []
    for first in per_seed[0]:
        key = (first.get("suite"), first["attack"], first[measure])
        mine = [next((r for r in results if (r.get("suite"), r["attack"], r[measure]) == key), None)
                for results in per_seed]
        entry = dict(first, seeds=[{"seed": seed, "n": r["n"] if r else None, value: r[value] if r else None,
                                    interval: r[interval] if r else None} for seed, r in zip(seeds, mine, strict=True)])
        entry["seed_spread"] = seed_spread([r[value] if r else None for r in mine])
        per_prompt = decided(outcomes.get(key))
        if per_prompt:
            combined = pooled_rate(per_prompt)
            entry.update({"n": combined["n"], value: combined["rate"], interval: combined["ci95"], "pooled": True})
        elif entry["seed_spread"]:  # no per-prompt verdicts: the seeds' mean, without an interval over prompts
            entry.update({value: entry["seed_spread"]["mean"], interval: None})
        pooled.append(entry)
    return pooled


def _mean_categories(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """ASR per category, averaged over seeds (n: prompts of the category)."""
    if len(per_seed) == 1:
        return per_seed[0]
    averaged = []
    for first in per_seed[0]:
        key = (first["suite"], first["attack"], first["judge"], first["category"])
        rates = [r["asr"] for results in per_seed for r in results
                 if (r["suite"], r["attack"], r["judge"], r["category"]) == key and r["asr"] is not None]
        averaged.append(dict(first, asr=sum(rates) / len(rates) if rates else None, asr_ci95=None,
                             seed_rates=rates))
    return averaged


def _general_over_seeds(per_seed: list[dict[str, Any] | None], seeds: list) -> dict[str, Any] | None:
    """Each task's result without its per-question scores (the comparisons read those); over several seeds the
    value is the mean of the seeds' values, each seed's beside it."""
    if not per_seed or per_seed[0] is None:
        return None
    tasks = {}
    for task, first in per_seed[0].items():
        result = {k: v for k, v in first.items() if k != "per_question"}
        if len(per_seed) > 1:
            values = [(tasks_of or {}).get(task, {}).get("value") for tasks_of in per_seed]
            known = [v for v in values if v is not None]
            result.update(value=sum(known) / len(known) if known else None, seeds=[
                {"seed": seed, "value": v} for seed, v in zip(seeds, values, strict=True)],
                seed_spread=seed_spread(values))
        tasks[task] = result
    return tasks


def _training_over_seeds(trainings: list[dict[str, Any]], seeds: list) -> dict[str, Any]:
    """The first seed's training curve; over several seeds the late loss is the seeds' mean, each seed's beside."""
    summaries = []
    for training in trainings:
        dynamics_path = Path(training["dynamics"])
        dynamics = [r for _, r in iter_jsonl(dynamics_path)] if dynamics_path.is_file() and \
            dynamics_path.stat().st_size else []
        summaries.append({"final_loss": training.get("final_loss"), "late_loss": late_loss(dynamics),
                          "steps": training.get("steps"), "dynamics": dynamics})
    row = dict(summaries[0])
    if len(summaries) > 1:
        losses = [s["late_loss"] for s in summaries]
        known = [loss for loss in losses if loss is not None]
        row["late_loss"] = sum(known) / len(known) if known else None
        row["seeds"] = [{"seed": seed, "final_loss": s["final_loss"], "late_loss": s["late_loss"], "steps": s["steps"]}
                        for seed, s in zip(seeds, summaries, strict=True)]
        row["late_loss_spread"] = seed_spread(losses)
    return row
