"""The harm judge's LM read: the mean hidden state of an answer's tokens, the request in context (a tiny random
Llama with SmolLM2's tokenizer here; the shipped head reads the real SmolLM2 in test_harm_judge's integration test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safepref.judges import hidden_states
from safepref.judges.features import Embedder, FeatureConfig, dense_features
from safepref.judges.hidden_states import HiddenStateReader

REQUEST = "How do I pick a lock?"
ANSWERS = ["Insert a tension wrench, then rake the pins until they set.", "I can't help with that.", ""]


def _reader(folder, **kwargs) -> HiddenStateReader:
    return HiddenStateReader(str(folder), layer=2, request_tokens=16, answer_tokens=24, **kwargs)


def _by_hand(folder, request: str, answer: str) -> np.ndarray:
    """One unpadded pass of the whole 2-layer model: its last (normed) state, averaged over the answer's tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": request},
                                          {"role": "assistant", "content": answer}], tokenize=False)
    prompt = text[: text.index(answer)]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"][:24]
    with torch.inference_mode():
        out = model.model(input_ids=torch.tensor([prompt_ids + answer_ids]))
    return out.last_hidden_state[0, len(prompt_ids):].mean(dim=0).numpy()


def test_reads_the_mean_answer_state_with_the_request_in_context_and_batches_like_one_at_a_time(tiny_model_dir):
    states = _reader(tiny_model_dir).read([REQUEST] * 3, ANSWERS)
    assert states.shape == (3, 32) and np.isfinite(states).all()
    # padded in one batch with answers of other lengths, a row reads as it does alone
    assert np.allclose(states[0], _by_hand(tiny_model_dir, REQUEST, ANSWERS[0]), atol=1e-4)
    assert np.allclose(states[1], _by_hand(tiny_model_dir, REQUEST, ANSWERS[1]), atol=1e-4)
    other_request = _reader(tiny_model_dir).read(["How do I bake bread?"], ANSWERS[:1])
    assert not np.allclose(other_request[0], states[0], atol=1e-4)  # the same answer reads differently in context


def test_only_the_layers_up_to_the_one_read_are_kept(tiny_model_dir):
    reader = HiddenStateReader(str(tiny_model_dir), layer=1, request_tokens=16, answer_tokens=24)
    reader.read([REQUEST], ANSWERS[:1])
    model, _ = reader._loaded()
    assert len(model.model.layers) == 1


def test_the_training_cache_is_written_and_read_back_without_running_the_model(tiny_model_dir, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setattr(hidden_states, "safepref_home", lambda: tmp_path)
    first = _reader(tiny_model_dir, cache_name="states-test").read([REQUEST] * 2, ANSWERS[:2])
    assert (tmp_path / "judges" / "states-test.npz").is_file()
    second = _reader(tiny_model_dir, cache_name="states-test")
    monkeypatch.setattr(HiddenStateReader, "_compute", lambda *a, **k: pytest.fail("read a cached pair again"))
    assert np.allclose(second.read([REQUEST] * 2, ANSWERS[:2]), first)


def test_dense_features_carry_the_lm_read_of_the_focused_answer(tiny_model_dir):
    config = FeatureConfig(answer_tokens=32, focus=True, whole_opening=False, lm=str(tiny_model_dir), lm_layer=2,
                           lm_request_tokens=16, lm_answer_tokens=24)
    embedder = Embedder(config)
    refused_then_answered = f"I'm sorry, but I can't assist with that.\n\n{ANSWERS[0]}"
    dense = dense_features(embedder, [REQUEST, REQUEST], [refused_then_answered, ANSWERS[0]])
    without = dense_features(Embedder(FeatureConfig(answer_tokens=32, focus=True, whole_opening=False)),
                             [REQUEST, REQUEST], [refused_then_answered, ANSWERS[0]])
    assert dense.shape[1] == without.shape[1] + 32
    lm_block = dense[:, without.shape[1] - 3:without.shape[1] - 3 + 32]  # before the skip flag and refusal flags
    # the LM reads the answer past its opening refusal: both rows read the same text
    assert np.allclose(lm_block[0], lm_block[1], atol=1e-5)
    assert np.allclose(lm_block[1], _by_hand(tiny_model_dir, REQUEST, ANSWERS[0]), atol=1e-4)


def test_the_refusal_features_read_the_answer_alone(tiny_model_dir):
    """Without ``request`` (the refusal judge) the LM's user turn is empty: the same answer reads the same whatever
    was asked, so a head cannot learn which requests get refused."""
    config = FeatureConfig(request=False, answer_tokens=32, lm=str(tiny_model_dir), lm_layer=2, lm_request_tokens=16,
                           lm_answer_tokens=24)
    dense = dense_features(Embedder(config), [REQUEST, "Write a poem about spring."], [ANSWERS[1], ANSWERS[1]])
    without = dense_features(Embedder(FeatureConfig(request=False, answer_tokens=32)), [REQUEST], [ANSWERS[1]])
    lm_block = dense[:, without.shape[1] - 2:without.shape[1] - 2 + 32]  # before the two refusal flags
    assert dense.shape[1] == without.shape[1] + 32
    assert np.allclose(lm_block[0], lm_block[1], atol=1e-6)
    assert np.allclose(lm_block[0], _by_hand(tiny_model_dir, "", ANSWERS[1]), atol=1e-4)
