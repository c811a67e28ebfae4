"""The compact DPO forward (no padding, no prompt logits) gives TRL's fused-head outputs and gradients."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from safepref.training.compact_head import length_groups


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SAFEPREF_HOME, so the reference log-prob cache starts empty."""
    monkeypatch.setenv("SAFEPREF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_length_groups_cover_every_row_once_and_split_only_when_it_pays():
    assert length_groups([50, 50, 50, 50]) == [[0, 1, 2, 3]]
    assert length_groups([10, 200, 12, 190, 11], overhead=32) == [[0, 4, 2], [3, 1]]
    assert length_groups([100, 101], overhead=32) == [[0, 1]]  # one padded token is cheaper than a second call
    lengths = [37, 5, 90, 91, 12, 64, 64, 3]
    groups = length_groups(lengths)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))


def test_compact_forward_equals_trls_fused_head(tiny_model_dir: Path):
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from safepref.models.loading import load_model
    from safepref.training.compact_head import POLICY_OUTPUTS, install

    torch.manual_seed(0)
    lengths = [12, 40, 9, 33, 40, 15]
    width = max(lengths)
    input_ids = torch.randint(5, 500, (len(lengths), width))
    attention_mask = torch.zeros_like(input_ids)
    labels = input_ids.clone()
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
        labels[row, :4] = -100  # the prompt
        labels[row, length:] = -100  # right padding, as TRL's collator pads

    def forward_and_gradient(model):
        model.zero_grad()
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True,
                    use_cache=False)
        out.log_probs.sum().backward()
        return out, model.model.layers[0].mlp.up_proj.weight.grad.clone()

    trl_model, ours = load_model(tiny_model_dir), load_model(tiny_model_dir)
    for model in (trl_model, ours):
        model.train()
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    assert install(ours, POLICY_OUTPUTS) and not install(ours)  # installs once
    expected, expected_grad = forward_and_gradient(trl_model)
    got, grad = forward_and_gradient(ours)
    for name in ("log_probs", "entropy", "mean_logits"):
        assert torch.allclose(getattr(got, name), getattr(expected, name), atol=1e-4), name
    assert got.log_probs[labels[:, 1:] == -100].abs().max() == 0
    assert torch.equal(got.is_top1, expected.is_top1) and got.is_top1.dtype == torch.bool
    assert torch.allclose(got.loss, expected.loss, atol=1e-5)
    assert torch.allclose(grad, expected_grad, rtol=1e-3, atol=1e-6)
    plain = model(input_ids=input_ids, attention_mask=attention_mask)  # without fused_lm_head: the model's own forward
    assert plain.logits.shape == (*input_ids.shape, model.config.vocab_size)


def test_trainer_installs_it_on_policy_and_reference_on_the_cpu(tiny_model_dir: Path, tmp_path: Path, home: Path):
    from datasets import Dataset
    from trl import DPOConfig

    from safepref.models.loading import load_model, load_tokenizer
    from safepref.training.dpo import make_trainer, weights_hash

    rows = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
             "chosen": [{"role": "assistant", "content": "A long and careful answer. " * (i + 1)}],
             "rejected": [{"role": "assistant", "content": "No."}]} for i in range(4)]
    policy = load_model(tiny_model_dir)
    trainer = make_trainer(weights_hash(policy), model=policy, ref_model=load_model(tiny_model_dir),
                           processing_class=load_tokenizer(tiny_model_dir), train_dataset=Dataset.from_list(rows),
                           args=DPOConfig(output_dir=str(tmp_path / "out"), bf16=False, use_cpu=True, report_to="none",
                                          precompute_ref_log_probs=False, max_length=64,
                                          per_device_train_batch_size=2, max_steps=1))
    assert trainer.model._safepref_compact_head and trainer.ref_model._safepref_compact_head
    result = trainer.train()
    assert math.isfinite(result.training_loss) and result.global_step == 1


def test_the_pinned_trl_still_has_the_internals_the_compact_head_replaces():
    """The compact forward stands in for TRL's fused head (trl.trainer.utils); a TRL upgrade that changes it must
    fail here, by name, rather than silently train through TRL's slower path or crash mid-run."""
    from safepref.training.compact_head import trl_internals_problem

    problem = trl_internals_problem()
    assert problem is None, f"the pinned TRL changed what safepref.training.compact_head relies on: {problem}"


def test_a_changed_trl_output_is_reported_by_name(monkeypatch):
    import dataclasses

    from trl.trainer import utils

    from safepref.training.compact_head import trl_internals_problem

    @dataclasses.dataclass
    class Narrower:
        loss: float = 0.0

    monkeypatch.setattr(utils, "FusedCausalLMOutput", Narrower)
    assert "log_probs" in trl_internals_problem()
