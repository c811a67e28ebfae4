"""Reward scoring speed: `score_responses` with the default safety-bt (and minilm-bt), against a target.

Prints responses/s for each reward model and, as an anchor measured in the same run, the bare MiniLM encoding of
the same answers (so the ratios are comparable across machines). Exits 1 when safety-bt scores fewer than
``--min-rate`` answers per second (the target: 50/s on 2 cores, so a 1,000-prompt pool with k=5 samples scores
within two minutes). Torch is limited to 2 threads.
Run: PYTHONPATH=src python benchmarks/bench_score.py [--n 200] [--min-rate 50] [--skip-minilm]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from safepref.core.datasets import load_dataset  # noqa: E402
from safepref.scoring.reward_model import EMBEDDING_RM, SAFETY_RM, load_reward_model  # noqa: E402
from safepref.scoring.score import score_responses  # noqa: E402


def responses_per_second(responses, model) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        score_responses(responses, model, Path(folder) / "scores.jsonl")
        return len(responses) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--min-rate", type=float, default=50.0)
    parser.add_argument("--skip-minilm", action="store_true", help="skip minilm-bt and the MiniLM anchor")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    responses = list(load_dataset("gpt4o-saferlhf"))[: args.n]
    safety = load_reward_model(SAFETY_RM)
    safety.score(["warm up"], ["warm up"])
    safety_rate = responses_per_second(responses, safety)
    line = f"n={len(responses)} score_responses {SAFETY_RM}: {safety_rate:.1f} resp/s"
    if not args.skip_minilm:
        minilm = load_reward_model(EMBEDDING_RM)
        minilm.embedder.encode(["warm up"])
        start = time.perf_counter()
        minilm.embedder.encode([r.text for r in responses], batch_size=32, show_progress_bar=False)
        anchor = len(responses) / (time.perf_counter() - start)
        minilm_rate = responses_per_second(responses, minilm)
        line += (f"; {EMBEDDING_RM}: {minilm_rate:.1f} resp/s; anchor (MiniLM encode of the answers): "
                 f"{anchor:.1f} resp/s; {SAFETY_RM} / anchor {safety_rate / anchor:.2f}")
    print(line)
    if safety_rate < args.min_rate:
        print(f"FAIL: {SAFETY_RM} scored {safety_rate:.1f} answers/s, below the target {args.min_rate:.0f}/s")
        return 1
    print(f"OK: {SAFETY_RM} >= {args.min_rate:.0f} answers/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
