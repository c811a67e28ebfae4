"""A bundle as the report reads it: the run folder it stands for, rebuilt from its evidence alone.

The report (:mod:`safepref.report`) reads a run folder's manifest and the artifacts it names: safety summaries with
their verdicts and answers, benign and general results, audits, training logs, debias counts. :func:`materialize`
writes exactly those, in those shapes, from the bundle into a folder the report then reads, so one reader serves
both and a bundle's report equals its run's. Safety summaries are recomputed from the stored verdicts (eval-safety's
own :func:`~safepref.evaluation.safety.summarize_run`), so a re-judged bundle reports its new verdicts. Nothing
here loads a model, reads the run folder the bundle came from, or opens a network connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safepref.bundle.store import (
    BundleManifest,
    ConfigurationRecord,
    EvaluatedAnswer,
    EvaluationRecord,
    SuiteRecord,
    read_json,
    read_manifest,
    read_records,
    read_rows,
)
from safepref.core.io import write_json_atomic, write_jsonl_atomic
from safepref.core.paths import slug
from safepref.evaluation.safety import summarize_run


def verdict_rows(answers: list[EvaluatedAnswer]) -> list[dict[str, Any]]:
    """The stored verdicts as eval-safety's verdict rows (one per answer and judge)."""
    return [{"attack": a.attack, "id": a.prompt_id, "judge": judge, "label": v.label, "score": v.score,
             "gold": v.gold, "raw": v.raw, "xstest_label": a.xstest_label}
            for a in answers for judge, v in a.verdicts.items()]


def suite_summary(suite: SuiteRecord, answers: list[EvaluatedAnswer]) -> dict[str, Any]:
    """eval-safety's summary of one suite, from the bundle's answers to it."""
    mine = [a for a in answers if a.suite == suite.suite]
    categories = {a.prompt_id: a.category for a in mine if a.category}
    summary = summarize_run(verdict_rows(mine), attacks=suite.attacks, judges=suite.judges, xstest=suite.xstest,
                            categories=categories)
    return {"suite": suite.suite, "n_prompts": suite.n_prompts, "config": {**suite.settings, "judges": suite.judges},
            **summary}


class Bundle:
    """A bundle opened for reading: its manifest, validated, and its evidence files."""

    def __init__(self, folder: str | Path) -> None:
        self.dir = Path(folder)
        self.manifest: BundleManifest = read_manifest(self.dir)

    def answers(self, record: EvaluationRecord) -> list[EvaluatedAnswer]:
        return read_records(self.dir / record.files["safety"], EvaluatedAnswer) if "safety" in record.files else []

    def json(self, record: EvaluationRecord, kind: str) -> dict[str, Any] | None:
        return read_json(self.dir / record.files[kind]) if kind in record.files else None

    def rows(self, record: EvaluationRecord, kind: str) -> list[dict[str, Any]]:
        return read_rows(self.dir / record.files[kind]) if kind in record.files else []


# ---------------------------------------------------------------------------------------------- the run folder view


def materialize(folder: str | Path, into: str | Path) -> Path:
    """Write the run folder a bundle stands for (its manifest and the artifacts the report reads) into ``into``."""
    bundle, into = Bundle(folder), Path(into)
    manifest = bundle.manifest
    targets: dict[str, dict[str, Any]] = {}
    provenance: dict[str, dict[str, Any]] = {}
    for target, configurations in manifest.targets.items():
        for name, record in configurations.items():
            base = into / slug(target) / slug(name)
            entry = _configuration_entry(bundle, record, base)
            evaluations = [_evaluation_entry(bundle, e, base / f"seed-{e.seed}" if e.seed is not None else base)
                           for e in record.evaluations()]
            entry.update(evaluations[0])
            if record.seeds:
                entry["seeds"] = [{"seed": e.seed, **found} for e, found in zip(record.evaluations(), evaluations,
                                                                                 strict=True)]
            targets.setdefault(target, {})[name] = entry
            provenance.setdefault(target, {})[name] = {"label": record.label, "key": record.key,
                                                       "complete": record.complete,
                                                       **record.code.model_dump(mode="json")}
    write_json_atomic(into / "manifest.json", {
        "name": manifest.name, "config": manifest.config, "versions": manifest.versions, "seed": manifest.seed,
        "seeds": manifest.seeds or [manifest.seed], "precision": manifest.precision, "timings": manifest.timings,
        "n_training_prompts": manifest.n_training_prompts, "training_prompt_set": manifest.training_prompt_set,
        "targets": targets, "labels": {t: {n: r.label for n, r in c.items()} for t, c in manifest.targets.items()},
        "judges": {name: judge.model_dump(mode="json") for name, judge in manifest.judges.items()},
        "provenance": provenance})
    return into


def _configuration_entry(bundle: Bundle, record: ConfigurationRecord, base: Path) -> dict[str, Any]:
    """What a configuration's seeds share: base recipe, data, pairs, debias counts, audit."""
    entry: dict[str, Any] = {"key": record.key}
    if record.base:
        entry["base"] = record.base
    if record.data:
        entry["data"] = record.data
    if "pairs" in record.files:
        entry["pairs"] = str(write_jsonl_atomic(base / "pairs.jsonl", bundle.rows(record, "pairs")))
    if record.debias:
        entry["debias"] = str(write_json_atomic(base / "pairs.debias.json", record.debias))
    if "audit" in record.files:
        entry["audit"] = str(write_json_atomic(base / "audit" / "audit.json", bundle.json(record, "audit")))
    return entry


def _evaluation_entry(bundle: Bundle, evaluation: EvaluationRecord, base: Path) -> dict[str, Any]:
    """One evaluated model's entry: training (summary and log), safety folders, benign and general results."""
    entry: dict[str, Any] = {}
    if evaluation.training:
        log = write_jsonl_atomic(base / "model" / "dynamics.jsonl", bundle.rows(evaluation, "training_log"))
        summary = write_json_atomic(base / "model" / "train_summary.json", evaluation.training)
        entry["training"] = {"out_dir": str(base / "model"), "dynamics": str(log), "summary": str(summary),
                             "final_loss": evaluation.training.get("final_loss"),
                             "steps": evaluation.training.get("steps")}
    if evaluation.safety:
        answers = bundle.answers(evaluation)
        entry["safety"] = [str(_safety_folder(suite, answers, base / "safety" / slug(suite.suite)))
                           for suite in evaluation.safety]
    if "benign_summary" in evaluation.files:
        entry["benign"] = str(write_json_atomic(base / "benign" / "summary.json",
                                                bundle.json(evaluation, "benign_summary")))
    if "general" in evaluation.files:
        entry["general"] = str(write_json_atomic(base / "general" / "general.json", bundle.json(evaluation, "general")))
    return entry


def _safety_folder(suite: SuiteRecord, answers: list[EvaluatedAnswer], folder: Path) -> Path:
    """An eval-safety folder: summary.json, verdicts.jsonl and one answers file per attack."""
    mine = [a for a in answers if a.suite == suite.suite]
    files = {}
    for attack in suite.attacks:
        rows = [{"prompt_id": f"{a.prompt_id}|{attack}", "prompt": a.prompt, "source": "bundle", "sample_index": -1,
                 "text": a.answer, "generation": a.decoding} for a in mine if a.attack == attack]
        files[attack] = str(write_jsonl_atomic(folder / f"responses-{slug(attack)}.jsonl", rows))
    write_jsonl_atomic(folder / "verdicts.jsonl", verdict_rows(mine))
    return write_json_atomic(folder / "summary.json", {**suite_summary(suite, mine), "answers": files})
