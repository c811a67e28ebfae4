"""Score responses with a reward model: one :class:`Score` per (reward model weights, prompt, answer), resumable.

``score_responses(responses, reward_model, out_path, config)`` appends scores to an :class:`AppendLog` keyed by
the content the score is a function of: a fingerprint of the reward model's weights, the prompt text and the answer
text (``safepref.core.keys.score_content_key``). New answers under an old response id (after a change of decoding
settings) or retrained reward-model weights therefore get new scores, never the old ones; an interrupted run
resumes where it stopped and several reward models share one file. Returns the scores of the given responses, in
input order (one per distinct response id).
"""

from __future__ import annotations

from pathlib import Path

from pydantic.dataclasses import dataclass

from safepref.core.io import AppendLog
from safepref.core.keys import score_content_key
from safepref.core.progress import progress_bar
from safepref.core.records import Response, Score
from safepref.models.loading import EMBEDDING_MODEL, model_label, weights_fingerprint
from safepref.scoring.reward_model import (
    DEFAULT_REWARD_MODEL,
    EMBEDDING_RM,
    REGISTRY_REWARD_MODELS,
    REWARD_MODELS_DIR,
    RewardModel,
    load_reward_model,
)


@dataclass
class ScoreConfig:
    """How responses are fed to the reward model."""

    batch_size: int = 16  # responses scored (and appended to the log) at a time
    max_length: int = 512  # tokens of prompt + response a HF reward model sees (longer inputs are truncated)
    device: str = "auto"  # where the reward model runs (safepref.core.device); a score does not depend on it
    dtype: str = "auto"  # precision of a HF reward model (the device policy unless given)


def score_key(row: dict) -> str:
    """A score row's log key: its content key (rows written before content keys keep their old, unmatched key)."""
    return row.get("key") or f"legacy|{row['response_id']}|{row['reward_model']}"


def score_responses(responses: list[Response], reward_model: str | RewardModel = DEFAULT_REWARD_MODEL,
                    out_path: str | Path = "scores.jsonl", config: ScoreConfig | None = None) -> list[Score]:
    config = config or ScoreConfig()
    log = AppendLog(out_path, key_of=score_key)
    if isinstance(reward_model, str):
        model, name, weights = None, _label(reward_model), reward_model_fingerprint(reward_model)
    else:
        model, name = reward_model, reward_model.name
        weights = getattr(reward_model, "fingerprint", None) or f"name:{name}"
    unique = _unique(responses)
    key_of = {r.id: score_content_key(weights, r.prompt, r.text) for r in unique}
    todo = list({key_of[r.id]: r for r in unique if key_of[r.id] not in log.done}.values())
    if todo and model is None:  # loading a reward model costs seconds: skip it when everything is already scored
        model = load_reward_model(reward_model, batch_size=config.batch_size, max_length=config.max_length,
                                  device=config.device, dtype=config.dtype)
    bar = progress_bar(total=len(todo), desc=f"scoring with {name}", unit="resp")
    for start in range(0, len(todo), config.batch_size):
        batch = todo[start:start + config.batch_size]
        values = model.score([r.prompt for r in batch], [r.text for r in batch])
        log.append([Score(response_id=r.id, reward_model=name, score=float(v), key=key_of[r.id])
                    for r, v in zip(batch, values, strict=True)])
        bar.update(len(batch))
    bar.close()
    wanted = set(key_of.values())
    by_key = {row["key"]: float(row["score"]) for row in log.rows() if row.get("key") in wanted}
    return [Score(response_id=r.id, reward_model=name, score=by_key[key_of[r.id]], key=key_of[r.id]) for r in unique]


def reward_model_fingerprint(reward_model: str) -> str:
    """Identity of a reward model's weights: the head file and the embedder for minilm-bt (or a ``.safetensors``
    head), otherwise the model's weights fingerprint (folder content, hub revision)."""

    head = REWARD_MODELS_DIR / f"{EMBEDDING_RM}.safetensors" if reward_model == EMBEDDING_RM else Path(reward_model)
    if reward_model == EMBEDDING_RM or (head.suffix == ".safetensors" and head.is_file()):
        return f"head:{weights_fingerprint(head)}+{weights_fingerprint(EMBEDDING_MODEL)}"
    return weights_fingerprint(reward_model)


def _unique(responses: list[Response]) -> list[Response]:
    seen: dict[str, Response] = {}
    for response in responses:
        seen.setdefault(response.id, response)
    return list(seen.values())


def _label(reward_model: str) -> str:
    """The name scores carry: the registry name, or the model folder's name / hub id."""

    return reward_model if reward_model in REGISTRY_REWARD_MODELS else model_label(reward_model)
