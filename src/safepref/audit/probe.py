"""The audit's probe: a standardised logistic regression scores every response from the fold that held it out
(k folds grouped by prompt), against a control with chosen/rejected swapped in half the pairs; rates carry a
bootstrap interval over prompts; each shallow cue is also probed alone."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from safepref.audit.features import cue_descriptions
from safepref.core.stats import wilson_interval

if TYPE_CHECKING:
    from safepref.audit.config import AuditConfig


def grouped_splits(groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds over responses with every prompt group wholly on one side (both sides of a pair share a group)."""
    # scikit-learn loads in seconds: imported only where used
    from sklearn.model_selection import GroupKFold

    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def control_swapped_labels(labels: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], seed: int) -> np.ndarray:
    """Labels with chosen/rejected swapped in a random half of the pairs of every test fold.

    A pair's two sides stay together (one 1, one 0), so the control keeps the pair structure and only the label's
    meaning is lost. Balancing the swaps per fold matters: with plain coin flips, a fold whose training part has
    more "long = chosen" pairs leaves a test part with fewer, and a probe on strongly separable features then
    scores systematically *below* 0.5 (the known downward bias of cross-validation under null labels).
    """
    rng = np.random.default_rng(seed)
    swapped = labels.copy()
    for _, test in splits:
        pair_indices = np.unique(test // 2)
        chosen_to_swap = rng.permutation(pair_indices)[: (len(pair_indices) + rng.integers(0, 2)) // 2]
        for pair_index in chosen_to_swap:
            swapped[2 * pair_index: 2 * pair_index + 2] = 1 - labels[2 * pair_index: 2 * pair_index + 2]
    return swapped


# The probes' matrices are small (4,000 x 384 for 2,000 pairs): one BLAS thread fits them faster than two, whose
# hand-offs cost more than the arithmetic, and far faster on a busy machine, where a second BLAS thread spin-waits
# for a core. A 3,200 x 384 fit took 0.045 s with one thread against 0.56 s with two on the 2-core machine with
# other work running (``benchmarks/bench_audit.py`` measures the audit whole).
PROBE_BLAS_THREADS = 1


def out_of_fold_scores(features: np.ndarray, labels: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Decision score of a standardised logistic regression for every response, from the fold that held it out."""
    # scikit-learn loads in seconds: imported only where used
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with threadpool_limits(PROBE_BLAS_THREADS, user_api="blas"):
        return cross_val_predict(probe, features, labels, cv=splits, method="decision_function")


def cluster_bootstrap_interval(values: np.ndarray, clusters: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of mean(values), resampling whole clusters (prompts) with replacement."""
    _, index = np.unique(clusters, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    low, high = np.quantile(means, [0.025, 0.975])
    return (float(low), float(high))


def _rate(values: np.ndarray, clusters: np.ndarray, config: AuditConfig) -> tuple[float, list[float]]:
    low, high = cluster_bootstrap_interval(values, clusters, config.bootstrap, config.seed)
    return round(float(values.mean()), 4), [round(low, 4), round(high, 4)]


def cohens_d(chosen: np.ndarray, rejected: np.ndarray) -> float | None:
    """Standardised mean difference; None when both sides are constant but differ (d is unbounded)."""
    pooled = math.sqrt((chosen.var(ddof=1) + rejected.var(ddof=1)) / 2) if len(chosen) > 1 else 0.0
    difference = float(chosen.mean() - rejected.mean())
    if pooled == 0:
        return 0.0 if difference == 0 else None
    return difference / pooled


def probe_feature_set(features: np.ndarray, labels: np.ndarray, control_labels: list[np.ndarray], groups: np.ndarray,
                      splits: list, config: AuditConfig) -> dict[str, Any]:
    """Accuracy (per response), pairwise accuracy (per pair) and the shuffled-label control, each with a CI."""
    scores = out_of_fold_scores(features, labels, splits)
    correct = ((scores > 0).astype(int) == labels).astype(np.float64)
    accuracy, accuracy_ci = _rate(correct, groups, config)
    # rows alternate chosen, rejected: a pair is ranked right when its chosen side scores higher (ties: half)
    chosen_scores, rejected_scores = scores[0::2], scores[1::2]
    ranked = (chosen_scores > rejected_scores) + 0.5 * (chosen_scores == rejected_scores)
    pairwise, pairwise_ci = _rate(ranked.astype(np.float64), groups[0::2], config)
    # each response's correctness averaged over the control repeats, so the control estimates the null, not one draw
    control_correct = np.mean([((out_of_fold_scores(features, swapped, splits) > 0).astype(int) == swapped)
                               for swapped in control_labels], axis=0)
    control, control_ci = _rate(control_correct, groups, config)
    return {
        "n_features": int(features.shape[1]),
        "n_responses": len(labels),
        "n_pairs": len(labels) // 2,
        "accuracy": accuracy,
        "accuracy_ci": accuracy_ci,
        "accuracy_ci_wilson": [round(x, 4) for x in wilson_interval(int(correct.sum()), len(correct))],
        "pairwise_accuracy": pairwise,
        "pairwise_accuracy_ci": pairwise_ci,
        "control_accuracy": control,
        "control_accuracy_ci": control_ci,
    }


def cue_table(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, splits: list,
              config: AuditConfig) -> list[dict[str, Any]]:
    """Each shallow cue on its own: single-feature probe accuracy (same folds) and Cohen's d, best first."""
    rows = []
    for column, (name, description) in enumerate(cue_descriptions().items()):
        values = features[:, column:column + 1]
        scores = out_of_fold_scores(values, labels, splits)
        correct = ((scores > 0).astype(int) == labels).astype(np.float64)
        accuracy, accuracy_ci = _rate(correct, groups, config)
        chosen, rejected = values[labels == 1, 0], values[labels == 0, 0]
        d = cohens_d(chosen, rejected)
        rows.append({
            "cue": name, "description": description, "accuracy": accuracy, "accuracy_ci": accuracy_ci,
            "cohens_d": None if d is None else round(d, 3),
            "chosen_mean": round(float(chosen.mean()), 3), "rejected_mean": round(float(rejected.mean()), 3),
        })
    return sorted(rows, key=lambda r: -r["accuracy"])
