"""What a model loaded in a low precision keeps in float32 (safepref.models.loading applies it)."""

from __future__ import annotations


def float32_head(model) -> None:
    """Give a bfloat16 model a float32 copy of its output projection, so that its logits are exact for its hidden
    states. bfloat16 logits keep 8 bits of mantissa (steps of 0.06-0.125 at SmolLM2's logits of 10-30): near-ties
    round into ties that greedy decoding breaks arbitrarily, and sampling draws from rounded probabilities. On 24
    AdvBench behaviours (SmolLM2's decoder, 48 greedy tokens, with and without this head) it raised the answers
    identical to float32's from 0.42 to 0.54 and their common opening from 29 to 35 tokens, at 1.55x float32's speed
    instead of 1.9x (``benchmarks/bench_bf16.py`` measures the shipped path against float32)."""
    # torch loads in seconds: imported only where used
    import torch

    head = model.get_output_embeddings()
    weight = head.weight.detach().float()
    bias = head.bias.detach().float() if getattr(head, "bias", None) is not None else None

    class Float32Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

        def forward(self, hidden):
            return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)

    model.set_output_embeddings(Float32Head())
