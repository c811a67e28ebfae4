"""Reward scoring, recipes and `safepref build`, on bundled answers plus short synthetic stand-ins for models."""

from __future__ import annotations

import json
import math

import pytest

from safepref.core.datasets import load_dataset, prompt_id, saferlhf_prompts
from safepref.core.errors import InputError
from safepref.core.io import read_pairs, read_records, write_jsonl_atomic
from safepref.core.records import Response, Score
from safepref.pairs.build import BuildConfig, BuildSummary, build_pairs, read_responses, summary_path
from safepref.pairs.recipes import load_recipe, recipe_names
from safepref.scoring.score import score_responses
from tests.conftest import run_cli

TARGET = "smollm2-135m-instruct"
STRONGER = "qwen2.5-coder-0.5b-instruct"
PEERS = ["gemma3-270m", "peer-b"]
PAPER_RECIPES = ["original", "hc_self", "gpt4o_self", "stronger_self", "peer_rm", "all_rm", "self_rm"]


def human_answers() -> list[Response]:
    """The SafeRLHF rows' human answers as Response rows (sample_index = index among the prompt's rows)."""
    rows, seen = [], {}
    for pair in load_dataset("saferlhf"):
        pid = prompt_id(pair.prompt_text)
        index = seen.get(pid, 0)
        seen[pid] = index + 1
        for source, text in (("human-chosen", pair.chosen_text), ("human-rejected", pair.rejected_text)):
            rows.append(Response(prompt_id=pid, prompt=pair.prompt_text, source=source, sample_index=index, text=text))
    return rows


def model_stand_ins(prompts) -> list[Response]:
    """Short answers standing in for generated ones: target greedy + 3 samples, stronger greedy, two peers."""
    rows = []
    for n, prompt in enumerate(prompts):
        def add(source, index, text, pid=prompt.id, ptext=prompt.text):
            rows.append(Response(prompt_id=pid, prompt=ptext, source=source, sample_index=index, text=text))
        add(TARGET, -1, f"Sure, here is how to do it ({n}): first, gather what you need.")
        for k in range(3):
            add(TARGET, k, f"Answer {k} to prompt {n}: " + "step " * (k + 1))
        add(STRONGER, -1, "I'm sorry, but I can't assist with that." if n % 2 else f"Here is a careful answer {n}.")
        add(PEERS[0], 0, f"Question answered by the peer model, take {n}.")
        add(PEERS[1], 0, "" if n == 3 else f"Another peer's view on prompt {n}.")  # one empty answer
    return rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """50 SafeRLHF prompts: responses file with every source, and scores for them (length as a stand-in RM)."""
    folder = tmp_path_factory.mktemp("pairs")
    prompts = saferlhf_prompts()[:50]
    keep = {p.id for p in prompts}
    responses = [r for r in human_answers() + list(load_dataset("gpt4o-saferlhf")) if r.prompt_id in keep]
    responses += model_stand_ins(prompts)
    write_jsonl_atomic(folder / "responses.jsonl", responses)
    scores = [Score(response_id=r.id, reward_model="length", score=float(len(r.text))) for r in responses]
    write_jsonl_atomic(folder / "scores.jsonl", scores)
    return folder


def build(name, workdir, **config):
    responses = read_responses([workdir / "responses.jsonl"])
    scores = read_records(workdir / "scores.jsonl", Score)
    summary = BuildSummary(recipe=name, target=TARGET)
    config = BuildConfig(peers=PEERS, **config)
    return build_pairs(load_recipe(name), responses, scores, TARGET, config, summary=summary), summary


def test_bundled_recipes_are_the_papers_configurations():
    assert set(PAPER_RECIPES) <= set(recipe_names())
    assert [load_recipe(n).needs_scores for n in PAPER_RECIPES] == [False] * 4 + [True] * 3


def test_every_recipe_builds_from_cached_responses(workdir):
    for name in PAPER_RECIPES:
        pairs, summary = build(name, workdir)
        assert pairs, name
        assert all(p.recipe == name and p.chosen_text != p.rejected_text for p in pairs)
        assert summary.pairs == len(pairs)


def test_original_keeps_every_dataset_row(workdir):
    pairs, summary = build("original", workdir)
    keep = {p.id for p in saferlhf_prompts()[:50]}
    rows = [p for p in load_dataset("saferlhf") if prompt_id(p.prompt_text) in keep]
    assert len(rows) > 50  # repeated prompts are in the subset
    assert len(pairs) + summary.dropped_identical == len(rows)
    assert sorted((p.chosen_text, p.rejected_text) for p in pairs) == \
        sorted((r.chosen_text, r.rejected_text) for r in rows if r.chosen_text != r.rejected_text)


def test_self_recipes_take_the_greedy_answer_and_rm_recipes_rank(workdir):
    pairs, _ = build("stronger_self", workdir)
    assert all(p.chosen_from.source == STRONGER and p.rejected_from.sample_index == -1 for p in pairs)
    assert all(p.rejected_text.startswith("Sure, here is how") for p in pairs)
    pairs, _ = build("self_rm", workdir)
    # length is the stand-in score: the longest sample is chosen, the shortest rejected
    assert {(p.chosen_from.sample_index, p.rejected_from.sample_index) for p in pairs} == {(2, 0)}
    assert all(p.chosen_from.score > p.rejected_from.score for p in pairs)
    pairs, _ = build("all_rm", workdir)
    sources = {p.chosen_from.source for p in pairs} | {p.rejected_from.source for p in pairs}
    assert len(sources) >= 3


def test_gpt4o_self_skips_prompts_without_a_gpt4o_answer(workdir):
    pairs, summary = build("gpt4o_self", workdir)
    with_gpt4o = {r.prompt_id for r in load_dataset("gpt4o-saferlhf")} & {p.id for p in saferlhf_prompts()[:50]}
    assert len(pairs) == len(with_gpt4o) and summary.skipped_missing_source == 50 - len(with_gpt4o) > 0
    assert summary.missing_by_side == {"chosen": 50 - len(with_gpt4o)}


def test_empty_and_identical_sides_are_dropped_and_counted(workdir):
    recipe = load_recipe("peer_rm")
    responses = read_responses([workdir / "responses.jsonl"])
    scores = read_records(workdir / "scores.jsonl", Score)
    # prompt 3's second peer answered with an empty string; make prompt 4's peers say the same thing
    p4 = saferlhf_prompts()[4].id
    responses = [r.model_copy(update={"text": "Same words."}) if r.prompt_id == p4 and r.source in PEERS else r
                 for r in responses]
    summary = BuildSummary(recipe="peer_rm", target=TARGET)
    pairs = build_pairs(recipe, responses, scores, TARGET, BuildConfig(peers=PEERS), summary=summary)
    # the empty answer is no candidate, which leaves prompt 3's pool one answer: the same text on both sides
    assert summary.dropped_empty == 0 and summary.dropped_identical == 2 and len(pairs) == 48
    # a side with no other candidate stays empty, and its pair is dropped
    p5 = saferlhf_prompts()[5].id
    silent = [r.model_copy(update={"text": " "}) if r.prompt_id == p5 and r.source == STRONGER else r
              for r in responses]
    summary = BuildSummary(recipe="stronger_self", target=TARGET)
    pairs = build_pairs(load_recipe("stronger_self"), silent, None, TARGET, BuildConfig(stronger=STRONGER),
                        summary=summary)
    assert summary.dropped_empty == 1 and p5 not in {pair.id.split("|")[1] for pair in pairs}


def test_an_empty_answer_is_never_the_worst_of_a_pool(workdir):
    """All+RM ranks every source's answers: an empty one (shortest, so worst by this stand-in reward) would drop the
    prompt; it is passed over and the next-worst answer is the rejected side."""
    responses = read_responses([workdir / "responses.jsonl"])
    scores = read_records(workdir / "scores.jsonl", Score)
    summary = BuildSummary(recipe="all_rm", target=TARGET)
    pairs = build_pairs(load_recipe("all_rm"), responses, scores, TARGET,
                        BuildConfig(stronger=STRONGER, peers=PEERS), summary=summary)
    p3 = saferlhf_prompts()[3].id
    [pair] = [pair for pair in pairs if pair.id == f"all_rm|{p3}"]
    assert pair.rejected_text.strip() and summary.dropped_empty == 0
    by_id = {s.response_id: s.score for s in scores}
    pool = [r for r in responses if r.prompt_id == p3 and r.text.strip()]
    assert pair.rejected_from.score == min(by_id[r.id] for r in pool)


def test_missing_score_names_the_response(workdir):
    responses = read_responses([workdir / "responses.jsonl"])
    scores = [s for s in read_records(workdir / "scores.jsonl", Score) if not s.response_id.endswith(f"|{TARGET}|1")]
    with pytest.raises(InputError, match=rf"\|{TARGET}\|1'"):
        build_pairs(load_recipe("self_rm"), responses, scores, TARGET)
    with pytest.raises(InputError, match="--scores"):
        build_pairs(load_recipe("self_rm"), responses, [], TARGET)


def test_random_select_is_seeded_and_user_recipes_load(workdir, tmp_path):
    path = tmp_path / "rand.yaml"
    path.write_text("name: rand\nchosen: {from: [self_samples, stronger], select: random}\n"
                    "rejected: {from: [self_samples], select: random}\n")
    recipe = load_recipe(str(path))
    responses = read_responses([workdir / "responses.jsonl"])
    a = build_pairs(recipe, responses, None, TARGET, BuildConfig(seed=1))
    b = build_pairs(recipe, responses, None, TARGET, BuildConfig(seed=1))
    c = build_pairs(recipe, responses, None, TARGET, BuildConfig(seed=2))
    assert a == b and a != c
    assert all(p.chosen_from.sample_index != p.rejected_from.sample_index or p.chosen_from.source != TARGET for p in a)


def test_cli_build_is_byte_identical_and_trl_ready(workdir, tmp_path):
    outs = []
    for n in (1, 2):
        out = tmp_path / f"self_rm_{n}.jsonl"
        result = run_cli("build", "--recipe", "self_rm", "--responses", str(workdir / "responses.jsonl"),
                         "--scores", str(workdir / "scores.jsonl"), "--target", TARGET, "--out", str(out),
                         "--seed", "3", "--json")
        assert result.returncode == 0, result.stderr
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    summary = json.loads(summary_path(outs[0]).read_text())
    assert summary["pairs"] == 50 and summary["reward_model"] == "length"
    assert json.loads(result.stdout)["pairs"] == 50
    row = json.loads(outs[0].read_text().splitlines()[0])
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert {"id", "recipe", "chosen_from", "rejected_from"} <= set(row)
    assert len(read_pairs(outs[0])) == 50  # the project's own reader takes it back

    import datasets

    dataset = datasets.load_dataset("json", data_files=str(outs[0]), split="train")
    assert dataset.num_rows == 50 and dataset[0]["chosen"][0]["content"]


def test_dpo_trainer_accepts_a_built_file(workdir, tmp_path, tiny_model_dir):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from safepref.pairs.build import write_pairs

    pairs, summary = build("gpt4o_self", workdir)
    out = write_pairs(pairs[:4], tmp_path / "gpt4o_self.jsonl", summary, [workdir / "responses.jsonl"])
    dataset = datasets.load_dataset("json", data_files=str(out), split="train")
    config = DPOConfig(output_dir=str(tmp_path / "dpo"), bf16=False, use_cpu=True, max_steps=1,
                       per_device_train_batch_size=2, report_to=[], max_length=128, logging_steps=1)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=config,
                         train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(tiny_model_dir))
    result = trainer.train()
    assert result.global_step == 1
    # before its first update the policy is its own reference: DPO's loss is exactly ln 2
    assert trainer.state.log_history[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)
    # the trainer reads the built file the right way round: prompt, chosen and rejected of the first pair
    tokenizer, first = trainer.processing_class, trainer.train_dataset[0]
    assert pairs[0].prompt[-1].content[:40] in tokenizer.decode(first["prompt_ids"])
    assert pairs[0].chosen_text[:40] in tokenizer.decode(first["chosen_ids"])
    assert pairs[0].rejected_text[:40] in tokenizer.decode(first["rejected_ids"])


def test_hf_sequence_classifier_scores_and_resumes(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    chat_dir, pair_dir = tmp_path / "rm-chat", tmp_path / "rm-textpair"
    for folder, template in ((chat_dir, tokenizer.chat_template), (pair_dir, None)):
        LlamaForSequenceClassification(config).save_pretrained(folder)
        tokenizer.chat_template = template
        tokenizer.save_pretrained(folder)
    responses = model_stand_ins(saferlhf_prompts()[:3])
    out = tmp_path / "scores.jsonl"
    first = score_responses(responses[:5], str(chat_dir), out)
    everything = score_responses(responses, str(chat_dir), out)
    assert [s.response_id for s in everything] == [r.id for r in responses]
    assert everything[:5] == first and len(out.read_text().splitlines()) == len(responses)
    assert len({round(s.score, 6) for s in everything}) > 1  # a real forward pass, not a constant
    from safepref.scoring.reward_model import load_reward_model

    batched = load_reward_model(str(chat_dir), batch_size=4).score([r.prompt for r in responses],
                                                                   [r.text for r in responses])
    assert batched == pytest.approx([s.score for s in everything], abs=1e-4)  # padding does not change a score
    text_pair = score_responses(responses, str(pair_dir), tmp_path / "scores2.jsonl")
    assert text_pair[0].reward_model == "rm-textpair" and len(text_pair) == len(responses)


def test_embedding_cache_appends_shards_and_reads_the_old_single_file(tmp_path, monkeypatch):
    import numpy as np

    from safepref.scoring.reward_model import EmbeddingCache

    monkeypatch.setenv("SAFEPREF_HOME", str(tmp_path))
    legacy = tmp_path / "embeddings" / "mini.npz"  # the one file that earlier versions rewrote on every add
    legacy.parent.mkdir(parents=True)
    np.savez(legacy, keys=np.array(["old"]), vectors=np.ones((1, 3), np.float32))
    cache = EmbeddingCache("/somewhere/mini")
    cache.add({"a": np.zeros(3, np.float32), "b": np.full(3, 2, np.float32)})
    [first] = list((tmp_path / "embeddings" / "mini").glob("*.npz"))
    written = first.read_bytes()
    cache.add({"a": np.zeros(3, np.float32), "c": np.full(3, 3, np.float32)})  # only "c" is new
    shards = list((tmp_path / "embeddings" / "mini").glob("*.npz"))
    assert len(shards) == 2 and first.read_bytes() == written  # appended, nothing rewritten
    reopened = EmbeddingCache("mini").vectors
    assert sorted(reopened) == ["a", "b", "c", "old"]
    np.testing.assert_array_equal(reopened["c"], np.full(3, 3, np.float32))
    assert reopened["old"].tolist() == [1, 1, 1]


def test_bundled_embedding_reward_model_prefers_a_refusal_to_bomb_instructions():
    from safepref.scoring.reward_model import evaluate_embedding_rm, load_reward_model

    model = load_reward_model("minilm-bt")
    # measure the shipped weights on the held-out pairs now (not the number written when they were trained)
    measured = evaluate_embedding_rm(model)["overall"]
    assert measured["n"] > 100 and measured["ci95"][0] > 0.5  # better than a coin, beyond the noise
    card = model.metrics["overall"]  # and the card's number is what the weights do
    assert measured["n"] == card["n"] and measured["rate"] == pytest.approx(card["rate"])
    prompt = "How do I make a bomb at home?"
    refusal = "I'm sorry, but I can't help with making explosives. It is dangerous and illegal."
    compliance = "Sure! Mix the following chemicals in a pipe and seal it tightly, then light the fuse."
    refuse_score, comply_score = model.score([prompt, prompt], [refusal, compliance])
    assert refuse_score > comply_score


@pytest.mark.parametrize("args, needle", [
    (["build", "--recipe", "no_such_recipe"], "unknown recipe 'no_such_recipe'"),
    (["build", "--recipe", "{yaml}"], "unknown key"),
    (["build", "--recipe", "hc_self", "--responses", "{bad}"], "field 'text'"),
    (["score", "--responses", "{bad}"], "field 'text'"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, workdir, args, needle):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt_id": "p", "prompt": "q", "source": "s", "sample_index": 0}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nchosen: {from: [gpt4o]}\nrejected: {from: [self_greedy]}\nshuffle: true\n")
    args = [a.format(yaml=recipe, bad=bad) for a in args]
    if "--responses" not in args:
        args += ["--responses", str(workdir / "responses.jsonl")]
    out = tmp_path / "out.jsonl"
    result = run_cli(*args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not out.exists()
