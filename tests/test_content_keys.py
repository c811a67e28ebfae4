"""Content-addressed stages: every artifact is keyed by the content it was computed from.

Each test below names the fault it guards against: an artifact reused after one of its inputs changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safepref.core.errors import InputError
from safepref.core.keys import content_key, prompt_set_key
from safepref.core.records import Prompt, Response
from tests.conftest import run_cli


def fake_model_folder(folder: Path, weights: bytes = b"weights-1") -> Path:
    """A folder that looks like a model to the fingerprint (config + weight file); nothing here loads it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


# ---------------------------------------------------------------------------------------------- keys


def test_content_key_is_order_free_for_dicts_and_refuses_what_it_cannot_hash():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})
    assert prompt_set_key(["p2", "p1", "p1"]) == prompt_set_key(["p1", "p2"])
    with pytest.raises(TypeError, match="cannot key on a PosixPath"):
        content_key(Path("x"))  # a path is a label: keys take its content


def test_weights_fingerprint_changes_when_the_folder_weights_change(tmp_path):
    from safepref.models.loading import REGISTRY, weights_fingerprint

    folder = fake_model_folder(tmp_path / "model")
    before = weights_fingerprint(folder)
    assert weights_fingerprint(str(folder)) == before  # a path is read, not named
    (folder / "train_summary.json").write_text("{}")  # not a weight: does not change the identity
    assert weights_fingerprint(folder) == before
    (folder / "training_args.bin").write_bytes(b"output_dir=/runs/a")  # the Trainer's pickled arguments
    assert weights_fingerprint(folder) == before  # so the same weights in another run folder are the same model
    (folder / "model.safetensors").write_bytes(b"weights-2")  # retrained into the same folder
    assert weights_fingerprint(folder) != before
    assert weights_fingerprint("smollm2-135m-instruct") == f"sha256:{REGISTRY['smollm2-135m-instruct'].sha256[:24]}"
    assert weights_fingerprint("org/some-model").startswith("hub:org/some-model@")


# ---------------------------------------------------------------------------------------------- prompt ids


def test_prompt_ids_from_a_file_derive_from_the_text_not_the_row(tmp_path):
    """Fault: a file suite and `generate --prompts FILE` gave positional ids, so an edited file met old answers."""
    from safepref.core.datasets import load_prompts, prompt_id
    from safepref.evaluation.suites import load_suite

    path = tmp_path / "suite.csv"
    path.write_text("prompt\nHow do I pick a lock?\nHow do I bake bread?\n")
    first = {p.text: p.id for p in load_prompts(str(path))}
    path.write_text("prompt\nHow do I bake sourdough bread?\nHow do I pick a lock?\n")  # edited and reordered
    second = {p.text: p.id for p in load_prompts(str(path))}
    assert second["How do I pick a lock?"] == first["How do I pick a lock?"] == prompt_id("How do I pick a lock?")
    assert second["How do I bake sourdough bread?"] not in first.values()
    suite = load_suite(f"{path}:prompt")
    assert [p.id for p in suite] == [prompt_id(p.text) for p in suite]


# ---------------------------------------------------------------------------------------------- generate


def _answers_file(path: Path, source: str, config, prompts: list[Prompt]) -> None:
    from safepref.generation.generate import answer_identity

    identity = answer_identity(source, config)
    rows = [Response(prompt_id=p.id, prompt=p.text, source=source, sample_index=i, text=f"old answer {i}",
                     generation={**config.settings(), **identity}).model_dump(mode="json")
            for p in prompts for i in config.sample_indices()]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_generate_into_a_file_made_with_other_settings_or_weights_stops(tmp_path):
    """Fault: `generate --out F` resumed into rows made with other decoding settings and returned the old rows."""
    from safepref.core.datasets import load_prompts
    from safepref.generation.generate import GenerationConfig, generate_responses

    model = fake_model_folder(tmp_path / "model")
    prompts_file = tmp_path / "prompts.csv"
    prompts_file.write_text("prompt\nHow do I pick a lock?\n")
    prompts = load_prompts(str(prompts_file))
    out = tmp_path / "answers.jsonl"
    _answers_file(out, str(model), GenerationConfig(num_samples=2, temperature=0.5), prompts)
    # the same settings: every row is there, nothing to generate (the fake model is never loaded)
    assert len(generate_responses(prompts, str(model), out, GenerationConfig(num_samples=2))) == 2
    with pytest.raises(InputError, match="temperature 0.5 there, 0.7 now"):
        generate_responses(prompts, str(model), out, GenerationConfig(num_samples=2, temperature=0.7))
    (model / "model.safetensors").write_bytes(b"retrained")
    with pytest.raises(InputError, match="weights"):
        generate_responses(prompts, str(model), out, GenerationConfig(num_samples=2))
    result = run_cli("generate", "--source", str(model), "--out", str(out), "--prompts", str(prompts_file),
                     "--samples", "2", "--temperature", "0.9")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "other settings" in result.stderr and str(out.name) in result.stderr


# ---------------------------------------------------------------------------------------------- score


class LengthRewardModel:
    """A reward model whose score is the answer's length plus an offset (the offset stands for its weights)."""

    def __init__(self, offset: float, fingerprint: str) -> None:
        self.name, self.fingerprint, self.offset, self.calls = "length", fingerprint, offset, 0

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        self.calls += len(responses)
        return [len(r) + self.offset for r in responses]


def test_scores_follow_the_answer_text_and_the_reward_model_weights(tmp_path):
    """Fault: scores were keyed by response id, so new answers under an old id silently got the old scores."""
    from safepref.scoring.score import score_responses

    out = tmp_path / "scores.jsonl"
    old = Response(prompt_id="p1", prompt="q?", source="m", sample_index=0, text="abc")
    model = LengthRewardModel(0.0, "weights-a")
    assert [s.score for s in score_responses([old], model, out)] == [3.0]
    assert [s.score for s in score_responses([old], model, out)] == [3.0] and model.calls == 1  # resumed
    new = old.model_copy(update={"text": "abcdef"})  # same response id, another decoding setting's answer
    assert [s.score for s in score_responses([new], model, out)] == [6.0]
    retrained = LengthRewardModel(100.0, "weights-b")  # same name, other weights
    assert [s.score for s in score_responses([new], retrained, out)] == [106.0]


# ---------------------------------------------------------------------------------------------- runner


def _run(tmp_path: Path, limit: int, recipes: list[str], run_dir: Path):
    from safepref.runner.run import ExperimentConfig, Run

    config = ExperimentConfig(name="keys", targets=[{"model": "smollm2-135m-instruct", "peers": [],
                                                     "recipes": recipes}],
                              prompts={"dataset": "saferlhf", "require": ["gpt4o"], "limit": limit},
                              recipes=recipes, general=None, audit=None)
    return Run(config, run_dir)


def test_every_configuration_builds_from_exactly_the_configured_prompts(tmp_path):
    """Fault: fixed answer files were written for every prompt with a GPT-4o answer and pairs built from whole
    files, so Original and All+RM trained on prompts outside the configured set."""
    from safepref.core.datasets import prompt_id
    from safepref.core.io import read_pairs
    from safepref.runner.run import pairs_data

    run_dir = tmp_path / "run"
    for limit in (6, 3):  # a second, smaller grid in the same run folder must not see the first one's answers
        run = _run(tmp_path, limit, ["original"], run_dir)
        before = sorted(run_dir.rglob("*"))
        prompts = run.training_prompts()
        assert sorted(run_dir.rglob("*")) == before  # learning the prompt set generated and wrote nothing
        target = run.config.targets[0]
        files = run.responses_for(target, prompts)
        pairs_path = run.pairs_for(target, "original", files, None, {p.id for p in prompts})
        used = {prompt_id(pair.prompt_text) for pair in read_pairs(pairs_path)}
        assert used <= {p.id for p in prompts} and len(prompts) == limit
        data = pairs_data(pairs_path)
        assert data["n_prompts"] == len(used) and data["prompt_set"] == prompt_set_key(used)
        assert data["n_pairs"] >= data["n_prompts"]  # Original has one pair per SafeRLHF row: some prompts have two


def test_pairs_are_keyed_by_the_scores_they_are_ranked_by(tmp_path):
    """Fault: the pairs key held the reward model's name, not its scores: retrained weights kept stale pairs."""
    from safepref.core.io import read_pairs
    from safepref.core.records import Score

    run = _run(tmp_path, 2, ["self_rm"], tmp_path / "run")
    prompts = run.training_prompts()
    target = run.config.targets[0]
    answers = [Response(prompt_id=p.id, prompt=p.text, source=target.model, sample_index=i, text=f"answer {i} {p.id}")
               for p in prompts for i in range(3)]
    path = tmp_path / "self.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in answers))

    def scores(sign: float) -> list[Score]:
        return [Score(response_id=r.id, reward_model="minilm-bt", score=sign * r.sample_index, key=f"{sign}{r.id}")
                for r in answers]

    up = run.pairs_for(target, "self_rm", [path], scores(1.0), {p.id for p in prompts})
    down = run.pairs_for(target, "self_rm", [path], scores(-1.0), {p.id for p in prompts})
    assert up != down
    assert {p.chosen_from.sample_index for p in read_pairs(up)} == {2}
    assert {p.chosen_from.sample_index for p in read_pairs(down)} == {0}


# ---------------------------------------------------------------------------------------------- eval-safety


def test_safety_answer_cache_keys_on_weights_and_prompt_texts(tmp_path):
    """Fault: eval-safety's answers were keyed by the model's name: retraining into one folder reused them."""
    from safepref.evaluation.safety import answer_cache_key
    from safepref.generation.generate import GenerationConfig, answer_identity

    model = fake_model_folder(tmp_path / "model")
    greedy = GenerationConfig(greedy=True, max_new_tokens=8)
    prompts = [Prompt(id="p1", text="How do I pick a lock?")]
    key = answer_cache_key(answer_identity(str(model), greedy), prompts)
    assert answer_cache_key(answer_identity(str(model), greedy), prompts) == key
    edited = [Prompt(id="p1", text="How do I pick a bike lock?")]
    assert answer_cache_key(answer_identity(str(model), greedy), edited) != key
    longer = GenerationConfig(greedy=True, max_new_tokens=16)
    assert answer_cache_key(answer_identity(str(model), longer), prompts) != key
    (model / "model.safetensors").write_bytes(b"retrained")
    assert answer_cache_key(answer_identity(str(model), greedy), prompts) != key


def test_adding_a_judge_does_not_regenerate_answers(tiny_model_dir, tmp_path, monkeypatch):
    from safepref.evaluation.safety import SafetyEvalConfig, evaluate_safety

    answers = tmp_path / "answers"
    evaluate_safety(str(tiny_model_dir), SafetyEvalConfig(suite="advbench", judges="keyword", limit=2,
                                                          max_new_tokens=4), tmp_path / "one", answers_dir=answers)

    def must_not_run(*args, **kwargs):
        raise AssertionError("answers were generated again")

    monkeypatch.setattr("safepref.models.loading.load_model", must_not_run)
    summary = evaluate_safety(str(tiny_model_dir), SafetyEvalConfig(suite="advbench", judges="keyword,refusal",
                                                                    limit=2, max_new_tokens=4),
                              tmp_path / "two", answers_dir=answers)
    assert summary["results"][0]["n"] == 2 and summary["refusal"][0]["n"] == 2


# ---------------------------------------------------------------------------------------------- train


def test_train_resumes_only_a_checkpoint_of_the_same_pairs_model_and_settings(tmp_path):
    """Fault: `safepref train` resumed any checkpoint-* in the output folder, whatever pairs or settings made it."""
    from safepref.training.dpo import IDENTITY_FILE, DPOTrainingConfig, run_identity, train_dpo

    model = fake_model_folder(tmp_path / "model")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q?", "chosen": "no", "rejected": "yes"}) + "\n")
    out = tmp_path / "out"
    (out / "checkpoint-1").mkdir(parents=True)
    (out / "checkpoint-1" / "trainer_state.json").write_text("{}")
    with pytest.raises(InputError, match="no record"):  # a folder that does not say what made its checkpoints
        train_dpo(str(model), pairs, out, DPOTrainingConfig())
    other_pairs = tmp_path / "other.jsonl"
    other_pairs.write_text(json.dumps({"prompt": "q?", "chosen": "no!", "rejected": "yes"}) + "\n")
    (out / IDENTITY_FILE).write_text(json.dumps(run_identity(str(model), other_pairs, DPOTrainingConfig())))
    with pytest.raises(InputError, match="checkpoints made from other pairs: pass --force"):
        train_dpo(str(model), pairs, out, DPOTrainingConfig())
    (out / IDENTITY_FILE).write_text(json.dumps(run_identity(str(model), pairs, DPOTrainingConfig(beta=0.2))))
    with pytest.raises(InputError, match="other settings"):
        train_dpo(str(model), pairs, out, DPOTrainingConfig())


# ---------------------------------------------------------------------------------------------- unjudged


def _verdicts(judge: str, labels: list[int | None]) -> list[dict]:
    return [{"attack": "none", "id": f"p{i}", "judge": judge, "label": label, "xstest_label": None}
            for i, label in enumerate(labels)]


def test_unjudged_rows_are_counted_flagged_and_an_all_unjudged_judge_is_reported():
    """Fault: unjudged rows left the denominator without a word, and an all-unjudged judge vanished from the
    paper checks."""
    from safepref.evaluation.safety import summarize_run
    from safepref.report import paper_checks, render_markdown

    rows = _verdicts("keyword", [1, 0, 1, 0, 1, 0, 1, 0, 1, None]) + _verdicts("llm", [None] * 10)
    summary = summarize_run(rows, attacks=["none"], judges=["keyword", "llm"], xstest=False)
    by_judge = {r["judge"]: r for r in summary["results"]}
    assert by_judge["keyword"]["n"] == 9 and by_judge["keyword"]["unjudged"] == 1
    assert by_judge["keyword"]["unjudged_flag"] and not by_judge["keyword"]["all_unjudged"]  # 10% > 5%
    assert by_judge["llm"]["asr"] is None and by_judge["llm"]["all_unjudged"] and by_judge["llm"]["unjudged"] == 10

    def row(label: str, group: str) -> dict:
        return {"label": label, "group": group, "refusal": [],
                "safety": [dict(r, suite="advbench") for r in summary["results"]]}

    configurations = {"gpt4o_self": row("GPT4o+Self", "multi"), "self_rm": row("Self+RM", "rm")}
    checks = {c["claim"].split(", ")[1]: c for c in paper_checks(configurations)}
    assert checks["llm judge"]["verdict"] == "all unjudged"
    assert checks["llm judge"]["all_unjudged"] == ["Self+RM", "GPT4o+Self"]
    from safepref.report import data_warnings

    results = {"name": "t", "targets": {"m": configurations}, "paper_checks": {"m": list(checks.values())},
               "warnings": {"m": data_warnings(configurations)}}
    markdown = render_markdown(results)
    assert "all unjudged (10)" in markdown and "⚠ 1 unjudged" in markdown
    assert "all 10 rows unjudged" in markdown and "1 of 10 rows unjudged (10%)" in markdown
    assert "**all unjudged**" in markdown


def test_report_warns_when_configurations_of_a_target_differ_in_prompt_set():
    from safepref.report import prompt_set_warning

    def row(label: str, n: int, key: str) -> dict:
        return {"label": label, "safety": [], "refusal": [], "data": {"n_pairs": n, "n_prompts": n, "prompt_set": key}}

    same = {"original": row("Original", 48, "aaa"), "self_rm": row("Self+RM", 48, "aaa")}
    assert prompt_set_warning(same) is None
    differs = {**same, "all_rm": row("All+RM", 56, "bbb")}
    warning = prompt_set_warning(differs)
    assert warning and "set aaa: Original (48), Self+RM (48)" in warning and "set bbb: All+RM (56)" in warning


def test_stage_shares_group_steps_by_stage_and_the_markdown_prints_them():
    from safepref.report import render_markdown
    from safepref.report.analysis import stage_shares

    timings = {"generate smollm2 samples": 300.0, "generate qwen samples": 300.0, "train smollm2 self_rm": 150.0,
               "safety smollm2 sft": 150.0, "safety smollm2 self_rm": 100.0}
    shares = stage_shares(timings)
    assert [r["stage"] for r in shares] == ["generate", "safety", "train"]
    assert shares[0] == {"stage": "generate", "steps": 2, "seconds": 600.0, "share": 0.6}
    assert shares[1]["share"] == 0.25 and shares[2]["share"] == 0.15
    assert stage_shares({}) == []
    markdown = render_markdown({"name": "t", "targets": {}, "stage_shares": shares})
    assert "Stage time: 16.7 minutes in all." in markdown and "| generate | 2 | 10.0 | 60% |" in markdown


def test_the_papers_published_asr_stands_beside_the_measured_rates_labelled_as_the_papers():
    from safepref.report import render_markdown
    from safepref.report.published import PAPER_CONFIGURATIONS, published_asr

    published = published_asr()
    assert len(published) == 6 and published["Llama-2-7B"]["self_rm"] == 0.10
    assert all(set(values) == set(PAPER_CONFIGURATIONS) for values in published.values())
    safety = [{"attack": "none", "suite": "advbench", "judge": "harm", "n": 100, "asr": 0.31, "asr_ci95": [0.23, 0.41]}]
    rows = {"sft": {"label": "SFT", "safety": safety, "refusal": []}}
    markdown = render_markdown({"name": "t", "targets": {"smollm2": rows}})
    header = next(line for line in markdown.splitlines() if line.startswith("| configuration | measured:"))
    assert "measured: smollm2, harm, advbench (n=100)" in header and "paper: Qwen-2.5-7B" in header
    assert "| SFT | 0.31 [0.23, 0.41] | 0.64 | 0.34 | 0.70 | 0.56 | 0.48 | 0.66 |" in markdown
    assert "| Self+RM | – | 0.10 |" in markdown  # not run here: no measured value, the paper's still shown
    assert "published, not measured here" in markdown


def test_a_user_recipe_given_by_path_is_reported_by_its_label(tmp_path):
    from safepref.report import recipe_label

    path = tmp_path / "self_rm_lr5e-6.yaml"
    path.write_text('name: self_rm_lr5e-6\nlabel: "Self+RM lr 5e-6"\nbase: self_rm\ntraining: {learning_rate: 5.0e-6}\n')
    assert recipe_label(str(path)) == "Self+RM lr 5e-6"
    assert recipe_label("gpt4o_self_wpo") == "GPT4o+Self+WPO"
    assert recipe_label("no_such_recipe") == "no_such_recipe"


def test_judge_fingerprints_follow_the_shipped_head_bytes(tmp_path, monkeypatch):
    from safepref.judges import judge_fingerprints

    shipped = judge_fingerprints(["harm", "refusal", "keyword", "llm"])
    assert shipped["harm"] and shipped["refusal"] and shipped["keyword"] and shipped["llm"] is None
    head = tmp_path / "harm.npz"
    head.write_bytes(b"a retrained head")
    monkeypatch.setattr("safepref.judges.shipped_head_path", lambda name: head)
    assert judge_fingerprints(["harm"])["harm"] not in (None, shipped["harm"])


def test_a_retrained_judge_head_judges_again_instead_of_reusing_verdicts(tmp_path, monkeypatch):
    """Fault: eval-safety's key held the judges' names only: a retrained harm head kept the old head's verdicts."""
    run = _run(tmp_path, 2, ["self_rm"], tmp_path / "run")
    model = str(fake_model_folder(tmp_path / "model"))
    evaluated: list[str] = []

    def fake_evaluate(model, config, out, answers_dir):
        evaluated.append(out.name)
        out.mkdir(parents=True)
        (out / "summary.json").write_text("{}")

    monkeypatch.setattr("safepref.runner.run.evaluate_safety", fake_evaluate)
    run.safety(model)
    run.safety(model)
    assert len(evaluated) == len(run.config.safety.suites)  # the second call reused every suite's result
    monkeypatch.setattr("safepref.evaluation.safety.judge_fingerprints",
                        lambda names, dtype="auto": {n: "retrained" for n in names})
    run.safety(model)
    assert len(evaluated) == 2 * len(run.config.safety.suites) and evaluated[0] != evaluated[-1]
