"""Content keys: every artifact is named by a hash of what it was computed from, never by names or positions.

Following HF ``datasets``' fingerprints: a key is computed from the inputs before any work (texts, settings with
the stage's version, a weights fingerprint, upstream keys), so a changed input can never reach an old result.
Only content goes in: a model's name, a file's path or a row's position is a label, not part of a key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

# Bumped when a stage changes what it computes from the same inputs, so old artifacts stop matching.
# build 2: an empty answer is no candidate while its pool has another (safepref.pairs.build)
STAGE_VERSIONS = {"generate": 1, "score": 1, "build": 2, "eval_safety": 1, "train": 1,
                  "debias": 1, "eval_benign": 1,
                  # the answer measures inside the benign stage (safepref.evaluation.answer_quality; 2: repetition): bumping
                  # it recomputes the measures, not the benign answers, which keep the eval_benign key
                  "answer_quality": 2}


def _canonical(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_canonical(v) for v in value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot key on a {type(value).__name__}: pass its content (text, numbers, a fingerprint)")


def content_key(*parts: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``parts``; refuses values that have no canonical form (no ``str()`` guess)."""
    canonical = json.dumps(_canonical(list(parts)), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


def stage_key(stage: str, *parts: Any, length: int = 16) -> str:
    """A stage's artifact key: the stage name and version, then its inputs' content."""
    return content_key(stage, STAGE_VERSIONS[stage], *parts, length=length)


def prompt_set_key(prompt_ids: Iterable[str]) -> str:
    """Identity of a set of prompts (order and repeats do not matter): 12 hex digits, shown in manifests."""
    return content_key(sorted(set(prompt_ids)), length=12)


def score_content_key(reward_model_fingerprint: str, prompt: str, answer: str) -> str:
    """A reward score is a function of the reward model's weights, the prompt text and the answer text only."""
    return stage_key("score", reward_model_fingerprint, prompt, answer, length=24)
