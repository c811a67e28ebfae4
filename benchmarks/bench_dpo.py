"""DPO training speed: ``safepref train`` against plain TRL ``DPOTrainer`` on the same 64 SmolLM2 pairs.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONPATH=src python benchmarks/bench_dpo.py

Both runs full-fine-tune the real prepared SmolLM2-135M-Instruct (float32, CPU) for one epoch over the same 64 short
SafeRLHF human pairs with the same seed, learning rate (TRL's default 1e-6), beta, batch size (TRL's default 8) and
max_length (TRL's default 1024). The anchor is TRL's best configuration for this work, not its defaults: CPU settings
(``bf16=False, use_cpu=True``, ``report_to="none"``), TRL's own ``precompute_ref_log_probs=True`` (one reference pass
before training instead of a frozen copy's forward pass at every step) and gradient checkpointing off (TRL's default
turns it on; a 135M model on a CPU has the memory to skip the recomputation). safepref runs the same trainer with its
reference log-probs cached across runs (``$SAFEPREF_HOME/ref-logps``) and length-grouped batches. Both figures:

- cold: the first safepref run on these pairs computes the reference log-probs (counted in its time);
- warm: a second run (another out dir) reads them from the cache — the case of retraining on the same pairs
  (another beta, learning rate, seed, LoRA vs full, or a grid's recipes that share answers). The target ratio
  (>= 1.3) is for the warm cache; exits 1 when it or the loss agreement is missed.

pairs/s counts pairs x epochs over the whole call (model load, tokenization, reference pass, training, saving).
Both final losses are the Trainer's mean training loss over the run; they must agree within 0.02.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

N_PAIRS = int(sys.argv[1]) if len(sys.argv) > 1 else 64  # fewer only when the machine is too busy for 64
MAX_WORDS = 24  # short pairs keep the benchmark within a few minutes on 2 cores
SEED = 0
EPOCHS = 1


def short(text: str) -> str:
    words = text.split()
    return " ".join(words[:MAX_WORDS])


def write_pairs(path: Path) -> Path:
    from safepref.data import load_dataset

    rows = []
    for pair in load_dataset("saferlhf"):
        if len(pair.prompt_text.split()) > MAX_WORDS or short(pair.chosen_text) == short(pair.rejected_text):
            continue
        rows.append({"prompt": [{"role": "user", "content": pair.prompt_text}],
                     "chosen": [{"role": "assistant", "content": short(pair.chosen_text)}],
                     "rejected": [{"role": "assistant", "content": short(pair.rejected_text)}]})
        if len(rows) == N_PAIRS:
            break
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_plain_trl(model_dir: Path, pairs_path: Path, out: Path) -> tuple[float, float]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    started = time.perf_counter()
    rows = [json.loads(line) for line in pairs_path.read_text().splitlines()]
    args = DPOConfig(output_dir=str(out), bf16=False, use_cpu=True, seed=SEED, num_train_epochs=EPOCHS,
                     report_to="none", precompute_ref_log_probs=True, gradient_checkpointing=False)
    trainer = DPOTrainer(model=str(model_dir), args=args, train_dataset=Dataset.from_list(rows))
    output = trainer.train()
    trainer.save_model(str(out))
    seconds = time.perf_counter() - started
    del trainer
    gc.collect()
    return seconds, output.training_loss


def run_safepref(model_dir: Path, pairs_path: Path, out: Path):
    from trl import DPOConfig

    from safepref.train import DPOTrainingConfig, train_dpo

    # the anchor's hyperparameters, so both runs train the same way
    defaults = DPOConfig(output_dir=str(out), bf16=False, use_cpu=True)
    config = DPOTrainingConfig(lora=False, learning_rate=defaults.learning_rate, beta=defaults.beta,
                               batch_size=defaults.per_device_train_batch_size, epochs=EPOCHS,
                               max_length=defaults.max_length, seed=SEED, lr_scheduler="linear",
                               save_steps=10_000)
    started = time.perf_counter()
    result = train_dpo(model_dir, pairs_path, out, config)
    seconds = time.perf_counter() - started
    gc.collect()
    return seconds, result


def main() -> int:
    import torch

    from safepref.models import DEFAULT_TARGET, prepare_model

    model_dir = prepare_model(DEFAULT_TARGET)
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as scratch:
        scratch = Path(scratch)
        os.environ["SAFEPREF_HOME"] = str(scratch / "home")  # an empty reference log-prob cache: the cold run is cold
        pairs_path = write_pairs(scratch / "pairs.jsonl")
        n = len(pairs_path.read_text().splitlines())
        print(f"{n} SafeRLHF pairs (<= {MAX_WORDS} words a side), SmolLM2-135M full fine-tune, float32, "
              f"{EPOCHS} epoch, seed {SEED}, torch threads {torch.get_num_threads()}", file=sys.stderr)

        trl_seconds, trl_loss = run_plain_trl(model_dir, pairs_path, scratch / "trl")
        cold_seconds, cold = run_safepref(model_dir, pairs_path, scratch / "cold")
        warm_seconds, warm = run_safepref(model_dir, pairs_path, scratch / "warm")
        assert cold.reference_log_probs == "computed" and warm.reference_log_probs == "cached"

    pairs_done = n * EPOCHS
    print(f"TRL DPOTrainer, precomputed reference, no checkpointing: {pairs_done / trl_seconds:.3f} pairs/s "
          f"({trl_seconds:.1f} s), final mean loss {trl_loss:.4f}")
    print(f"safepref train, cold reference cache:                 {pairs_done / cold_seconds:.3f} pairs/s "
          f"({cold_seconds:.1f} s), final mean loss {cold.mean_loss:.4f}, ratio {trl_seconds / cold_seconds:.2f}")
    print(f"safepref train, warm reference cache:                 {pairs_done / warm_seconds:.3f} pairs/s "
          f"({warm_seconds:.1f} s), final mean loss {warm.mean_loss:.4f}, ratio {trl_seconds / warm_seconds:.2f} "
          f"(target >= 1.3)")
    print(f"loss difference (warm vs TRL): {abs(warm.mean_loss - trl_loss):.4f} (must be <= 0.02)")
    missed = trl_seconds / warm_seconds < 1.3 or abs(warm.mean_loss - trl_loss) > 0.02
    print("FAIL: a target was missed" if missed else "OK")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
