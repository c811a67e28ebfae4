"""A run folder's artifacts as bundle evidence: one reader per stage output, each returning rows or a small record.

Only what a report, a re-judging or a reader checking a figure needs is kept: the answers with their prompts,
decoding settings and verdicts, the pairs, the training log, the measures; never weights, embeddings or caches.
Paths of the machine that ran (a trained model's folder) become the model's label, so a bundle reads the same
wherever it was made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safepref.bundle.store import BenignAnswer, EvaluatedAnswer, StoredVerdict, SuiteRecord
from safepref.core.io import iter_jsonl
from safepref.evaluation.benign import XSTEST_SAFE, BenignEvalConfig, benign_prompts
from safepref.evaluation.safety import SafetyEvalConfig
from safepref.evaluation.suites import load_suite
from safepref.models.loading import model_label

GREEDY_INDEX = -1


def _json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    return [row for _, row in iter_jsonl(path)] if path.is_file() and path.stat().st_size else []


def finished(path: str | Path | None) -> bool:
    """Whether a stage's artifact exists (a stage writes its summary last: its presence marks a finished stage)."""
    return bool(path) and Path(path).is_file()


# ---------------------------------------------------------------------------------------------- eval-safety


def safety_evidence(summary_path: str | Path, key: str, fingerprints: dict[str, str | None]
                    ) -> tuple[SuiteRecord, list[EvaluatedAnswer]]:
    """One eval-safety folder: the suite's record and every answer with its verdicts. ``fingerprints`` are the
    judges' (the stage's key covers them, so they are those of the judges that decided)."""
    summary_path = Path(summary_path)
    summary = _json(summary_path)
    config = summary["config"]
    prompts = load_suite(summary["suite"], config.get("limit"))
    requests = {p.id: p.text for p in prompts}
    categories = {p.id: p.meta.get("category") for p in prompts}
    verdicts: dict[tuple[str, str], dict[str, StoredVerdict]] = {}
    labels: dict[tuple[str, str], str | None] = {}
    for _, row in iter_jsonl(summary_path.parent / "verdicts.jsonl"):
        verdicts.setdefault((row["attack"], row["id"]), {})[row["judge"]] = StoredVerdict(
            label=row["label"], score=row.get("score"), raw=row.get("raw"), gold=row.get("gold"),
            fingerprint=fingerprints.get(row["judge"]))
        labels[(row["attack"], row["id"])] = row.get("xstest_label")
    answers = []
    for attack in config["attacks"]:
        responses = _rows(summary["answers"][attack])
        greedy = [r for r in responses if r["sample_index"] == GREEDY_INDEX] or responses
        by_prompt = {r["prompt_id"].removesuffix(f"|{attack}"): r for r in greedy}
        for prompt_id, request in requests.items():
            response = by_prompt.get(prompt_id)
            if response is None or (attack, prompt_id) not in verdicts:
                continue
            answers.append(EvaluatedAnswer(
                suite=summary["suite"], attack=attack, prompt_id=prompt_id, request=request,
                prompt=response["prompt"], answer=response["text"], decoding=response.get("generation") or {},
                xstest_label=labels[(attack, prompt_id)], category=categories.get(prompt_id),
                verdicts=verdicts[(attack, prompt_id)]))
    xstest = any(label is not None for label in labels.values())  # eval-safety labels XSTest's rows only
    judges = list(dict.fromkeys([*config["judges"], *(["refusal"] if xstest else [])]))
    settings = {k: v for k, v in SafetyEvalConfig.model_validate(config).key_dump().items()
                if k not in ("judges", "judge_model", "base_url")}  # judges are recorded per suite and verdict
    record = SuiteRecord(suite=summary["suite"], n_prompts=summary["n_prompts"], attacks=list(config["attacks"]),
                         judges=judges, xstest=xstest, key=key, settings=settings)
    return record, answers


# ---------------------------------------------------------------------------------------------- eval-benign


def benign_evidence(summary_path: str | Path, fingerprints: dict[str, str | None]
                    ) -> tuple[dict[str, Any], list[BenignAnswer]]:
    """The benign stage's summary (paths replaced by labels, the refusal judge's fingerprint added: the stage's key
    covers it) and its answers and the reference's, with rewards."""
    summary = _json(summary_path)
    config = BenignEvalConfig.model_validate(summary["config"])
    pool_of = {p.id: p.dataset if p.dataset != "xstest" else XSTEST_SAFE for p in benign_prompts(config)}
    rows = []
    for role, path in (("answer", summary["answers"]), ("reference", summary["reference_answers"])):
        rewards = {r["response_id"]: r["score"] for r in _rows(_scores_path(Path(path)))}
        for response in _rows(path):
            if response["prompt_id"] not in pool_of:
                continue
            response_id = f"{response['prompt_id']}|{response['source']}|{response['sample_index']}"
            rows.append(BenignAnswer(role=role, pool=pool_of[response["prompt_id"]], prompt_id=response["prompt_id"],
                                     prompt=response["prompt"], answer=response["text"],
                                     reward=rewards.get(response_id)))
    kept = {k: v for k, v in summary.items() if k not in ("answers", "reference_answers")}
    kept["model"], kept["reference"] = model_label(summary["model"]), model_label(summary["reference"])
    kept["config"] = {**summary["config"], "reference": model_label(summary["config"]["reference"])
                      if summary["config"].get("reference") else None}
    kept["judges"] = {"refusal": fingerprints.get("refusal")}
    return kept, rows


def _scores_path(answers: Path) -> Path:
    return answers.with_name(answers.name.replace(".jsonl", ".scores.jsonl"))


# ---------------------------------------------------------------------------------------------- the rest


def audit_evidence(audit_path: str | Path, fingerprints: dict[str, str | None]) -> dict[str, Any]:
    """The audit's results (probe accuracies, cues, verdicts, pair diagnostics), without its plot files."""
    audit = _json(audit_path)
    for result in audit.get("features", {}).values():
        result.pop("projection", None)
    audit["judges"] = {name: fingerprints.get(name) for name in ("harm", "refusal")}
    return audit


def general_evidence(general_path: str | Path) -> dict[str, Any]:
    """lm-eval's results per task, with the config, seed and library versions; the model by its label."""
    general = _json(general_path)
    for field in ("model", "pretrained", "adapter"):
        if general.get(field):
            general[field] = model_label(general[field])
    return general


def training_evidence(summary_path: str | Path) -> dict[str, Any]:
    """What a DPO run did: settings, pairs' hash, final loss, steps, seconds, versions."""
    summary = _json(summary_path)
    return {"final_loss": summary.get("final_loss"), "steps": summary.get("steps"), "config": summary.get("config"),
            "pairs_sha256_12": summary.get("pairs_sha256_12"), "n_pairs": summary.get("n_pairs"),
            "seconds": summary.get("seconds"), "seed": summary.get("seed"), "versions": summary.get("versions")}


def training_log(dynamics_path: str | Path) -> list[dict[str, Any]]:
    """Loss, reward margins and accuracies per logged step."""
    return _rows(dynamics_path)


def pairs_rows(pairs_path: str | Path) -> list[dict[str, Any]]:
    """The pairs as written (TRL conversational format with each side's provenance)."""
    return _rows(pairs_path)


def debias_counts(summary_path: str | Path) -> dict[str, Any]:
    summary = _json(summary_path)
    return {"method": summary["method"], "n_in": summary["n_in"], "n_out": summary["n_out"],
            "kept_fraction": summary.get("kept_fraction")}
