"""Is a filtered pair set less separable than a random subset of the same size? (The probe loses accuracy on
fewer pairs alone, so the full set is not the fair comparison.)

    python scripts/filter_subset_control.py xstest-multisource filtered.jsonl [--draws 20]

Prints the embedding-probe accuracy (the audit's grouped 5-fold probe, no control or bootstrap) of the full set, of
the filtered pairs, and of DRAWS random subsets of the filtered size, with the share of draws at or below the filter.
"""

from __future__ import annotations

import random
import sys

import numpy as np

from safepref.audit import AuditConfig, compute_features, grouped_splits, out_of_fold_scores, resolve_pairs
from safepref.core.io import read_pairs
from safepref.core.keys import content_key


def probe_accuracy(features: np.ndarray, pairs: list, ids: list[int]) -> float:
    rows = np.array([row for i in ids for row in (2 * i, 2 * i + 1)])
    groups = np.repeat(np.asarray([content_key([m.model_dump() for m in pairs[i].prompt]) for i in ids]), 2)
    labels = np.tile([1, 0], len(ids))
    scores = out_of_fold_scores(features[rows], labels, grouped_splits(groups, 5, 0))
    return float(((scores > 0).astype(int) == labels).mean())


def main(source: str, filtered_path: str, draws: int) -> None:
    pairs = resolve_pairs(source)
    features = compute_features("embed", pairs, AuditConfig())
    index = {p.id: i for i, p in enumerate(pairs)}
    kept = [index[p.id] for p in read_pairs(filtered_path)]
    filtered = probe_accuracy(features, pairs, kept)
    randoms = np.array([probe_accuracy(features, pairs, random.Random(seed).sample(range(len(pairs)), len(kept)))
                        for seed in range(1, draws + 1)])
    print(f"all {len(pairs)} pairs: {probe_accuracy(features, pairs, list(range(len(pairs)))):.3f}; "
          f"filtered {len(kept)}: {filtered:.3f}; random {len(kept)} ({draws} draws): mean {randoms.mean():.3f}, "
          f"sd {randoms.std():.3f}, range {randoms.min():.3f}-{randoms.max():.3f}; "
          f"share at or below the filtered: {(randoms <= filtered).mean():.2f}")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    count = 20
    if "--draws" in arguments:
        at = arguments.index("--draws")
        count = int(arguments[at + 1])
        del arguments[at:at + 2]
    if len(arguments) != 2:
        sys.exit(__doc__)
    main(arguments[0], arguments[1], count)
