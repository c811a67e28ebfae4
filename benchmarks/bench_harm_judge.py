"""Throughput of the harm judge (target: at least 20 answers/s on 2 cores); exits 1 when missed.

Rows: 400 real GPTFuzz answers (many of them long), spread over its 100 harmful requests, judged by a freshly loaded judge
(no embedding or hidden-state cache). Anchor, measured in the same run on the same rows: the keyword judge (plain substring
matching), so the printed ratio says how much slower than a string match the harm judge is, whatever the load.

Two lower bounds of what an idle 2-core machine gives are printed: answers per wall second (possibly shared with
other processes) and answers per CPU second of this process (an idle machine runs at least one core for it all
the time). The target counts as met when either reaches it.
Run: HF_HUB_OFFLINE=1 python benchmarks/bench_harm_judge.py [--rows N]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from safepref.judges import get_judge, read_judge_rows

TARGET = 20.0


def throughput(judge, rows) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    judge.judge(rows)
    return len(rows) / (time.perf_counter() - wall), len(rows) / (time.process_time() - cpu)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(2)
    every = read_judge_rows("gptfuzz-eval")
    rows = every[:: max(1, len(every) // args.rows)][: args.rows]  # spread over the file: ~100 distinct requests
    harm = get_judge("harm")
    harm.judge(rows[:4])  # load MiniLM and the LM outside the timing; the 4 rows are read again below (no cache)
    harm.embedder.vectors.clear()
    if harm.embedder.hidden_states is not None:
        harm.embedder.hidden_states.states.clear()
    anchor_wall, _ = throughput(get_judge("keyword"), rows)
    wall, cpu = throughput(harm, rows)
    print(f"keyword judge (anchor): {anchor_wall:,.0f} answers/s wall")
    print(f"harm judge: {wall:,.1f} answers/s wall, {cpu:,.1f} per CPU second, on {len(rows)} GPTFuzz answers to "
          f"{len({r.prompt for r in rows})} requests (target >= {TARGET:.0f})")
    print(f"ratio harm/anchor (wall): {wall / anchor_wall:.5f}")
    if max(wall, cpu) < TARGET:
        print(f"MISSED: below {TARGET:.0f} answers/s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
