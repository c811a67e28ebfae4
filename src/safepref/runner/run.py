"""Stage 6, run: a whole experiment grid from one YAML file, every stage cached by its inputs.

For each target model: generate answers from every source its recipes need -> score them with the reward model
-> build each recipe's pairs -> audit their separability -> DPO-train the target on them -> evaluate safety (and
over-refusal) and general ability of the SFT model and of every trained model -> write the report.

Every artifact's path carries a content key (``safepref.core.keys``) of what it was computed from (prompt texts, answer
texts, settings, a fingerprint of the model's weights, scores, upstream keys), so a rerun reuses what exists, a
changed input recomputes only what depends on it, and a killed run finishes on rerun
(each stage itself resumes: generation and scoring append to logs, training restarts from its checkpoint).
Every configuration of a target builds its pairs from exactly the configured prompt set (fixed answer sets are
written for those prompts only). With ``seeds`` each trained configuration trains on its pairs once per seed and
each of those models is evaluated; the manifest entry lists them under ``seeds`` (the first also where one seed
is). The manifest (``RUN_DIR/manifest.json``) records what each configuration produced, with its number of pairs,
of prompts and a hash of the prompt ids. The run's evidence goes to a bundle (:mod:`safepref.bundle`; default
``RUN_DIR/bundle``) as its stages finish: a configuration the bundle holds complete under the same key
(:func:`safepref.runner.plan.configuration_key`) is taken from there, nothing trained or generated for it, and the
report is the bundle's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from safepref.audit import AuditConfig, audit_pairs
from safepref.audit.separability import audit_key
from safepref.bundle import BundleWriter, default_judges, rejudge_bundle
from safepref.core.datasets import load_prompts, prompt_id
from safepref.core.device import precision_record, visible_gpus
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint, read_pairs, write_json_atomic
from safepref.core.keys import prompt_set_key
from safepref.core.paths import slug
from safepref.core.progress import announce
from safepref.core.versions import package_versions
from safepref.evaluation.benign import benign_key, evaluate_benign
from safepref.evaluation.general import evaluate_general, general_key
from safepref.evaluation.safety import evaluate_safety, safety_key
from safepref.generation.generate import fixed_answer_prompt_ids, generate_responses, release_engines
from safepref.models import loading as models
from safepref.pairs.build import BuildConfig, BuildSummary, build_key, build_pairs, pairs_data, read_responses, write_pairs
from safepref.pairs.debias import DebiasConfig, debias_key, debias_pairs, summary_path
from safepref.pairs.recipes import load_recipe
from safepref.report import write_report
from safepref.runner import plan
from safepref.runner.config import (
    SFT,
    AuditSpec,
    BenignSpec,
    ExperimentConfig,
    GeneralSpec,
    GenerationSpec,
    PromptSpec,
    SafetySpec,
    TargetSpec,
    load_config,
)
from safepref.runner.record import record_configuration
from safepref.scoring.score import ScoreConfig, score_responses
from safepref.training.dpo import DPOTrainingConfig, mixed_precision, train_dpo, train_key
from safepref.training.launch import train_with_accelerate

__all__ = ["FIXED_SOURCE_ALIASES", "SFT", "AuditSpec", "BenignSpec", "ExperimentConfig", "GeneralSpec", "GenerationSpec",
           "PromptSpec", "Run", "SafetySpec", "TargetSpec", "load_config", "pairs_data", "run_experiment"]

FIXED_SOURCE_ALIASES = plan.FIXED_SOURCE_ALIASES


# ---------------------------------------------------------------------------------------------- the run


class Run:
    """Walks the grid; each step is skipped when its artifact (named by its key) already exists."""

    def __init__(self, config: ExperimentConfig, run_dir: str | Path, config_path: str | Path | None = None,
                 bundle_dir: str | Path | None = None, pairs_only: bool = False):
        self.config = config
        # stop once every configuration's pairs are built and audited: what each recipe's data carries, measured
        # before anything is trained (a study's design is fixed from it, blind to any outcome)
        self.pairs_only = pairs_only
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest: dict[str, Any] = {"name": config.name, "config": config.model_dump(mode="json"),
                                         "config_path": str(config_path) if config_path else None,
                                         "seed": config.seed, "seeds": config.training_seeds(), "targets": {},
                                         "timings": {}}
        # the evidence, written as stages finish; a configuration it holds under the same key is not run again
        self.bundle = BundleWriter(bundle_dir or self.dir / "bundle", config.name, self.manifest["config"])
        self.manifest["bundle"] = str(self.bundle.dir.resolve())
        self.manifest["timings"] = dict(self.bundle.manifest.timings)
        self.reused: list[tuple[str, str]] = []
        if self.manifest_path.exists():
            previous = json.loads(self.manifest_path.read_text())
            self.manifest["timings"].update(previous.get("timings", {}))

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
        stamps = [path.stat().st_mtime_ns for path in self.dir.rglob("*") if path.is_file() and path.name not in own
                  and self.bundle.dir not in path.parents]
        return len(stamps), max(stamps, default=0)

    def _entry(self, target: str, configuration: str) -> dict[str, Any]:
        return self.manifest["targets"].setdefault(target, {}).setdefault(configuration, {})

    # -------------------------------------------------------------------------------------- stages

    def training_prompts(self):
        """The configured prompt set. ``require`` asks the fixed answer sets which prompts they answer (nothing is
        generated or written for that: data never flows back from the generate stage)."""

        spec = self.config.prompts
        prompts = load_prompts(spec.dataset)
        for source in spec.require:
            try:
                answered = fixed_answer_prompt_ids(source)
            except InputError as error:
                raise InputError(str(error.args[0]), field="prompts.require") from None
            prompts = [p for p in prompts if p.id in answered or prompt_id(p.text) in answered]
        return prompts[: spec.limit] if spec.limit else prompts

    def responses_for(self, target: TargetSpec, prompts, recipes: list[str] | None = None) -> list[Path]:
        """Generate (or reuse) every source the recipes (default: the target's) draw from; returns the files."""

        files = []
        needed = plan.sources_needed(self.config, target, recipes)
        for job in plan.generation_jobs(self.config, target, prompts, needed, self.dir / "responses"):
            if job["config"] is None:
                self._timed(job["label"], lambda j=job: generate_responses(prompts, j["source"], j["path"]))
            else:
                self._timed(job["label"], lambda j=job: generate_responses(prompts, j["source"], j["path"], j["config"]))
            files.append(job["path"])
        return files

    def pairs_for(self, target: TargetSpec, recipe_name: str, response_files: list[Path], scores,
                  prompt_ids: set[str] | None = None) -> Path:
        """Pairs by one recipe, from the answers to the configured prompts (``prompt_ids``) only, keyed by the
        content of those answers and of the scores they are ranked by."""

        recipe = load_recipe(recipe_name)
        build = BuildConfig(stronger=target.stronger or models.STRONGER_MODEL, peers=list(target.peers),
                            seed=self.config.seed, reward_model=None)
        responses = [r for r in read_responses(response_files) if prompt_ids is None or r.prompt_id in prompt_ids]
        key = build_key(recipe, responses, scores, build)
        out = self.dir / "pairs" / slug(models.model_label(target.model)) / f"{recipe_name}-{key}.jsonl"
        if not out.exists():
            summary = BuildSummary(recipe=recipe.name, target=target.model)
            pairs = build_pairs(recipe, responses, scores if recipe.needs_scores else None,
                                target=target.model, config=build, summary=summary)
            if not pairs:
                raise InputError(f"recipe '{recipe_name}' built no pairs for {target.model} (see the build counts)")
            write_pairs(pairs, out, summary, response_files)
        return out

    def run(self) -> dict[str, Any]:

        self.manifest["versions"] = package_versions(
            "safepref", "torch", "transformers", "trl", "peft", "datasets", "lm_eval", "sentence-transformers", "scikit-learn")
        self.manifest["precision"] = precision_record(self.config.device, self.config.dtype)
        prompts = self._timed("prompts", self.training_prompts)
        self.manifest["n_training_prompts"] = len(prompts)
        # named by text-derived ids, as pairs_data names each configuration's set, so the two compare
        self.manifest["training_prompt_set"] = prompt_set_key(prompt_id(p.text) for p in prompts)
        self._save_bundle_run()
        for target in self.config.targets:
            self.run_target(target, prompts)
        self._save()
        self._save_bundle_run()
        if self.reused:  # evidence made earlier is judged by the judges this config asks for, as they are now
            judges = [*self.config.safety.judges, *default_judges(self.bundle.manifest)]
            rejudge_bundle(self.bundle.dir, judges=judges, judge_model=self.config.safety.judge_model)
            self.bundle.reload()
        self.bundle.finish()
        return write_report(self.bundle.dir, out_dir=self.dir)

    def _save_bundle_run(self) -> None:
        self.bundle.update_run(versions=self.manifest["versions"], seed=self.config.seed,
                               seeds=self.manifest["seeds"], precision=self.manifest.get("precision"),
                               n_training_prompts=self.manifest["n_training_prompts"],
                               training_prompt_set=self.manifest["training_prompt_set"],
                               timings=dict(self.manifest["timings"]))

    def run_target(self, target: TargetSpec, prompts) -> None:
        """Every configuration of one target: answers and scores once, then per recipe pairs -> train -> evaluate.
        A configuration whose evidence the bundle holds under the same key is taken from there."""
        label = models.model_label(target.model)
        keys = {recipe: plan.configuration_key(self.config, target, recipe, prompts)
                for recipe in self.config.recipes_for(target)}
        recipes = []
        for recipe, key in keys.items():
            if self.bundle.reusable(label, recipe, key):
                self._entry(label, recipe).update(key=key, from_bundle=str(self.bundle.dir))
                self.reused.append((label, recipe))
            else:
                recipes.append(recipe)
        needs_pairs = [r for r in recipes if r != SFT]
        response_files = self.responses_for(target, prompts, needs_pairs) if needs_pairs else []
        self._save()
        scores = None
        if response_files:

            responses = read_responses(response_files)
            scores = self._timed(f"score {label}", lambda: self.score(responses))
        prompt_ids = {p.id for p in prompts}
        seeds = self.config.training_seeds()
        for recipe in recipes:
            entry = self._entry(label, recipe)
            entry["key"] = keys[recipe]
            if recipe == SFT and self.pairs_only:
                continue
            if recipe == SFT:  # nothing trained: greedy evaluation of the same weights does not depend on a seed
                self.evaluate_configuration(target, recipe, entry, target.model)
                self.record_evidence(target, recipe, entry, complete=True)
                continue
            pairs, variant = self.prepare_pairs(target, recipe, entry, response_files, scores, prompt_ids)
            if self.pairs_only:
                continue
            per_seed = []
            for seed in seeds:  # the first seed's results stay at the entry's top level, as with one seed
                place, suffix = (entry if seed == seeds[0] else {}), f" seed {seed}" * (len(seeds) > 1)
                # without `seeds` the training settings keep their own seed: single-seed runs keep their keys
                overrides = {**(variant.training or {}), **({"seed": seed} if self.config.seeds else {})}
                seed_used = DPOTrainingConfig(**{**self.config.training_for(target), **overrides}).seed
                name = plan.display_name(self.config, target, recipe, seed_used)
                announce(f"training {name}")
                place["training"] = self._timed(f"train {label} {recipe}{suffix}",
                                                lambda o=overrides, p=pairs: self.train(target, p, o))
                models.set_display_name(place["training"]["out_dir"], name)
                self._save()
                self.evaluate_configuration(target, recipe, place, place["training"]["out_dir"], suffix)
                per_seed.append({"seed": seed, **{k: place[k] for k in ("training", "safety", "benign", "general")
                                                  if k in place}})
                if len(seeds) > 1:
                    entry["seeds"] = per_seed
                    self._save()
                self.record_evidence(target, recipe, entry, complete=len(per_seed) == len(seeds))

    def record_evidence(self, target: TargetSpec, recipe: str, entry: dict[str, Any], *, complete: bool) -> None:
        record_configuration(self.bundle, target, recipe, entry, complete=complete)
        # the stage times travel with the evidence: a run stopped between stages leaves them for its report
        self.bundle.update_run(timings=dict(self.manifest["timings"]))

    def score(self, responses) -> list:
        """The reward model's scores of every answer (appended to one scores file per reward model)."""
        return score_responses(responses, self.config.reward_model,
                               self.dir / "scores" / f"{slug(self.config.reward_model)}.jsonl",
                               ScoreConfig(device=self.config.device, dtype=self.config.dtype))

    def prepare_pairs(self, target: TargetSpec, recipe: str, entry: dict[str, Any], response_files: list[Path],
                      scores, prompt_ids: set[str]):
        """Build (and debias) the recipe's pairs, audit them; returns the pairs file (every seed's) and the recipe."""

        label = models.model_label(target.model)
        variant = load_recipe(recipe)  # a mitigation variant builds its base's pairs, then debiases them
        pairs = self._timed(f"build {label} {variant.base or recipe}",
                            lambda: self.pairs_for(target, variant.base or recipe, response_files, scores, prompt_ids))
        if variant.base:
            entry["base"] = variant.base
        if variant.debias:
            pairs, entry["debias"] = self._timed(f"debias {label} {recipe}", lambda: self.debias(target, pairs, variant))
        entry["pairs"] = str(pairs)
        entry["data"] = pairs_data(pairs)
        if self.config.audit:
            entry["audit"] = self._timed(f"audit {label} {recipe}", lambda: self.audit(pairs))
        self._save()
        self.record_evidence(target, recipe, entry, complete=False)
        return pairs, variant

    def evaluate_configuration(self, target: TargetSpec, recipe: str, entry: dict[str, Any], model: str,
                               suffix: str = "") -> None:
        """Safety, then answer quality on benign prompts and general ability, each as the config asks."""
        label = models.model_label(target.model)
        entry["safety"] = self._timed(f"safety {label} {recipe}{suffix}", lambda: self.safety(model))
        self._save()
        self.record_evidence(target, recipe, self._entry(label, recipe), complete=False)
        if self.config.benign:
            entry["benign"] = self._timed(f"benign {label} {recipe}{suffix}",
                                          lambda: self.benign(target, model, entry["safety"]))
            self._save()
            self.record_evidence(target, recipe, self._entry(label, recipe), complete=False)
        if self.config.general:
            entry["general"] = self._timed(f"general {label} {recipe}{suffix}", lambda: self.general(model))
            self._save()

    def audit(self, pairs_path: Path) -> str:
        spec = self.config.audit
        key = audit_key(pairs_path, spec.model_dump(), self.config.seed, spec.diagnostics_judge, self.config.dtype)
        out = self.dir / "audit" / f"{pairs_path.stem}-{key}"
        if not (out / "audit.json").exists():
            audit_pairs(read_pairs(pairs_path), AuditConfig(features=list(spec.features), folds=spec.folds,
                                                            seed=self.config.seed, device=self.config.device,
                                                            dtype=self.config.dtype,
                                                            diagnostics_judge=spec.diagnostics_judge,
                                                            diagnostics_pairs=spec.diagnostics_pairs), out)
        return str(out / "audit.json")

    def debias(self, target: TargetSpec, pairs_path: Path, recipe) -> tuple[Path, str]:
        """The recipe's debias step on its base's pairs (cached by their content and the step's settings)."""

        settings = plan.debias_settings(self.config, target, recipe)
        rewrite = settings.get("method") == "rewrite"  # only a rewrite answers (filter reads no model)
        key = debias_key(models.weights_fingerprint(target.model), pairs_path, settings,
                         self._answer_dtype(target.model) if rewrite else "float32")
        out = pairs_path.parent / f"{recipe.name}-{key}.jsonl"
        if not summary_path(out).exists():  # written last: a killed rewrite resumes from its log
            # where the rewrite runs is provenance, not part of the key
            debias_pairs(read_pairs(pairs_path), DebiasConfig(**settings, device=self.config.device,
                                                              dtype=self.config.dtype), out,
                         {str(pairs_path): file_fingerprint(pairs_path)})
        return out, str(summary_path(out))

    def train(self, target: TargetSpec, pairs_path: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:

        config = DPOTrainingConfig(**{**self.config.training_for(target), **(overrides or {})})
        mixed = mixed_precision(config, self.config.device, self.config.dtype)
        key = train_key(models.weights_fingerprint(target.model), pairs_path, config, mixed)
        out = self.dir / "models" / f"{pairs_path.stem}-{key}"
        summary_path = out / "train_summary.json"
        if not summary_path.exists():  # its presence marks a finished run; otherwise train (or resume) now
            self._train_now(target, pairs_path, out, config)
        summary = json.loads(summary_path.read_text())
        return {"out_dir": str(out), "dynamics": str(out / "dynamics.jsonl"), "summary": str(summary_path),
                "final_loss": summary["final_loss"], "steps": summary["steps"]}

    def _train_now(self, target: TargetSpec, pairs_path: Path, out: Path, config) -> None:
        """In this process, or through accelerate launch when several GPUs are visible (see safepref.training.launch)."""

        release_engines()  # a vLLM engine holds most of the GPU's memory
        launch, gpus = self.config.launch_for(target), visible_gpus()
        if launch.uses_accelerate(gpus) and self.config.device in ("auto", "cuda"):
            train_with_accelerate(target.model, pairs_path, out, config, launch, gpus)
        else:
            train_dpo(target.model, pairs_path, out, config, device=self.config.device, dtype=self.config.dtype)

    def _answer_dtype(self, model: str) -> str:
        """The precision ``model`` answers in under this run's device and dtype (part of the answering stages' keys)."""
        return models.dtype_name_for(model, self.config.device, self.config.dtype, workload="generation")

    def safety(self, model: str) -> list[str]:

        summaries = []
        for suite in self.config.safety.suites:
            config = plan.safety_config(self.config, suite)
            key = safety_key(models.weights_fingerprint(model), config, self._answer_dtype(model))
            out = self.dir / "safety" / f"{slug(models.model_label(model))}-{slug(suite)}-{key}"
            if not (out / "summary.json").exists():  # answers are shared by evaluations that differ in judges only
                evaluate_safety(model, config, out, answers_dir=self.dir / "safety" / "answers")
            summaries.append(str(out / "summary.json"))
        return summaries

    def benign(self, target: TargetSpec, model: str, safety_summaries: list[str]) -> str:
        """Answer quality on benign prompts against the target's own (SFT) answers, and on the harmful prompts that
        eval-safety answered; both answer sets are shared through ``benign/answers``."""

        config = plan.benign_config(self.config, target)
        key = benign_key(models.weights_fingerprint(model), models.weights_fingerprint(target.model), config,
                         [Path(p) for p in safety_summaries], self._answer_dtype(model))
        out = self.dir / "benign" / f"{slug(models.model_label(model))}-{key}"
        if not (out / "summary.json").exists():
            evaluate_benign(model, config, out, answers_dir=self.dir / "benign" / "answers",
                            safety_dirs=[Path(p).parent for p in safety_summaries])
        return str(out / "summary.json")

    def general(self, model: str) -> str:

        config = plan.general_config(self.config)
        out = self.dir / "general" / f"{slug(models.model_label(model))}-{general_key(models.weights_fingerprint(model))}"
        release_engines()  # lm-eval loads its own copy of the model: free a vLLM engine's GPU memory first
        evaluate_general(model, config, out, device=self.config.device, dtype=self.config.dtype)  # cached inside
        return str(out / "general.json")


def run_experiment(config_path: str | Path, run_dir: str | Path | None = None,
                   seeds: list[int] | None = None, bundle_dir: str | Path | None = None,
                   pairs_only: bool = False) -> dict[str, Any]:
    """Run (or finish) the grid of ``config_path`` in ``run_dir`` (default ``runs/<name>``), its evidence in
    ``bundle_dir`` (default ``RUN_DIR/bundle``); returns report paths. ``seeds`` replaces the config's training
    seeds; ``pairs_only`` stops after every configuration's pairs are built and audited."""
    config = load_config(config_path, seeds=seeds)
    run_dir = Path(run_dir) if run_dir else Path("runs") / config.name
    return Run(config, run_dir, config_path, bundle_dir, pairs_only=pairs_only).run()
