import json
import random

import numpy as np
import pytest

from safepref.audit import (
    AuditConfig,
    audit_pairs,
    compute_features,
    grouped_splits,
    hidden_state_features,
    parse_feature_specs,
    resolve_pairs,
    shallow_features,
)
from safepref.core.errors import InputError
from safepref.core.records import Message, Pair

from .conftest import run_cli

WORDS = ["river", "garden", "stone", "window", "quiet", "market", "yellow", "engine", "paper", "travel", "kitchen",
         "summer", "letter", "bridge", "number", "silver", "forest", "doctor", "music", "planet", "circle", "winter"]
REFUSALS = ["I'm sorry, but I can't help with that.", "I cannot do this.", "I cannot assist with this request.",
            "I won't provide that. Please don't try it.", "Sorry, I will not do that.", "That is not appropriate."]


def _words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) + "."


def _pair(i: int, prompt: str, chosen: str, rejected: str) -> Pair:
    return Pair(id=f"p{i}", prompt=[Message(role="user", content=prompt)],
                chosen=[Message(role="assistant", content=chosen)], rejected=[Message(role="assistant", content=rejected)])


def shortcut_pairs(n: int = 60, seed: int = 0) -> list[Pair]:
    """Chosen always a short refusal, rejected always a long compliant answer."""
    rng = random.Random(seed)
    return [_pair(i, f"question {i}: {_words(rng, 4, 10)}", f"{rng.choice(REFUSALS)} {_words(rng, 2, 6)}",
                  _words(rng, 40, 90)) for i in range(n)]


def same_distribution_pairs(n: int = 80, seed: int = 1) -> list[Pair]:
    rng = random.Random(seed)

    def answer() -> str:
        text = _words(rng, 5, 60)
        return f"{rng.choice(REFUSALS)} {text}" if rng.random() < 0.3 else text

    return [_pair(i, f"question {i}: {_words(rng, 4, 10)}", answer(), answer()) for i in range(n)]


@pytest.fixture()
def config(tmp_path):
    return AuditConfig(features=["shallow"], folds=5, seed=0, bootstrap=500, cache_dir=str(tmp_path / "cache"))


def test_shortcut_pairs_are_separable_by_length_and_refusal(config, tmp_path):
    summary = audit_pairs(shortcut_pairs(), config, tmp_path / "out")
    shallow = summary["features"]["shallow"]
    assert shallow["accuracy"] > 0.95 and shallow["pairwise_accuracy"] > 0.95
    assert shallow["risk"] == "high"
    cues = {c["cue"]: c for c in shallow["cues"]}
    assert cues["length_words"]["accuracy"] > 0.95 and cues["length_words"]["cohens_d"] < -2  # chosen shorter
    assert cues["refusal_phrases"]["accuracy"] > 0.95 and cues["refusal_phrases"]["cohens_d"] > 2
    assert cues["markdown_headers"]["accuracy"] < 0.6  # a cue that is absent on both sides does not separate
    named = summary["verdict"]
    assert "length" in named or "refusal" in named
    # the control keeps the pairs but swaps labels in half of them: no probe can beat chance
    low, high = shallow["control_accuracy_ci"]
    assert low <= 0.5 <= high and abs(shallow["control_accuracy"] - 0.5) < 0.1
    written = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert written["features"]["shallow"]["accuracy"] == shallow["accuracy"]
    assert "high shortcut risk" in (tmp_path / "out" / "verdict.txt").read_text()
    assert (tmp_path / "out" / "projection-shallow.png").stat().st_size > 1000


def test_identical_distributions_are_not_separable(config):
    summary = audit_pairs(same_distribution_pairs(), config)
    shallow = summary["features"]["shallow"]
    assert abs(shallow["accuracy"] - 0.5) < 0.1
    assert abs(shallow["control_accuracy"] - 0.5) < 0.1
    assert shallow["risk"] in ("none", "low")


def test_folds_group_by_prompt():
    # 30 prompts with 1-3 pairs each; rows alternate chosen, rejected of each pair
    rng = random.Random(3)
    prompts = [p for p in range(30) for _ in range(rng.randint(1, 3))]
    groups = np.repeat(np.asarray([f"prompt-{p}" for p in prompts]), 2)
    splits = grouped_splits(groups, folds=5, seed=0)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(len(groups)))  # every response is held out exactly once
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        test_set = set(test.tolist())
        for pair_index in range(len(prompts)):  # both sides of a pair land on the same side of the split
            assert (2 * pair_index in test_set) == (2 * pair_index + 1 in test_set)


def test_too_few_prompts_reduces_folds_or_fails(config):
    pairs = shortcut_pairs(6)
    few = [p.model_copy(update={"prompt": shortcut_pairs(6)[i % 3].prompt}) for i, p in enumerate(pairs)]
    summary = audit_pairs(few, config)
    assert summary["folds"] == 3 and summary["warnings"]
    one_prompt = [p.model_copy(update={"prompt": pairs[0].prompt}) for p in pairs]
    with pytest.raises(InputError, match="at least 2 distinct prompts"):
        audit_pairs(one_prompt, config)


def test_feature_specs():
    assert parse_feature_specs(["shallow,embed", "embed"]) == ["shallow", "embed"]
    assert parse_feature_specs(["all"]) == ["shallow", "embed", "hidden:smollm2-135m-instruct"]
    for bad in ("words", "hidden", "shallow:x", ""):
        with pytest.raises(InputError):
            parse_feature_specs([bad])


def test_shallow_cues_count_what_they_say():
    text = "As an AI, I’m sorry: I can't do that!\n\n# Title\n- one\n- two\n**bold** text?"
    (row,) = shallow_features([text])
    from safepref.audit import cue_descriptions

    values = dict(zip(cue_descriptions(), row, strict=True))
    assert values["length_words"] == len(text.split())
    assert values["length_chars"] == len(text)
    assert values["markdown_lists"] == 2 and values["markdown_headers"] == 1 and values["markdown_bold"] == 1
    assert values["self_identity_phrases"] == 1 and values["apology_phrases"] == 1  # curly apostrophe normalised
    assert values["refusal_phrases"] == 1 and values["exclamations"] == 1 and values["questions"] == 1


def test_features_are_cached_by_texts(config, tmp_path):
    pairs = shortcut_pairs(10)
    first = compute_features("shallow", pairs, config)
    cached = list((tmp_path / "cache").glob("shallow-*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(np.load(cached[0]), first)
    changed = pairs[:-1] + [_pair(99, "another", "a different answer", "yet another answer here")]
    compute_features("shallow", changed, config)
    assert len(list((tmp_path / "cache").glob("shallow-*.npy"))) == 2


def test_hidden_features_pool_response_tokens_only(tiny_model_dir):
    import torch

    from safepref.models.loading import load_model, load_tokenizer

    prompt_a = [Message(role="user", content="How do I bake bread?")]
    prompt_b = [Message(role="user", content="Tell me something completely different, please, at some length.")]
    response = "Mix flour, water and yeast, then bake it."
    items = [(prompt_a, response), (prompt_b, response), (prompt_a, response + " Let it cool before slicing.")]
    for layer in (1, -1):
        features = hidden_state_features(items, str(tiny_model_dir), layer, batch_size=3, max_length=256)
        assert features.shape == (3, 32)
        assert not np.allclose(features[0], features[1], atol=1e-4)  # the prompt is context: it changes the state

        tokenizer, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir)
        for index, (prompt, text) in enumerate(items):
            prefix = tokenizer.apply_chat_template([m.model_dump() for m in prompt], tokenize=False,
                                                   add_generation_prompt=True)
            prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
            ids = tokenizer(prefix + text, add_special_tokens=False)["input_ids"]
            assert ids[: len(prefix_ids)] == prefix_ids
            with torch.no_grad():
                states = model.base_model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[layer][0]
            manual = states[len(prefix_ids):].mean(0).double().numpy()
            np.testing.assert_allclose(features[index], manual, atol=1e-5)  # batched, padded = one by one
            assert not np.allclose(features[index], states.mean(0).double().numpy(), atol=1e-4)  # prompt excluded
    with pytest.raises(InputError, match="layer 7 out of range"):
        hidden_state_features(items, str(tiny_model_dir), 7, batch_size=3, max_length=256)


def test_audit_with_hidden_features_of_tiny_model(tiny_model_dir, config):
    config.features = [f"hidden:{tiny_model_dir}:1", "shallow"]
    summary = audit_pairs(shortcut_pairs(20), config)
    hidden = summary["features"][f"hidden:{tiny_model_dir}:1"]
    assert hidden["n_features"] == 32
    # even a random model's pooled states tell a short refusal from a long answer (measured: 1.0, control 0.485)
    assert hidden["accuracy"] > 0.9 and hidden["risk"] == "high"
    assert hidden["accuracy_ci"][0] <= hidden["accuracy"] <= hidden["accuracy_ci"][1]
    assert abs(hidden["control_accuracy"] - 0.5) < 0.2  # shuffled labels: nothing to learn


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_json_is_one_object_and_reads_conversational_pairs(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": p.prompt_text}],
             "chosen": [{"role": "assistant", "content": p.chosen_text}],
             "rejected": [{"role": "assistant", "content": p.rejected_text}]} for p in shortcut_pairs(30)]
    source = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = run_cli("audit", str(source), "--features", "shallow", "--json", "--folds", "3", "--out", str(tmp_path / "o"),
                     env={"SAFEPREF_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # fails on anything but exactly one JSON document
    assert summary["n_pairs"] == 30 and summary["folds"] == 3
    shallow = summary["features"]["shallow"]
    assert {"accuracy", "accuracy_ci", "control_accuracy", "cues"} <= set(shallow)
    assert shallow["accuracy"] > 0.9
    assert (tmp_path / "o" / "verdict.txt").read_text().startswith("overall: shallow: separable at")


@pytest.mark.parametrize("case", ["empty", "missing_field", "unknown_spec", "unknown_model", "not_pairs"])
def test_cli_bad_input_exits_2(tmp_path, case):
    good = tmp_path / "good.jsonl"
    _write_jsonl(good, [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "r", "chosen": "c", "rejected": "d"}])
    args = {
        "empty": [str(_write_jsonl(tmp_path / "empty.jsonl", []))],
        "missing_field": [str(_write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "a"}]))],
        "unknown_spec": [str(good), "--features", "words"],
        "unknown_model": [str(good), "--features", "hidden:no-such-model"],
        "not_pairs": ["advbench"],
    }[case]
    result = run_cli("audit", *args, "--out", str(tmp_path / "o"), env={"SAFEPREF_HOME": str(tmp_path / "home")})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert {"empty": "empty", "missing_field": "rejected", "unknown_spec": "words", "unknown_model": "no-such-model",
            "not_pairs": "not pairs"}[case] in result.stderr
    assert not (tmp_path / "o" / "audit.json").exists()


def test_bundled_dataset_names_resolve():
    assert len(resolve_pairs("saferlhf")) == 500
    with pytest.raises(InputError, match="not found"):
        resolve_pairs("no-such-dataset")


@pytest.mark.integration
def test_minilm_embeddings_on_bundled_pairs(tmp_path):
    pairs = resolve_pairs("saferlhf")[:40]
    config = AuditConfig(features=["embed"], folds=5, bootstrap=500, cache_dir=str(tmp_path / "cache"))
    summary = audit_pairs(pairs, config, tmp_path / "out")
    embed = summary["features"]["embed"]
    assert embed["n_features"] == 384
    assert embed["accuracy_ci"][0] <= embed["accuracy"] <= embed["accuracy_ci"][1]
    assert abs(embed["control_accuracy"] - 0.5) < 0.2
    features = compute_features("embed", pairs, config)  # from the cache now: same vectors, unit-normalised by MiniLM
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-3)
    assert (tmp_path / "out" / "projection-embed.png").exists()
