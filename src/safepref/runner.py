"""Stage 6, run: a whole experiment grid from one YAML file, every stage cached by its inputs.

For each target model: generate answers from every source its recipes need -> score them with the reward model
-> build each recipe's pairs -> audit their separability -> DPO-train the target on them -> evaluate safety (and
over-refusal) and general ability of the SFT model and of every trained model -> write the report.

Every artifact's path carries a fingerprint of the config that made it and the keys of its inputs, so a rerun
reuses what exists, a changed setting recomputes only what depends on it, and a killed run finishes on rerun
(each stage itself resumes: generation and scoring append to logs, training restarts from its checkpoint).
The manifest (``RUN_DIR/manifest.json``) records what each configuration produced; the report reads it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safepref import models
from safepref.errors import InputError
from safepref.io import file_fingerprint, fingerprint, read_yaml_record, write_json_atomic
from safepref.versions import package_versions

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
    top_p: float = 0.9
    repetition_penalty: float = 1.2
    no_repeat_ngram_size: int = 3
    batch_size: int | None = Field(None, ge=1, description="sequences per batch (default: the stage's own)")
    backend: str = Field("transformers", description="transformers, or vllm on GPUs")


class SafetySpec(_Strict):
    suites: list[str] = Field(default_factory=lambda: ["advbench"], description="advbench, xstest or path:column")
    limit: int | None = Field(100, ge=1, description="first N prompts of each suite (the paper: 100 AdvBench)")
    attacks: list[str] = Field(default_factory=lambda: ["none"])
    judges: list[str] = Field(default_factory=lambda: ["keyword", "classifier"])
    max_new_tokens: int = Field(512, ge=1, description="greedy answer length (the paper: 512)")
    judge_model: str | None = Field(None, description="openai:<model> for the llm judge")


class GeneralSpec(_Strict):
    tasks: list[str] = Field(default_factory=lambda: ["arc_easy", "arc_challenge", "hellaswag", "mmlu",
                                                      "truthfulqa_mc2", "winogrande"])
    limit: int | None = Field(50, ge=1)
    num_fewshot: int = Field(0, ge=0)
    batch_size: int = Field(8, ge=1)


class BenignSpec(_Strict):
    pools: list[str] = Field(default_factory=lambda: ["harmless-instructions", "xstest-safe"],
                             description="benign prompt pools (safepref.eval_benign)")
    limit: int | None = Field(100, ge=1, description="benign prompts in all, split evenly between the pools")
    max_new_tokens: int | None = Field(None, ge=1, description="default: safety.max_new_tokens, so eval-safety's "
                                                               "XSTest answers are reused, not generated again")


class AuditSpec(_Strict):
    features: list[str] = Field(default_factory=lambda: ["shallow", "embed"])
    folds: int = Field(5, ge=2)


class ExperimentConfig(_Strict):
    """One experiment grid. Unknown keys anywhere are errors naming the key."""

    name: str
    seed: int = 0
    targets: list[TargetSpec]
    prompts: PromptSpec = Field(default_factory=PromptSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    reward_model: str = "minilm-bt"
    recipes: list[str] = Field(default_factory=lambda: [SFT, "original", "hc_self", "gpt4o_self", "stronger_self",
                                                        "peer_rm", "all_rm", "self_rm"])
    training: dict[str, Any] = Field(default_factory=dict, description="DPOTrainingConfig fields")
    safety: SafetySpec = Field(default_factory=SafetySpec)
    general: GeneralSpec | None = Field(default_factory=GeneralSpec, description="null to skip general ability")
    audit: AuditSpec | None = Field(default_factory=AuditSpec, description="null to skip the audit")
    benign: BenignSpec | None = Field(default_factory=BenignSpec,
                                      description="answer quality on benign prompts, against SFT; null to skip")

    def recipes_for(self, target: TargetSpec) -> list[str]:
        return target.recipes if target.recipes is not None else self.recipes

    def training_for(self, target: TargetSpec) -> dict[str, Any]:
        # a bigger model wants a gentler learning rate than a small one: targets may override any field
        return {"seed": self.seed, **self.training, **target.training}


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML; errors name the file and the offending key."""
    path = Path(path)
    config = read_yaml_record(path, ExperimentConfig)
    from safepref.recipes import load_recipe
    from safepref.train import DPOTrainingConfig

    for target in config.targets:
        for recipe in config.recipes_for(target):
            if recipe != SFT:
                load_recipe(recipe)
    for index, target in enumerate(config.targets):
        field = f"targets[{index}].training" if target.training else "training"
        try:
            DPOTrainingConfig(**config.training_for(target))
        except ValidationError as error:
            problem = error.errors()[0]
            key = ".".join(str(part) for part in problem["loc"])
            reason = "unknown key" if problem["type"] == "unexpected_keyword_argument" else problem["msg"].lower()
            raise InputError(f"bad training setting: {reason}", path=path,
                             field=f"{field}.{key}" if key else field) from None
    return config


# ---------------------------------------------------------------------------------------------- the run


class Run:
    """Walks the grid; each step is skipped when its artifact (named by its key) already exists."""

    def __init__(self, config: ExperimentConfig, run_dir: str | Path, config_path: str | Path | None = None):
        self.config = config
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest: dict[str, Any] = {"name": config.name, "config": config.model_dump(mode="json"),
                                         "config_path": str(config_path) if config_path else None,
                                         "seed": config.seed, "targets": {}, "timings": {}}
        if self.manifest_path.exists():
            previous = json.loads(self.manifest_path.read_text())
            self.manifest["timings"] = previous.get("timings", {})

    def _save(self) -> None:
        write_json_atomic(self.manifest_path, self.manifest)

    def _timed(self, label: str, work):
        before = self._artifact_state()
        started = time.perf_counter()
        result = work()
        elapsed = round(time.perf_counter() - started, 1)
        # a step served from cache writes nothing (though checking its key may take seconds): keep the time of the
        # run that did the work
        if self._artifact_state() != before or label not in self.manifest["timings"]:
            self.manifest["timings"][label] = elapsed
        return result

    def _artifact_state(self) -> tuple[int, int]:
        """(number of files, newest modification) under the run folder, the run's own summaries aside."""
        own = {"manifest.json", "results.json", "report.html", "summary.md"}
        stamps = [path.stat().st_mtime_ns for path in self.dir.rglob("*") if path.is_file() and path.name not in own]
        return len(stamps), max(stamps, default=0)

    def _entry(self, target: str, configuration: str) -> dict[str, Any]:
        return self.manifest["targets"].setdefault(target, {}).setdefault(configuration, {})

    # -------------------------------------------------------------------------------------- stages

    def training_prompts(self):
        from safepref.data import load_prompts
        from safepref.generate import generate_responses

        spec = self.config.prompts
        prompts = load_prompts(spec.dataset)
        for source in spec.require:
            answered = {r.prompt_id for r in generate_responses(prompts, source, self.dir / "responses" /
                                                                f"{source}.jsonl")}
            prompts = [p for p in prompts if p.id in answered]
        return prompts[: spec.limit] if spec.limit else prompts

    def responses_for(self, target: TargetSpec, prompts) -> list[Path]:
        """Generate (or reuse) every source the target's recipes draw from; returns the response files."""
        from safepref.generate import FIXED_SOURCES, GenerationConfig, generate_responses

        g = self.config.generation
        base = dict(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                    repetition_penalty=g.repetition_penalty, no_repeat_ngram_size=g.no_repeat_ngram_size,
                    seed=self.config.seed, num_samples=g.samples, backend=g.backend)
        if g.batch_size:
            base["batch_size"] = g.batch_size
        needed = self.sources_needed(target)
        jobs: list[tuple[str, bool]] = []  # (source, greedy)
        if needed & {"self", "self_samples", "all"}:
            jobs.append((target.model, False))
        if needed & {"self", "self_greedy", "all"}:
            jobs.append((target.model, True))
        if target.stronger and needed & {"stronger", "all"}:
            jobs.append((target.stronger, True))
        if needed & {"peers", "all"}:
            jobs += [(peer, False) for peer in target.peers]  # k samples each: a pool to rank even with one peer
        prompt_key = fingerprint([p.id for p in prompts])
        files = []
        for source in FIXED_SOURCES:
            files.append(self.dir / "responses" / f"{source}.jsonl")
            self._timed(f"generate {source}", lambda s=source, f=files[-1]: generate_responses(prompts, s, f))
        for source, greedy in jobs:
            config = GenerationConfig(greedy=greedy, **base)
            mode = "greedy" if greedy else f"k{g.samples}"
            path = self.dir / "responses" / f"{_slug(models.model_label(source))}-{mode}-" \
                                            f"{fingerprint(source, config.settings(), prompt_key)}.jsonl"
            self._timed(f"generate {models.model_label(source)} {mode}",
                        lambda s=source, c=config, p=path: generate_responses(prompts, s, p, c))
            files.append(path)
        return files

    def sources_needed(self, target: TargetSpec) -> set[str]:
        """Source aliases that the target's recipes draw from (only these are generated)."""
        from safepref.recipes import load_recipe

        needed: set[str] = set()
        for name in self.config.recipes_for(target):
            if name != SFT:
                recipe = load_recipe(name)
                needed |= set(recipe.chosen.sources) | set(recipe.rejected.sources)
        return needed

    def pairs_for(self, target: TargetSpec, recipe_name: str, response_files: list[Path], scores) -> Path:
        from safepref.build import BuildConfig, BuildSummary, build_pairs, read_responses, write_pairs
        from safepref.recipes import load_recipe

        recipe = load_recipe(recipe_name)
        build = BuildConfig(stronger=target.stronger or models.STRONGER_MODEL, peers=list(target.peers),
                            seed=self.config.seed, reward_model=None)
        key = fingerprint(recipe.model_dump(), [file_fingerprint(f) for f in response_files],
                          self.config.reward_model, build.seed, build.stronger, build.peers)
        out = self.dir / "pairs" / _slug(models.model_label(target.model)) / f"{recipe_name}-{key}.jsonl"
        if not out.exists():
            summary = BuildSummary(recipe=recipe.name, target=target.model)
            pairs = build_pairs(recipe, read_responses(response_files), scores if recipe.needs_scores else None,
                                target=target.model, config=build, summary=summary)
            if not pairs:
                raise InputError(f"recipe '{recipe_name}' built no pairs for {target.model} (see the build counts)")
            write_pairs(pairs, out, summary, response_files)
        return out

    def run(self) -> dict[str, Any]:
        from safepref.build import read_responses
        from safepref.score import score_responses

        self.manifest["versions"] = package_versions(
            "safepref", "torch", "transformers", "trl", "peft", "datasets", "lm_eval", "sentence-transformers", "scikit-learn")
        prompts = self._timed("prompts", self.training_prompts)
        self.manifest["n_training_prompts"] = len(prompts)
        for target in self.config.targets:
            label = models.model_label(target.model)
            recipes = self.config.recipes_for(target)
            needs_pairs = [r for r in recipes if r != SFT]
            response_files = self.responses_for(target, prompts) if needs_pairs else []
            self._save()
            scores = None
            if response_files:
                responses = read_responses(response_files)
                scores = self._timed(f"score {label}", lambda r=responses: score_responses(
                    r, self.config.reward_model, self.dir / "scores" / f"{_slug(self.config.reward_model)}.jsonl"))
            for recipe in recipes:
                entry = self._entry(label, recipe)
                model_for_eval = target.model
                if recipe != SFT:
                    pairs = self._timed(f"build {label} {recipe}",
                                        lambda r=recipe, t=target, f=response_files, s=scores: self.pairs_for(t, r, f, s))
                    entry["pairs"] = str(pairs)
                    if self.config.audit:
                        entry["audit"] = self._timed(f"audit {label} {recipe}", lambda p=pairs: self.audit(p))
                    entry["training"] = self._timed(f"train {label} {recipe}", lambda p=pairs, t=target: self.train(t, p))
                    model_for_eval = entry["training"]["out_dir"]
                    self._save()
                entry["safety"] = self._timed(f"safety {label} {recipe}",
                                              lambda m=model_for_eval: self.safety(m))
                self._save()
                if self.config.benign:
                    entry["benign"] = self._timed(f"benign {label} {recipe}", lambda m=model_for_eval, t=target,
                                                  s=entry["safety"]: self.benign(t, m, s))
                    self._save()
                if self.config.general:
                    entry["general"] = self._timed(f"general {label} {recipe}",
                                                   lambda m=model_for_eval: self.general(m))
                    self._save()
        self._save()
        from safepref.report import write_report

        return write_report(self.dir)

    def audit(self, pairs_path: Path) -> str:
        from safepref.audit import AuditConfig, audit_pairs
        from safepref.io import read_pairs

        spec = self.config.audit
        key = fingerprint(file_fingerprint(pairs_path), spec.model_dump(), self.config.seed)
        out = self.dir / "audit" / f"{pairs_path.stem}-{key}"
        if not (out / "audit.json").exists():
            audit_pairs(read_pairs(pairs_path), AuditConfig(features=list(spec.features), folds=spec.folds,
                                                            seed=self.config.seed), out)
        return str(out / "audit.json")

    def train(self, target: TargetSpec, pairs_path: Path) -> dict[str, Any]:
        from dataclasses import asdict

        from safepref.train import DPOTrainingConfig, train_dpo

        config = DPOTrainingConfig(**self.config.training_for(target))
        key = fingerprint(target.model, file_fingerprint(pairs_path), asdict(config))
        out = self.dir / "models" / f"{pairs_path.stem}-{key}"
        summary_path = out / "train_summary.json"
        if not summary_path.exists():  # its presence marks a finished run; otherwise train (or resume) now
            train_dpo(target.model, pairs_path, out, config)
        summary = json.loads(summary_path.read_text())
        return {"out_dir": str(out), "dynamics": str(out / "dynamics.jsonl"), "summary": str(summary_path),
                "final_loss": summary["final_loss"], "steps": summary["steps"]}

    def safety(self, model: str) -> list[str]:
        from safepref.eval_safety import SafetyEvalConfig, evaluate_safety

        spec = self.config.safety
        summaries = []
        for suite in spec.suites:
            config = SafetyEvalConfig(suite=suite, attacks=spec.attacks,
                                      judges=spec.judges, limit=spec.limit, max_new_tokens=spec.max_new_tokens,
                                      seed=self.config.seed, judge_model=spec.judge_model)
            key = fingerprint(_model_key(model), config.model_dump(mode="json"))
            out = self.dir / "safety" / f"{_slug(models.model_label(model))}-{_slug(suite)}-{key}"
            if not (out / "summary.json").exists():
                evaluate_safety(model, config, out)
            summaries.append(str(out / "summary.json"))
        return summaries

    def benign(self, target: TargetSpec, model: str, safety_summaries: list[str]) -> str:
        """Answer quality on benign prompts against the target's own (SFT) answers, and on the harmful prompts that
        eval-safety answered; both answer sets are shared through ``benign/answers``."""
        from safepref.eval_benign import BenignEvalConfig, evaluate_benign

        spec = self.config.benign
        config = BenignEvalConfig(pools=spec.pools, limit=spec.limit, reference=target.model,
                                  max_new_tokens=spec.max_new_tokens or self.config.safety.max_new_tokens,
                                  reward_model=self.config.reward_model)
        key = fingerprint(_model_key(model), _model_key(target.model), config.model_dump(mode="json"),
                          safety_summaries)
        out = self.dir / "benign" / f"{_slug(models.model_label(model))}-{key}"
        if not (out / "summary.json").exists():
            evaluate_benign(model, config, out, answers_dir=self.dir / "benign" / "answers",
                            safety_dirs=[Path(p).parent for p in safety_summaries])
        return str(out / "summary.json")

    def general(self, model: str) -> str:
        from safepref.eval_general import evaluate_general, make_config

        spec = self.config.general
        config = make_config(tasks=tuple(spec.tasks), limit=spec.limit, num_fewshot=spec.num_fewshot,
                             batch_size=spec.batch_size, seed=self.config.seed)
        out = self.dir / "general" / f"{_slug(models.model_label(model))}-{fingerprint(_model_key(model))}"
        evaluate_general(model, config, out)  # keyed and cached inside the stage
        return str(out / "general.json")


def run_experiment(config_path: str | Path, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Run (or finish) the grid of ``config_path`` in ``run_dir`` (default ``runs/<name>``); returns report paths."""
    config = load_config(config_path)
    run_dir = Path(run_dir) if run_dir else Path("runs") / config.name
    return Run(config, run_dir, config_path).run()


def _model_key(model: str) -> str:
    """Identity of a model for cache keys: a trained folder by its summary, otherwise its name."""
    summary = Path(model) / "train_summary.json"
    return file_fingerprint(summary) if summary.is_file() else str(model)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
