"""The prompt-disjoint train / held-out split of bundled preference pairs that both reward models train and are
evaluated on."""

from __future__ import annotations

import random
from typing import Protocol

from safepref.core.datasets import load_dataset


class SplitConfig(Protocol):
    """The fields of a reward model's config that decide its split (EmbeddingRMConfig and SafetyRMConfig have them)."""

    datasets: list[str]
    eval_datasets: list[str]
    held_out_fraction: float
    seed: int


def preference_split(config: SplitConfig) -> dict[str, tuple[list, list]]:
    """Per dataset: (train pairs, held-out pairs), split by distinct prompt with a seeded shuffle."""

    splits = {}
    for name in dict.fromkeys([*config.datasets, *config.eval_datasets]):
        pairs = load_dataset(name)
        prompts = sorted({p.request_text for p in pairs})
        random.Random(f"{config.seed}|{name}").shuffle(prompts)
        held_out = set(prompts[: round(config.held_out_fraction * len(prompts))])
        splits[name] = ([p for p in pairs if p.request_text not in held_out],
                        [p for p in pairs if p.request_text in held_out])
    return splits
