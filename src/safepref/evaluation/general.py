"""General ability: lm-evaluation-harness on the bundled offline copies of the Open LLM Leaderboard v1 tasks.

The paper's claim has two sides (multi-model preference data helps general ability while it hurts safety), so
every trained policy gets this evaluation beside the safety one. The work is lm-eval's: its ``simple_evaluate``
with its ``hf`` model (HFLM) runs the task YAMLs in ``safepref/tasks/``, whose loaders read the bundled data
files; this module only resolves the model, keys and caches the artifact, and adds a chance level per task.

Artifact: ``<out_dir>/general.json`` with per-task leaderboard metric ± lm-eval's stderr, every metric, the
chance level of a uniform random model on the same questions, the metric per question (so that two models compare
question by question), the config, seed and library versions. It is keyed
by a fingerprint of the config and the model's files: a rerun with the same key returns the file without loading
the model. Model log-likelihoods also go to lm-eval's request cache (keyed by the model alone), so an interrupted
run, or a rerun with a larger limit, recomputes only what is missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, field
from pathlib import Path
from statistics import fmean
from typing import Any

from pydantic import ValidationError
from pydantic.dataclasses import dataclass

from safepref.core.errors import InputError, input_error_from
from safepref.core.io import file_fingerprint, write_json_atomic
from safepref.core.keys import content_key
from safepref.core.versions import package_versions
from safepref.models import loading as models

TASKS_DIR = Path(__file__).parents[1] / "tasks"
RESULTS_FILE = "general.json"
DEFAULT_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande")
_MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".model")


def known_tasks() -> list[str]:
    """Task names defined by the YAMLs shipped in ``safepref/tasks`` (adding a task is adding a YAML)."""
    return sorted(path.stem for path in TASKS_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class GeneralEvalConfig:
    # lm-eval task names, from the YAMLs in safepref/tasks (see known_tasks()).
    tasks: tuple[str, ...] = DEFAULT_TASKS
    # Questions per task: the first N in file order (MMLU: N drawn across subjects by a fixed shuffle);
    # None evaluates every bundled question.
    limit: int | None = field(default=None)
    # Few-shot examples per question (TruthfulQA stays 0-shot: its 6-shot primer is part of the prompt).
    # Leaderboard v1 used ARC 25, HellaSwag 10, MMLU 5, WinoGrande 5; SmolLM2's card reports 0-shot.
    num_fewshot: int = 0
    # Batch size for lm-eval's log-likelihood requests (8-16 is fastest on CPU; "auto" is slow and memory-hungry).
    batch_size: int = 8
    # Seed for lm-eval's python / numpy / torch / few-shot sampling.
    seed: int = 1234

    def __post_init__(self) -> None:
        unknown = [name for name in self.tasks if name not in known_tasks()]
        if unknown:
            raise InputError(f"unknown task {', '.join(map(repr, unknown))} (known tasks: {', '.join(known_tasks())})",
                             field="tasks")
        if not self.tasks:
            raise InputError(f"no task given (known tasks: {', '.join(known_tasks())})", field="tasks")
        if self.limit is not None and self.limit < 1:
            raise InputError("limit must be at least 1", field="limit")
        if self.num_fewshot < 0:
            raise InputError("num_fewshot must be 0 or more", field="num_fewshot")
        if self.batch_size < 1:
            raise InputError("batch_size must be at least 1", field="batch_size")


def make_config(**values: Any) -> GeneralEvalConfig:
    """Build a config, turning pydantic's validation errors into one-line InputErrors."""
    try:
        return GeneralEvalConfig(**values)
    except ValidationError as error:
        raise input_error_from(error) from None


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ResolvedModel:
    pretrained: str  # folder or hub id that HFLM loads
    adapter: str | None  # LoRA adapter folder evaluated on top of ``pretrained``
    tokenizer: str  # folder or hub id of the tokenizer
    identity: dict[str, Any]  # what the cache key depends on


def _folder_identity(folder: Path) -> dict[str, str]:
    """Hashes of a model folder's config, tokenizer and weight files (a retrained folder gets a new key)."""
    return {path.name: file_fingerprint(path) for path in sorted(folder.iterdir())
            if path.is_file() and path.suffix in _MODEL_FILE_SUFFIXES}


def _identity(name_or_path: str, resolved: str) -> dict[str, Any]:
    if name_or_path in models.REGISTRY:
        return {"bundled": name_or_path, "sha256": models.REGISTRY[name_or_path].sha256}
    if Path(resolved).is_dir():
        # the files' content, not where they lie: a moved or copied run folder keeps its results (with the path in
        # the key, re-judging a copy of a run's bundle re-ran lm-eval on every trained model)
        return {"files": _folder_identity(Path(resolved))}
    return {"hub": resolved}


def resolve_model(model: str) -> ResolvedModel:
    """A registry name, HF folder, hub id, full fine-tune folder or LoRA adapter folder, as HFLM arguments."""
    path = models.resolve_model_path(model)
    if not models.is_adapter(path):
        return ResolvedModel(path, None, path, _identity(model, path))
    config_path = Path(path) / "adapter_config.json"
    try:
        base_name = json.loads(config_path.read_text())["base_model_name_or_path"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError("adapter config has no base_model_name_or_path", path=config_path,
                         field="base_model_name_or_path") from None
    base = models.resolve_model_path(base_name)
    has_tokenizer = (Path(path) / "tokenizer_config.json").is_file()
    identity = {"adapter": _identity(path, path), "base": _identity(base_name, base)}
    return ResolvedModel(base, path, path if has_tokenizer else base, identity)


# ---------------------------------------------------------------------------------------------- tasks


def _task_manager(metadata: dict[str, Any] | None = None):
    # lm-eval loads in seconds: imported only where used
    from lm_eval.tasks import TaskManager

    # include_defaults=False skips indexing lm-eval's ~14k bundled YAMLs (about 14 s on 2 cores per manager).
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)


def load_tasks(names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """lm-eval Task objects for safepref task names."""
    # lm-eval loads in seconds: imported only where used
    from lm_eval.tasks import get_task_dict

    with _quiet_lm_eval():
        loaded = get_task_dict(list(names), _task_manager())
    return {name: loaded[name] for name in names}  # in the order asked for


def chance_level(task: Any, docs: list[dict[str, Any]]) -> float:
    """Expected score of a model that picks uniformly at random, on these docs, by the task YAML's rule:
    ``one_of_choices``: 1 / number of choices (accuracy);
    ``uniform_likelihoods``: the task's own metric given equal log-likelihoods for every choice (TruthfulQA mc2:
    the share of true answers)."""
    rule = (task.config.metadata or {}).get("chance", "one_of_choices")
    if rule == "one_of_choices":
        return fmean(1 / len(task.doc_to_choice(doc)) for doc in docs)
    if rule == "uniform_likelihoods":
        metric = _leaderboard_metric(task)
        return fmean(task.process_results(doc, [(0.0, False)] * len(task.doc_to_choice(doc)))[metric] for doc in docs)
    raise ValueError(f"task {task.config.task}: unknown chance rule {rule!r}")


def _first(docs: Any, limit: int | None) -> Any:
    """The docs lm-eval evaluates under ``limit`` (it takes the first N)."""
    return docs.select(range(min(limit, len(docs)))) if limit else docs


def _leaderboard_metric(task: Any) -> str:
    return (task.config.metadata or {}).get("leaderboard_metric") or task.config.metric_list[0]["metric"]


def describe_tasks(names: tuple[str, ...] | list[str] = DEFAULT_TASKS, limit: int | None = None) -> list[dict[str, Any]]:
    """Each task's size, leaderboard metric and chance level (on the first ``limit`` questions, as evaluated)."""
    rows = []
    for name, task in load_tasks(names).items():
        docs = task.eval_docs
        evaluated = _first(docs, limit)
        rows.append({"task": name, "metric": _leaderboard_metric(task), "questions": len(docs),
                     "evaluated": len(evaluated), "chance": chance_level(task, evaluated)})
    return rows


@contextlib.contextmanager
def _quiet_lm_eval():
    """lm-eval warns at every custom-dataset task load; keep real warnings, drop that one, and keep stdout clean."""
    class _DropCustomKwargsHint(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Custom kwargs can be passed" not in record.getMessage()

    # datasets loads in seconds: imported only where used
    import datasets

    log = logging.getLogger("lm_eval.api.task")
    hint_filter = _DropCustomKwargsHint()
    log.addFilter(hint_filter)
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # per-split map/filter bars over in-memory data; lm-eval's own bars stay
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        log.removeFilter(hint_filter)
        if bars_were_on:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------------------------------------- evaluate


def library_versions() -> dict[str, str]:
    return package_versions("lm_eval", "transformers", "torch", "peft")


def evaluate_general(model: str, config: GeneralEvalConfig, out_dir: str | Path, *, device: str = "auto",
                     dtype: str = "auto") -> dict[str, Any]:
    """Run lm-eval on ``config.tasks`` for ``model`` and write ``out_dir/general.json``; returns its content.

    A results file with the same key (config + model files + a precision other than float32) is returned as it
    is, without loading the model. ``device``/``dtype`` follow safepref.core.device.
    """
    out_dir = Path(out_dir)
    resolved = resolve_model(model)
    placement = models.placement_for(resolved.pretrained, device, dtype)
    # log-likelihoods in half precision differ from float32 ones; float32 (the CPU's) keeps the existing keys
    precision = [] if placement.dtype_name == "float32" else [placement.dtype_name]
    key = content_key(asdict(config), resolved.identity, library_versions(), *precision)
    results_path = out_dir / RESULTS_FILE
    if results_path.is_file():
        with contextlib.suppress(json.JSONDecodeError, OSError):
            previous = json.loads(results_path.read_text())
            # per-question scores feed the report's paired comparisons: a file from before they were kept is redone
            # (lm-eval's request cache answers every log-likelihood it already computed)
            if previous.get("key") == key and all("per_question" in t for t in previous.get("tasks", {}).values()):
                return previous

    tasks = load_tasks(config.tasks)
    output, wall_seconds = _run_lm_eval(resolved, placement, tasks, config, out_dir)
    record = {
        "key": key, "model": str(model), "pretrained": resolved.pretrained, "adapter": resolved.adapter,
        "model_identity": resolved.identity, "config": asdict(config), "limit": config.limit,
        "num_fewshot": config.num_fewshot, "seed": config.seed, "versions": library_versions(),
        **placement.describe(),
        "tasks": _task_results(tasks, output, config), "wall_seconds": round(wall_seconds, 1),
    }
    write_json_atomic(results_path, record)
    return json.loads(results_path.read_text())  # the same shape a cached rerun returns


def _run_lm_eval(resolved: ResolvedModel, placement: Any, tasks: dict[str, Any], config: GeneralEvalConfig,
                 out_dir: Path) -> tuple[dict[str, Any], float]:
    """lm-eval's ``simple_evaluate`` on the loaded tasks, seeded; returns its output and the seconds it took."""
    # lm-eval loads in seconds: imported only where used
    from lm_eval import simple_evaluate

    model_args: dict[str, Any] = {"pretrained": resolved.pretrained, "tokenizer": resolved.tokenizer,
                                  "dtype": placement.dtype_name}
    if resolved.adapter:
        model_args["peft"] = resolved.adapter
    # lm-eval's request cache, keyed by the model alone (each entry is keyed by its full prompt and continuation).
    request_cache = out_dir / ".lm-eval-cache" / content_key(resolved.identity)
    request_cache.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _quiet_lm_eval():
        output = simple_evaluate(
            model="hf", model_args=model_args, tasks=list(tasks.values()), num_fewshot=config.num_fewshot,
            batch_size=config.batch_size, device=str(placement.device), limit=config.limit, use_cache=str(request_cache),
            log_samples=True, random_seed=config.seed, numpy_random_seed=config.seed,
            torch_random_seed=config.seed, fewshot_random_seed=config.seed,
            # Without a manager simple_evaluate builds lm-eval's default one, which indexes every bundled task.
            task_manager=_task_manager(metadata=dict(model_args)),
        )
    return output, time.monotonic() - started


def _task_results(tasks: dict[str, Any], output: dict[str, Any], config: GeneralEvalConfig) -> dict[str, Any]:
    """Per task: its leaderboard metric's value and stderr, n evaluated, shots, the chance level and every metric."""
    per_task = {}
    for name, task in tasks.items():
        scores = output["results"][name]
        metric_names = [m["metric"] for m in task.config.metric_list]
        metrics = {m: {"value": _number(scores.get(f"{m},none")), "stderr": _number(scores.get(f"{m}_stderr,none"))}
                   for m in metric_names}
        evaluated = _first(task.eval_docs, config.limit)
        main = _leaderboard_metric(task)
        per_task[name] = {
            "metric": main, "value": metrics[main]["value"], "stderr": metrics[main]["stderr"],
            "n": int(output["n-samples"][name]["effective"]), "num_fewshot": int(output["n-shot"][name]),
            "chance": chance_level(task, evaluated), "metrics": metrics,
            "per_question": per_question_scores(output.get("samples", {}).get(name, []), main),
        }
    return per_task


def per_question_scores(samples: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """Question id (lm-eval's doc id) -> the leaderboard metric on that question (0/1 for accuracies, a share for
    TruthfulQA's mc2), from lm-eval's logged samples: two models evaluated on the same questions compare per
    question."""
    return {str(sample["doc_id"]): float(sample[metric]) for sample in samples if _number(sample.get(metric)) is not None}


def _number(value: Any) -> float | None:
    """lm-eval writes "N/A" for a stderr it cannot compute (a single question); keep JSON numeric or null."""
    if isinstance(value, int | float) and not math.isnan(value):
        return float(value)
    return None


def general_key(model_fingerprint: str) -> str:
    """The general-ability folder's key: the evaluated weights (task settings key the cache inside it)."""
    return content_key(model_fingerprint)
