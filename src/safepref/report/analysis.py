"""The report's analysis: what a bundle's evidence says, gathered into one JSON-able dict.

Reads a bundle (:mod:`safepref.bundle`, written by the runner as its stages finish): rates recomputed from the
stored answers and verdicts, benign measures, general ability results, audits, training logs; adds the data
warnings and the checks of the paper's three findings.
Drawing and writing it out is :mod:`safepref.report.render` and :mod:`safepref.report.figures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safepref.bundle import Bundle
from safepref.core.stats import difference_interval
from safepref.pairs.recipes import RECIPES_DIR, load_recipe
from safepref.report.benign import add_collapse_check
from safepref.report.mitigations import mitigation_rows

LABELS = {"sft": "SFT", "hc_self": "HC+Self", "gpt4o_self": "GPT4o+Self", "stronger_self": "Stronger+Self",
          "peer_rm": "Peer+RM", "all_rm": "All+RM", "original": "Original", "self_rm": "Self+RM"}
MULTI_MODEL = ("hc_self", "gpt4o_self", "stronger_self")


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

    if not (RECIPES_DIR / f"{name}.yaml").is_file() and not Path(name).is_file():  # bundled, or a user's file
        return name
    return load_recipe(name).label or name


def configuration_label(name: str) -> str:
    """How the report names a configuration: the paper's label, a recipe's own label, else its name."""
    return LABELS.get(name) or recipe_label(name)


# ---------------------------------------------------------------------------------------------- collect


def collect_results(bundle_dir: Path) -> dict[str, Any]:
    """Everything the report shows, gathered from a bundle into one JSON-able dict: a function of the bundle
    alone (no run folder, no model, no network)."""
    bundle = Bundle(bundle_dir)
    manifest = bundle.manifest
    targets: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    for target, configurations in manifest.targets.items():
        rows = {}
        for name in _order(list(configurations)):
            record = configurations[name]
            evidence = bundle.evidence(record)
            row: dict[str, Any] = {"label": record.label, "group": _group(name)}
            safety = evidence["safety"]
            row["safety"] = [dict(r, suite=s.get("suite")) for s in safety for r in s.get("results", [])]
            row["refusal"] = [dict(r, suite=s.get("suite")) for s in safety for r in s.get("refusal", [])]
            row["judge_agreement"] = [dict(r, suite=s.get("suite")) for s in safety for r in s.get("judge_agreement", [])]
            general = evidence["general"]
            row["general"] = general.get("tasks") if general else None
            row["benign"] = evidence["benign"]
            audit = evidence["audit"]
            if audit:
                row["audit"] = {
                    "n_pairs": audit["n_pairs"], "risk": audit.get("risk"), "verdict": audit.get("verdict"),
                    "features": {k: {"accuracy": v["accuracy"], "accuracy_ci": v["accuracy_ci"],
                                     "control_accuracy": v["control_accuracy"]} for k, v in audit["features"].items()},
                    "pair_diagnostics": audit.get("pair_diagnostics"),
                }
            if evidence["data"]:
                row["data"] = evidence["data"]
            training = evidence["training"]
            if training:
                dynamics = evidence["dynamics"]
                row["training"] = {"final_loss": training.get("final_loss"), "late_loss": late_loss(dynamics),
                                   "steps": training.get("steps"),
                                   "dynamics": dynamics}
            rows[name] = row
            provenance.setdefault(target, {})[name] = {"label": record.label, "key": record.key,
                                                       "complete": record.complete,
                                                       **record.code.model_dump(mode="json")}
        targets[target] = rows
    entries = {target: {name: {"base": r.base, "debias": r.debias} for name, r in configurations.items()}
               for target, configurations in manifest.targets.items()}
    return {"name": manifest.name, "config": manifest.config, "versions": manifest.versions,
            "seed": manifest.seed, "timings": manifest.timings,
            "stage_shares": stage_shares(manifest.timings or {}),
            "n_training_prompts": manifest.n_training_prompts,
            "training_prompt_set": manifest.training_prompt_set, "targets": targets,
            "judges": {name: judge.model_dump(mode="json") for name, judge in manifest.judges.items()},
            "provenance": provenance,
            "paper_checks": {target: add_collapse_check(paper_checks(rows), rows) for target, rows in targets.items()},
            "warnings": {target: data_warnings(rows) for target, rows in targets.items()},
            "mitigations": mitigation_rows({"targets": entries}, targets)}


# ---------------------------------------------------------------------------------------------- warnings


def harm_columns(rows: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(suite, judge) of every harmful-suite ASR the configurations report on the unattacked prompts."""
    return sorted({(r.get("suite"), r["judge"]) for row in rows.values() for r in row["safety"]
                   if r["attack"] == "none" and r.get("suite") != "xstest"}, key=str)


def stage_shares(timings: dict[str, float]) -> list[dict[str, Any]]:
    """Seconds and share of the run per kind of stage (the first word of a step's label: generate, train, safety,
    ...), largest first: where a run's time goes, so speed work starts with the biggest cost."""
    total = sum(timings.values())
    by_stage: dict[str, list[float]] = {}
    for label, seconds in timings.items():
        by_stage.setdefault(label.split(" ", 1)[0], []).append(seconds)
    rows = [{"stage": stage, "steps": len(times), "seconds": round(sum(times), 1),
             "share": round(sum(times) / total, 3) if total else 0.0} for stage, times in by_stage.items()]
    return sorted(rows, key=lambda row: -row["seconds"])


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
