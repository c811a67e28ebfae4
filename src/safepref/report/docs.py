"""Docs generated from committed bundles, so no table in them can be older than its evidence.

Every bundle under ``results/`` gives: its own ``summary.md``; a section of ``docs/results.md`` (the whole report
in Markdown); the README's blocks between ``<!-- generated:NAME-KIND:begin -->`` and ``...:end -->`` where the
README has those markers, KIND one of :data:`BLOCKS`: ``table`` (each target's headline table, with its ASR figure),
``verdicts`` (every paper check in full, with its verdict), ``findings`` (the paper's five findings in one short
table, linked to the bundle's section of ``docs/results.md``) or ``mechanism`` (what each configuration's pairs carry
beside what its trained model does: the data that explains a verdict); and its figures (``docs/NAME-asr.png``, ...).
``make docs`` writes them all; a test regenerates every table and compares it with the committed file.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safepref.bundle import is_bundle
from safepref.core.io import write_text_atomic
from safepref.core.paths import slug
from safepref.report.analysis import collect_results
from safepref.report.benign import collapsed_configurations, rate_text
from safepref.report.figures import asr_figure, separability_figure, training_figure
from safepref.report.provenance import judge_notes
from safepref.report.render import check_value, checks_markdown, headline_table, render_markdown

RESULTS_DIR = "results"
RESULTS_PAGE = "docs/results.md"
README = "README.md"
MARKERS = ("<!-- generated:{name}:begin -->", "<!-- generated:{name}:end -->")
BLOCKS = ("table", "verdicts", "findings", "mechanism")


def committed_bundles(root: Path) -> list[Path]:
    folder = root / RESULTS_DIR
    return sorted(p for p in folder.iterdir() if is_bundle(p)) if folder.is_dir() else []


def _demoted(markdown: str, levels: int) -> list[str]:
    return [("#" * levels + line) if line.startswith("#") else line for line in markdown.rstrip("\n").split("\n")]


def figure_names(name: str, results: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per target, the docs path of each figure (one target: ``docs/NAME-asr.png``; several: with the target)."""
    targets = list(results["targets"])
    return {target: {kind: f"docs/{name}{'' if len(targets) == 1 else '-' + slug(target)}-{kind}.png"
                     for kind in ("asr", "separability", "dpo-dynamics")} for target in targets}


def _figures(results: dict[str, Any], target: str) -> dict[str, str | None]:
    rows = results["targets"][target]
    judges = sorted({r["judge"] for row in rows.values() for r in row["safety"]})
    features = sorted({f for row in rows.values() if row.get("audit") for f in row["audit"]["features"]})
    judge = next((j for j in ("harm", "classifier") if j in judges), judges[0] if judges else None)
    feature = "embed" if "embed" in features else (features[0] if features else None)
    suite = next((r.get("suite") for row in rows.values() for r in row["safety"] if r["attack"] == "none"), None)
    return {"asr": asr_figure(target, rows, "none", suite) if suite else None,
            "separability": separability_figure(target, rows, judge, feature) if judge and feature else None,
            "dpo-dynamics": training_figure(target, rows)}


def readme_block(name: str, kind: str, results: dict[str, Any]) -> str:
    """One README block of a bundle: each target's headline table with its ASR figure (``table``), the paper checks
    with their verdicts (``verdicts``), or the paper's five findings in one table each (``findings``)."""
    block = f"{name}-{kind}"
    lines = [MARKERS[0].format(name=block)]
    figures = figure_names(name, results)
    several = len(results["targets"]) > 1
    for target, rows in results["targets"].items():
        lines += [f"**{target}**", ""] if several else []
        if kind == "table":
            lines += [*headline_table(rows, judge_notes(results)), "",
                      f"![ASR per configuration, {target}]({figures[target]['asr']}) · "
                      f"[separability]({figures[target]['separability']}) · "
                      f"[DPO dynamics]({figures[target]['dpo-dynamics']})"]
        elif kind == "findings":
            lines += findings_table(results, target)
        elif kind == "mechanism":
            lines += mechanism_table(rows)
        else:
            lines += [line for line in checks_markdown((results.get("paper_checks") or {}).get(target) or [])
                      if line.startswith("- ")]
        lines.append("")
    if kind == "findings":
        lines += [f"Every check in full, with its intervals and tests: [{RESULTS_PAGE}]({RESULTS_PAGE}"
                  f"#{heading_anchor(section_heading(name))}).", ""]
    lines[-1] = MARKERS[1].format(name=block)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the five findings

FINDINGS_HEADER = ("finding", "verdict", "evidence")
SEPARABLE = "multi-model pairs are more separable"
LOSS = "DPO loss ends lower"
SAFER = "Self+RM has lower ASR"
GENERAL = "multi-model pairs give higher general ability"
PREDICTS = "more separable pairs go with higher ASR"
FEATURE = "embed"  # the probe feature set the findings read, where the audit has it (else the first)
JUDGE = "harm"  # the ASR judge the findings read, where a suite has it (else that suite's first)
ABSENT = ("not measured", "–")


def _starting(checks: list[dict[str, Any]], start: str) -> list[dict[str, Any]]:
    return [check for check in checks if check["claim"].startswith(start)]


def _feature(claim: str) -> str | None:
    """The probe feature set a separability claim names ("... embed features ...")."""
    found = re.search(r"([\w-]+) features", claim)
    return found.group(1) if found else None


def _qualifiers(claim: str) -> list[str]:
    """The parts of a claim's first parenthesis: [suite, "JUDGE judge", "n=N"] of an ASR check, [task, metric,
    "n=N"] of a general-ability one."""
    found = re.search(r"\(([^()]*)\)", claim)
    return found.group(1).split(", ") if found else []


def _with_feature(checks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The check on :data:`FEATURE` probe features, else the first."""
    return next((check for check in checks if _feature(check["claim"]) == FEATURE), checks[0] if checks else None)


def _per_part(checks: list[dict[str, Any]], judge: str | None = None) -> list[tuple[list[str], dict[str, Any]]]:
    """One check per suite (ASR) or task (general ability), in the checks' order, with its qualifiers: the one read
    by ``judge`` where the suite has it, else the suite's first."""
    parts: dict[str, list[tuple[list[str], dict[str, Any]]]] = {}
    for check in checks:
        qualifiers = _qualifiers(check["claim"]) or [""]
        parts.setdefault(qualifiers[0], []).append((qualifiers, check))
    return [next((found for found in candidates if judge and found[0][1:2] == [f"{judge} judge"]), candidates[0])
            for candidates in parts.values()]


def _multi_model(check: dict[str, Any]) -> str:
    """The multi-model configurations' numbers: one by name, several as their range; collapsed ones named."""
    comparisons = check["comparisons"]
    if not comparisons:
        return ""
    collapsed = [c["configuration"] for c in comparisons if c.get("collapsed")]
    if len(comparisons) == 1:
        return f"{comparisons[0]['configuration']} {comparisons[0]['value']:.2f}" + (" (collapsed)" if collapsed else "")
    values = [c["value"] for c in comparisons]
    return f"multi-model {min(values):.2f}–{max(values):.2f}" + (f" ({', '.join(collapsed)} collapsed)" if collapsed
                                                                   else "")


def _versus(check: dict[str, Any]) -> str:
    """Self+RM's number against the multi-model configurations'."""
    if check["self_rm"] is None:
        return check_value(check) or check["verdict"]
    others = _multi_model(check)
    return f"Self+RM {check_value(check)}" + (f" vs {others}" if others else "")


def _correlation(check: dict[str, Any]) -> str:
    """Spearman's rho with its 95% interval, permutation p and n (n alone where rho is undefined)."""
    found = check.get("correlation") or {}
    if found.get("rho") is None:
        return f"n={found['n']}" if found.get("n") is not None else "–"
    low, high = found["ci95"]
    return f"rho {found['rho']:.2f} [{low:.2f}, {high:.2f}], p {found['p']:.3f}, n={found['n']}"


def _single(check: dict[str, Any] | None, evidence: Callable[[dict[str, Any]], str]) -> tuple[str, str]:
    """A finding read from one check: its verdict, and ``evidence`` of it."""
    return (f"**{check['verdict']}**", evidence(check)) if check else ABSENT


def _several(found: list[tuple[list[str], dict[str, Any]]]) -> tuple[str, str]:
    """Per suite or task: its verdict, and its qualifiers with Self+RM's number against the multi-model ones."""
    if not found:
        return ABSENT
    return ("; ".join(f"{qualifiers[0]}: **{check['verdict']}**" for qualifiers, check in found),
            "; ".join(f"{', '.join(qualifiers)}: {_versus(check)}" for qualifiers, check in found))


def findings_rows(checks: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The paper's five findings as (finding, verdict, evidence), in the paper's order, read from a target's paper
    checks (:func:`safepref.report.analysis.paper_checks`): the verdicts as the checks give them, "not measured"
    where a finding has no check (the correlation needs 4 trained configurations)."""
    separable = _with_feature(_starting(checks, SEPARABLE))
    loss = next(iter(_starting(checks, LOSS)), None)
    predicts = _with_feature(_starting(checks, PREDICTS))
    return [("Multi-model pairs are more separable",
             *_single(separable, lambda c: f"probe accuracy ({_feature(c['claim'])}): {_versus(c)}")),
            ("DPO loss falls faster on multi-model pairs",
             *_single(loss, lambda c: f"mean loss, last quarter of steps: {_versus(c)}")),
            ("Self+RM is safer than multi-model recipes", *_several(_per_part(_starting(checks, SAFER), JUDGE))),
            ("Multi-model data improves general ability", *_several(_per_part(_starting(checks, GENERAL)))),
            ("Separability predicts ASR across configurations",
             *_single(predicts, lambda c: f"{_feature(c['claim'])} features: Spearman {_correlation(c)}"))]


def findings_table(results: dict[str, Any], target: str) -> list[str]:
    """The Markdown table of a target's five findings: finding, verdict (bold where a check gives it), evidence."""
    rows = findings_rows((results.get("paper_checks") or {}).get(target) or [])
    return ["| " + " | ".join(FINDINGS_HEADER) + " |", "|---" * len(FINDINGS_HEADER) + "|",
            *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)]


# ---------------------------------------------------------------------------------------------- the mechanism

MECHANISM_HEADER = ("configuration", "pairs judged harmful: chosen / rejected", "pairs refusing: chosen / rejected",
                    "probe accuracy ({feature})", "harm ASR ({suites})", "refusal, harmful prompts ({suites})",
                    "refusal, benign prompts (n={n})", "answers collapsed")


def _sides(block: dict[str, Any] | None) -> str:
    if not block or not block["gap"]["n"]:
        return "–"
    return f"{block['chosen']['rate']:.2f} / {block['rejected']['rate']:.2f}"


def _per_suite(results: list[dict[str, Any]], suites: list[str], value: str) -> str:
    """One number per harmful suite (unattacked prompts), seeds pooled, joined by " / "."""
    found = {r.get("suite"): r.get(value) for r in results if r["attack"] == "none"}
    return " / ".join("–" if found.get(suite) is None else f"{found[suite]:.2f}" for suite in suites)


def _refusals(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Refusal on harmful prompts per suite: the `refusal` judge's (seeds pooled) where the run had it, else the
    refusal measure of the answer-quality read of harmful answers."""
    judged = [r for r in row["refusal"] if r["measure"] == "refusal"]
    if judged:
        return judged
    return [{"suite": q["suite"], "attack": "none", "rate": q.get("refusal_rate")}
            for q in (row.get("benign") or {}).get("harmful", [])]


def mechanism_table(rows: dict[str, Any]) -> list[str]:
    """One row per configuration: what its pairs carry (how often the chosen and the rejected side were judged
    harmful and refusing, and how separable they are) beside what DPO on them made of the model (harm ASR and refusal
    per harmful suite, refusal on benign prompts, collapse). A verdict that does not reproduce is read here: pairs
    whose chosen side refuses more teach refusing, and a lower ASR that comes with refusing benign prompts or with
    collapsed answers is not the safety the paper measured."""
    suites = list(dict.fromkeys(r.get("suite") for row in rows.values() for r in row["safety"]
                                if r["attack"] == "none" and r["judge"] == JUDGE))
    features = {f for row in rows.values() if row.get("audit") for f in row["audit"]["features"]}
    feature = FEATURE if FEATURE in features else min(features, default=FEATURE)
    n = next((row["benign"]["n"] for row in rows.values() if row.get("benign")), 0)
    header = [cell.format(feature=feature, suites=" / ".join(map(str, suites)), n=n) for cell in MECHANISM_HEADER]
    collapsed = collapsed_configurations(rows)
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, row in rows.items():
        audit = row.get("audit") or {}
        diagnostics = audit.get("pair_diagnostics") or {}
        probe = (audit.get("features") or {}).get(feature)
        benign = row.get("benign") or {}
        cells = [row["label"], _sides(diagnostics.get("harmful")), _sides(diagnostics.get("refusal")),
                 f"{probe['accuracy']:.2f}" if probe else "–",
                 _per_suite([r for r in row["safety"] if r["judge"] == JUDGE], suites, "asr"),
                 _per_suite(_refusals(row), suites, "rate"),
                 rate_text(benign.get("refusal_rate"), benign.get("refusal_rate_ci")),
                 "; ".join(collapsed[name]) if name in collapsed else "no"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def section_heading(name: str) -> str:
    """The heading of a bundle's section of ``docs/results.md``."""
    return f"## `{RESULTS_DIR}/{name}`"


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces as
    ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.lstrip("#").strip().lower()).replace(" ", "-")


def results_page(bundles: list[tuple[str, dict[str, Any]]]) -> str:
    lines = ["# Results", "", "Generated by `make docs` from the bundles committed under `results/` (one section per "
             "bundle; `safepref report results/NAME --markdown` prints the same tables)."]
    for name, results in bundles:
        lines += ["", section_heading(name), "", *_demoted(render_markdown(results), 2)]
        figures = figure_names(name, results)
        lines += ["", *(f"![{name} {target} {kind}]({Path(path).name})" for target in figures
                        for kind, path in figures[target].items())]
    return "\n".join(lines) + "\n"


def replace_block(text: str, name: str, block: str) -> str:
    begin, end = (re.escape(marker.format(name=name)) for marker in MARKERS)
    return re.sub(f"{begin}.*?{end}", lambda _: block, text, flags=re.DOTALL)


def generated_tables(root: Path) -> dict[Path, str]:
    """Every generated text file's expected content: each bundle's summary.md, docs/results.md and the README
    (its blocks replaced)."""
    bundles = [(folder.name, collect_results(folder)) for folder in committed_bundles(root)]
    out = {root / RESULTS_DIR / name / "summary.md": render_markdown(results) for name, results in bundles}
    if bundles:
        out[root / RESULTS_PAGE] = results_page(bundles)
    readme = root / README
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        for name, results in bundles:
            for kind in BLOCKS:
                text = replace_block(text, f"{name}-{kind}", readme_block(name, kind, results))
        out[readme] = text
    return out


def write_docs(root: Path) -> list[Path]:
    """Write every generated table and figure; returns the files written."""
    written = []
    for path, text in generated_tables(root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            written.append(write_text_atomic(path, text))
    for folder in committed_bundles(root):
        results = collect_results(folder)
        for target, paths in figure_names(folder.name, results).items():
            for kind, uri in _figures(results, target).items():
                if uri:
                    path = root / paths[kind]
                    path.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
                    written.append(path)
    return written
