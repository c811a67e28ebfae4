"""How an audit runs: folds, controls, bootstrap, risk thresholds, and where its features are computed."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

CONTROL_PAIRS_BUDGET = 1000  # control draws x pairs: 5 draws up to 200 pairs, 2 at 500, 1 from 2,000 on
LENGTH_UNIT = "whitespace-separated words (no tokenizer: the same count for every model)"


@dataclass
class AuditConfig:
    """How to audit a preference dataset for separability."""

    features: list[str] = field(default_factory=lambda: ["shallow", "embed"])
    """Feature sets: ``shallow``, ``embed`` (bundled MiniLM over each answer's first 128 word pieces) or
    ``embed:NAME``, ``hidden:MODEL[:LAYER]`` (layer
    index into the hidden states, 0 = embeddings, negative from the end, last by default), or ``all``
    (shallow, embed and hidden of the default target model)."""
    folds: int = Field(default=5, ge=2)
    """k of the grouped k-fold cross-validation; reduced (with a warning) when there are fewer prompts than k."""
    seed: int = 0
    """Seed of the fold assignment, the control's label swaps and the bootstrap."""
    batch_size: int | None = Field(default=None, ge=1)
    """Responses per forward pass for hidden-state features (embeddings use 4x this); by default 8 on the CPU and
    64 on a GPU, where small batches leave it idle (measured on an H100: scripts/gpu_check.py)."""
    max_length: int = Field(default=1024, ge=16)
    """Longest prompt + response in tokens for hidden-state features; longer ones lose the start of the prompt."""
    control_repeats: int = Field(default=5, ge=1)
    """Most shuffled-label control runs (different label swaps) averaged: one draw alone varies by several points on
    small sets; large sets use fewer (see CONTROL_PAIRS_BUDGET)."""
    bootstrap: int = Field(default=2000, ge=100)
    """Bootstrap resamples of prompts for the confidence intervals."""
    high_risk_margin: float = 0.30
    """Accuracy above the shuffled-label control from which the shortcut risk is called high."""
    moderate_risk_margin: float = 0.15
    """Accuracy above the control from which the shortcut risk is called moderate (below: low)."""
    device: str = "auto"
    """Where hidden-state and embedding models run: auto | cpu | cuda | cuda:N (safepref.core.device)."""
    dtype: str = "auto"
    """Precision of the hidden-state model: auto (the device policy) | float32 | bfloat16 | float16."""
    diagnostics_judge: Literal["fast", "full", "none"] = "fast"
    """Judges of the pair diagnostics (safepref.pairs.diagnostics): fast (the harm and refusal heads without their
    SmolLM2 read), full (with it) or none."""
    diagnostics_pairs: int | None = Field(default=1000, ge=1)
    """Most pairs the diagnostics judge (a seeded sample beyond that; None: every pair)."""
    cache_dir: str | None = None
    """Feature cache folder (default ``$SAFEPREF_HOME/cache/audit``); features are keyed by spec and texts."""
