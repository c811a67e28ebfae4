"""Generation speed: safepref's generate stage against the strongest plain ``model.generate`` loop, in one run.

Anchor (the strongest configuration a user would otherwise write): transformers ``generate`` on length-sorted
batches of the same number of rows as safepref's batch (``batch_size // 5`` prompts x ``num_return_sequences=5``).
Second line: the paper's official loop (batches of 4 prompts in file order). Candidate: safepref's
``generate_responses`` with its defaults (continuous batching on the CPU, see ``safepref/generation/decode.py``). All sample 5
answers of up to 128 new tokens for the same SafeRLHF prompts with SmolLM2-135M-Instruct, the chat template applied
and the paper's sampling settings. Speed counts real tokens (up to and including the first end-of-sequence), never
padded steps. Model loading is excluded; every contender gets a one-prompt warm-up, and with ``--repeats 2`` the
second round runs in reverse order (each contender's faster round is kept).

    HF_HUB_OFFLINE=1 PYTHONPATH=src python benchmarks/bench_generate.py --prompts 24

Targets: >= 1.5x the anchor and >= 2.0x the official loop; exits 1 when either is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from safepref.core.datasets import saferlhf_prompts
from safepref.generation.generate import GenerationConfig, generate_responses, render_prompt
from safepref.models import loading as models

MODEL = "smollm2-135m-instruct"
TARGET_VS_GENERATE, TARGET_VS_OFFICIAL = 1.5, 2.0


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24, help="SafeRLHF prompts answered by each contender")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; the second runs in reverse order")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (safepref.core.device)")
    parser.add_argument("--engine", default="auto", help="safepref's engine: auto, decoder, generate, generate-static")
    args = parser.parse_args()

    # the paper's settings and safepref's default batch size
    config = GenerationConfig(device=args.device, engine=args.engine)
    prompts = saferlhf_prompts()[:args.prompts]
    tokenizer, model = models.load_tokenizer(MODEL), models.load_model(MODEL, device=args.device, dtype="auto")
    texts = [render_prompt(tokenizer, p.text, chat=True) for p in prompts]
    by_length = sorted(texts, key=lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]))
    per_batch = max(1, config.batch_size // config.num_samples)
    print(f"{len(prompts)} SafeRLHF prompts x {config.num_samples} samples x <= {config.max_new_tokens} new tokens, "
          f"{MODEL} on {model.device} ({model.dtype}), torch threads {torch.get_num_threads()}", flush=True)

    def safepref_generate(subset=prompts) -> int:
        # The model is loaded above already: hand that one to the stage so its timing is generation only.
        original = models.load_model
        models.load_model = lambda name, **_: model
        try:
            with tempfile.TemporaryDirectory() as folder:
                rows = generate_responses(subset, MODEL, Path(folder) / "responses.jsonl", config)
        finally:
            models.load_model = original
        return sum(r.n_tokens for r in rows)

    anchor = f"anchor: generate, length-sorted, {per_batch} prompts x 5 per batch"
    official = "official loop: generate, 4 prompts x 5 per batch"
    candidate = f"safepref generate_responses, batch {config.batch_size} rows"
    contenders = {anchor: lambda: generate_loop(model, tokenizer, by_length, per_batch, config),
                  official: lambda: generate_loop(model, tokenizer, texts, 4, config),
                  candidate: safepref_generate}
    generate_loop(model, tokenizer, texts[:1], 1, config)  # warm-ups: first-call costs are nobody's speed
    safepref_generate(prompts[:1])
    best: dict[str, tuple[int, float]] = {}
    for round_ in range(args.repeats):
        for name in list(contenders) if round_ % 2 == 0 else list(contenders)[::-1]:
            torch.manual_seed(round_)
            tokens, seconds = timed(contenders[name])
            if name not in best or tokens / seconds > best[name][0] / best[name][1]:
                best[name] = (tokens, seconds)

    rates = {name: tokens / seconds for name, (tokens, seconds) in best.items()}
    for name in contenders:
        tokens, seconds = best[name]
        print(f"{name:<55} {tokens:>6} tokens {seconds:>7.1f} s {rates[name]:>7.1f} tok/s  "
              f"x{rates[name] / rates[anchor]:.2f}")
    vs_generate, vs_official = rates[candidate] / rates[anchor], rates[candidate] / rates[official]
    print(f"ratio safepref / generate at the same batch: {vs_generate:.2f} (target >= {TARGET_VS_GENERATE})")
    print(f"ratio safepref / official loop: {vs_official:.2f} (target >= {TARGET_VS_OFFICIAL})")
    missed = vs_generate < TARGET_VS_GENERATE or vs_official < TARGET_VS_OFFICIAL
    print("FAIL: a target was missed" if missed else "OK: both targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
