import json
import signal
from collections import Counter

import pytest

from safepref.core.datasets import load_prompts, saferlhf_prompts
from safepref.core.errors import InputError
from safepref.core.records import Prompt
from safepref.generation.generate import GenerationConfig, generate_responses
from tests.chat_server import chat_server  # noqa: F401 - pytest fixture

from .conftest import run_cli, run_cli_killed_after


def _prompts(n):
    return [Prompt(id=f"p{i}", text=f"Tell me something about the number {i}.") for i in range(n)]


def test_samples_and_greedy_rows_carry_provenance(tiny_model_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    config = GenerationConfig(max_new_tokens=6, num_samples=3, batch_size=6)
    rows = generate_responses(_prompts(4), str(tiny_model_dir), out, config)
    assert sorted(Counter(r.prompt_id for r in rows).values()) == [3, 3, 3, 3]
    assert {r.sample_index for r in rows} == {0, 1, 2}
    assert all(r.generation["temperature"] == 0.5 and r.generation["mode"] == "sample" for r in rows)
    assert all(0 < r.n_tokens <= 6 for r in rows)
    greedy = generate_responses(_prompts(4), str(tiny_model_dir), out, GenerationConfig(max_new_tokens=6, greedy=True))
    assert {r.sample_index for r in greedy} == {-1} and len(greedy) == 4
    assert len(out.read_text().splitlines()) == 16


def test_rerun_reuses_rows_without_generating(tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    config = GenerationConfig(max_new_tokens=4, greedy=True)
    first = generate_responses(_prompts(3), str(tiny_model_dir), out, config)

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded although every row was cached")

    monkeypatch.setattr("safepref.models.loading.load_model", must_not_load)
    again = generate_responses(_prompts(3), str(tiny_model_dir), out, config)
    assert [r.text for r in again] == [r.text for r in first]


def test_a_moved_model_folder_reuses_its_answers_and_writes_none_twice(tiny_model_dir, tmp_path, monkeypatch):
    """Fault: a row's key held the model's path, so a copied run folder (same weights, new path) answered every
    prompt again and appended duplicates that downstream measures counted twice."""
    import shutil

    out = tmp_path / "r.jsonl"
    config = GenerationConfig(max_new_tokens=4, greedy=True)
    first = generate_responses(_prompts(3), str(tiny_model_dir), out, config)
    moved = shutil.copytree(tiny_model_dir, tmp_path / "moved-model")

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded although its answers were in the file")

    monkeypatch.setattr("safepref.models.loading.load_model", must_not_load)
    again = generate_responses(_prompts(3), str(moved), out, config)
    assert [r.text for r in again] == [r.text for r in first]
    assert {r.source for r in again} == {str(moved)}  # named as asked, so downstream keys follow this call
    assert len(out.read_text().splitlines()) == 3
    other_prompts = [Prompt(id=p.id, text=p.text + " Briefly.") for p in _prompts(3)]  # same ids, other texts
    with pytest.raises(AssertionError, match="was loaded"):
        generate_responses(other_prompts, str(moved), tmp_path / "r.jsonl", config)


def test_greedy_is_deterministic_and_batching_does_not_change_it(tiny_model_dir, tmp_path):
    one = generate_responses(_prompts(5), str(tiny_model_dir), tmp_path / "a.jsonl",
                             GenerationConfig(max_new_tokens=8, greedy=True, batch_size=1))
    many = generate_responses(_prompts(5), str(tiny_model_dir), tmp_path / "b.jsonl",
                              GenerationConfig(max_new_tokens=8, greedy=True, batch_size=16))
    assert {r.prompt_id: r.text for r in one} == {r.prompt_id: r.text for r in many}


def test_fixed_sources_answer_the_prompts_they_have(tmp_path):
    prompts = saferlhf_prompts()
    gpt4o = generate_responses(prompts, "gpt4o", tmp_path / "g.jsonl")
    assert len({r.prompt_id for r in gpt4o}) == 180
    human = generate_responses(prompts[:10], "human-chosen", tmp_path / "h.jsonl")
    assert {r.prompt_id for r in human} == {p.id for p in prompts[:10]}
    assert all(r.text for r in human)


def test_kill_and_resume_writes_every_key_exactly_once(tiny_model_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps({"prompt": f"Question number {i}, please answer at length."}) + "\n"
                                    for i in range(20)))
    args = ["generate", "--source", str(tiny_model_dir), "--prompts", str(prompts_file), "--out", str(out),
            "--samples", "2", "--batch-size", "2", "--max-new-tokens", "8"]
    killed = run_cli_killed_after("safepref.core.io:AppendLog.append", 5, *args)  # 5 prompts' rows written, then SIGKILL
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(out.read_bytes().splitlines()) == 5 * 2
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    keys = [(r["prompt_id"], r["source"], r["sample_index"]) for r in map(json.loads, out.read_text().splitlines())]
    assert len(keys) == 40 and len(set(keys)) == 40


def test_base_model_uses_completion_prompt_and_stops(tiny_model_dir):
    from safepref.generation.generate import _cut_at_stops, render_prompt

    assert render_prompt(None, "Why?", chat=False) == "Question: Why?\nAnswer:"
    assert _cut_at_stops(" Because.\nQuestion: And?\nAnswer: no", ("\nQuestion:",)) == "Because."


def test_prompt_file_errors(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text("goal\nhello\n\"\"\n")
    with pytest.raises(InputError) as info:
        load_prompts(str(bad))
    assert info.value.field == "goal" and info.value.line == 3
    assert len(load_prompts("advbench", limit=7)) == 7
    result = run_cli("generate", "--source", "no-such-model", "--prompts", "advbench", "--limit", "1",
                     "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2 and "unknown model 'no-such-model'" in result.stderr


def test_vllm_backend_is_import_guarded(tiny_model_dir, tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM installed")
    except ImportError:
        pass
    with pytest.raises(InputError, match="vllm"):
        generate_responses(_prompts(1), str(tiny_model_dir), tmp_path / "v.jsonl", GenerationConfig(backend="vllm"))


@pytest.mark.integration
def test_real_smollm2_answers_saferlhf_prompts(smollm2_dir, tmp_path):
    rows = generate_responses(saferlhf_prompts()[:2], "smollm2-135m-instruct", tmp_path / "s.jsonl",
                              GenerationConfig(max_new_tokens=16, num_samples=2))
    assert len(rows) == 4 and all(len(r.text.split()) >= 3 for r in rows)
    assert len({r.text for r in rows}) >= 2  # sampling gives different answers


def test_openai_source_survives_faults_resumes_and_never_writes_the_key(chat_server, tmp_path, monkeypatch):
    secret = "sk-generate-secret-987"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("OPENAI_BASE_URL", chat_server.base_url)
    out = tmp_path / "api.jsonl"
    config = GenerationConfig(greedy=True, max_new_tokens=8, request_timeout=60, max_retries=5)
    for fault in ("429", "500", "malformed", "timeout"):
        chat_server.inject(fault)
    rows = generate_responses(_prompts(3), "openai:test-model", out, config)
    assert [r.text for r in rows] == [f"echo: Tell me something about the number {i}." for i in range(3)]
    assert all(r.source == "openai:test-model" and r.sample_index == -1 for r in rows)
    assert len(chat_server.requests) == 3 + 4  # every fault cost one retry
    seen = len(chat_server.requests)
    generate_responses(_prompts(4), "openai:test-model", out, config)  # resume: only the new prompt is asked
    assert len(chat_server.requests) == seen + 1
    assert secret not in out.read_text()


def _hf_greedy_texts(model_dir, prompts, max_new_tokens):
    """Reference answers: transformers' own generate, greedy, one prompt at a time."""
    import torch

    from safepref.generation.generate import render_prompt
    from safepref.models import loading as models

    tokenizer, model = models.load_tokenizer(str(model_dir)), models.load_model(str(model_dir))
    texts = {}
    for prompt in prompts:
        inputs = tokenizer(render_prompt(tokenizer, prompt.text, chat=True), return_tensors="pt",
                           add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        texts[prompt.id] = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    return texts


def test_continuous_batching_greedy_matches_transformers_generate(tiny_model_dir, tmp_path):
    # Prompts of different lengths and a batch smaller than the work, so rows leave and new prompts join mid-run.
    prompts = [Prompt(id=f"q{i}", text="Tell me " + "more and " * (i * 3) + f"about {i}.") for i in range(6)]
    rows = generate_responses(prompts, str(tiny_model_dir), tmp_path / "g.jsonl",
                              GenerationConfig(max_new_tokens=12, greedy=True, batch_size=3))
    assert {r.prompt_id: r.text for r in rows} == _hf_greedy_texts(tiny_model_dir, prompts, 12)


def test_sampled_answer_does_not_depend_on_batch_neighbours(tiny_model_dir, tmp_path):
    config = dict(max_new_tokens=10, num_samples=2)
    alone = generate_responses(_prompts(1), str(tiny_model_dir), tmp_path / "a.jsonl",
                               GenerationConfig(**config, batch_size=2))
    crowded = generate_responses(_prompts(4), str(tiny_model_dir), tmp_path / "b.jsonl",
                                 GenerationConfig(**config, batch_size=8))
    by_key = {(r.prompt_id, r.sample_index): r.text for r in crowded}
    assert all(by_key[(r.prompt_id, r.sample_index)] == r.text for r in alone)
    assert alone[0].text != alone[1].text or alone[0].n_tokens != alone[1].n_tokens  # two distinct draws


def test_rows_leaving_and_joining_mid_batch_keep_greedy_answers_exact(tiny_model_dir):
    """Stop on a token the model does draw, so rows end at different steps and waiting prompts fill their slots."""
    import torch

    from safepref.generation.decode import DecodeRequest, decode
    from safepref.generation.generate import GenerationConfig
    from safepref.models import loading as models

    tokenizer, model = models.load_tokenizer(str(tiny_model_dir)), models.load_model(str(tiny_model_dir))
    prompt_ids = [tokenizer("Tell me " + "more and " * i + f"about {i}.")["input_ids"] for i in range(6)]

    def reference(ids, stop):
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=stop,
                                 pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
        return out[:out.index(stop) + 1] if stop in out else out

    stop = reference(prompt_ids[0], -1)[4]
    expected = [reference(ids, stop) for ids in prompt_ids]
    assert len({len(e) for e in expected}) > 1, "the stop token should end rows at different steps"
    requests = [DecodeRequest(key=i, prompt_ids=ids, seed=0) for i, ids in enumerate(prompt_ids)]
    got = {r.key: ids for r, ids in decode(model, requests, GenerationConfig(max_new_tokens=12, greedy=True).sampling(),
                                           batch_size=3, stop_ids={stop}, pad_id=tokenizer.pad_token_id)}
    assert [got[i] for i in range(6)] == expected


@pytest.mark.integration
def test_real_smollm2_greedy_matches_transformers_generate(smollm2_dir, tmp_path):
    prompts = saferlhf_prompts()[:2]
    rows = generate_responses(prompts, "smollm2-135m-instruct", tmp_path / "g.jsonl",
                              GenerationConfig(max_new_tokens=16, greedy=True))
    assert {r.prompt_id: r.text for r in rows} == _hf_greedy_texts(smollm2_dir, prompts, 16)
