"""DPO's forward passes on the CPU without padding and without the prompt's logits.

TRL patches the policy (and reference) with a fused LM head that returns per-token log-probabilities. On devices
without Triton it scores *every* position of the padded batch, prompt and padding included, with a chunked kernel
that recomputes the head in its backward pass: on 2 CPU cores that adds about 45% to the backbone's time (SmolLM2-135M,
16 x 100 tokens: backbone 11.6 s forward+backward, TRL's head 5.3 s more, a head on the completion positions only
0.4 s more). A preference batch is also padded to its longest sequence, and chosen and rejected answers of different
sources differ in length (27-31% of a multi-model recipe's tokens were padding in the quick grid).

``install`` wraps TRL's patched forward: when TRL asks for fused log-probabilities, rows are sorted by length and cut
into groups (``length_groups``), each group runs the backbone on its own columns only, and the head is applied to the
positions whose label counts. The outputs have TRL's shapes and fields, so TRL's loss and metrics code reads them
unchanged; the values are the same log-probabilities up to float rounding (``tests/test_train.py`` checks both).
Models whose head rescales or soft-caps logits, and calls with pre-shifted labels, keep TRL's own path.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import warnings
from typing import Any

import torch

# A group costs its padded tokens plus this many tokens' worth of per-call overhead (30 layers of small kernels).
GROUP_OVERHEAD_TOKENS = 32
_RESCALING_FIELDS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


# What this module relies on in TRL's internals (trl.trainer.utils, pinned in pyproject.toml): the output type of
# the fused head and the keyword arguments of the forward that add_fused_lm_head patches.
TRL_OUTPUT_FIELDS = ("loss", "log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")
TRL_FORWARD_KEYWORDS = ("fused_lm_head", "labels", "shift_labels")


def trl_internals_problem() -> str | None:
    """None when the installed TRL still has the internals the compact forward replaces; else what changed."""
    # TRL loads in seconds: imported only where used
    from trl.trainer import utils

    output = getattr(utils, "FusedCausalLMOutput", None)
    if output is None or not hasattr(utils, "add_fused_lm_head"):
        return "trl.trainer.utils no longer has FusedCausalLMOutput / add_fused_lm_head"
    fields = {f.name for f in dataclasses.fields(output)} if dataclasses.is_dataclass(output) else set()
    missing = [name for name in TRL_OUTPUT_FIELDS if name not in fields]
    if missing:
        return f"trl.trainer.utils.FusedCausalLMOutput lost the fields {missing}"
    source = inspect.getsource(utils.add_fused_lm_head)
    absent = [word for word in TRL_FORWARD_KEYWORDS if word not in source]
    if absent:
        return f"trl.trainer.utils.add_fused_lm_head's forward no longer takes {absent}"
    return None


def supported(model) -> bool:
    """True when the model's head is a plain projection (no soft-capping or logit scaling to reproduce)."""
    config = model.config.get_text_config()
    return all(getattr(config, name, None) in (None, 1.0) for name in _RESCALING_FIELDS)


POLICY_OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")  # what TRL's DPO metrics read


def install(model, outputs: tuple[str, ...] = ("log_probs",)) -> bool:
    """Wrap ``model.forward`` (already patched by TRL's ``add_fused_lm_head``) to return ``outputs`` (the fields
    TRL asked its head for; each extra one is a pass over every position's vocabulary); returns whether it did."""
    if not supported(model) or getattr(model, "_safepref_compact_head", False):
        return False
    if (problem := trl_internals_problem()) is not None:  # keep TRL's own (slower, correct) path
        warnings.warn(f"compact DPO head disabled: {problem}", stacklevel=2)
        return False
    trl_forward = model.forward

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, **kwargs):
        if (not fused_lm_head or shift_labels is not None or args or kwargs.get("attention_mask") is None
                or kwargs.get("output_router_logits")):  # MoE: TRL's path adds the load-balancing loss
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels, **kwargs)
        return _compact_forward(self, outputs, labels=labels, **kwargs)

    model.forward = types.MethodType(forward, model)
    model._safepref_compact_head = True
    return True


def length_groups(lengths: list[int], overhead: int = GROUP_OVERHEAD_TOKENS) -> list[list[int]]:
    """Row indices cut into groups (rows sorted by length) minimising padded tokens plus ``overhead`` per group."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cost of the first j sorted rows
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * lengths[order[end - 1]] + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def _compact_forward(model, outputs: tuple[str, ...], *, input_ids, attention_mask, labels, **kwargs) -> Any:
    # TRL loads in seconds: imported only where used
    from trl.trainer.utils import FusedCausalLMOutput

    kwargs.pop("use_cache", None)
    lengths = attention_mask.sum(dim=1).tolist()
    shape = (input_ids.size(0), input_ids.size(1) - 1)
    hidden = None  # every row's hidden states, back in the batch's shape (zeros past each group's width)
    for rows in length_groups(lengths):
        width = max(lengths[i] for i in rows)
        index = torch.tensor(rows, device=input_ids.device)
        group = model.base_model(input_ids=input_ids[index, :width], attention_mask=attention_mask[index, :width],
                                 use_cache=False, **kwargs).last_hidden_state[:, :-1]
        group = torch.nn.functional.pad(group, (0, 0, 0, shape[1] - group.size(1)))
        hidden = (group.new_zeros((*shape, group.size(-1))) if hidden is None else hidden).index_put((index,), group)
    label_mask = labels[:, 1:] != -100  # padding is -100 too, so no position past a row's own length is read
    fields = {name: values.new_zeros(shape).masked_scatter(label_mask, values)
              for name, values in _head(model, hidden[label_mask], labels[:, 1:][label_mask], outputs).items()}
    return FusedCausalLMOutput(loss=-fields["log_probs"].sum() / label_mask.sum().clamp(min=1),
                               log_probs=fields["log_probs"], entropy=fields.get("entropy"),
                               log_sum_sq_probs=fields.get("log_sum_sq_probs"), mean_logits=fields.get("mean_logits"),
                               is_top1=fields["is_top1"].bool() if "is_top1" in fields else None,
                               label_mask=label_mask)


def _head(model, hidden: torch.Tensor, labels: torch.Tensor, outputs: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Per-position log-probability of the label (with gradient) and the metrics fields asked for (without)."""
    logits = model.get_output_embeddings()(hidden).float()
    log_softmax = logits.log_softmax(dim=-1)
    fields = {"log_probs": log_softmax.gather(1, labels[:, None]).squeeze(1)}
    with torch.no_grad():
        if "entropy" in outputs:
            fields["entropy"] = -(log_softmax.exp() * log_softmax).sum(dim=-1)
        if "log_sum_sq_probs" in outputs:
            fields["log_sum_sq_probs"] = torch.logsumexp(2 * log_softmax, dim=-1)
        if "mean_logits" in outputs:
            fields["mean_logits"] = logits.mean(dim=-1)
        if "is_top1" in outputs:
            fields["is_top1"] = (logits.argmax(dim=-1) == labels).to(logits.dtype)  # a bool once assembled
    return fields


class CompactHeads:
    """Trainer mixin: on the CPU, install the compact forward on the policy and the reference model (TRL has patched
    both with its fused head by the time the reference pass and training run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.install_compact_heads()

    def install_compact_heads(self) -> None:
        # peft loads in seconds: imported only where used
        from peft import PeftModel

        if self.accelerator.device.type != "cpu":  # on Triton devices TRL's kernel already scores completions only
            return
        policy = self.accelerator.unwrap_model(self.model)
        policy = policy.get_base_model() if isinstance(policy, PeftModel) else policy
        install(policy, POLICY_OUTPUTS + (("log_sum_sq_probs",) if self.use_weighting else ()))
        if self.ref_model is not None:
            install(self.accelerator.unwrap_model(self.ref_model))
