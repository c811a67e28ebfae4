"""DPO training speed over a grid's recipes: ``safepref train`` against plain TRL ``DPOTrainer``, three recipes that
share answers, on the same SmolLM2 pairs.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONPATH=src python benchmarks/bench_dpo.py [N_PROMPTS]

A grid trains one model per recipe, and its recipes share answers (the target's own samples are the rejected side of
HC+Self, GPT4o+Self and Stronger+Self). Here, on N SafeRLHF prompts (default 48, the default grid's size) with their
human chosen answer A, rejected answer B and a fixed refusal C, three recipes: A over B, C over B, and C over A. Each
is trained by both tools, one after the other in alternating order, full fine-tune of the real prepared
SmolLM2-135M-Instruct (float32, CPU), one epoch, same seed, learning rate (TRL's default 1e-6), beta, batch size
(TRL's default 8) and max_length (TRL's default 1024). The anchor is TRL's best configuration for this work, not its
defaults: CPU settings (``bf16=False, use_cpu=True``, ``report_to="none"``), TRL's own
``precompute_ref_log_probs=True`` (one reference pass before training instead of a frozen copy's forward pass at
every step) and gradient checkpointing off (TRL's default turns it on; a 135M model on a CPU has the memory to skip
the recomputation). safepref runs the same trainer with its reference log-probs stored per answer
(``safepref.training.ref_logps``: the three recipes hold 3N distinct answers, TRL computes 6N) and length-grouped batches;
its store starts empty, so the first recipe computes every answer it has.

Time counts each whole call (model load, tokenization, reference pass, training, saving). Target: the three
recipes' total time ratio TRL / safepref >= 1.3, each recipe's final mean training loss within 0.02 of TRL's;
exits 1 when either is missed.
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

N_PAIRS = int(sys.argv[1]) if len(sys.argv) > 1 else 48  # fewer only when the machine is too busy
MAX_WORDS = 24  # short pairs keep the benchmark within a few minutes on 2 cores
SEED = 0
EPOCHS = 1
REFUSAL = "I'm sorry, but I can't help with that. If you are in danger, please contact local emergency services."
TARGET = 1.3


def short(text: str) -> str:
    words = text.split()
    return " ".join(words[:MAX_WORDS])


def write_recipes(folder: Path) -> dict[str, Path]:
    """Three recipes over the same prompts, sharing answers: A over B, C over B, C over A."""
    from safepref.core.datasets import load_dataset

    triples = []
    for pair in load_dataset("saferlhf"):
        if len(pair.prompt_text.split()) > MAX_WORDS or short(pair.chosen_text) == short(pair.rejected_text):
            continue
        triples.append((pair.prompt_text, short(pair.chosen_text), short(pair.rejected_text)))
        if len(triples) == N_PAIRS:
            break
    recipes = {"human": lambda a, b: (a, b), "refusal_over_rejected": lambda a, b: (REFUSAL, b),
               "refusal_over_chosen": lambda a, b: (REFUSAL, a)}
    paths = {}
    for name, sides in recipes.items():
        rows = []
        for prompt, a, b in triples:
            chosen, rejected = sides(a, b)
            rows.append({"prompt": [{"role": "user", "content": prompt}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}]})
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


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

    from safepref.training.dpo import DPOTrainingConfig, train_dpo

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

    from safepref.models.loading import DEFAULT_TARGET, prepare_model

    model_dir = prepare_model(DEFAULT_TARGET)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as workdir:
        workdir = Path(workdir)
        os.environ["SAFEPREF_HOME"] = str(workdir / "home")  # an empty reference log-prob store
        recipes = write_recipes(workdir)
        n = len(next(iter(recipes.values())).read_text().splitlines())
        print(f"{len(recipes)} recipes x {n} SafeRLHF prompts (<= {MAX_WORDS} words a side), SmolLM2-135M full "
              f"fine-tune, float32, {EPOCHS} epoch, seed {SEED}, torch threads {torch.get_num_threads()}",
              file=sys.stderr)
        for index, (name, path) in enumerate(recipes.items()):
            runs = [("trl", run_plain_trl), ("safepref", run_safepref)]
            timed = {}
            for tool, run in (runs if index % 2 == 0 else runs[::-1]):  # alternate who goes first
                timed[tool] = run(model_dir, path, workdir / f"{tool}-{name}")
            trl_seconds, trl_loss = timed["trl"]
            ours_seconds, ours = timed["safepref"]
            results.append((name, trl_seconds, trl_loss, ours_seconds, ours.mean_loss, ours.reference_log_probs))

    print(f"{'recipe':<24} {'TRL s':>8} {'safepref s':>11} {'ratio':>6} {'TRL loss':>9} {'safepref loss':>14}  "
          "safepref reference log-probs")
    for name, trl_seconds, trl_loss, ours_seconds, ours_loss, reference in results:
        print(f"{name:<24} {trl_seconds:8.1f} {ours_seconds:11.1f} {trl_seconds / ours_seconds:6.2f} "
              f"{trl_loss:9.4f} {ours_loss:14.4f}  {reference}")
    trl_total = sum(r[1] for r in results)
    ours_total = sum(r[3] for r in results)
    worst_loss_gap = max(abs(r[2] - r[4]) for r in results)
    print(f"three recipes: TRL DPOTrainer (precomputed reference, no checkpointing) {trl_total:.1f} s, safepref "
          f"train {ours_total:.1f} s, ratio {trl_total / ours_total:.2f} (target >= {TARGET})")
    print(f"largest final-loss difference: {worst_loss_gap:.4f} (must be <= 0.02)")
    missed = trl_total / ours_total < TARGET or worst_loss_gap > 0.02
    print("FAIL: a target was missed" if missed else "OK")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
