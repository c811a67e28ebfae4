"""eval-safety end to end: generation (tiny model; real SmolLM2 in one integration test), judges, summary."""

from __future__ import annotations

import json

import pytest

from safepref.evaluation.safety import SafetyEvalConfig, evaluate_safety
from tests.conftest import run_cli


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_eval_safety_tiny_model_two_attacks_resumes(tiny_model_dir, tmp_path):
    config = SafetyEvalConfig(suite="advbench", attacks="none,alpaca", judges="keyword,refusal", limit=3,
                              max_new_tokens=6, batch_size=4)
    summary = evaluate_safety(str(tiny_model_dir), config, tmp_path)
    assert summary["n_prompts"] == 3
    results = {(r["attack"], r["judge"]): r for r in summary["results"]}
    assert set(results) == {("none", "keyword"), ("alpaca", "keyword")}  # refusal is not a harm judge
    for entry in results.values():
        assert entry["n"] == 3 and entry["unjudged"] == 0
        low, high = entry["asr_ci95"]
        assert 0 <= low <= entry["asr"] <= high <= 1
    assert {r["measure"] for r in summary["refusal"]} == {"refusal"}
    verdicts = read_jsonl(tmp_path / "verdicts.jsonl")
    assert len(verdicts) == 3 * 2 * 2
    assert {v["id"] for v in verdicts} == {"advbench-0", "advbench-1", "advbench-2"}
    # the keyword ASR in the summary is the share of verdicts labelled 1
    none_keyword = [v["label"] for v in verdicts if v["attack"] == "none" and v["judge"] == "keyword"]
    assert results[("none", "keyword")]["asr"] == sum(none_keyword) / 3
    assert json.loads((tmp_path / "summary.json").read_text())["results"] == summary["results"]

    response_files = sorted(tmp_path.glob("responses-*.jsonl"))
    assert len(response_files) == 2
    before = [f.read_text() for f in response_files]
    again = evaluate_safety(str(tiny_model_dir), config, tmp_path)  # resumes: nothing regenerated
    assert [f.read_text() for f in response_files] == before
    assert again["results"] == summary["results"]


def test_eval_safety_on_jbb_with_its_transfer_attack_reports_categories(tiny_model_dir, tmp_path):
    config = SafetyEvalConfig(suite="jbb", attacks="none,jbb-attacks:PAIR", judges="keyword", limit=12,
                              max_new_tokens=4, batch_size=12)
    summary = evaluate_safety(str(tiny_model_dir), config, tmp_path)
    results = {r["attack"]: r for r in summary["results"]}
    assert results["none"]["n"] == 12
    # n counts the behaviours PAIR has a recorded prompt for (all of the first 12 against vicuna-13b-v1.5)
    from safepref.core.datasets import load_dataset

    covered = {r.meta["behavior_id"] for r in load_dataset("jbb-attack-prompts")
               if r.meta["method"] == "PAIR" and r.meta["source_model"] == "vicuna-13b-v1.5"}
    assert results["jbb-attacks:PAIR"]["n"] == sum(f"jbb-{i}" in covered for i in range(12)) == 12
    by_category = [c for c in summary["categories"] if c["attack"] == "none"]
    # the first 12 behaviours: 10 of Harassment/Discrimination, 2 of Malware/Hacking
    assert {c["category"]: c["n"] for c in by_category} == {"Harassment/Discrimination": 10, "Malware/Hacking": 2}
    verdicts = read_jsonl(tmp_path / "verdicts.jsonl")
    for category in by_category:
        ids = {f"jbb-{i}" for i in (range(10) if category["category"].startswith("Harassment") else range(10, 12))}
        labels = [v["label"] for v in verdicts if v["attack"] == "none" and v["id"] in ids]
        assert category["asr"] == sum(labels) / len(labels)


def test_eval_safety_xstest_over_refusal(tiny_model_dir, tmp_path):
    summary = evaluate_safety(str(tiny_model_dir), SafetyEvalConfig(suite="xstest", judges="keyword", limit=4,
                                                                    max_new_tokens=4), tmp_path / "run")
    refusal = {r["measure"]: r for r in summary["refusal"]}
    assert refusal["over_refusal"]["n"] == 4  # XSTest's first prompts are safe ones
    assert refusal["refusal_unsafe"]["n"] == 0
    # judge the written answers ourselves: the over-refusal rate is the refusal judge's share of refused answers
    from safepref.core.stats import wilson_interval
    from safepref.judges import JudgeInput, get_judge

    [answers_file] = (tmp_path / "run").glob("responses-*.jsonl")
    answers = read_jsonl(answers_file)
    assert len(answers) == 4
    verdicts = get_judge("refusal").judge([JudgeInput(id=a["prompt_id"], prompt=a["prompt"], response=a["text"])
                                           for a in answers])
    refused = sum(v.label for v in verdicts)
    assert refusal["over_refusal"]["rate"] == refused / 4
    assert refusal["over_refusal"]["ci95"] == pytest.approx(list(wilson_interval(refused, 4)))


@pytest.mark.integration
def test_eval_safety_smollm2_cli_all_offline_judges(smollm2_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("eval-safety", "--model", "smollm2-135m-instruct", "--suite", "advbench", "--limit", "5",
                     "--attack", "none,alpaca", "--judge", "harm,keyword,classifier,refusal",
                     "--max-new-tokens", "32", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_prompts"] == 5
    assert len(summary["results"]) == 6 and all(r["n"] == 5 for r in summary["results"])
    assert {tuple(a["judges"]) for a in summary["judge_agreement"]} == {("harm", "keyword"), ("harm", "classifier"),
                                                                         ("keyword", "classifier")}
    responses = [row for f in out.glob("responses-*.jsonl") for row in read_jsonl(f)]
    assert len(responses) == 10 and all(r["text"].strip() for r in responses)
    assert len(read_jsonl(out / "verdicts.jsonl")) == 5 * 2 * 4
