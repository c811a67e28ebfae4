"""Build preference pairs from cached responses (and reward-model scores) by a recipe.

``build_pairs(recipe, responses, scores, target, config)`` resolves the recipe's source aliases for this target,
groups the responses by prompt, picks one chosen and one rejected answer per prompt (or per dataset row, for
``pairing: by_sample_index``), and returns :class:`Pair` records in TRL's conversational format with the
provenance of each side. Nothing is generated here: every answer comes from the given responses.

Empty answers are no candidates while a pool has another; pairs whose two sides have the same text, or an empty
side, are dropped; prompts lacking a needed source are skipped; both are counted in :class:`BuildSummary`. Output
order follows the first appearance of each prompt in the inputs and random picks are seeded per prompt, so the same
inputs and seed give the same pairs.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic.dataclasses import dataclass

from safepref.core import datasets
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint, read_pairs, read_records, write_json_atomic, write_jsonl_atomic
from safepref.core.keys import prompt_set_key, stage_key
from safepref.core.records import Message, Pair, Response, Score, Side
from safepref.models.loading import DEFAULT_TARGET, STRONGER_MODEL
from safepref.pairs.recipes import Recipe, SideSpec

HUMAN_CHOSEN = "human-chosen"
HUMAN_REJECTED = "human-rejected"
GPT4O = "gpt4o"


@dataclass
class BuildConfig:
    """How recipe aliases resolve and how random picks are seeded."""

    stronger: str = STRONGER_MODEL  # the source that the alias `stronger` names
    peers: list[str] = Field(default_factory=lambda: ["gemma3-270m"])  # the sources that `peers` names
    seed: int = 0  # seeds `select: random` (per prompt and side, so order does not matter)
    reward_model: str | None = None  # which reward model's scores to use; None = the only one in the scores


class BuildSummary(BaseModel):
    """Counts of one build, written next to the pairs as ``<out>.summary.json``."""

    recipe: str
    target: str
    pairs: int = 0
    prompts: int = 0
    dropped_identical: int = 0  # chosen text == rejected text
    dropped_empty: int = 0  # a side with empty text
    skipped_missing_source: int = 0  # prompts (or rows) where a side had no candidate
    missing_by_side: dict[str, int] = Field(default_factory=dict)
    reward_model: str | None = None
    seed: int = 0
    diagnostics: dict | None = None  # safepref.pairs.diagnostics: harmful / refusal share and length of each side


def resolve_sources(spec: SideSpec, target: str, config: BuildConfig) -> list[str] | None:
    """The literal sources one side draws from, or None for `all` (every source)."""
    resolved: list[str] = []
    for name in spec.sources:
        if name == "all":
            return None
        resolved.extend({
            "self": [target], "self_greedy": [target], "self_samples": [target], "stronger": [config.stronger],
            "peers": list(config.peers), "gpt4o": [GPT4O], "human_chosen": [HUMAN_CHOSEN],
            "human_rejected": [HUMAN_REJECTED],
        }.get(name, [name]))
    return resolved


def _candidates(spec: SideSpec, responses: list[Response], target: str, config: BuildConfig) -> list[Response]:
    sources = resolve_sources(spec, target, config)
    out = []
    for response in responses:
        if sources is not None and response.source not in sources:
            continue
        if response.source == target and "self_greedy" in spec.sources and "self" not in spec.sources \
                and "self_samples" not in spec.sources and response.sample_index != -1:
            continue
        if response.source == target and "self_samples" in spec.sources and "self" not in spec.sources \
                and "self_greedy" not in spec.sources and response.sample_index < 0:
            continue
        out.append(response)
    return out


def _pick(spec: SideSpec, candidates: list[Response], scores: dict[str, float], rng: random.Random) -> Response:
    if spec.select == "first":
        return candidates[0]
    if spec.select == "random":
        return rng.choice(candidates)
    missing = [r.id for r in candidates if r.id not in scores]
    if missing:
        raise InputError(f"no reward-model score for response '{missing[0]}' (score it with `safepref score`)",
                         field="scores")
    pick = max if spec.select == "best" else min
    return pick(candidates, key=lambda r: scores[r.id])  # ties: the first in (sample_index, source) order


def _answered(candidates: list[Response]) -> list[Response]:
    """The candidates that say something, or all of them when none does. An empty answer is a failed generation, not
    a preference: as the worst of a pool it dropped the prompt from every ranked recipe (Gemma-3-270M left one of its
    8 samples empty on 9 of 60 SafeRLHF prompts)."""
    return [r for r in candidates if r.text.strip()] or candidates


def _side(response: Response, scores: dict[str, float]) -> Side:
    return Side(source=response.source, sample_index=response.sample_index, score=scores.get(response.id))


def build_pairs(recipe: Recipe, responses: list[Response], scores: list[Score] | None, target: str = DEFAULT_TARGET,
                config: BuildConfig | None = None, summary: BuildSummary | None = None) -> list[Pair]:
    """Pairs for ``target`` by ``recipe`` from cached ``responses`` (and ``scores`` for RM recipes).

    ``summary``, when given, is filled with the drop/skip counts.
    """
    config = config or BuildConfig()
    summary = summary if summary is not None else BuildSummary(recipe=recipe.name, target=target)
    summary.seed = config.seed
    score_of = _score_table(scores or [], config.reward_model, summary) if recipe.needs_scores else {}
    _check_sources_present(recipe, responses, target, config)

    by_prompt: dict[str, list[Response]] = {}
    for response in responses:
        by_prompt.setdefault(response.prompt_id, []).append(response)

    pairs: list[Pair] = []
    missing: Counter[str] = Counter()
    for prompt_id, answers in by_prompt.items():
        answers = sorted(answers, key=lambda r: (r.sample_index, r.source))
        chosen_pool = _candidates(recipe.chosen, answers, target, config)
        rejected_pool = _candidates(recipe.rejected, answers, target, config)
        if recipe.pairing == "by_sample_index":
            indices = sorted({r.sample_index for r in chosen_pool} | {r.sample_index for r in rejected_pool})
            groups = [(f"{prompt_id}|{i}", [r for r in chosen_pool if r.sample_index == i],
                       [r for r in rejected_pool if r.sample_index == i]) for i in indices]
        else:
            groups = [(prompt_id, chosen_pool, rejected_pool)]
        summary.prompts += 1
        for key, chosen_candidates, rejected_candidates in groups:
            if not chosen_candidates or not rejected_candidates:
                summary.skipped_missing_source += 1
                missing["chosen" if not chosen_candidates else "rejected"] += 1
                continue
            chosen_candidates, rejected_candidates = _answered(chosen_candidates), _answered(rejected_candidates)
            rng = random.Random(f"{config.seed}|{recipe.name}|{key}")
            chosen = _pick(recipe.chosen, chosen_candidates, score_of, rng)
            # never pick the very answer chosen picked, when the rejected side has another candidate
            others = [r for r in rejected_candidates if r.id != chosen.id] or rejected_candidates
            rejected = _pick(recipe.rejected, others, score_of, rng)
            if not chosen.text.strip() or not rejected.text.strip():
                summary.dropped_empty += 1
                continue
            if chosen.text.strip() == rejected.text.strip():
                summary.dropped_identical += 1
                continue
            pairs.append(Pair(
                id=f"{recipe.name}|{key}",
                prompt=[Message(role="user", content=chosen.prompt)],
                chosen=[Message(role="assistant", content=chosen.text)],
                rejected=[Message(role="assistant", content=rejected.text)],
                recipe=recipe.name,
                chosen_from=_side(chosen, score_of),
                rejected_from=_side(rejected, score_of),
            ))
    summary.pairs = len(pairs)
    summary.missing_by_side = dict(sorted(missing.items()))
    return pairs


def _score_table(scores: list[Score], reward_model: str | None, summary: BuildSummary) -> dict[str, float]:
    if not scores:
        raise InputError("this recipe ranks answers by a reward model: pass --scores (from `safepref score`)",
                         field="scores")
    models = sorted({s.reward_model for s in scores})
    if reward_model is None:
        if len(models) > 1:
            raise InputError(f"scores come from several reward models ({', '.join(models)}): pick one with "
                             "--reward-model", field="scores")
        reward_model = models[0]
    elif reward_model not in models:
        raise InputError(f"no scores from reward model '{reward_model}' (found: {', '.join(models)})", field="scores")
    summary.reward_model = reward_model
    return {s.response_id: s.score for s in scores if s.reward_model == reward_model}


def _check_sources_present(recipe: Recipe, responses: list[Response], target: str, config: BuildConfig) -> None:
    """A side whose sources match no answer at all is a mistake (a typo, or a file not passed), not a skip."""
    present = sorted({r.source for r in responses})
    for side_name, spec in (("chosen", recipe.chosen), ("rejected", recipe.rejected)):
        sources = resolve_sources(spec, target, config)
        if sources is not None and not _candidates(spec, responses, target, config):
            raise InputError(f"recipe '{recipe.name}': no response from {side_name} source(s) {spec.sources} "
                             f"(resolved to {sources}; sources in the inputs: {', '.join(present) or 'none'})")


def read_responses(paths: list[str | Path]) -> list[Response]:
    """Responses from one or more JSONL files; an id seen twice must carry the same text."""
    seen: dict[str, Response] = {}
    for path in paths:
        for response in read_records(path, Response):
            previous = seen.get(response.id)
            if previous is not None and previous.text != response.text:
                raise InputError(f"response '{response.id}' appears twice with different text", path=path)
            seen.setdefault(response.id, response)
    return list(seen.values())


def write_pairs(pairs: list[Pair], out: str | Path, summary: BuildSummary, inputs: list[str | Path]) -> Path:
    """The pairs JSONL plus ``<out>.summary.json`` (counts, config, input fingerprints)."""
    out = Path(out)
    write_jsonl_atomic(out, pairs)
    write_json_atomic(summary_path(out), {**summary.model_dump(),
                                          "inputs": {str(p): file_fingerprint(p) for p in inputs}})
    return out


def summary_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".summary.json")


def build_key(recipe: Recipe, responses: list[Response], scores: list[Score] | None, config: BuildConfig) -> str:
    """The pairs' content key: the recipe, every answer it may draw from, the scores that rank them (when the recipe
    ranks), and the build settings."""
    used = {r.id for r in responses}
    ranked_by = sorted([s.response_id, s.reward_model, s.score, s.key] for s in (scores or [])
                       if s.response_id in used) if recipe.needs_scores else None
    return stage_key("build", recipe.model_dump(), sorted([r.id, r.prompt, r.text] for r in responses),
                     ranked_by, config.seed, config.stronger, config.peers)


def pairs_data(pairs_path: Path) -> dict[str, Any]:
    """What a configuration trains on: number of pairs, of distinct prompts, and a hash of the prompt ids."""
    pairs = read_pairs(pairs_path)
    ids = {datasets.prompt_id(pair.prompt_text) for pair in pairs}
    return {"n_pairs": len(pairs), "n_prompts": len(ids), "prompt_set": prompt_set_key(ids)}
