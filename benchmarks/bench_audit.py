"""Benchmark: `safepref audit` with embedding features on 2,000 hh-harmless pairs (target: <= 45 s on 2 cores).

The anchor is the bare MiniLM ``encode`` of a random quarter of the same response texts, measured in the same run
and scaled to all of them, so the ratio (audit time / bare encode time) means something on a noisy, shared machine:
it says how much the audit adds on top of the embedding work it cannot avoid. Usage:
``python benchmarks/bench_audit.py [N_PAIRS]`` (default 2,000). The feature cache is a fresh
temporary folder, so the audit computes its features from scratch. Exits 1 when the target is missed (checked
only at the full 2,000 pairs).
"""

from __future__ import annotations

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

N_PAIRS = 2000
TARGET_SECONDS = 45.0


def main() -> int:
    n_pairs = int(sys.argv[1]) if len(sys.argv) > 1 else N_PAIRS  # a smaller n for a quick look on a busy machine
    pairs = load_dataset("hh-harmless")[:n_pairs]
    texts = [text for p in pairs for text in (p.chosen_text, p.rejected_text)]

    embedder = load_embedder()
    embedder.encode(texts[:32], batch_size=32)  # warm-up: first-call overheads are not the anchor's business
    sample = random.Random(0).sample(texts, len(texts) // 4)
    start = time.perf_counter()
    embedder.encode(sample, batch_size=32, show_progress_bar=False)
    anchor = (time.perf_counter() - start) * len(texts) / len(sample)

    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        config = AuditConfig(features=["embed"], cache_dir=cache)
        start = time.perf_counter()
        summary = audit_pairs(pairs, config, out)
        elapsed = time.perf_counter() - start

    embed = summary["features"]["embed"]
    print(f"audit (embed) of {len(pairs)} hh-harmless pairs ({len(texts)} responses): {elapsed:.1f} s, "
          f"{len(pairs) / elapsed:.1f} pairs/s; target <= {TARGET_SECONDS:.0f} s on 2 cores")
    print(f"anchor: bare MiniLM encode of the same texts (scaled from {len(sample)}): {anchor:.1f} s; "
          f"ratio audit / anchor = {elapsed / anchor:.2f}")
    print(f"result: accuracy {embed['accuracy']:.3f} {embed['accuracy_ci']}, control {embed['control_accuracy']:.3f}")
    if n_pairs == N_PAIRS and elapsed > TARGET_SECONDS:
        print(f"FAIL: {elapsed:.1f} s > {TARGET_SECONDS:.0f} s")
        return 1
    print("OK" if n_pairs == N_PAIRS else f"(target not checked: {n_pairs} pairs, not {N_PAIRS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
