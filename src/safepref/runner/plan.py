"""What a grid will compute, known before any work: each stage's settings, the answer sets each recipe draws on,
and each configuration's key (what a bundle's evidence is compared by before anything is trained or generated).

Pure functions of the experiment config, a target and the prompt set; the runner (:mod:`safepref.runner.run`) does
the work they describe.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from safepref.core.keys import STAGE_VERSIONS, content_key
from safepref.core.paths import slug
from safepref.evaluation.benign import BenignEvalConfig
from safepref.evaluation.general import GeneralEvalConfig, make_config
from safepref.evaluation.safety import SafetyEvalConfig
from safepref.generation.generate import FIXED_SOURCES, GenerationConfig, answer_identity, generate_key
from safepref.models import loading as models
from safepref.pairs.recipes import load_recipe
from safepref.report.analysis import configuration_label
from safepref.runner.config import SFT, ExperimentConfig, TargetSpec
from safepref.training.dpo import DPOTrainingConfig, mixed_precision, training_record

# the recipe aliases that draw on each fixed answer set (only the sets a target's recipes use are written)
FIXED_SOURCE_ALIASES = {"gpt4o": {"gpt4o", "all"}, "human-chosen": {"human_chosen", "all"},
                        "human-rejected": {"human_rejected", "all"}}


# ---------------------------------------------------------------------------------------------- stage settings


def safety_config(config: ExperimentConfig, suite: str) -> SafetyEvalConfig:
    spec = config.safety
    return SafetyEvalConfig(suite=suite, attacks=spec.attacks_for(suite), judges=spec.judges, limit=spec.limit_for(suite),
                            max_new_tokens=spec.max_new_tokens, seed=config.seed, judge_model=spec.judge_model,
                            backend=config.generation.backend, device=config.device, dtype=config.dtype)


def benign_config(config: ExperimentConfig, target: TargetSpec) -> BenignEvalConfig:
    spec = config.benign
    return BenignEvalConfig(pools=spec.pools, limit=spec.limit, reference=target.model,
                            max_new_tokens=spec.max_new_tokens or config.safety.max_new_tokens,
                            reward_model=config.reward_model, device=config.device, dtype=config.dtype)


def general_config(config: ExperimentConfig) -> GeneralEvalConfig:
    spec = config.general
    return make_config(tasks=tuple(spec.tasks), limit=spec.limit, num_fewshot=spec.num_fewshot,
                       batch_size=spec.batch_size, seed=config.seed)


def debias_settings(config: ExperimentConfig, target: TargetSpec, recipe) -> dict[str, Any]:
    settings = {"max_new_tokens": config.generation.max_new_tokens, **recipe.debias.settings(),
                "target": target.model, "seed": config.seed}
    if config.generation.batch_size:
        settings["batch_size"] = config.generation.batch_size
    return settings


# ---------------------------------------------------------------------------------------------- answer sets


def sources_needed(config: ExperimentConfig, target: TargetSpec, recipes: list[str] | None = None) -> set[str]:
    """Source aliases that the recipes (default: the target's) draw from (only these are generated)."""
    needed: set[str] = set()
    for name in config.recipes_for(target) if recipes is None else recipes:
        if name != SFT:
            recipe = load_recipe(name)
            needed |= set(recipe.chosen.sources) | set(recipe.rejected.sources)
    return needed


def generation_jobs(config: ExperimentConfig, target: TargetSpec, prompts, needed: set[str],
                    responses_dir: Path) -> list[dict[str, Any]]:
    """Every answer set that the source aliases ``needed`` draw on: its label, decoding settings (None for a fixed
    answer set), content key and file in ``responses_dir``."""
    g = config.generation
    base = dict(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                repetition_penalty=g.repetition_penalty, no_repeat_ngram_size=g.no_repeat_ngram_size,
                seed=config.seed, num_samples=g.samples, backend=g.backend, engine=g.engine,
                device=config.device, dtype=config.dtype)
    if g.batch_size:
        base["batch_size"] = g.batch_size
    asked: list[tuple[str, bool]] = []  # (source, greedy)
    if needed & {"self", "self_samples", "all"}:
        asked.append((target.model, False))
    if needed & {"self", "self_greedy", "all"}:
        asked.append((target.model, True))
    if target.stronger and needed & {"stronger", "all"}:
        asked.append((target.stronger, True))
    if needed & {"peers", "all"}:
        asked += [(peer, False) for peer in target.peers]  # k samples each: a pool to rank even with one peer
    jobs = []
    for source in FIXED_SOURCES:
        if needed & FIXED_SOURCE_ALIASES[source]:  # answers for the configured prompts only, in their own file
            key = generate_key(source, prompts)
            jobs.append({"label": f"generate {source}", "source": source, "config": None, "key": key,
                         "path": responses_dir / f"{source}-{key}.jsonl"})
    for source, greedy in asked:
        generation = GenerationConfig(greedy=greedy, **base)
        mode = "greedy" if greedy else f"k{g.samples}"
        key = generate_key(answer_identity(source, generation), prompts)
        jobs.append({"label": f"generate {models.model_label(source)} {mode}", "source": source,
                     "config": generation, "key": key,
                     "path": responses_dir / f"{slug(models.model_label(source))}-{mode}-{key}.jsonl"})
    return jobs


# ---------------------------------------------------------------------------------------------- configuration keys


def evaluation_settings(config: ExperimentConfig, target: TargetSpec) -> dict[str, Any]:
    """Every evaluation setting a configuration's evidence depends on. Not the judges: stored answers are judged
    again (``safepref rejudge``), never generated again, when a judge changes or is added."""
    safety = [{k: v for k, v in safety_config(config, suite).key_dump().items()
               if k not in ("judges", "judge_model", "base_url")} for suite in config.safety.suites]
    return {"safety": safety,
            "benign": benign_config(config, target).key_dump() if config.benign else None,
            "general": asdict(general_config(config)) if config.general else None}


def configuration_inputs(config: ExperimentConfig, target: TargetSpec, recipe: str, prompts) -> dict[str, Any]:
    """What a configuration's evidence is computed from: the target's weights, the seed, the evaluation settings
    and the stages' versions; for a trained configuration also what its pairs are built from (the recipe, the
    content keys of the answer sets it draws on, the reward model's weights, the build settings), the debias step
    and every training setting."""
    inputs: dict[str, Any] = {"target": models.weights_fingerprint(target.model), "seed": config.seed,
                              "evaluation": evaluation_settings(config, target), "stage_versions": dict(STAGE_VERSIONS),
                              # the precision the target answers in (the answering stages' keys hold it too)
                              "answers_dtype": models.dtype_name_for(target.model, config.device, config.dtype,
                                                                     workload="generation")}
    if recipe == SFT:
        return inputs
    variant = load_recipe(recipe)
    base = load_recipe(variant.base) if variant.base else variant
    # where the answers would be written is no input: only their content keys are
    jobs = generation_jobs(config, target, prompts, sources_needed(config, target, [recipe]), Path("."))
    inputs["pairs"] = {
        "recipe": base.model_dump(mode="json"), "answers": {job["label"]: job["key"] for job in jobs},
        "samples": config.generation.samples,
        "reward_model": models.weights_fingerprint(config.reward_model) if base.needs_scores else None,
        "build": {"stronger": target.stronger or models.STRONGER_MODEL, "peers": list(target.peers)}}
    if variant.debias:
        inputs["debias"] = debias_settings(config, target, variant)
    training = DPOTrainingConfig(**{**config.training_for(target), **variant.training})
    inputs["training"] = training_record(training)
    inputs["training_seeds"] = config.training_seeds()
    inputs["mixed_precision"] = mixed_precision(training, config.device, config.dtype)
    if config.audit:
        inputs["audit"] = config.audit.model_dump(mode="json")
    return inputs


def configuration_key(config: ExperimentConfig, target: TargetSpec, recipe: str, prompts) -> str:
    """The key a bundle holds a configuration's evidence under: a resumed run skips it when the keys are equal."""
    return content_key("configuration", configuration_inputs(config, target, recipe, prompts))


def evaluated(config: ExperimentConfig, recipe: str, entry: dict[str, Any]) -> bool:
    """Whether a run manifest entry names every stage output the config asks of this configuration."""
    needed = ["safety", *(["benign"] if config.benign else []), *(["general"] if config.general else [])]
    if recipe != SFT:
        needed += ["pairs", "training", *(["audit"] if config.audit else [])]
    return all(entry.get(stage) for stage in needed)


def display_name(config: ExperimentConfig, target: TargetSpec, recipe: str, seed: int) -> str:
    """How progress bars and log lines name a trained configuration: ``Self+RM, seed 1`` (its recipe's label and
    seed, never its key), with the target's name in front when the grid has several."""
    name = f"{configuration_label(recipe)}, seed {seed}"
    return f"{models.model_label(target.model)} {name}" if len(config.targets) > 1 else name
