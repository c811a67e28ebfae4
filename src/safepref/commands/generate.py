"""``safepref generate``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from safepref.core.datasets import load_prompts
from safepref.core.device import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype
from safepref.generation.generate import GenerationConfig, generate_responses


def register(app: typer.Typer) -> None:
    @app.command("generate",
                 epilog="Example: safepref generate --source smollm2-135m-instruct "
                 "--prompts saferlhf --limit 24 --samples 4 --out answers.jsonl")
    def generate(
        source: str = typer.Option(..., "--source", "-s", help="Registry model, HF id/folder, openai:<model>, "
                                   "or a fixed answer set (gpt4o, human-chosen, human-rejected)."),
        out: Path = typer.Option(..., "--out", "-o", help="Responses JSONL (appended to; rerun to resume). A file "
                                  "holding rows made with other settings or weights is refused (exit 2)."),
        prompts: str = typer.Option("saferlhf", help="Bundled dataset name or path[:column] of a CSV/JSONL."),
        limit: int = typer.Option(None, help="Only the first N prompts."),
        greedy: bool = typer.Option(False, "--greedy", help="One greedy answer per prompt (sample index -1)."),
        samples: int = typer.Option(5, "--samples", "-k", help="Sampled answers per prompt."),
        max_new_tokens: int = typer.Option(128),
        temperature: float = typer.Option(0.5),
        top_k: int = typer.Option(50, help="Top-k filter when sampling (0: off)."),
        top_p: float = typer.Option(0.9),
        repetition_penalty: float = typer.Option(1.2),
        no_repeat_ngram_size: int = typer.Option(3),
        batch_size: int = typer.Option(64, help="Rows (prompts x samples) decoded together; freed slots are refilled."),
        seed: int = typer.Option(0),
        system_prompt: str = typer.Option(None),
        backend: str = typer.Option("transformers", help="transformers or vllm (GPU)."),
        device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
        dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
        engine: str = typer.Option("auto", "--engine", help="transformers backend: decoder (continuous batching), "
                                   "generate, generate-static, or auto (decoder on the CPU, generate on CUDA)."),
    ) -> None:
        """Answer prompts from one source; resumable (each prompt/source/sample is written once)."""
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, num_samples=samples, greedy=greedy, temperature=temperature, top_k=top_k,
            top_p=top_p, repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
            batch_size=batch_size, seed=seed, system_prompt=system_prompt, backend=backend, device=check_device(device),
            dtype=check_dtype(dtype), engine=engine,
        )
        rows = generate_responses(load_prompts(prompts, limit), source, out, config)
        tokens = sum(r.n_tokens or 0 for r in rows)
        Console(stderr=True).print(f"{len(rows)} responses from {source} in {out} ({tokens} generated tokens)")
