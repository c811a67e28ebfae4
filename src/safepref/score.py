"""Score responses with a reward model: one :class:`Score` per (response, reward model), resumable.

``score_responses(responses, reward_model, out_path, config)`` appends scores to an :class:`AppendLog` keyed by
response id + reward model, so an interrupted run resumes where it stopped and a second reward model's scores can
share the file. Returns the scores of the given responses under that reward model, in input order.
"""

from __future__ import annotations

from pathlib import Path

from pydantic.dataclasses import dataclass

from safepref.io import AppendLog
from safepref.progress import progress_bar
from safepref.records import Response, Score
from safepref.reward_model import DEFAULT_REWARD_MODEL, RewardModel, load_reward_model


@dataclass
class ScoreConfig:
    """How responses are fed to the reward model."""

    batch_size: int = 16  # responses scored (and appended to the log) at a time
    max_length: int = 512  # tokens of prompt + response a HF reward model sees (longer inputs are truncated)


def score_key(row: dict) -> str:
    return f"{row['response_id']}|{row['reward_model']}"


def score_responses(responses: list[Response], reward_model: str | RewardModel = DEFAULT_REWARD_MODEL,
                    out_path: str | Path = "scores.jsonl", config: ScoreConfig | None = None) -> list[Score]:
    config = config or ScoreConfig()
    log = AppendLog(out_path, key_of=score_key)
    model = reward_model
    name = reward_model if isinstance(reward_model, str) else reward_model.name
    if isinstance(reward_model, str):
        label = _label(reward_model)
        todo = [r for r in _unique(responses) if f"{r.id}|{label}" not in log.done]
        if todo:  # loading a reward model costs seconds: skip it when everything is already scored
            model = load_reward_model(reward_model, batch_size=config.batch_size, max_length=config.max_length)
        name = label
    else:
        todo = [r for r in _unique(responses) if f"{r.id}|{name}" not in log.done]
    bar = progress_bar(total=len(todo), desc=f"scoring with {name}", unit="resp")
    for start in range(0, len(todo), config.batch_size):
        batch = todo[start:start + config.batch_size]
        values = model.score([r.prompt for r in batch], [r.text for r in batch])
        log.append([Score(response_id=r.id, reward_model=name, score=float(v)) for r, v in zip(batch, values, strict=True)])
        bar.update(len(batch))
    bar.close()
    wanted = {r.id for r in responses}
    by_id = {row["response_id"]: Score.model_validate(row) for row in log.rows()
             if row["reward_model"] == name and row["response_id"] in wanted}
    return [by_id[r.id] for r in _unique(responses)]


def _unique(responses: list[Response]) -> list[Response]:
    seen: dict[str, Response] = {}
    for response in responses:
        seen.setdefault(response.id, response)
    return list(seen.values())


def _label(reward_model: str) -> str:
    """The name scores carry: the registry name, or the model folder's name / hub id."""
    from safepref.models import model_label
    from safepref.reward_model import REGISTRY_REWARD_MODELS

    return reward_model if reward_model in REGISTRY_REWARD_MODELS else model_label(reward_model)
