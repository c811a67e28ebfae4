"""The decoder's two shortcuts against what they replace: the growing KV cache against concatenation, and
sampling on the top k tokens against transformers' warpers on the full vocabulary."""

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from safepref.generation.decode import SPARE_COLUMNS, GrowingLayer, SamplingSettings, top_k_top_p


def settings(**overrides) -> SamplingSettings:
    values = dict(max_new_tokens=8, greedy=False, temperature=0.5, top_k=50, top_p=0.9, repetition_penalty=1.0,
                  no_repeat_ngram_size=0)
    return SamplingSettings(**{**values, **overrides})


@pytest.mark.parametrize("overrides", [{}, {"top_p": 1.0}, {"temperature": 1.0}, {"top_k": 5, "top_p": 0.5},
                                       {"top_k": 1}])
def test_top_k_top_p_gives_transformers_distribution(overrides):
    config = settings(**overrides)
    generator = torch.Generator().manual_seed(0)
    # peaked rows (a few tokens hold most mass, as a language model's are) and a flat one
    scores = torch.randn(6, 1000, generator=generator) * torch.tensor([[8.0], [4.0], [2.0], [1.0], [0.5], [0.1]])
    warpers = LogitsProcessorList([TemperatureLogitsWarper(config.temperature)] if config.temperature != 1 else [])
    warpers.append(TopKLogitsWarper(config.top_k))
    if config.top_p < 1:
        warpers.append(TopPLogitsWarper(config.top_p))
    expected = warpers(torch.zeros(6, 1, dtype=torch.long), scores.clone()).softmax(dim=-1)

    values, candidates = top_k_top_p(scores.clone(), config)
    got = torch.zeros_like(expected).scatter_(1, candidates, values.softmax(dim=-1))
    assert values.shape == (6, min(config.top_k, 1000))
    torch.testing.assert_close(got, expected)
    assert (got > 0).sum(dim=1).tolist() == (expected > 0).sum(dim=1).tolist()


def test_growing_layer_reads_as_concatenation_and_survives_reassignment():
    layer = GrowingLayer()
    generator = torch.Generator().manual_seed(1)
    columns = [torch.randn(3, 2, n, 4, generator=generator) for n in (5, *([1] * (SPARE_COLUMNS + 3)))]
    for column in columns:  # the prefill, then more single steps than the spare room holds
        keys, values = layer.update(column, -column)
    expected = torch.cat(columns, dim=-2)
    torch.testing.assert_close(keys, expected)
    torch.testing.assert_close(values, -expected)
    assert layer.get_seq_length() == 5 + SPARE_COLUMNS + 3

    # rows leave and leading columns are dropped (as the decoder does), then steps go on
    index = torch.tensor([0, 2])
    layer.keys = layer.keys.index_select(0, index)[:, :, 2:]
    layer.values = layer.values.index_select(0, index)[:, :, 2:]
    step = torch.randn(2, 2, 1, 4, generator=generator)
    keys, values = layer.update(step, -step)
    torch.testing.assert_close(keys, torch.cat([expected[index][:, :, 2:], step], dim=-2))
    torch.testing.assert_close(values, -torch.cat([expected[index][:, :, 2:], step], dim=-2))
