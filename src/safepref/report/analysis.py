"""The report's analysis: what a run folder's artifacts say, gathered into one JSON-able dict.

Reads ``RUN_DIR/manifest.json`` (written by the runner) and the artifacts it names: safety summaries, general
ability results, audits, training dynamics; adds the data warnings and the checks of the paper's findings.
Drawing and writing it out is :mod:`safepref.report.render` and :mod:`safepref.report.figures`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from safepref.bundle import is_bundle
from safepref.bundle.read import materialize
from safepref.core.errors import InputError
from safepref.core.stats import spearman_interval
from safepref.pairs.recipes import RECIPES_DIR, load_recipe
from safepref.report.benign import add_collapse_check
from safepref.report.comparisons import compare_outcomes, neutral_verdict, rate_counts, verdict_text, with_verdict
from safepref.report.evidence import configuration_outcomes, general_outcomes, seed_evaluations
from safepref.report.mitigations import mitigation_rows
from safepref.report.rows import configuration_row

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


def _load_json(path: str | None) -> Any:
    if not path or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- collect


def collect_results(source: Path) -> dict[str, Any]:
    """Everything the report shows, gathered into one JSON-able dict from a bundle (read through the run folder it
    stands for, rebuilt from its evidence: a function of the bundle alone) or from a run folder's manifest and the
    artifacts it names."""
    if is_bundle(source):
        with tempfile.TemporaryDirectory(prefix="safepref-report-") as view:
            return collect_results(materialize(source, view))
    run_dir = Path(source)
    manifest = _load_json(str(run_dir / "manifest.json"))
    if manifest is None:
        raise InputError("no manifest.json: not a safepref run folder (run `safepref run CONFIG.yaml` first)",
                         path=run_dir)
    targets: dict[str, Any] = {}
    outcomes: dict[str, dict[str, Any]] = {}
    for target, configurations in manifest.get("targets", {}).items():
        rows = {}
        for name in _order(list(configurations)):
            entry = configurations[name]
            evaluations = seed_evaluations(entry)
            found = {"safety": configuration_outcomes([e.get("safety") or [] for e in evaluations]),
                     "general": general_outcomes([e.get("general") for e in evaluations])}
            outcomes.setdefault(target, {})[name] = found
            label = (manifest.get("labels") or {}).get(target, {}).get(name) or configuration_label(name)
            rows[name] = configuration_row(entry, evaluations, found, label, _group(name))
        targets[target] = rows
    return {"name": manifest.get("name"), "config": manifest.get("config"), "versions": manifest.get("versions"),
            "precision": manifest.get("precision"),
            "seed": manifest.get("seed"), "seeds": manifest.get("seeds") or [manifest.get("seed")],
            "timings": manifest.get("timings"),
            "stage_shares": stage_shares(manifest.get("timings") or {}),
            "n_training_prompts": manifest.get("n_training_prompts"),
            "training_prompt_set": manifest.get("training_prompt_set"), "targets": targets,
            "paper_checks": {target: add_collapse_check(paper_checks(rows, outcomes.get(target)), rows)
                             for target, rows in targets.items()},
            "against_sft": {target: against_sft(rows, outcomes.get(target) or {}) for target, rows in targets.items()},
            "warnings": {target: data_warnings(rows) for target, rows in targets.items()},
            "mitigations": mitigation_rows(manifest, targets, outcomes),
            "judges": manifest.get("judges"), "provenance": manifest.get("provenance")}


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
SFT = "sft"


def _asr_result(row: dict[str, Any], suite: str | None, judge: str, attack: str = "none") -> dict[str, Any] | None:
    return next((r for r in row["safety"] if r["attack"] == attack and r["judge"] == judge and r.get("suite") == suite
                 and r["asr"] is not None), None)


def paper_checks(rows: dict[str, Any], outcomes: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Does this run reproduce the paper's findings? Each multi-model configuration against Self+RM.

    1. ASR (per judge, harmful suites, no attack): Self+RM lower. Both answered the same prompts: the difference is
       paired (:mod:`safepref.report.comparisons`; ``outcomes`` holds each configuration's verdict per prompt,
       without them the comparison is unpaired and says so).
    2. General ability (per task): multi-model pairs score higher, the paper's first finding (paired per question).
    3. Separability: multi-model pairs more linearly separable than Self+RM's (probe accuracy, per feature set;
       the configurations' pairs differ, so this one has no paired test).
    4. Training dynamics: DPO loss ends lower on multi-model pairs (mean over seeds when there are several).
    5. Separability predicts ASR: probe accuracy against ASR by rank correlation across the trained configurations,
       whether or not Self+RM is among them (:func:`_separability_asr_checks`; needs 4, else no check).
    A comparison with an interval reads its verdict from the interval and its resolution (holds, reversed, no
    measurable difference, direction only, too little evidence: :func:`safepref.core.paired.verdict`); the check's
    verdict is the comparisons' common one, or "mixed" naming each. Without an interval: "holds" when every
    multi-model configuration differs in the paper's direction, "direction only" when they do on average, else
    "reversed".
    """
    multi = [name for name in MULTI_MODEL if name in rows]
    if SELF_RM not in rows or not multi:
        return _separability_asr_checks(rows)
    outcomes = outcomes or {}
    base = rows[SELF_RM]
    checks = [*_asr_checks(rows, multi, outcomes), *_general_checks(rows, multi, outcomes)]
    for feature, result in ((base.get("audit") or {}).get("features") or {}).items():
        comparisons = [{"configuration": rows[name]["label"], "value": feature_result["accuracy"],
                        "difference": feature_result["accuracy"] - result["accuracy"]}
                       for name in multi if (feature_result := ((rows[name].get("audit") or {}).get("features")
                                             or {}).get(feature))]
        checks.append(_verdict(f"multi-model pairs are more separable (probe accuracy, {feature} features; "
                               "each configuration's own pairs, so no paired test)",
                               result["accuracy"], comparisons, needs_ci=False))
    if (base.get("training") or {}).get("late_loss") is not None:
        comparisons = [{"configuration": rows[name]["label"], "value": rows[name]["training"]["late_loss"],
                        "difference": base["training"]["late_loss"] - rows[name]["training"]["late_loss"]}
                       for name in multi if (rows[name].get("training") or {}).get("late_loss") is not None]
        over = " over seeds" if base["training"].get("seeds") else ""
        checks.append(_verdict(f"DPO loss ends lower on multi-model pairs (mean loss over the last quarter of steps"
                               f"{over})", base["training"]["late_loss"], comparisons, needs_ci=False))
    return [*checks, *_separability_asr_checks(rows)]


MIN_CORRELATED = 4  # the Fisher-z interval of a rank correlation needs n - 3 > 0


def _correlated_asr(rows: dict[str, Any], trained: list[str]) -> tuple[str | None, str] | None:
    """(suite, judge) of the ASR the separability is correlated with: the first harmful suite (in the order the ASR
    check reads, Self+RM's results first), unattacked prompts, the ``harm`` judge, else that suite's first judge."""
    ordered = [SELF_RM, *(name for name in trained if name != SELF_RM)] if SELF_RM in trained else trained
    columns = list(dict.fromkeys((r.get("suite"), r["judge"]) for name in ordered for r in rows[name]["safety"]
                                 if r["attack"] == "none" and r.get("suite") != "xstest"))
    if not columns:
        return None
    suite = columns[0][0]
    judges = [judge for s, judge in columns if s == suite]
    return suite, "harm" if "harm" in judges else judges[0]


def _separability_asr_checks(rows: dict[str, Any]) -> list[dict[str, Any]]:
    """Do more separable pairs go with a higher ASR? Per probe feature set, Spearman's rank correlation between the
    audit's probe accuracy (the separability check's numbers) and the ASR (seed-pooled where there are seeds, as
    the ASR check reads it) across the trained configurations that have both; no check with fewer than 4.
    Verdict from the 95% interval (:func:`safepref.core.stats.spearman_interval`) and the permutation p: holds when
    the interval excludes 0 above and p < 0.05, reversed when below, else direction only when rho > 0 and no
    evidence of a relation when rho <= 0."""
    trained = [name for name in rows if name != SFT]
    column = _correlated_asr(rows, trained)
    if column is None:
        return []
    suite, judge = column
    features = list(dict.fromkeys(feature for name in trained
                                  for feature in ((rows[name].get("audit") or {}).get("features") or {})))
    checks = []
    for feature in features:
        points = []
        for name in trained:
            probe = ((rows[name].get("audit") or {}).get("features") or {}).get(feature)
            asr = _asr_result(rows[name], suite, judge)
            if probe and probe.get("accuracy") is not None and asr:
                points.append({"configuration": rows[name]["label"], "accuracy": probe["accuracy"], "asr": asr["asr"]})
        if len(points) < MIN_CORRELATED:
            continue
        points.sort(key=lambda point: point["accuracy"])
        found = spearman_interval([p["accuracy"] for p in points], [p["asr"] for p in points])
        listed = "; ".join(f"{p['configuration']} {p['accuracy']:.2f} / {p['asr']:.2f}" for p in points)
        if found["rho"] is None:
            verdict = "not measured (probe accuracy or ASR is the same in every configuration)"
            detail = f"n={len(points)}; probe accuracy / ASR: {listed}"
        else:
            low, high = found["ci95"]
            # the interval is an approximation with so few points; the exact permutation p must agree with it
            decided = found["p"] < 0.05
            verdict = ("holds" if low > 0 and decided else "reversed" if high < 0 and decided else
                       "direction only" if found["rho"] > 0 else "no evidence of a relation")
            detail = (f"Spearman rho {found['rho']:.2f}, 95% CI [{low:.2f}, {high:.2f}] (Fisher z, Bonett-Wright "
                      f"standard error), permutation p {found['p']:.3f}, n={found['n']}; probe accuracy / ASR, by "
                      f"accuracy: {listed}")
        checks.append({"claim": f"more separable pairs go with higher ASR (Spearman rank correlation across "
                                f"{len(points)} configurations, probe accuracy ({feature} features) against {judge} "
                                f"ASR ({suite}))",
                       "self_rm": None, "comparisons": [], "correlation": found, "points": points, "detail": detail,
                       "verdict": verdict})
    return checks


def _asr_checks(rows: dict[str, Any], multi: list[str], outcomes: dict[str, Any]) -> list[dict[str, Any]]:
    """Self+RM's ASR against each multi-model configuration's, per harmful suite and judge, unattacked prompts."""
    base, checks = rows[SELF_RM], []
    harmful = [r for r in base["safety"] if r["attack"] == "none" and r.get("suite") != "xstest"]
    for reference in harmful:
        claim = f"Self+RM has lower ASR ({reference.get('suite')}, {reference['judge']} judge, n={reference['n']})"
        unjudged = [rows[name]["label"] for name in [SELF_RM, *multi] if _all_unjudged(rows[name], reference)]
        if reference["asr"] is None:
            checks.append({"claim": claim, "self_rm": None, "comparisons": [], "all_unjudged": unjudged,
                           "verdict": "all unjudged" if unjudged else "not measured"})
            continue
        key = (reference.get("suite"), "none", reference["judge"])
        comparisons = []
        for name in multi:
            other = _asr_result(rows[name], reference.get("suite"), reference["judge"])
            if other:
                found = compare_outcomes(_outcomes(outcomes, name, key), _outcomes(outcomes, SELF_RM, key),
                                         rate_counts(other), rate_counts(reference))
                comparisons.append(_comparison(rows[name]["label"], other["asr"], found))
        check = _verdict(claim, reference["asr"], comparisons, needs_ci=True)
        if unjudged:  # a configuration whose judge decided nothing is named, not silently left out
            check["all_unjudged"] = unjudged
        checks.append(check)
    return checks


def _general_checks(rows: dict[str, Any], multi: list[str], outcomes: dict[str, Any]) -> list[dict[str, Any]]:
    """Each multi-model configuration's general ability against Self+RM's, per task, question by question."""
    base, checks = rows[SELF_RM], []
    for task, result in (base.get("general") or {}).items():
        comparisons = []
        for name in multi:
            other = (rows[name].get("general") or {}).get(task)
            if other and other.get("value") is not None and result.get("value") is not None:
                found = compare_outcomes((outcomes.get(name) or {}).get("general", {}).get(task),
                                         (outcomes.get(SELF_RM) or {}).get("general", {}).get(task),
                                         rate_counts(other, "value"), rate_counts(result, "value"), kind="general")
                comparisons.append(_comparison(rows[name]["label"], other["value"], found))
        if comparisons:
            checks.append(_verdict(f"multi-model pairs give higher general ability ({task}, {result['metric']}, "
                                   f"n={result['n']})", result["value"], comparisons, needs_ci=True))
    return checks


def _outcomes(outcomes: dict[str, Any], name: str, key: tuple) -> dict[str, list] | None:
    return ((outcomes.get(name) or {}).get("safety") or {}).get(key)


def _comparison(label: str, value: float, found: dict[str, Any]) -> dict[str, Any]:
    """A comparison of the paper checks: ``difference`` oriented so that > 0 is the paper's direction."""
    judged = with_verdict(found)
    return {"configuration": label, "value": value, **{k: v for k, v in judged.items() if k not in ("first", "second")},
            "rates": [found.get("first"), found.get("second")]}


def _all_unjudged(row: dict[str, Any], reference: dict[str, Any]) -> bool:
    return any(r.get("all_unjudged") for r in row["safety"] if r["attack"] == reference["attack"]
               and r["judge"] == reference["judge"] and r.get("suite") == reference.get("suite"))


def _verdict(claim: str, self_rm_value: float, comparisons: list[dict[str, Any]], needs_ci: bool) -> dict[str, Any]:
    """``difference`` is oriented so that > 0 is the paper's direction."""
    if not comparisons:
        verdict = "not measured"
    elif needs_ci:
        words = [c["verdict"] for c in comparisons]
        if len(set(words)) == 1:
            resolutions = [c["resolution"] for c in comparisons if c.get("resolution") is not None]
            verdict = verdict_text(words[0], max(resolutions) if resolutions else None)
        else:
            verdict = "mixed: " + "; ".join(f"{c['configuration']} {c['verdict_text']}" for c in comparisons)
    elif all(c["difference"] > 0 for c in comparisons):
        verdict = "holds"
    elif sum(c["difference"] for c in comparisons) > 0:
        verdict = "direction only"
    else:
        verdict = "reversed"
    return {"claim": claim, "self_rm": self_rm_value, "comparisons": comparisons, "verdict": verdict}


# ---------------------------------------------------------------------------------------------- against SFT


def against_sft(rows: dict[str, Any], outcomes: dict[str, Any]) -> list[dict[str, Any]]:
    """Every trained configuration against SFT on the same prompts, per suite, attack and judge (ASR) or refusal
    measure, and per general-ability task: both rates, the paired difference (configuration - SFT) and its
    verdict."""
    if SFT not in rows:
        return []
    found = []
    for name, row in rows.items():
        if name == SFT:
            continue
        for part, value, measure in (("safety", "asr", "judge"), ("refusal", "rate", "measure")):
            for mine in row[part]:
                key = (mine.get("suite"), mine["attack"], mine[measure])
                theirs = next((r for r in rows[SFT][part] if (r.get("suite"), r["attack"], r[measure]) == key), None)
                if theirs is None or mine[value] is None or theirs[value] is None:
                    continue
                comparison = compare_outcomes(_outcomes(outcomes, name, key), _outcomes(outcomes, SFT, key),
                                              rate_counts(mine, value), rate_counts(theirs, value), kind=part)
                found.append({"configuration": row["label"], "suite": key[0], "attack": key[1], "measure": key[2],
                              "kind": part, "value": mine[value], "sft": theirs[value], **comparison,
                              "verdict_text": neutral_verdict(comparison)})
        for task, mine in (row.get("general") or {}).items():
            theirs = (rows[SFT].get("general") or {}).get(task)
            if not theirs or mine.get("value") is None or theirs.get("value") is None:
                continue
            comparison = compare_outcomes(((outcomes.get(name) or {}).get("general") or {}).get(task),
                                          ((outcomes.get(SFT) or {}).get("general") or {}).get(task),
                                          rate_counts(mine, "value"), rate_counts(theirs, "value"), kind="general")
            found.append({"configuration": row["label"], "suite": task, "attack": "–", "measure": mine["metric"],
                          "kind": "general", "value": mine["value"], "sft": theirs["value"], **comparison,
                          "verdict_text": neutral_verdict(comparison)})
    return found
