"""``safepref train``: DPO-train a model on a preference pairs file (see ``safepref.training.dpo``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console

from safepref.core.device import DEVICE_HELP, check_device, check_dtype
from safepref.core.errors import InputError, input_error_from
from safepref.training.dpo import DPOTrainingConfig, train_dpo


def register(app: typer.Typer) -> None:
    @app.command("train",
                 epilog="Example: safepref train --model smollm2-135m-instruct "
                 "--pairs pairs.jsonl --out models/self-rm")
    def train(
        model: str = typer.Option(..., "--model", help="Registry name, model folder or hub id to train."),
        pairs: Path = typer.Option(..., "--pairs", help="Preference pairs (TRL standard or conversational JSONL/CSV)."),
        out: Path = typer.Option(..., "--out", help="Output folder (adapter or model, dynamics, summary)."),
        lora: bool = typer.Option(True, "--lora/--full", help="Train a LoRA adapter or the whole model."),
        lora_rank: int = typer.Option(16, help="LoRA rank."),
        lora_alpha: int = typer.Option(32, help="LoRA alpha."),
        target_modules: str = typer.Option("all-linear", help="LoRA targets: all-linear or comma-separated names."),
        beta: float = typer.Option(0.1, help="DPO beta."),
        loss_type: str = typer.Option("sigmoid", help="TRL loss type(s), comma-separated."),
        learning_rate: float = typer.Option(5e-5, "--learning-rate", "--lr", help="Peak learning rate."),
        lr_scheduler: str = typer.Option("linear", help="Learning-rate schedule (linear, cosine, constant ...)."),
        warmup: float = typer.Option(0.0, help="Warmup: fraction of steps if < 1, else steps."),
        epochs: float = typer.Option(1.0, help="Epochs over the pairs."),
        max_steps: int = typer.Option(None, help="Stop after this many steps (overrides --epochs)."),
        batch_size: int = typer.Option(4, help="Pairs per device per step."),
        grad_accum: int = typer.Option(1, help="Gradient accumulation steps."),
        max_length: int = typer.Option(512, help="Max prompt + answer tokens."),
        seed: int = typer.Option(0, help="Random seed."),
        bf16: bool = typer.Option(False, help="bfloat16 mixed precision (GPUs)."),
        gradient_checkpointing: bool = typer.Option(False, help="Recompute activations to save memory (big models)."),
        precompute_ref: bool = typer.Option(True, "--precompute-ref/--ref-every-step",
                                            help="Cache reference log-probs once, or run the reference every step."),
        group_by_length: bool = typer.Option(True, help="Batch pairs of similar length together."),
        save_steps: int = typer.Option(50, help="Checkpoint every N steps (an interrupted run resumes from it)."),
        keep_checkpoints: bool = typer.Option(False, help="Keep checkpoint folders after a finished run."),
        weighting: str = typer.Option("none", help="Pair weighting: none, or wpo (WPO: off-policy pairs count less)."),
        ld_alpha: float = typer.Option(None, "--ld-alpha", help="LD-DPO length desensitisation in [0, 1] (none: off)."),
        force: bool = typer.Option(False, "--force", help="Retrain even if OUT holds a finished run."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
        device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " Under accelerate launch, accelerate "
                                   "places each process."),
        dtype: str = typer.Option("auto", "--dtype", help="auto (bfloat16 mixed precision over float32 weights on a "
                                  "CPU where the device policy measured it faster, else float32; --bf16 on GPUs), "
                                  "float32 or bfloat16 (mixed precision)."),
        config_file: Path = typer.Option(None, "--config", help="JSON file of training settings (DPOTrainingConfig "
                                         "fields; how `safepref run` hands its settings to accelerate launch). "
                                         "Replaces the training options above."),
    ) -> None:
        """DPO-train MODEL on PAIRS with TRL; resumes an interrupted run in OUT; skips a finished one."""

        config = _config_from_file(config_file) if config_file is not None else _config_from_options(
            target_modules, loss_type, lora=lora, lora_rank=lora_rank, lora_alpha=lora_alpha, beta=beta,
            learning_rate=learning_rate, lr_scheduler=lr_scheduler, warmup=warmup, epochs=epochs, max_steps=max_steps,
            batch_size=batch_size, grad_accum=grad_accum, max_length=max_length, seed=seed, bf16=bf16,
            gradient_checkpointing=gradient_checkpointing, precompute_ref_log_probs=precompute_ref,
            group_by_length=group_by_length, save_steps=save_steps, keep_checkpoints=keep_checkpoints,
            weighting=weighting, ld_alpha=ld_alpha)
        result = train_dpo(model, pairs, out, config, force=force, device=check_device(device),
                           dtype=check_dtype(dtype))
        _report(result, out, as_json)


def _config_from_options(target_modules: str, loss_type: str, **fields: Any):
    """The command's training options as a DPOTrainingConfig: comma lists split, a bad value an InputError."""

    targets = target_modules if target_modules == "all-linear" else [t.strip() for t in target_modules.split(",")]
    try:
        return DPOTrainingConfig(lora_target_modules=targets, loss_type=[t.strip() for t in loss_type.split(",") if t.strip()],
                                 **fields)
    except ValidationError as error:
        raise input_error_from(error) from None


def _config_from_file(path: Path):

    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read training settings: {error}", path=path) from None
    if not isinstance(values, dict):
        raise InputError("training settings must be a JSON object", path=path)
    try:
        return DPOTrainingConfig(**values)
    except ValidationError as error:
        raise input_error_from(error, path=path) from None


def _report(result, out: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(result)))
        return
    console = Console()
    if result.skipped:
        console.print(f"{out}: already trained (use --force to retrain)")
    console.print(f"{result.n_pairs} pairs, {result.steps} steps, final loss {result.final_loss}, "
                  f"{result.seconds:.0f} s, reference log-probs {result.reference_log_probs} → {result.out_dir}")
