"""Benchmark: `safepref audit` with embedding features and its pair diagnostics on 2,000 hh-harmless pairs.

Target: the audit takes at most 1.3x its anchor, the bare MiniLM ``encode`` of a random quarter of the same response
texts (MiniLM's own settings), measured in the same run and scaled to all of them. The ratio says how much the audit
adds on top of the embedding work it cannot avoid, and it means something on a noisy, shared machine where seconds
do not. The audit runs with its default settings unless told otherwise (``--diagnostics-judge full`` measures the
diagnostics with the harm and refusal heads' SmolLM2 read).

    python benchmarks/bench_audit.py [--pairs N] [--diagnostics-judge fast|full|none]

The feature cache is a fresh temporary folder, so the audit computes every feature anew. Exits 1 when the
target is missed; it is checked from 1,000 pairs on (below that, loading the judges' heads and models weighs more
than it does in an audit of a real dataset).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from safepref.audit import AuditConfig, audit_pairs  # noqa: E402
from safepref.core.datasets import load_dataset  # noqa: E402
from safepref.models.loading import load_embedder  # noqa: E402
from safepref.pairs.diagnostics import DEFAULT_DIAGNOSTICS  # noqa: E402

N_PAIRS = 2000
TARGET_RATIO = 1.3
CHECKED_FROM = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=N_PAIRS, help="hh-harmless pairs (fewer on a busy machine)")
    parser.add_argument("--diagnostics-judge", default=DEFAULT_DIAGNOSTICS, choices=("fast", "full", "none"))
    args = parser.parse_args()
    pairs = load_dataset("hh-harmless")[: args.pairs]
    texts = [text for p in pairs for text in (p.chosen_text, p.rejected_text)]

    embedder = load_embedder()
    embedder.encode(texts[:32], batch_size=32)  # warm-up: first-call overheads are not the anchor's business
    sample = random.Random(0).sample(texts, len(texts) // 4)
    start = time.perf_counter()
    embedder.encode(sample, batch_size=32, show_progress_bar=False)
    anchor = (time.perf_counter() - start) * len(texts) / len(sample)

    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        config = AuditConfig(features=["embed"], cache_dir=cache, diagnostics_judge=args.diagnostics_judge)
        start = time.perf_counter()
        summary = audit_pairs(pairs, config, out)
        elapsed = time.perf_counter() - start

    embed = summary["features"]["embed"]
    diagnostics = summary["pair_diagnostics"]
    ratio = elapsed / anchor
    print(f"audit (embed, diagnostics judge {args.diagnostics_judge}) of {len(pairs)} hh-harmless pairs "
          f"({len(texts)} responses): {elapsed:.1f} s, {len(pairs) / elapsed:.1f} pairs/s")
    print(f"anchor: bare MiniLM encode of the same texts (scaled from {len(sample)}): {anchor:.1f} s; "
          f"ratio audit / anchor = {ratio:.2f} (target <= {TARGET_RATIO})")
    print(f"result: accuracy {embed['accuracy']:.3f} {embed['accuracy_ci']}, control {embed['control_accuracy']:.3f}")
    if diagnostics:
        harmful, refusal = diagnostics["harmful"], diagnostics["refusal"]
        print(f"diagnostics ({diagnostics['harm_judge']}, {diagnostics['refusal_judge']}, {diagnostics['judged_pairs']} "
              f"pairs): harmful chosen {harmful['chosen']['rate']:.3f} vs rejected {harmful['rejected']['rate']:.3f}; "
              f"refusal chosen {refusal['chosen']['rate']:.3f} vs rejected {refusal['rejected']['rate']:.3f}")
    if args.pairs < CHECKED_FROM:
        print(f"(target not checked: {args.pairs} pairs, checked from {CHECKED_FROM})")
        return 0
    if ratio > TARGET_RATIO:
        print(f"FAIL: ratio {ratio:.2f} > {TARGET_RATIO}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
