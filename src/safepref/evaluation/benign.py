"""Benign evaluation: greedy answers to benign instructions, judged for refusal, helpfulness and collapse.

A model can lower its attack success rate by learning to say little instead of learning safety: answer quality
on benign prompts shows it. For each model: the bundled harmless (Alpaca-style) instruction pool and XSTest's safe
prompts, answered greedily; then

- refusal rate (the refusal judge), with its 95% Wilson interval;
- win rate against a reference model's answers to the same prompts (by default the model a trained folder was
  trained from, i.e. SFT), judged pairwise by the reward model: a win counts 1, a tie (the same text, or the same
  score) 1/2. Its interval is Wilson's on wins + ties/2, conservative when there are ties;
- mean reward, and the answer measures of :mod:`safepref.evaluation.answer_quality` (tokens, distinct-2, restatement);
- the same measures for the model's answers to harmful prompts, read from eval-safety run folders
  (``safety_dirs``), beside their ASR.

Artifacts: ``ANSWERS_DIR/answers-<model>-<key>.jsonl`` (resumable; the key hashes the model's identity and the
decoding settings, so a reference's answers are made once and shared by every model compared with it), their
reward scores beside them (``.scores.jsonl``), and ``OUT_DIR/summary.json``. Answers eval-safety already made to
the same prompts with the same settings (XSTest's safe prompts) are copied in, never generated twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safepref.core.datasets import load_dataset, load_prompts
from safepref.core.device import precision_key
from safepref.core.errors import InputError, input_error_from
from safepref.core.io import AppendLog, file_fingerprint, iter_jsonl, iter_table, write_json_atomic
from safepref.core.keys import STAGE_VERSIONS, stage_key
from safepref.core.paths import slug
from safepref.core.records import Prompt, Response, response_id
from safepref.core.stats import wilson_interval
from safepref.evaluation.answer_quality import answer_quality, collapse_reasons, words
from safepref.generation.generate import GenerationConfig, answer_identity, generate_responses
from safepref.judges import judge_fingerprints
from safepref.models import loading as models
from safepref.scoring.score import ScoreConfig, score_responses

XSTEST_SAFE = "xstest-safe"
GREEDY_INDEX = -1
TIE_TOLERANCE = 1e-6  # reward differences this small are ties


class BenignEvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pools: list[str] = Field(default_factory=lambda: ["harmless-instructions", XSTEST_SAFE],
                             description="benign prompt pools: xstest-safe, a bundled prompt dataset, or path[:column]")
    limit: int | None = Field(100, ge=1, description="benign prompts in all, split evenly between the pools")
    max_new_tokens: int = Field(128, ge=1, description="greedy answer length")
    batch_size: int = Field(64, ge=1, description="generation batch size")
    reference: str | None = Field(None, description="model or answers file (prompt, response) to compare with; "
                                                    "default: the model a trained folder was trained from, else "
                                                    "the model itself")
    reward_model: str = Field("safety-bt", description="judges the pairwise comparison")
    device: str = Field("auto", description="where the models answer and score: auto | cpu | cuda | cuda:N")
    dtype: str = Field("auto", description="precision: auto (the device policy) | float32 | bfloat16 | float16")

    def key_dump(self) -> dict[str, Any]:
        """The settings a result key covers: where it ran is provenance, not one of them."""
        return self.model_dump(mode="json", exclude={"device", "dtype"})


def make_config(**values: Any) -> BenignEvalConfig:
    """Build a config, turning pydantic's validation errors into one-line InputErrors."""
    try:
        return BenignEvalConfig(**values)
    except ValidationError as error:
        raise input_error_from(error) from None


def model_identity(model: str) -> str:
    """What answer caches are keyed by: a fingerprint of the model's weights, so retraining into the same folder
    never reuses the old model's answers."""
    return models.weights_fingerprint(model)


def default_reference(model: str) -> str:
    """The model a trained folder was trained from (its SFT), or the model itself."""
    summary = Path(model) / "train_summary.json"
    return json.loads(summary.read_text(encoding="utf-8"))["model"] if summary.is_file() else model


# ---------------------------------------------------------------------------------------------- prompts


def benign_prompts(config: BenignEvalConfig) -> list[Prompt]:
    """The first prompts of each pool, an even share of ``limit`` each, trimmed to ``limit`` in all."""

    if not config.pools:
        raise InputError("no benign prompt pool given", field="pools")
    share = math.ceil(config.limit / len(config.pools)) if config.limit else None
    prompts: list[Prompt] = []
    for pool in config.pools:
        if pool == XSTEST_SAFE:
            found = [p for p in load_dataset("xstest") if p.meta.get("label") == "safe"]
        else:
            found = load_prompts(pool)
        prompts += found[:share] if share else found
    return prompts[: config.limit] if config.limit else prompts


# ---------------------------------------------------------------------------------------------- answers


def _generation(config: BenignEvalConfig):

    return GenerationConfig(greedy=True, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                            device=config.device, dtype=config.dtype)


def answers_path(model: str, config: BenignEvalConfig, answers_dir: Path) -> Path:
    generation = _generation(config)
    precision = {} if model.startswith("openai:") else precision_key(
        models.dtype_name_for(model, config.device, config.dtype, workload="generation"))
    key = stage_key("eval_benign", model_identity(model), generation.settings(), *([precision] if precision else []))
    return answers_dir / f"answers-{slug(models.model_label(model))}-{key}.jsonl"


def reusable_answers(prompts: list[Prompt], model: str, identity: dict[str, Any], files: list[Path]) -> list[Response]:
    """Greedy answers of ``model`` made with the same weights and decoding settings (``identity``, see
    ``generate.answer_identity``; where they ran does not matter) to the same prompt texts, from other stages'
    response files (eval-safety's), renamed to the benign prompt ids."""
    by_text = {p.text: p for p in prompts}
    found: dict[str, Response] = {}
    for path in files:
        for _, row in iter_jsonl(path):
            prompt = by_text.get(row.get("prompt"))
            if prompt and row.get("source") == model and row.get("sample_index") == GREEDY_INDEX \
                    and _made_with(row, identity) and prompt.id not in found:
                found[prompt.id] = Response.model_validate({**row, "prompt_id": prompt.id})
    return list(found.values())


def _made_with(row: dict[str, Any], identity: dict[str, Any]) -> bool:
    made = row.get("generation") or {}
    return all(made.get(key) == value for key, value in identity.items())


def safety_answer_files(safety_dir: Path) -> list[Path]:
    """An eval-safety folder's answers without attack: the file its summary names (a runner keeps answers in a
    shared folder), else the ``responses-none-*`` files inside it."""
    summary_path = safety_dir / "summary.json"
    if summary_path.is_file():
        named = json.loads(summary_path.read_text(encoding="utf-8")).get("answers", {}).get("none")
        if named and Path(named).is_file():
            return [Path(named)]
    return sorted(safety_dir.glob("responses-none-*.jsonl"))


def model_answers(model: str, prompts: list[Prompt], config: BenignEvalConfig, answers_dir: Path,
                  reuse_files: list[Path]) -> tuple[list[Response], Path]:
    """Greedy answers of ``model`` to ``prompts``: reused where another stage made them, otherwise generated."""

    path = answers_path(model, config, answers_dir)
    generation = _generation(config)
    log = AppendLog(path, key_of=lambda row: response_id(row["prompt_id"], row["source"], row["sample_index"]))
    log.append(reusable_answers([p for p in prompts if response_id(p.id, model, GREEDY_INDEX) not in log.done],
                                model, answer_identity(model, generation), reuse_files))
    responses = generate_responses(prompts, model, path, generation)
    order = {p.id: i for i, p in enumerate(prompts)}
    return sorted(responses, key=lambda r: order[r.prompt_id]), path


def file_answers(path: Path, prompts: list[Prompt]) -> list[Response]:
    """Reference answers from a file with ``prompt`` and ``response`` (or ``text``) columns, joined by prompt text."""
    by_text = {p.text.strip(): p for p in prompts}
    source = f"file:{file_fingerprint(path)}"
    found: dict[str, Response] = {}
    for line, row in iter_table(path, required=("prompt",)):
        text = row.get("response", row.get("text"))
        if not isinstance(text, str):
            raise InputError("missing answer (a 'response' or 'text' column)", path=path, line=line, field="response")
        prompt = by_text.get(str(row["prompt"]).strip())
        if prompt and prompt.id not in found:
            found[prompt.id] = Response(prompt_id=prompt.id, prompt=prompt.text, source=source,
                                        sample_index=GREEDY_INDEX, text=text, generation={"mode": "file"})
    if not found:
        raise InputError("no reference answer matches a benign prompt (rows are joined by prompt text)", path=path)
    return list(found.values())


# ---------------------------------------------------------------------------------------------- measures


def token_counter(model: str):
    """Counts answer length in the evaluated model's tokens (words for an endpoint, which has no local tokenizer)."""
    if model.startswith("openai:"):
        return lambda text: len(words(text))
    tokenizer = models.load_tokenizer(model)
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def win_rate(scores: dict[str, float], reference_scores: dict[str, float], same_text: set[str]) -> dict[str, Any]:
    """Pairwise wins of the model over the reference, per prompt id present in both: ties count half."""
    common = sorted(set(scores) & set(reference_scores))
    wins = ties = 0
    for prompt in common:
        gap = scores[prompt] - reference_scores[prompt]
        if prompt in same_text or abs(gap) <= TIE_TOLERANCE:
            ties += 1
        elif gap > 0:
            wins += 1
    n, points = len(common), wins + ties / 2
    interval = wilson_interval(points, n)  # Wilson on a half-counted tie: wider than the true interval, never narrower
    return {"n": n, "wins": wins, "ties": ties, "losses": n - wins - ties, "rate": points / n if n else None,
            "ci95": list(interval) if interval else None}


def _scores(responses: list[Response], config: BenignEvalConfig, path: Path) -> dict[str, float]:

    scored = score_responses(responses, config.reward_model, path.with_name(path.name.replace(".jsonl", ".scores.jsonl")),
                             ScoreConfig(device=config.device, dtype=config.dtype))
    by_id = {s.response_id: s.score for s in scored}
    return {r.prompt_id: by_id[r.id] for r in responses}


def harmful_answer_quality(safety_dir: Path, count_tokens, judge_dtype: str = "auto") -> dict[str, Any] | None:
    """Answer measures for an eval-safety folder's answers to harmful prompts (attack 'none'; XSTest: its unsafe
    prompts), or None when the folder has none."""
    summary_path = safety_dir / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    files = safety_answer_files(safety_dir)
    if "none" not in summary["config"]["attacks"] or not files:
        return None
    responses_file = files[0]
    xstest = summary["suite"] == "xstest"
    judged = {row["id"] for _, row in iter_jsonl(safety_dir / "verdicts.jsonl")
              if row["attack"] == "none" and (not xstest or row.get("xstest_label") == "unsafe")}
    rows = [row for _, row in iter_jsonl(responses_file)
            if row["sample_index"] == GREEDY_INDEX and row["prompt_id"].removesuffix("|none") in judged]
    if not rows:
        return None
    quality = answer_quality([r["prompt"] for r in rows], [r["text"] for r in rows], count_tokens, judge_dtype)
    return {"suite": f"{summary['suite']}-unsafe" if xstest else summary["suite"], "attack": "none", **quality}


# ---------------------------------------------------------------------------------------------- the stage


def evaluate_benign(model: str, config: BenignEvalConfig, out_dir: str | Path, *, answers_dir: str | Path | None = None,
                    safety_dirs: list[str | Path] = ()) -> dict[str, Any]:
    """Answer the benign pools, compare with the reference, measure; also measure the answers to harmful prompts
    in ``safety_dirs`` (eval-safety folders of the same model), whose XSTest answers are reused. Returns (and
    writes to ``out_dir/summary.json``) the summary."""
    out_dir = Path(out_dir)
    answers_dir = Path(answers_dir) if answers_dir else out_dir
    safety_dirs = [Path(d) for d in safety_dirs]
    prompts = benign_prompts(config)  # names resolve before any model runs
    reference = config.reference or default_reference(model)
    reference_file = Path(reference) if Path(reference).is_file() else None
    reuse = [f for d in safety_dirs for f in safety_answer_files(d)]

    answers, path = model_answers(model, prompts, config, answers_dir, reuse)
    if reference_file:
        reference_answers = file_answers(reference_file, prompts)
        reference_path = answers_dir / f"reference-{file_fingerprint(reference_file)}.jsonl"
    else:
        reference_answers, reference_path = model_answers(reference, prompts, config, answers_dir, reuse)
    scores = _scores(answers, config, path)
    reference_scores = _scores(reference_answers, config, reference_path)
    reference_text = {r.prompt_id: r.text for r in reference_answers}
    same_text = {r.prompt_id for r in answers if reference_text.get(r.prompt_id) == r.text}
    won = win_rate(scores, reference_scores, same_text)

    count_tokens = token_counter(model)
    text_of = {p.id: p.text for p in prompts}
    quality = answer_quality([text_of[r.prompt_id] for r in answers], [r.text for r in answers], count_tokens,
                             config.dtype)
    reference_quality = answer_quality([text_of[r.prompt_id] for r in reference_answers],
                                       [r.text for r in reference_answers], count_tokens, config.dtype)
    pool_of = {p.id: p.dataset if p.dataset != "xstest" else XSTEST_SAFE for p in prompts}
    pools = {}
    for pool in dict.fromkeys(pool_of.values()):
        mine = [r for r in answers if pool_of[r.prompt_id] == pool]
        pools[pool] = answer_quality([text_of[r.prompt_id] for r in mine], [r.text for r in mine], count_tokens,
                                     config.dtype)
    harmful = [q for d in safety_dirs if (q := harmful_answer_quality(d, count_tokens, config.dtype))]

    summary = {
        "model": model, "reference": reference, "n": quality["n"],
        "refusal_rate": quality["refusal_rate"], "refusal_rate_ci": quality["refusal_rate_ci"],
        "win_rate_vs_reference": won["rate"], "win_rate_ci": won["ci95"], "win_rate_n": won["n"],
        "wins_ties_losses": [won["wins"], won["ties"], won["losses"]],
        "mean_reward": sum(scores.values()) / len(scores),
        "reference_mean_reward": sum(reference_scores.values()) / len(reference_scores),
        **{k: quality[k] for k in ("mean_tokens", "median_tokens", "distinct_2", "restatement_rate",
                                   "restatement_rate_ci", "repetition_rate", "repetition_rate_ci")},
        "collapse": collapse_reasons(quality, reference_quality),
        "reference_quality": reference_quality, "pools": pools, "harmful": harmful,
        "config": config.model_dump(mode="json"), "answers": str(path), "reference_answers": str(reference_path),
    }
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def benign_key(model_fingerprint: str, reference_fingerprint: str, config: BenignEvalConfig,
               safety_summaries: list[Path], answer_dtype: str = "float32") -> str:
    """The benign evaluation's content key: the evaluated and reference weights, the settings, the precision the
    answers are made in (``answer_dtype``, absent when float32), the safety summaries whose harmful-prompt answers it
    measures, the refusal judge (with its LM read's precision) and the answer measures' version."""
    precision = precision_key(answer_dtype)
    return stage_key("eval_benign", model_fingerprint, reference_fingerprint, config.key_dump(),
                     *([precision] if precision else []),
                     [file_fingerprint(p) for p in safety_summaries], judge_fingerprints(["refusal"], config.dtype),
                     {"answer_measures": STAGE_VERSIONS["answer_quality"]})
