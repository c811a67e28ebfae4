"""Stage 1, generate: answers to prompts from many sources, resumable, with provenance on every row.

Sources:
- a causal LM by registry name, Hugging Face id or folder, through transformers (default backend: batched, left
  padding, prompts sorted by length so a batch wastes little padding, KV cache) or vLLM (``backend="vllm"``,
  optional extra for GPU users: ``pip install 'safepref[vllm]'``);
- an OpenAI-compatible endpoint, ``openai:<model>`` (base URL from ``OPENAI_BASE_URL``, key from
  ``OPENAI_API_KEY``);
- fixed answer sets shipped with the package: ``gpt4o`` (GPT-4o's answers to SafeRLHF prompts), ``human-chosen``
  and ``human-rejected`` (the SafeRLHF pairs' human answers).

Two modes, as the paper: ``k`` samples (temperature 0.5, top_p 0.9, repetition penalty 1.2, no-repeat n-gram 3,
128 new tokens) with sample indices 0..k-1, or one greedy answer with sample index -1.

Every row is appended to an :class:`AppendLog` keyed by (prompt, source, sample): kill the process at any moment
and rerun, and each key appears exactly once. Every generated row records what it was made from (decoding settings,
backend, the model's weights fingerprint: :func:`answer_identity`); a file holding rows made otherwise, or answers
to another text under the same prompt id, is never resumed into: the call stops with exit 2 naming what differs.
The same answers under another name of the model (a run folder moved or copied) are reused, not made again
(:mod:`safepref.generation.answer_reuse`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from safepref.core.datasets import load_dataset, prompt_id
from safepref.core.device import precision_key
from safepref.core.errors import InputError
from safepref.core.io import AppendLog
from safepref.core.keys import stage_key
from safepref.core.progress import progress_bar
from safepref.core.records import Prompt, Response, response_id
from safepref.generation.answer_reuse import answers_to_reuse
from safepref.generation.openai_api import ChatEndpoint, parse_openai_source
from safepref.models import loading as models

FIXED_SOURCES = ("gpt4o", "human-chosen", "human-rejected")
GREEDY_INDEX = -1

# A base model has no chat template: it is asked through a completion prompt and cut at the first sign that it
# starts inventing the next question.
COMPLETION_TEMPLATE = "Question: {prompt}\nAnswer:"
COMPLETION_STOPS = ("\nQuestion:", "\nQ:", "\n\n\n", "\nUser:", "\nHuman:")


@dataclass
class GenerationConfig:
    """How answers are decoded. Defaults are the paper's official generation settings."""

    max_new_tokens: int = 128  # tokens generated per answer
    num_samples: int = 5  # k sampled answers per prompt (ignored when greedy)
    greedy: bool = False  # one deterministic answer per prompt, stored with sample_index -1
    temperature: float = 0.5
    top_k: int = 50  # what transformers' generate applies when sampling unless told otherwise (so did the paper)
    top_p: float = 0.9
    repetition_penalty: float = 1.2
    no_repeat_ngram_size: int = 3
    # Rows (prompt x sample) decoded together by the transformers backend; a finished row's slot is refilled at
    # once. 64 measured fastest for SmolLM2 on a 2-core CPU (benchmarks/bench_generate.py); smaller saves memory.
    batch_size: int = 64
    seed: int = 0
    system_prompt: str | None = None  # prepended as a system turn when the chat template allows it
    backend: str = "transformers"  # transformers | vllm (openai: and fixed sources pick their own)
    stop: tuple[str, ...] = field(default_factory=tuple)  # extra stop strings (base models get COMPLETION_STOPS)
    device: str = "auto"  # transformers backend: auto | cpu | cuda | cuda:N (see safepref.core.device)
    dtype: str = "auto"  # auto (the device policy) | float32 | bfloat16 | float16; vLLM gets the same choice
    # transformers backend: "decoder" (safepref's continuous batching), "generate" (model.generate on batches of
    # batch_size rows), "generate-static" (the same with a static KV cache), or "auto" (see choose_engine).
    engine: str = "auto"
    request_timeout: float = 60.0  # openai: sources: seconds before a request is retried
    max_retries: int = 5  # openai: sources: bounded retries (backoff) on timeouts, 429, 5xx and malformed bodies

    def __post_init__(self) -> None:
        # every backend would otherwise decode something (a 0-token budget still yields one token per row): refuse
        for name in ("max_new_tokens", "num_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}", field=name)

    def settings(self) -> dict[str, Any]:
        """The decoding settings recorded on every row (what a reader needs to reproduce it)."""
        if self.greedy:
            return {"mode": "greedy", "max_new_tokens": self.max_new_tokens, "system_prompt": self.system_prompt}
        keep = ("max_new_tokens", "num_samples", "temperature", "top_k", "top_p", "repetition_penalty",
                "no_repeat_ngram_size", "seed", "system_prompt")
        return {"mode": "sample", **{k: v for k, v in asdict(self).items() if k in keep}}

    def sampling(self):
        """The decoder's view of these settings (greedy ignores the sampling ones, as generate does)."""
        from safepref.generation.decode import (
            SamplingSettings,  # decode loads torch and transformers (~4 s): only when a model answers
        )

        return SamplingSettings(max_new_tokens=self.max_new_tokens, greedy=self.greedy, temperature=self.temperature,
                                top_k=self.top_k, top_p=self.top_p, repetition_penalty=self.repetition_penalty,
                                no_repeat_ngram_size=self.no_repeat_ngram_size)

    def sample_indices(self) -> list[int]:
        return [GREEDY_INDEX] if self.greedy else list(range(self.num_samples))


def generate_responses(prompts: Sequence[Prompt], source: str, out_path: str | Path,
                       config: GenerationConfig | None = None) -> list[Response]:
    """Answer every prompt from ``source``; rows already in ``out_path`` are reused. Returns this call's rows."""
    config = config or GenerationConfig()
    if not prompts:
        raise InputError("no prompts to answer")
    log = AppendLog(out_path, key_of=_row_key)
    identity = None if source in FIXED_SOURCES else answer_identity(source, config)
    moved = answers_to_reuse(log, prompts, source, identity, set(config.sample_indices()))
    wanted = {response_id(p.id, source, i) for p in prompts for i in config.sample_indices()}
    pending = [p for p in prompts if any((key := response_id(p.id, source, i)) not in log.done and key not in moved
                                         for i in config.sample_indices())]
    if source in FIXED_SOURCES:
        log.append(_fixed_answers(source, pending))
    elif pending:
        backend = _backend_for(source, config)
        for batch in backend(pending, source, config):
            log.append([r.model_copy(update={"generation": {**r.generation, **identity}}) for r in batch])
    rows = [r for r in (Response.model_validate(row) for row in log.rows()) if r.id in wanted]
    return rows + [Response.model_validate({**row, "source": source}) for key, row in moved.items()
                   if key not in log.done]


def answer_identity(source: str, config: GenerationConfig) -> dict[str, Any]:
    """What an answer is a function of besides its prompt: decoding settings, backend, weights, ``dtype`` (not float32).

    Recorded on every generated row; a file whose rows disagree is never resumed into. ``num_samples`` is left out:
    each row has its own seed, so answer i is the same whether 3 or 5 were asked for.
    """
    settings = {k: v for k, v in config.settings().items() if k != "num_samples"}
    backend = "openai" if source.startswith("openai:") else (None if config.backend == "transformers" else
                                                               config.backend)
    precision = {} if backend == "openai" else precision_key(
        models.dtype_name_for(source, config.device, config.dtype, workload="generation"))
    return {**settings, "backend": backend, "weights": models.weights_fingerprint(source), **precision}


def _row_key(row: dict[str, Any]) -> str:
    return response_id(row["prompt_id"], row["source"], row["sample_index"])


# ---------------------------------------------------------------------------------------------- fixed sources


def fixed_answer_prompt_ids(source: str) -> set[str]:
    """Ids (from the prompt text) of the prompts a fixed answer set answers: asked of the set itself, nothing
    generated or written."""
    if source not in FIXED_SOURCES:
        raise InputError(f"'{source}' is not a fixed answer set ({', '.join(FIXED_SOURCES)})")
    return {answer.prompt_id for answer in _all_fixed_answers(source)}


def _all_fixed_answers(source: str) -> list[Response]:
    if source == "gpt4o":
        return load_dataset("gpt4o-saferlhf")
    side = "chosen" if source == "human-chosen" else "rejected"
    answers, count = [], {}
    for pair in load_dataset("saferlhf"):
        pid = prompt_id(pair.prompt_text)
        index = count.get(pid, 0)
        count[pid] = index + 1
        text = pair.chosen_text if side == "chosen" else pair.rejected_text
        answers.append(Response(prompt_id=pid, prompt=pair.prompt_text, source=source, sample_index=index,
                                text=text, generation={"mode": "fixed", "dataset": "saferlhf"}))
    return answers


def _fixed_answers(source: str, prompts: Sequence[Prompt]) -> list[Response]:
    """Answers that ship with the package, for the given prompts only (prompts without one are simply absent)."""
    wanted = {p.id for p in prompts} | {prompt_id(p.text) for p in prompts}
    answers = _all_fixed_answers(source)
    by_text_id = {prompt_id(p.text): p.id for p in prompts}
    return [a.model_copy(update={"prompt_id": by_text_id.get(a.prompt_id, a.prompt_id)})
            for a in answers if a.prompt_id in wanted]


# ---------------------------------------------------------------------------------------------- backends


def _backend_for(source: str, config: GenerationConfig):
    if source.startswith("openai:"):
        return _openai_batches
    if config.backend == "vllm":
        return _vllm_batches
    if config.backend != "transformers":
        raise InputError(f"unknown generation backend '{config.backend}' (transformers, vllm)")
    return _transformers_batches


def _uses_chat_template(source: str, tokenizer: Any) -> bool:
    if source in models.REGISTRY:
        return models.REGISTRY[source].chat
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, text: str, *, chat: bool, system_prompt: str | None = None) -> str:
    """The exact string the model sees: its own chat template, or the completion prompt for base models."""
    if not chat:
        return COMPLETION_TEMPLATE.format(prompt=text)
    messages = [{"role": "user", "content": text}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _cut_at_stops(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for stop in stops:
        position = text.find(stop)
        if position != -1:
            cut = min(cut, position)
    return text[:cut].strip()


def _transformers_batches(prompts: Sequence[Prompt], source: str, config: GenerationConfig) -> Iterator[list[Response]]:
    """Answers from a transformers model, one list of rows per prompt as soon as all its samples are done."""

    from safepref.generation.decode import (
        DecodeRequest,  # decode loads torch and transformers (~4 s): only when a model answers
    )

    tokenizer = models.load_tokenizer(source)
    model = models.load_model(source, device=config.device, dtype=config.dtype, workload="generation")
    engine = choose_engine(config.engine, model.device)
    chat = _uses_chat_template(source, tokenizer)
    stops = tuple(config.stop) + (() if chat else COMPLETION_STOPS)
    prompt_ids = {p.id: tokenizer(render_prompt(tokenizer, p.text, chat=chat, system_prompt=config.system_prompt),
                                  add_special_tokens=False)["input_ids"] for p in prompts}
    ordered = sorted(prompts, key=lambda p: len(prompt_ids[p.id]))  # similar lengths together: less padding
    requests = [DecodeRequest(key=(p, index), prompt_ids=prompt_ids[p.id], seed=_row_seed(config.seed, p.id, index))
                for p in ordered for index in config.sample_indices()]
    stop_ids = {i for i in [tokenizer.eos_token_id, *_as_list(model.generation_config.eos_token_id)] if i is not None}
    # where it ran is provenance on the row, not part of its key (settings() is what keys use)
    settings = {**config.settings(), "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch.")}
    if engine != "decoder":
        settings["engine"] = engine
    per_prompt = len(config.sample_indices())
    answers: dict[str, list[Response]] = {}
    bar = progress_bar(total=len(ordered), desc=f"generate {models.display_name(source)}", unit="prompt")
    produced, started = 0, time.perf_counter()
    try:
        for request, generated in _engine(engine)(model, requests, config.sampling(), batch_size=config.batch_size,
                                                  stop_ids=stop_ids, pad_id=tokenizer.pad_token_id):
            prompt, index = request.key
            text = _cut_at_stops(tokenizer.decode(generated, skip_special_tokens=True), stops)
            produced += len(generated)
            rows = answers.setdefault(prompt.id, [])
            rows.append(Response(prompt_id=prompt.id, prompt=prompt.text, source=source, sample_index=index, text=text,
                                 generation=settings, n_tokens=len(generated)))
            if len(rows) == per_prompt:
                yield sorted(answers.pop(prompt.id), key=lambda r: r.sample_index)
                bar.update(1)
                bar.set_postfix(tok_s=f"{produced / (time.perf_counter() - started):.0f}")
    finally:
        bar.close()


ENGINES = ("auto", "decoder", "generate", "generate-static")
# On CUDA, auto picks model.generate: the one CUDA figure measured (shared/DESIGN.md: warmed generate, fp32, 3,375
# tok/s at 128 rows on an H100) is of it; the decoder's per-row draws cost a kernel launch each and were never timed
# on a GPU. Re-measure with scripts/gpu_check.py (or benchmarks/bench_generate.py --device cuda --engine X) and change
# this line if the decoder wins. The CPU keeps the decoder: it is what benchmarks/bench_generate.py measures, and its
# rows do not depend on their batch neighbours (a resumed run draws the same answers).
CUDA_ENGINE = "generate"


def choose_engine(requested: str, device: Any) -> str:
    """The generation path for the transformers backend: as requested, or the measured default for the device."""
    if requested not in ENGINES:
        raise InputError(f"unknown generation engine '{requested}' ({', '.join(ENGINES)})", field="engine")
    if requested != "auto":
        return requested
    return CUDA_ENGINE if getattr(device, "type", str(device)) == "cuda" else "decoder"


def _engine(name: str):
    from safepref.generation.decode import (  # decode loads torch and transformers (~4 s): only when a model answers
        decode,
        generate_rows,
    )

    return {"decoder": decode, "generate": generate_rows,
            "generate-static": partial(generate_rows, static_cache=True)}[name]


def _row_seed(seed: int, prompt_id_: str, sample_index: int) -> int:
    """A row's own seed, so its answer is the same whatever batch it lands in (and after a resume)."""
    return seed + int(prompt_id(f"{prompt_id_}|{sample_index}")[1:9], 16)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _vllm_batches(prompts: Sequence[Prompt], source: str, config: GenerationConfig) -> Iterator[list[Response]]:
    """vLLM for GPU users. Every sampling setting goes through but no-repeat-n-gram, which vLLM lacks: rows that
    asked for it record it under ``not_applied``."""
    llm = _vllm_engine(source, config)  # raises a clear InputError where vLLM is not installed
    # vLLM loads in seconds: imported only where used
    from vllm import SamplingParams

    tokenizer = llm.get_tokenizer()
    chat = _uses_chat_template(source, tokenizer)
    params = SamplingParams(**vllm_sampling(config, chat))
    texts = [render_prompt(tokenizer, p.text, chat=chat, system_prompt=config.system_prompt) for p in prompts]
    settings = {**config.settings(), "backend": "vllm"}
    if not config.greedy and config.no_repeat_ngram_size > 0:
        settings["not_applied"] = ["no_repeat_ngram_size"]
    outputs = llm.generate(texts, params)
    for prompt, output in zip(prompts, outputs, strict=True):
        yield [Response(prompt_id=prompt.id, prompt=prompt.text, source=source, sample_index=index,
                        text=completion.text.strip(), generation=settings, n_tokens=len(completion.token_ids))
               for index, completion in zip(config.sample_indices(), output.outputs, strict=True)]


def vllm_sampling(config: GenerationConfig, chat: bool) -> dict[str, Any]:
    """vLLM ``SamplingParams`` for these settings (greedy: temperature 0, every filter off)."""
    sample = not config.greedy
    return {
        "n": len(config.sample_indices()), "max_tokens": config.max_new_tokens, "seed": config.seed,
        "temperature": config.temperature if sample else 0.0,
        "top_p": config.top_p if sample else 1.0,
        "top_k": config.top_k if sample and config.top_k > 0 else -1,  # -1: no top-k (every vLLM version)
        "repetition_penalty": config.repetition_penalty if sample else 1.0,
        "stop": list(config.stop) + ([] if chat else list(COMPLETION_STOPS)),
    }


_VLLM_ENGINES: dict[tuple, Any] = {}  # one engine at a time: vLLM reserves most of the GPU's memory


def _vllm_engine(source: str, config: GenerationConfig):
    """The cached vLLM engine for this model, precision and seed (an engine for another one is released first)."""
    try:
        # vLLM loads in seconds: imported only where used
        from vllm import LLM
    except ImportError:
        raise InputError("backend 'vllm' needs vLLM: pip install 'safepref[vllm]' (on a machine with a GPU)") from None
    path = models.resolve_model_path(source)
    if models.is_adapter(path):
        path = str(models.merged_adapter_dir(path))  # vLLM loads whole models: merge the LoRA adapter once
    dtype = models.placement_for(path, config.device, config.dtype, workload="generation").dtype_name
    key = (path, dtype, config.seed)
    if key not in _VLLM_ENGINES:
        release_engines()
        _VLLM_ENGINES[key] = LLM(model=path, seed=config.seed, dtype=dtype)
    return _VLLM_ENGINES[key]


def release_engines() -> None:
    """Free a cached vLLM engine and its GPU memory (the runner calls this before training and lm-eval)."""
    if not _VLLM_ENGINES:
        return
    # torch loads in seconds: imported only where used
    import torch

    _VLLM_ENGINES.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _openai_batches(prompts: Sequence[Prompt], source: str, config: GenerationConfig) -> Iterator[list[Response]]:

    endpoint = ChatEndpoint(parse_openai_source(source), timeout=config.request_timeout,
                            max_retries=config.max_retries, backoff_initial=0.5)
    settings = {**config.settings(), "backend": "openai"}
    bar = progress_bar(total=len(prompts), desc=f"generate {source}", unit="prompt")
    try:
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt.text}]
            if config.system_prompt:
                messages.insert(0, {"role": "system", "content": config.system_prompt})
            rows = []
            for index in config.sample_indices():
                text, n_tokens = endpoint.complete(
                    messages, max_tokens=config.max_new_tokens,
                    temperature=0.0 if config.greedy else config.temperature,
                    top_p=1.0 if config.greedy else config.top_p,
                    seed=None if config.greedy else config.seed + max(index, 0),
                )
                rows.append(Response(prompt_id=prompt.id, prompt=prompt.text, source=source, sample_index=index,
                                     text=text.strip(), generation=settings, n_tokens=n_tokens))
            yield rows
            bar.update(1)
    finally:
        bar.close()


def generate_key(source_identity: Any, prompts: list[Prompt]) -> str:
    """The answers' content key: who answered (a fixed source's name, or a model's weights and decoding settings from
    :func:`answer_identity`) and the prompts' ids and texts."""
    return stage_key("generate", source_identity, [[p.id, p.text] for p in prompts])
