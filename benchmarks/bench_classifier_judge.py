"""Throughput of the classifier judge (target: at least 200 responses/s on 2 cores); exits 1 when missed.

Anchor, measured in the same run on the same responses: the keyword judge (plain substring matching), so the
printed ratio says how much slower than a string match the classifier is, whatever the machine's load.
Run: HF_HUB_OFFLINE=1 python benchmarks/bench_classifier_judge.py
"""

from __future__ import annotations

import time

from safepref.judges import get_judge, read_judge_rows

TARGET = 200  # responses per second, wall clock, 2 cores


def throughput(judge, rows, repeats: int = 3) -> tuple[float, float]:
    """(responses per wall second, responses per CPU second of this process): the second is what an idle
    machine gives when other processes share the cores."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        judge.judge(rows)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return len(rows) / best_wall, len(rows) / best_cpu


def main() -> int:
    rows = read_judge_rows("gptfuzz-eval")  # 1,540 real responses, many of them long
    classifier = get_judge("classifier")
    classifier.judge(rows[:10])  # load (or build and cache) the fitted model outside the timing
    anchor_wall, anchor_cpu = throughput(get_judge("keyword"), rows)
    wall, cpu = throughput(classifier, rows)
    print(f"keyword judge (anchor): {anchor_wall:,.0f} responses/s wall, {anchor_cpu:,.0f} per CPU second")
    print(f"classifier judge: {wall:,.0f} responses/s wall, {cpu:,.0f} per CPU second "
          f"on {len(rows)} GPTFuzz responses (target >= {TARGET})")
    print(f"ratio classifier/anchor (wall): {wall / anchor_wall:.4f}")
    if wall < TARGET:
        print(f"FAIL: {wall:,.0f} responses/s < {TARGET}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
