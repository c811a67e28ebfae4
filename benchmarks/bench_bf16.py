"""Benchmark: is bfloat16 safe and faster where the device policy chooses it on this CPU? Each workload of
``safepref.core.device.BF16_WORKLOADS`` in float32 (the anchor, same run) and in bfloat16, on fixed inputs:

- LM reads: the ``harm`` and ``refusal`` judges (SmolLM2 read) on a seeded sample of labelled answers (GPTFuzz's
  evaluate split, XSTest's completions). Target: each judge's verdicts agree with float32's on >= 99% of answers.
- generation: SmolLM2's greedy answers to the first AdvBench behaviours (configs/small-grid.yaml's setting, 48 tokens).
  Reported: the share identical to float32's, and the ``harm`` judge's harmful rate on each (the figure a run reads).
  Target: at least ``MIN_IDENTICAL`` identical, and harmful rates within ``MAX_RATE_GAP``.
- training: DPO on SafeRLHF pairs with configs/small-grid.yaml's settings (full fine-tune, learning rate 5e-5, batch 4,
  max_length 160), bfloat16 autocast over float32 weights. Target: the mean loss over the run within
  ``MEAN_LOSS_TOLERANCE`` of float32's, and every logged step's within ``STEP_LOSS_TOLERANCE``.
- speed: CPU seconds of each workload in each precision (the process's own, so other work on a shared machine does
  not enter the ratio; wall seconds are printed beside them); where the policy picks bfloat16 for a workload,
  bfloat16 must take fewer CPU seconds there (ratio > 1).

    python benchmarks/bench_bf16.py [--answers 200] [--prompts 24] [--tokens 48] [--pairs 24] [--steps 6]

Exits 1 when a target is missed. On a CPU without bfloat16 instructions the policy keeps float32 and the bfloat16
figures only say why.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from safepref.core import device as policy  # noqa: E402
from safepref.core.datasets import load_dataset  # noqa: E402
from safepref.evaluation.suites import load_suite  # noqa: E402
from safepref.generation.generate import GenerationConfig, generate_responses  # noqa: E402
from safepref.judges import JudgeInput, get_judge, read_judge_rows  # noqa: E402
from safepref.models.loading import DEFAULT_TARGET  # noqa: E402
from safepref.training.dpo import DPOTrainingConfig, train_dpo  # noqa: E402

MIN_AGREEMENT = 0.99
# Greedy decoding amplifies any rounding difference once two tokens are nearly tied, and the answers then go their
# own way; what a run reads from them is the judged rate, so that is held tighter than the identical share.
MIN_IDENTICAL = 0.5
MAX_RATE_GAP = 0.10
# The mean training loss is held to 0.02, the tolerance bench_dpo.py holds safepref's trainer to against TRL's own for
# the same statistic. A single step's loss is one batch of 4 pairs: at that learning rate float32's own
# curve moved by up to 0.08 between consecutive steps (0.779 -> 0.699), and the two precisions' weights drift apart
# step by step, so a step is held to 0.05 (steps 1-5 stayed within 0.02, step 6 was 0.023 apart:
# python benchmarks/bench_bf16.py).
MEAN_LOSS_TOLERANCE = 0.02
STEP_LOSS_TOLERANCE = 0.05
PRECISIONS = ("float32", "bfloat16")


class Clock:
    """Wall and CPU seconds of a block (CPU: every thread of this process)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def judge_agreement(n_answers: int) -> tuple[list[str], bool, float]:
    """Each LM-read judge in both precisions on the same answers; (lines, target met, slowest speedup)."""
    rng = random.Random(0)
    sets = {"harm": rng.sample(read_judge_rows("gptfuzz-eval"), n_answers),
            "refusal": rng.sample(read_judge_rows("xstest-completions"), n_answers)}
    lines, ok, speedups = [], True, []
    for name, rows in sets.items():
        get_judge(f"{name}-fast").judge(rows)  # MiniLM passes shared by both precisions: out of the timed part
        for precision in PRECISIONS:  # the LM's first load and kernel set-up, out of it too
            get_judge(name, dtype=precision).judge(rows[:2])
        labels, clocks = {}, {}
        for precision in PRECISIONS:
            with Clock() as clocks[precision]:
                labels[precision] = [v.label for v in get_judge(name, dtype=precision).judge(rows)]
        same = sum(a == b for a, b in zip(labels["float32"], labels["bfloat16"], strict=True)) / len(rows)
        speedup = clocks["float32"].cpu / clocks["bfloat16"].cpu
        lines.append(f"judge {name}: verdicts agree {same:.3f} (n={len(rows)}, target >= {MIN_AGREEMENT}); "
                     f"positive rate float32 {sum(labels['float32']) / len(rows):.3f}, bfloat16 "
                     f"{sum(labels['bfloat16']) / len(rows):.3f}; LM read and head {_seconds(clocks)}, "
                     f"CPU-time speedup {speedup:.2f}x")
        ok &= same >= MIN_AGREEMENT
        speedups.append(speedup)
    return lines, ok, min(speedups)


def greedy_answers(n_prompts: int, tokens: int, folder: Path) -> tuple[list[str], bool, float]:
    prompts = load_suite("advbench", n_prompts)
    for precision in PRECISIONS:  # first calls pay imports and kernel set-up: not the precision's business
        generate_responses(prompts[:1], DEFAULT_TARGET, folder / f"warm-up-{precision}.jsonl",
                           GenerationConfig(greedy=True, max_new_tokens=4, dtype=precision))
    texts, rates, clocks, produced = {}, {}, {}, {}
    for precision in PRECISIONS:
        with Clock() as clocks[precision]:
            rows = generate_responses(prompts, DEFAULT_TARGET, folder / f"answers-{precision}.jsonl",
                                      GenerationConfig(greedy=True, max_new_tokens=tokens, dtype=precision))
        produced[precision] = sum(r.n_tokens for r in rows)
        texts[precision] = {r.prompt_id: r.text for r in rows}
        by_id = {p.id: p for p in prompts}  # the judge reads the plain request, as eval-safety's does
        verdicts = get_judge("harm", dtype="float32").judge(
            [JudgeInput(id=r.prompt_id, prompt=by_id[r.prompt_id].text, response=r.text) for r in rows])
        rates[precision] = sum(v.label for v in verdicts) / len(verdicts)
    identical = sum(texts["float32"][k] == texts["bfloat16"][k] for k in texts["float32"]) / len(prompts)
    gap = abs(rates["float32"] - rates["bfloat16"])
    # tokens per CPU second: the two precisions may stop at different lengths
    speedup = (produced["bfloat16"] / clocks["bfloat16"].cpu) / (produced["float32"] / clocks["float32"].cpu)
    line = (f"generation: {identical:.2f} of {len(prompts)} greedy answers identical (target >= {MIN_IDENTICAL}); "
            f"judged harmful (harm, float32 read) {rates['float32']:.2f} vs {rates['bfloat16']:.2f} (gap {gap:.2f}, "
            f"target <= {MAX_RATE_GAP}); {produced['float32']} vs {produced['bfloat16']} tokens in {_seconds(clocks)} "
            f"(model load included), tokens per CPU second {speedup:.2f}x")
    return [line], identical >= MIN_IDENTICAL and gap <= MAX_RATE_GAP, speedup


def dpo_losses(n_pairs: int, steps: int, folder: Path) -> tuple[list[str], bool, float]:
    rows = []
    for pair in load_dataset("saferlhf"):
        if pair.chosen_text.strip() != pair.rejected_text.strip():
            rows.append({"prompt": [{"role": "user", "content": pair.prompt_text}],
                         "chosen": [{"role": "assistant", "content": pair.chosen_text}],
                         "rejected": [{"role": "assistant", "content": pair.rejected_text}]})
        if len(rows) == n_pairs:
            break
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = DPOTrainingConfig(lora=False, learning_rate=5e-5, batch_size=4, max_length=160, beta=0.1,
                               max_steps=steps, save_steps=1000)
    # TRL, datasets and peft load in ~10 s together: imported before the clock starts, not inside the first run
    import peft  # noqa: F401
    import trl  # noqa: F401

    losses, clocks = {}, {}
    for precision in PRECISIONS:
        out = folder / f"dpo-{precision}"
        with Clock() as clocks[precision]:
            train_dpo(DEFAULT_TARGET, pairs, out, config, device="cpu", dtype=precision)
        losses[precision] = [json.loads(line)["loss"] for line in (out / "dynamics.jsonl").read_text().splitlines()]
    worst = max(abs(a - b) for a, b in zip(losses["float32"], losses["bfloat16"], strict=True))
    means = {p: sum(values) / len(values) for p, values in losses.items()}
    mean_gap = abs(means["float32"] - means["bfloat16"])
    speedup = clocks["float32"].cpu / clocks["bfloat16"].cpu
    line = (f"training: DPO losses over {steps} steps float32 {[round(x, 4) for x in losses['float32']]} vs "
            f"bfloat16 autocast {[round(x, 4) for x in losses['bfloat16']]}: mean {means['float32']:.4f} vs "
            f"{means['bfloat16']:.4f} (gap {mean_gap:.4f}, target <= {MEAN_LOSS_TOLERANCE}), largest step gap "
            f"{worst:.4f} (target <= {STEP_LOSS_TOLERANCE}); {_seconds(clocks)} (load, reference pass, steps, saving), "
            f"CPU-time speedup {speedup:.2f}x")
    return [line], mean_gap <= MEAN_LOSS_TOLERANCE and worst <= STEP_LOSS_TOLERANCE, speedup


def _seconds(clocks: dict[str, Clock]) -> str:
    return (f"float32 {clocks['float32'].cpu:.1f} CPU s ({clocks['float32'].wall:.1f} wall) vs bfloat16 "
            f"{clocks['bfloat16'].cpu:.1f} ({clocks['bfloat16'].wall:.1f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=200, help="labelled answers per judge")
    parser.add_argument("--prompts", type=int, default=24, help="AdvBench behaviours answered greedily")
    parser.add_argument("--tokens", type=int, default=48, help="new tokens per greedy answer")
    parser.add_argument("--pairs", type=int, default=24, help="SafeRLHF pairs for DPO")
    parser.add_argument("--steps", type=int, default=6, help="DPO steps")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: judges, generation, training")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    record = policy.precision_record("cpu")
    print(f"CPU bfloat16 flags: {record['cpu_bf16_flags'] or 'none'}; probe speedups {record['cpu_bf16_speedups']}; "
          f"margin {record['margin']}")
    for name, choice in record["workloads"].items():
        print(f"policy for {name}: {choice['dtype']} ({choice['reason']})")
    chosen = {name for name, choice in record["workloads"].items() if choice["dtype"] != "float32"}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "judges" not in skip:
            lines, passed, speedup = judge_agreement(args.answers)
            print(*lines, sep="\n")
            ok &= passed and ("lm_read" not in chosen or speedup > 1)
        if "generation" not in skip:
            lines, passed, speedup = greedy_answers(args.prompts, args.tokens, folder)
            print(*lines, sep="\n")
            ok &= passed and ("generation" not in chosen or speedup > 1)
        if "training" not in skip:
            lines, passed, speedup = dpo_losses(args.pairs, args.steps, folder)
            print(*lines, sep="\n")
            ok &= passed and ("training" not in chosen or speedup > 1)
    print("OK" if ok else "FAIL: a target above is missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
