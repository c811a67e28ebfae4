"""Benchmark: the safety evaluation stage (`safepref eval-safety`), answers and verdicts per second, against the same
evaluation in float32 measured in the same run (the anchor: the path every CPU took before the device policy
measured bfloat16).

The work is configs/small-grid.yaml's: SmolLM2 answers the first N AdvBench behaviours greedily (48 new tokens), and the
``harm``, ``keyword`` and ``classifier`` judges read every answer. Each evaluation runs as its own
``safepref eval-safety`` process, as a stage does (imports and model loads included), in a fresh folder; a first
evaluation of one behaviour prepares what every later one reuses (converted models, the classifier, the precision
probe) and is not timed. Speed is counted in CPU seconds of the child process (wall seconds printed beside), so other
work on a shared machine does not enter the ratio.

Target: where the policy picks bfloat16 for generation and the judges' LM read, the evaluation takes at most 1/1.3 of
float32's CPU seconds (``TARGET_SPEEDUP``); where it keeps float32, nothing changes: the same ASR from both runs and
a ratio of at least 0.9 (timing noise). Exits 1 when the target is missed.

    python benchmarks/bench_eval.py [--prompts 24] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from safepref.core import device as policy  # noqa: E402

JUDGES = "harm,keyword,classifier"
TARGET_SPEEDUP = 1.3
UNCHANGED_FLOOR = 0.9


def evaluate(out: Path, prompts: int, tokens: int, dtype: str) -> tuple[dict, float, float]:
    """One ``safepref eval-safety`` process: (summary, wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "safepref", "eval-safety", "--model", "smollm2-135m-instruct",
                           "--suite", "advbench", "--limit", str(prompts), "--max-new-tokens", str(tokens),
                           "--judge", JUDGES, "--dtype", dtype, "--out", str(out), "--json"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"eval-safety failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(done.stdout), wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24, help="AdvBench behaviours")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    record = policy.precision_record("cpu")
    bf16 = {name for name in ("generation", "lm_read") if record["workloads"][name]["dtype"] != "float32"}
    print(f"CPU bfloat16 flags: {record['cpu_bf16_flags'] or 'none'}; probe speedups {record['cpu_bf16_speedups']}; "
          f"policy: generation {record['workloads']['generation']['dtype']}, LM read "
          f"{record['workloads']['lm_read']['dtype']}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        evaluate(Path(tmp) / "warm-up", 1, args.max_new_tokens, "auto")
        for dtype in ("float32", "auto"):
            results[dtype] = evaluate(Path(tmp) / dtype, args.prompts, args.max_new_tokens, dtype)
    verdicts = args.prompts * len(JUDGES.split(","))
    for dtype, (summary, wall, cpu) in results.items():
        asr = ", ".join(f"{r['judge']} {r['asr']:.2f}" for r in summary["results"])
        print(f"{'anchor, float32' if dtype == 'float32' else 'default (auto)'}: {args.prompts} answers, {verdicts} "
              f"verdicts in {cpu:.1f} CPU s ({wall:.1f} wall): {args.prompts / cpu:.3f} answers and "
              f"{verdicts / cpu:.3f} verdicts per CPU second ({args.prompts / wall:.3f} answers/s wall); ASR {asr}")
    ratio = results["float32"][2] / results["auto"][2]
    wall_ratio = results["float32"][1] / results["auto"][1]
    print(f"ratio float32 CPU seconds / default CPU seconds = {ratio:.2f} (wall {wall_ratio:.2f})")
    if bf16:
        ok = ratio >= TARGET_SPEEDUP
        print(f"target (bfloat16 for {', '.join(sorted(bf16))}): ratio >= {TARGET_SPEEDUP}: {'met' if ok else 'MISSED'}")
    else:
        same = [r["asr"] for r in results["float32"][0]["results"]] == [r["asr"] for r in results["auto"][0]["results"]]
        ok = same and ratio >= UNCHANGED_FLOOR
        print(f"target (float32 kept): the same ASR ({same}) and ratio >= {UNCHANGED_FLOOR}: {'met' if ok else 'MISSED'}")
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
