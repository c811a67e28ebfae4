"""What a DPO run is made from: its settings (``DPOTrainingConfig``), the record they are keyed and summarised by,
and the identity (model weights, pairs, settings) that a resumed run's checkpoints must match."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from safepref.core.io import file_fingerprint
from safepref.models.loading import weights_fingerprint

IDENTITY_FILE = "safepref-train-identity.json"  # model weights, pairs and settings that checkpoints were made from


@dataclass(config=ConfigDict(extra="forbid"))  # a misspelt setting is an error, not a silent default
class DPOTrainingConfig:
    """Everything that shapes a DPO run. Defaults work on a 2-core CPU with SmolLM2-135M."""

    lora: bool = True
    """Train a LoRA adapter (True) or every weight (False). With LoRA the reference is the base with the adapter off."""
    lora_rank: int = Field(16, ge=1)
    """LoRA rank r."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling alpha (the update is scaled by alpha / r)."""
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA branch."""
    lora_target_modules: list[str] | str = "all-linear"
    """Modules that get an adapter: "all-linear" (every linear layer but the LM head) or names like ["q_proj", "v_proj"]."""
    beta: float = Field(0.1, gt=0.0)
    """DPO temperature: how far the policy may move from the reference (smaller = further)."""
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"])
    """TRL loss types (a list; e.g. ["sigmoid"] is the original DPO loss, ["ipo"], ["hinge"], ["robust"])."""
    learning_rate: float = Field(5e-5, gt=0.0)
    """Peak AdamW learning rate (5e-5 suits LoRA on a small model; full fine-tunes want ~5e-7 to 5e-6)."""
    lr_scheduler: str = "linear"
    """transformers scheduler name: linear, cosine, constant, constant_with_warmup ..."""
    warmup: float = Field(0.0, ge=0.0)
    """Warmup: a fraction of all steps if below 1, else a number of steps."""
    epochs: float = Field(1.0, gt=0.0)
    """Passes over the pairs (ignored when max_steps is set)."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides epochs)."""
    batch_size: int = Field(4, ge=1)
    """Pairs per device per forward pass."""
    grad_accum: int = Field(1, ge=1)
    """Gradient accumulation steps (effective batch = batch_size x grad_accum x devices)."""
    max_length: int = Field(512, ge=8)
    """Longest prompt + answer in tokens; longer sequences are cut at the end (TRL's truncation_mode keep_start)."""
    seed: int = 0
    """Seed for the LoRA init, data order and dropout."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (TRL turns it on by default): saves memory on a GPU with a 7B model,
    costs an extra forward pass; a 135M model on a CPU does not need it."""
    bf16: bool = False
    """bfloat16 weights and bfloat16 mixed precision (GPUs). Without it, the device policy may still train in
    bfloat16 mixed precision over float32 weights where it measured faster (``dtype`` auto on a CPU with bfloat16
    instructions, see safepref.training.dpo.mixed_precision)."""
    precompute_ref_log_probs: bool = True
    """Compute reference log-probs once before training and cache them beside the pairs (False: a reference forward
    at every step, as TRL does by default)."""
    group_by_length: bool = True
    """Batch pairs of similar token length together (less padding); False samples batches at random."""
    logging_steps: int = Field(1, ge=1)
    """Log loss and rewards every this many steps (each logged step is one row of dynamics.jsonl)."""
    save_steps: int = Field(50, ge=1)
    """Write a resumable checkpoint every this many steps."""
    keep_checkpoints: bool = False
    """Keep checkpoint-* folders after a finished run (they hold optimizer state and are large)."""
    weighting: Literal["none", "wpo"] = "none"
    """Pair weighting: "wpo" weights each pair by how likely the policy is to produce it (WPO, arXiv 2406.11827;
    TRL's ``use_weighting``), so off-policy pairs (another model's answers) count less; "none" is plain DPO."""
    ld_alpha: float | None = Field(None, ge=0.0, le=1.0)
    """Length desensitisation (LD-DPO, TRL's ``ld_alpha``): log-probs of tokens beyond the shorter answer's length
    are scaled by this factor, so a length difference weighs less; None (or 1.0) is plain DPO."""


NEW_FIELD_DEFAULTS = {"weighting": "none", "ld_alpha": None}  # fields added after runs were keyed without them


def training_record(config: DPOTrainingConfig) -> dict[str, Any]:
    """The config as recorded and keyed: later-added fields at their default are left out, so runs finished before
    they existed keep their keys and their summaries still match."""
    return {k: v for k, v in asdict(config).items() if k not in NEW_FIELD_DEFAULTS or v != NEW_FIELD_DEFAULTS[k]}



# ---------------------------------------------------------------------------------------------- identity


def run_identity(model: str | Path, pairs_path: Path, config: DPOTrainingConfig,
                 mixed: bool = False) -> dict[str, Any]:
    """What a run's checkpoints are made from: the model's weights, the pairs' bytes, every training setting and,
    when it trains in bfloat16 mixed precision that ``bf16`` did not ask for, that precision."""
    identity = {"model_weights": weights_fingerprint(model), "pairs": file_fingerprint(pairs_path, length=24),
                "settings": json.loads(json.dumps(training_record(config)))}
    return {**identity, "precision": "bfloat16 autocast"} if mixed else identity


def identity_differences(out_dir: Path, identity: dict[str, Any]) -> str:
    """'' when ``out_dir`` was made from ``identity``; otherwise what differs ("pairs, settings"), or "inputs (no
    record of them)" for a folder written before runs recorded their identity."""
    path = out_dir / IDENTITY_FILE
    if not path.is_file():
        return "inputs (the folder has no record of them)"
    recorded = json.loads(path.read_text())
    names = {"model_weights": "model weights", "pairs": "pairs", "settings": "settings", "precision": "precision"}
    keys = [*identity, *(k for k in recorded if k not in identity and k in names)]  # a float32 run records none
    return ", ".join(names[k] for k in keys if recorded.get(k) != identity.get(k))
