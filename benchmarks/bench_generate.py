"""Generation speed: safepref's generate stage against the paper's official loop, measured in one run.

Anchor (the official repository's loop style): transformers ``generate`` on batches of 4 prompts in file order,
``num_return_sequences=5``, chat template applied, the paper's sampling settings. Candidate: safepref's
``generate_responses`` with its defaults (continuous batching, see ``safepref/decode.py``). Both sample 5 answers
of up to 128 new tokens for the same SafeRLHF prompts with SmolLM2-135M-Instruct. Speed counts real tokens (up to
and including the first end-of-sequence), never padded steps. Model loading is excluded from both timings.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/bench_generate.py --prompts 24

Target: ratio >= 2.0. ``--large-batch-generate`` adds a third line: ``generate`` on length-sorted batches of the
same number of rows as safepref's batch, to separate the gain of bigger batches from that of the decoder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from safepref import models
from safepref.data import saferlhf_prompts
from safepref.generate import GenerationConfig, generate_responses, render_prompt

MODEL = "smollm2-135m-instruct"


def generate_loop(model, tokenizer, texts: list[str], prompts_per_batch: int, config: GenerationConfig) -> int:
    """transformers generate over batches of prompts, k return sequences each; returns real tokens produced."""
    produced = 0
    for start in range(0, len(texts), prompts_per_batch):
        inputs = tokenizer(texts[start:start + prompts_per_batch], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=True, max_new_tokens=config.max_new_tokens,
                                    temperature=config.temperature, top_p=config.top_p,
                                    repetition_penalty=config.repetition_penalty,
                                    no_repeat_ngram_size=config.no_repeat_ngram_size,
                                    num_return_sequences=config.num_samples, pad_token_id=tokenizer.pad_token_id)
        for row in output[:, inputs["input_ids"].shape[1]:].tolist():
            produced += row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
    return produced


def timed(fn) -> tuple[int, float]:
    started = time.perf_counter()
    tokens = fn()
    return tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24, help="SafeRLHF prompts answered by each contender")
    parser.add_argument("--large-batch-generate", action="store_true", help="also time generate on large batches")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (safepref.device)")
    parser.add_argument("--engine", default="auto", help="safepref's engine: auto, decoder, generate, generate-static")
    args = parser.parse_args()

    # the paper's settings and safepref's default batch size
    config = GenerationConfig(device=args.device, engine=args.engine)
    prompts = saferlhf_prompts()[:args.prompts]
    tokenizer, model = models.load_tokenizer(MODEL), models.load_model(MODEL, device=args.device, dtype="auto")
    texts = [render_prompt(tokenizer, p.text, chat=True) for p in prompts]
    print(f"{len(prompts)} SafeRLHF prompts x {config.num_samples} samples x <= {config.max_new_tokens} new tokens, "
          f"{MODEL} on {model.device} ({model.dtype}), torch threads {torch.get_num_threads()}", flush=True)

    results = {}
    torch.manual_seed(0)
    results["official loop: generate, 4 prompts x 5 per batch"] = timed(
        lambda: generate_loop(model, tokenizer, texts, 4, config))
    if args.large_batch_generate:
        by_length = sorted(texts, key=lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]))
        per_batch = max(1, config.batch_size // config.num_samples)
        results[f"generate, length-sorted, {per_batch} prompts x 5 per batch"] = timed(
            lambda: generate_loop(model, tokenizer, by_length, per_batch, config))

    def safepref_generate() -> int:
        # The model is loaded above already: hand that one to the stage so its timing is generation only.
        original = models.load_model
        models.load_model = lambda name, **_: model
        try:
            with tempfile.TemporaryDirectory() as folder:
                rows = generate_responses(prompts, MODEL, Path(folder) / "responses.jsonl", config)
        finally:
            models.load_model = original
        return sum(r.n_tokens for r in rows)

    results[f"safepref generate_responses, batch {config.batch_size} rows"] = timed(safepref_generate)

    anchor_rate = None
    for name, (tokens, seconds) in results.items():
        rate = tokens / seconds
        anchor_rate = anchor_rate or rate
        print(f"{name:<55} {tokens:>6} tokens {seconds:>7.1f} s {rate:>7.1f} tok/s  x{rate / anchor_rate:.2f}")
    tokens, seconds = results[f"safepref generate_responses, batch {config.batch_size} rows"]
    print(f"ratio safepref / official loop: {tokens / seconds / anchor_rate:.2f} (target >= 2.0)")


if __name__ == "__main__":
    main()
