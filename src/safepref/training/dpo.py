"""DPO training with TRL's ``DPOTrainer``: full fine-tune or LoRA, on any TRL-format preference file.

    train_dpo(model, pairs_path, out_dir, DPOTrainingConfig(...)) -> TrainResult

What this adds to a plain ``DPOTrainer`` run:
- Reference log-probs are computed once per answer and reused by every run on the same reference
  (``safepref.training.ref_logps``: keyed by a hash of the reference weights, the prompt's and the answer's token ids,
  max_length, truncation and precision), with TRL's own ``compute_ref_log_probs``. TRL's cache cannot serve here:
  its key includes a lambda that closes over the whole ``DPOConfig`` (output_dir, learning rate, max_steps ...),
  and it is per pair set. With ours, a grid's recipes that share answers compute each shared answer once, and
  retraining with another learning rate, beta, seed, LoRA rank, or LoRA instead of full (the reference is the
  untouched base either way) skips every reference forward pass. Length-desensitised DPO (``ld_alpha``, which mixes
  the two sides) and multi-process runs keep a cache per pair set (``ref-logps/<key>.npy``).
- Length-grouped batches (pairs of similar length share a batch, so less padding).
- The training dynamics the paper reads as its reward-hacking signal (loss, rewards/chosen, rewards/rejected,
  rewards/accuracies, rewards/margins at every logged step) go to ``DIR/dynamics.jsonl`` and ``DIR/dynamics.png``.
- An interrupted run resumes from its latest ``checkpoint-*`` only when ``safepref-train-identity.json`` says it was
  made from the same model weights, pairs and settings (otherwise: exit 2 naming what differs, or ``force`` to start
  over); a finished run (``train_summary.json`` exists) is not retrained unless ``force``.

What lands in ``out_dir`` (loadable with ``safepref.models.loading.load_model(out_dir)``):
- LoRA: the adapter only (``adapter_config.json`` + ``adapter_model.safetensors``) and the tokenizer. The adapter's
  ``base_model_name_or_path`` is the registry name when the base was one (portable between machines) or the resolved
  folder / hub id otherwise; the loader merges the adapter onto its base. Small (a few MB) and lm-eval reads it
  directly with ``peft=<dir>``.
- Full: the whole model (safetensors) and the tokenizer.
Checkpoints are deleted after a finished run unless ``keep_checkpoints`` (a full-model checkpoint of SmolLM2 with its
optimizer state is ~1.6 GB).

Multi-GPU 7B training (not run here; recipe after the alignment handbook: beta 0.01-0.1, lr 5e-7 full / 5e-6 LoRA,
1 epoch, cosine schedule, warmup 0.1, bf16):

    accelerate launch --config_file src/safepref/registry/accelerate/deepspeed_zero3.yaml -m safepref train \\
        --model meta-llama/Llama-3.1-8B-Instruct --pairs pairs.jsonl --out runs/llama-dpo \\
        --full --bf16 --learning-rate 5e-7 --beta 0.1 --epochs 1 --batch-size 2 --grad-accum 8 \\
        --lr-scheduler cosine --warmup 0.1 --max-length 1024 --gradient-checkpointing

(``src/safepref/registry/accelerate/multi_gpu.yaml`` is plain DDP, enough for LoRA: ``--lora --learning-rate 5e-6``.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from pydantic.dataclasses import dataclass

from safepref.core.device import check_dtype, choose_dtype, precision_key, resolve_device
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint, iter_jsonl, read_pairs, write_json_atomic
from safepref.core.keys import content_key, stage_key
from safepref.core.records import Pair
from safepref.core.versions import package_versions
from safepref.models.loading import REGISTRY, load_model, load_tokenizer, resolve_model_path
from safepref.training.config import IDENTITY_FILE, DPOTrainingConfig, identity_differences, run_identity, training_record
from safepref.training.dynamics import cut_dynamics, dynamics_callback, plot_dynamics
from safepref.training.ref_logps import PerAnswerReference, ref_logps_cache_dir

__all__ = ["DYNAMICS_FILE", "IDENTITY_FILE", "PLOT_FILE", "SUMMARY_FILE", "DPOTrainingConfig", "TrainResult",
           "latest_checkpoint", "make_trainer", "mixed_precision", "plot_dynamics", "ref_logps_cache_dir",
           "run_identity", "train_dpo", "training_record", "weights_hash"]

SUMMARY_FILE = "train_summary.json"
DYNAMICS_FILE = "dynamics.jsonl"
PLOT_FILE = "dynamics.png"


@dataclass
class TrainResult:
    """What a finished (or already finished) run produced."""

    out_dir: str
    n_pairs: int
    steps: int
    final_loss: float | None  # loss at the last logged step
    mean_loss: float | None  # mean training loss over the run (the Trainer's train_loss)
    seconds: float
    reference_log_probs: str  # "computed", "cached" (every answer's from earlier runs), "computed N of M answers,
    # the rest cached", or "per-step" (not precomputed)
    resumed_from: str | None = None
    skipped: bool = False  # True when the run had already finished and nothing was retrained


def mixed_precision(config: DPOTrainingConfig, device: str = "auto", dtype: str = "auto") -> bool:
    """Whether the run trains in bfloat16 mixed precision (autocast over float32 master weights) that ``config.bf16``
    did not ask for: ``dtype`` bfloat16, or ``auto`` on a CPU where the device policy measured bfloat16 faster for
    training (safepref.core.device). ``auto`` on CUDA keeps float32 unless ``bf16``; float16 is refused."""
    requested = check_dtype(dtype)
    if config.bf16 or requested == "float32":
        return False
    if requested == "float16":
        raise InputError("training in float16 is not supported: use --dtype bfloat16 (mixed precision) or float32",
                         field="dtype")
    target = resolve_device(device) if "LOCAL_RANK" not in os.environ else None
    if requested == "auto" and (target is None or target.type != "cpu"):
        return False
    # torch loads in seconds: imported only where used
    import torch

    return choose_dtype(target, requested, None, workload="training")[0] == torch.bfloat16


def train_dpo(model: str | Path, pairs_path: str | Path, out_dir: str | Path,
              config: DPOTrainingConfig | None = None, *, force: bool = False, device: str = "auto",
              dtype: str = "auto") -> TrainResult:
    """DPO-train ``model`` (registry name, folder or hub id) on a TRL-format pairs file; write the result to out_dir.

    ``device`` (safepref.core.device): ``cpu``, ``cuda:N``, or ``auto`` (CUDA when present). Under ``accelerate launch``
    accelerate places each process; only the main process writes safepref's own files. ``dtype``: see
    :func:`mixed_precision` (``float32`` keeps float32 arithmetic on any CPU)."""
    config = config or DPOTrainingConfig()
    out_dir = Path(out_dir)
    pairs_path = Path(pairs_path)
    pairs = read_pairs(pairs_path)  # a bad row fails here, before anything is loaded or written
    base_path = resolve_model_path(model)
    mixed = mixed_precision(config, device, dtype)
    identity = run_identity(model, pairs_path, config, mixed)
    if (out_dir / SUMMARY_FILE).is_file() and not force:
        return _finished_run(model, pairs_path, out_dir, config, identity)
    _prepare_out_dir(out_dir, identity, force)
    started = time.perf_counter()
    trainer, output, reference, checkpoint = _run_trainer(model, pairs, out_dir, config, device, mixed=mixed,
                                                          base=model if str(model) in REGISTRY else base_path)
    if not trainer.is_world_process_zero():  # other processes of a multi-GPU run leave the files to the main one
        return TrainResult(out_dir=str(out_dir), n_pairs=len(pairs), steps=output.global_step, final_loss=None,
                           mean_loss=output.training_loss, seconds=round(time.perf_counter() - started, 2),
                           reference_log_probs=reference)
    rows = [row for _, row in iter_jsonl(out_dir / DYNAMICS_FILE)] if (out_dir / DYNAMICS_FILE).is_file() else []
    plot_dynamics(rows, out_dir / PLOT_FILE)
    if not config.keep_checkpoints:
        for folder in out_dir.glob("checkpoint-*"):
            shutil.rmtree(folder, ignore_errors=True)
    result = TrainResult(
        out_dir=str(out_dir), n_pairs=len(pairs), steps=output.global_step,
        final_loss=rows[-1]["loss"] if rows else None, mean_loss=output.training_loss,
        seconds=round(time.perf_counter() - started, 2), reference_log_probs=reference,
        resumed_from=checkpoint.name if checkpoint else None,
    )
    write_json_atomic(out_dir / SUMMARY_FILE, {  # written last: its presence marks a finished run
        "model": str(model), "base_path": base_path, "pairs": str(pairs_path),
        "pairs_sha256_12": file_fingerprint(pairs_path), "config": training_record(config), "result": asdict(result),
        "versions": package_versions("torch", "transformers", "trl", "peft"), "seed": config.seed, "n_pairs": len(pairs),
        "final_loss": result.final_loss, "steps": result.steps, "seconds": result.seconds,
        "precision": "bfloat16 autocast over float32 weights" if mixed else ("bfloat16" if config.bf16 else "float32"),
    })
    return result


def _finished_run(model: str | Path, pairs_path: Path, out_dir: Path, config: DPOTrainingConfig,
                  identity: dict[str, Any]) -> TrainResult:
    """The result recorded in ``out_dir``'s summary (marked skipped) when it was made from these inputs; otherwise
    an InputError: another run's folder is never overwritten without ``force``."""
    summary = json.loads((out_dir / SUMMARY_FILE).read_text())
    same = (summary.get("pairs_sha256_12") == file_fingerprint(pairs_path) and summary.get("model") == str(model)
            and summary.get("config") == json.loads(json.dumps(training_record(config)))
            and (not (out_dir / IDENTITY_FILE).is_file() or not identity_differences(out_dir, identity)))
    if not same:
        raise InputError("holds a finished run of another model, pairs file or config: pass --force to "
                         "overwrite it, or choose another --out", path=out_dir)
    return TrainResult(**{**summary["result"], "skipped": True})


def _prepare_out_dir(out_dir: Path, identity: dict[str, Any], force: bool) -> None:
    """Clear a forced rerun's checkpoints, dynamics and summary; refuse checkpoints made from other inputs; record
    this run's identity before any checkpoint is written (what a resume must match)."""
    if force and out_dir.exists():
        for stale in [*out_dir.glob("checkpoint-*"), out_dir / DYNAMICS_FILE, out_dir / SUMMARY_FILE]:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    if not force and latest_checkpoint(out_dir) is not None and (differs := identity_differences(out_dir, identity)):
        raise InputError(f"holds checkpoints made from other {differs}: pass --force to start over, or choose "
                         "another --out", path=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / IDENTITY_FILE, identity)


def _run_trainer(model: str | Path, pairs: list[Pair], out_dir: Path, config: DPOTrainingConfig, device: str, *,
                 base: str | Path, mixed: bool = False) -> tuple[Any, Any, str, Path | None]:
    """Load the model, train (resuming from the latest checkpoint) and save it; returns the trainer, its output, where
    the reference log-probs came from, and the checkpoint resumed from."""
    # torch and datasets and peft load in seconds: imported only where used
    import torch
    from datasets import Dataset
    from peft import LoraConfig

    dataset = Dataset.from_list([
        {"prompt": [m.model_dump() for m in p.prompt], "chosen": [m.model_dump() for m in p.chosen],
         "rejected": [m.model_dump() for m in p.rejected]}
        for p in pairs
    ])
    tokenizer = load_tokenizer(model)
    policy = load_model(model, dtype=torch.bfloat16 if config.bf16 else torch.float32)
    reference_hash = weights_hash(policy) if config.precompute_ref_log_probs else None  # before LoRA wraps it
    args = _dpo_args(config, out_dir, use_cpu=_training_device(device).type == "cpu", mixed=mixed)
    peft_config = None
    if config.lora:
        peft_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=config.lora_target_modules, task_type="CAUSAL_LM")

    checkpoint = latest_checkpoint(out_dir)
    dynamics_path = out_dir / DYNAMICS_FILE
    cut_dynamics(dynamics_path, after_step=_checkpoint_step(checkpoint) if checkpoint else 0)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs on stdout: keep stdout for --json
        trainer = make_trainer(
            reference_hash, model=policy, ref_model=None, args=args, train_dataset=dataset,
            processing_class=tokenizer, peft_config=peft_config, callbacks=[dynamics_callback(dynamics_path)],
        )
        reference = trainer.reference_source
        print(f"safepref train: {len(pairs)} pairs, reference log-probs {reference}"
              + (f", resuming from {checkpoint.name}" if checkpoint else ""))
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    _save_model(trainer, tokenizer, out_dir, base=base, lora=config.lora)
    return trainer, output, reference, checkpoint


def _dpo_args(config: DPOTrainingConfig, out_dir: Path, *, use_cpu: bool, mixed: bool = False):
    """TRL's ``DPOConfig`` for these settings; ``mixed``: bfloat16 autocast over the float32 weights loaded."""
    # TRL loads in seconds: imported only where used
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(out_dir),
        beta=config.beta,
        loss_type=list(config.loss_type),
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_length=config.max_length,
        truncation_mode="keep_start",
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.bf16 or mixed,
        use_cpu=use_cpu,
        gradient_checkpointing=config.gradient_checkpointing,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to="none",
        disable_tqdm=False,
        use_weighting=config.weighting == "wpo",
        ld_alpha=config.ld_alpha,
    )


# ---------------------------------------------------------------------------------------------- trainer


def weights_hash(model: Any) -> str:
    """sha256 of a model's weights (names, dtypes, bytes): the identity of a reference model."""
    # torch loads in seconds: imported only where used
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def make_trainer(reference_hash: str | None, **trainer_kwargs: Any):
    """A TRL ``DPOTrainer`` with three additions, all around TRL rather than instead of it:

    - reference log-probs read from / written to safepref's cache (see the module docstring);
    - a length-grouped sampler that knows DPO's columns (the stock one looks for ``input_ids``);
    - on the CPU, forwards without padding or prompt logits (``safepref.training.compact_head``).
    ``trainer.reference_source`` says "computed", "cached" or "per-step" (not precomputed).
    """
    # torch, datasets, transformers and TRL load in ~10 s together: only when a model is trained
    from datasets import Dataset, concatenate_datasets
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import DPOTrainer

    from safepref.training.compact_head import CompactHeads  # loads torch at import

    class SafeprefDPOTrainer(CompactHeads, PerAnswerReference, DPOTrainer):
        reference_source = "per-step"

        def _precompute_ref_logps(self, dataset, name, batch_size):
            self.install_compact_heads()  # TRL runs this pass inside its __init__
            args = self.args
            if args.ld_alpha is None and not self.is_deepspeed_enabled and self.accelerator.num_processes == 1:
                return self._per_answer_ref_logps(dataset, batch_size, reference_hash)
            # length-desensitised DPO mixes the two sides' lengths; sharded models need TRL's own pass
            key = content_key(reference_hash, args.max_length, args.truncation_mode, args.ld_alpha, args.bf16,
                              dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]).to_dict(), length=20)
            path = ref_logps_cache_dir() / f"{name}-{key}.npy"
            if path.is_file():
                values = np.load(path)
                self.reference_source = "cached"
                refs = Dataset.from_dict({"ref_chosen_logps": values[:, 0], "ref_rejected_logps": values[:, 1]})
                return concatenate_datasets([dataset, refs], axis=1)
            with_refs = super()._precompute_ref_logps(dataset, name, batch_size)
            self.reference_source = "computed"
            values = np.stack([np.asarray(with_refs["ref_chosen_logps"], dtype=np.float32),
                               np.asarray(with_refs["ref_rejected_logps"], dtype=np.float32)], axis=1)
            if self.accelerator.is_main_process:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as handle:
                    np.save(handle, values)
                os.replace(tmp, path)
            return with_refs

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(dataset)
            lengths = [len(p) + max(len(c), len(r)) for p, c, r in
                       zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True)]
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=lengths)

    return SafeprefDPOTrainer(**trainer_kwargs)


def _training_device(device: str):
    """The policy's device for a single-process run; ``cuda:N`` becomes the current CUDA device (the Trainer uses
    the current one). Under ``accelerate launch`` (LOCAL_RANK set) accelerate places every process itself."""
    # torch loads in seconds: imported only where used
    import torch


    if "LOCAL_RANK" in os.environ:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    resolved = resolve_device(device)
    if resolved.type == "cuda" and ":" in device:
        torch.cuda.set_device(resolved.index)
    return resolved


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder (one with its trainer_state.json), or None."""
    complete = [p for p in out_dir.glob("checkpoint-*")
                if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "trainer_state.json").is_file()]
    return max(complete, key=_checkpoint_step, default=None)


def _checkpoint_step(path: Path) -> int:
    return int(path.name.split("-")[1])


def _save_model(trainer: Any, tokenizer: Any, out_dir: Path, *, base: str, lora: bool) -> None:
    if not lora:
        trainer.save_model(str(out_dir))  # every process takes part (DeepSpeed gathers the shards); one writes
    if not trainer.is_world_process_zero():
        return
    if lora:
        adapter = trainer.accelerator.unwrap_model(trainer.model)
        adapter.peft_config["default"].base_model_name_or_path = str(base)
        adapter.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def train_key(target_fingerprint: str, pairs_path: Path, config: DPOTrainingConfig, mixed: bool = False) -> str:
    """The trained policy's content key: the starting weights, the pairs file's bytes, every training setting and
    the mixed precision the device policy chose (``mixed``, :func:`mixed_precision`; absent for float32)."""
    precision = [precision_key("bfloat16")] if mixed else []
    return stage_key("train", target_fingerprint, file_fingerprint(pairs_path), training_record(config), *precision)
