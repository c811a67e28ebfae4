"""The experiment grid's YAML: its schema (``ExperimentConfig`` and one ``...Spec`` per section) and its loader,
which checks every training setting a target or recipe will use before anything runs. Unknown keys anywhere are
errors naming the key. The runner (:mod:`safepref.runner.run`) walks the grid it describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from safepref.core.errors import input_error_from
from safepref.core.io import read_yaml_record
from safepref.models import loading as models
from safepref.pairs.recipes import load_recipe
from safepref.training.dpo import DPOTrainingConfig
from safepref.training.launch import LaunchSettings, split_training

SFT = "sft"  # the configuration without DPO: the target as it is


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetSpec(_Strict):
    model: str = Field(description="the model DPO trains: registry name, HF id or folder")
    stronger: str | None = Field(models.STRONGER_MODEL, description="source of the `stronger` alias")
    peers: list[str] = Field(default_factory=lambda: ["gemma3-270m"], description="sources of the `peers` alias")
    recipes: list[str] | None = Field(None, description="configurations for this target (default: the top-level list)")
    training: dict[str, Any] = Field(default_factory=dict,
                                     description="DPOTrainingConfig fields for this target, over the top-level ones")


class PromptSpec(_Strict):
    dataset: str = Field("saferlhf", description="bundled dataset name or path[:column] of training prompts")
    limit: int | None = Field(None, ge=1, description="first N prompts (after the filter below)")
    require: list[str] = Field(default_factory=list,
                               description="keep only prompts that these fixed answer sets answer (e.g. [gpt4o])")


class GenerationSpec(_Strict):
    samples: int = Field(5, ge=2, description="k sampled answers per prompt for Self+RM and peer pools")
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = 0.5
    top_k: int = Field(50, ge=0, description="top-k filter when sampling (0: off)")
    top_p: float = 0.9
    repetition_penalty: float = 1.2
    no_repeat_ngram_size: int = 3
    batch_size: int | None = Field(None, ge=1, description="sequences per batch (default: the stage's own)")
    backend: str = Field("transformers", description="transformers, or vllm on GPUs (generation and eval-safety)")
    engine: str = Field("auto", description="transformers backend: auto, decoder, generate or generate-static")


class SafetySpec(_Strict):
    suites: list[str] = Field(default_factory=lambda: ["advbench"], description="advbench, jbb, harmbench, xstest or "
                                                                                 "path:column")
    limit: int | dict[str, int | None] | None = Field(
        100, description="first N prompts of each suite (the paper: 100 AdvBench), or per suite ({advbench: 100}: "
                         "a suite left out, or null, is evaluated in full)")
    attacks: list[str] | dict[str, list[str]] = Field(
        default_factory=lambda: ["none"], description="attacks on every suite, or per suite ({jbb: [none, "
                                                      "jbb-attacks:PAIR]}: a suite left out gets [none])")
    judges: list[str] = Field(default_factory=lambda: ["harm", "keyword"])
    max_new_tokens: int = Field(512, ge=1, description="greedy answer length (the paper: 512)")
    judge_model: str | None = Field(None, description="openai:<model> for the llm judge")


    @field_validator("limit")
    @classmethod
    def _positive_limits(cls, value):
        limits = value.values() if isinstance(value, dict) else [value]
        if any(limit is not None and limit < 1 for limit in limits):
            raise ValueError("a limit must be at least 1")
        return value

    def limit_for(self, suite: str) -> int | None:
        """The prompt limit of one suite (None: the whole suite, or the suite's own default)."""
        return self.limit.get(suite) if isinstance(self.limit, dict) else self.limit

    def attacks_for(self, suite: str) -> list[str]:
        """The attacks one suite is answered under (a transfer attack has prompts for its own suite only)."""
        return self.attacks.get(suite, ["none"]) if isinstance(self.attacks, dict) else self.attacks


class GeneralSpec(_Strict):
    tasks: list[str] = Field(default_factory=lambda: ["arc_easy", "arc_challenge", "hellaswag", "mmlu",
                                                      "truthfulqa_mc2", "winogrande"])
    limit: int | None = Field(50, ge=1)
    num_fewshot: int = Field(0, ge=0)
    batch_size: int = Field(8, ge=1)


class BenignSpec(_Strict):
    pools: list[str] = Field(default_factory=lambda: ["harmless-instructions", "xstest-safe"],
                             description="benign prompt pools (safepref.evaluation.benign)")
    limit: int | None = Field(100, ge=1, description="benign prompts in all, split evenly between the pools")
    max_new_tokens: int | None = Field(None, ge=1, description="default: safety.max_new_tokens, so eval-safety's "
                                                               "XSTest answers are reused, not generated again")


class AuditSpec(_Strict):
    features: list[str] = Field(default_factory=lambda: ["shallow", "embed"])
    folds: int = Field(5, ge=2)
    diagnostics_judge: Literal["fast", "full", "none"] = Field(
        "fast", description="pair diagnostics' judges: fast (no LM read), full (the harm and refusal heads' SmolLM2 "
                            "read) or none (see safepref.pairs.diagnostics)")
    diagnostics_pairs: int | None = Field(1000, ge=1, description="most pairs the diagnostics judge (seeded sample)")


class ExperimentConfig(_Strict):
    """One experiment grid. Unknown keys anywhere are errors naming the key."""

    name: str
    seed: int = Field(0, description="seed of generation, pair building and the audit; also the training seed when "
                                     "`seeds` is not given")
    seeds: list[int] | None = Field(None, min_length=1,
                                    description="training seeds: each configuration trains once per seed on the same "
                                                "pairs (batch order and sampling change) and each model is evaluated; "
                                                "the report shows per-seed rates, their spread and pooled comparisons")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="where every stage runs its models: auto (CUDA when present), cpu, cuda, cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="model precision: auto (the device policy, see safepref.core.device) or a dtype")
    targets: list[TargetSpec]
    prompts: PromptSpec = Field(default_factory=PromptSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    reward_model: str = "safety-bt"
    recipes: list[str] = Field(default_factory=lambda: [SFT, "original", "hc_self", "gpt4o_self", "stronger_self",
                                                        "peer_rm", "all_rm", "self_rm"])
    training: dict[str, Any] = Field(default_factory=dict, description="DPOTrainingConfig fields")
    safety: SafetySpec = Field(default_factory=SafetySpec)
    general: GeneralSpec | None = Field(default_factory=GeneralSpec, description="null to skip general ability")
    audit: AuditSpec | None = Field(default_factory=AuditSpec, description="null to skip the audit")
    benign: BenignSpec | None = Field(default_factory=BenignSpec,
                                      description="answer quality on benign prompts, against SFT; null to skip")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"seeds repeat: {value}")
        return value

    def training_seeds(self) -> list[int]:
        """The seeds each configuration trains with: ``seeds``, else the one ``seed``."""
        return list(self.seeds) if self.seeds else [self.seed]

    def recipes_for(self, target: TargetSpec) -> list[str]:
        return target.recipes if target.recipes is not None else self.recipes

    def training_for(self, target: TargetSpec) -> dict[str, Any]:
        # a bigger model wants a gentler learning rate than a small one: targets may override any field
        return split_training({"seed": self.seed, **self.training, **target.training})[0]

    def launch_for(self, target: TargetSpec) -> LaunchSettings:
        """How this target trains (``training.launcher`` / ``accelerate_config``, see safepref.training.launch)."""
        return split_training({**self.training, **target.training})[1]


def load_config(path: str | Path, seeds: list[int] | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML; errors name the file and the offending key. ``seeds`` (the command
    line's) replaces the file's training seeds."""
    path = Path(path)
    config = read_yaml_record(path, ExperimentConfig)
    if seeds is not None:
        try:
            config = ExperimentConfig.model_validate({**config.model_dump(), "seeds": seeds})
        except ValidationError as error:
            raise input_error_from(error, context="--seeds") from None

    checks = []  # (field to blame, training settings) for every target, and every recipe that adds settings
    for index, target in enumerate(config.targets):
        field = f"targets[{index}].training" if target.training else "training"
        try:
            config.launch_for(target)
        except ValidationError as error:
            raise input_error_from(error, path=path, field_prefix=field, context="bad training setting") from None
        checks.append((field, config.training_for(target)))
        for recipe in config.recipes_for(target):
            if recipe != SFT and (overrides := load_recipe(recipe).training):
                checks.append((f"recipe {recipe}: training", {**config.training_for(target), **overrides}))
    for field, settings in checks:
        try:
            DPOTrainingConfig(**settings)
        except ValidationError as error:
            raise input_error_from(error, path=path, field_prefix=field, context="bad training setting") from None
    return config
