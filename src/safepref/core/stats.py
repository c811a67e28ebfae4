"""Rates with their uncertainty, a rank correlation with its interval, and agreement between two labellings
(scikit-learn metrics)."""

from __future__ import annotations

import itertools
import math

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion (None when n = 0): honest near 0 and 1, unlike the normal one."""
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float] | None:
    """95% interval of p1 - p2 for two independent proportions (Newcombe's hybrid score method, built from the two
    Wilson intervals): stays inside [-1, 1] and keeps its coverage at small n, where the Wald interval does not."""
    first, second = wilson_interval(k1, n1), wilson_interval(k2, n2)
    if first is None or second is None:
        return None
    p1, p2 = k1 / n1, k2 / n2
    difference = p1 - p2
    lower = difference - math.sqrt((p1 - first[0]) ** 2 + (second[1] - p2) ** 2)
    upper = difference + math.sqrt((first[1] - p1) ** 2 + (p2 - second[0]) ** 2)
    return (lower, upper)


def paired_difference_interval(both: int, first_only: int, second_only: int, neither: int
                               ) -> tuple[float, float] | None:
    """95% interval of p1 - p2 for two proportions measured on the same n units (e.g. the chosen and the rejected
    side of each pair, or two models on the same prompts): Newcombe's (1998) method 10, the hybrid score interval
    corrected for the correlation of the two sides. Counts: units positive on both sides, on the first only, on the
    second only, on neither. The correlation is Newcombe's continuity-corrected phi: its numerator
    both*neither - first_only*second_only loses n/2 when above n/2, counts as 0 between 0 and n/2, and stays as
    it is when negative."""
    n = both + first_only + second_only + neither
    first, second = wilson_interval(both + first_only, n), wilson_interval(both + second_only, n)
    if first is None or second is None:
        return None
    p1, p2 = (both + first_only) / n, (both + second_only) / n
    margins = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    association = both * neither - first_only * second_only
    corrected = association - n / 2 if association > n / 2 else (0.0 if association >= 0 else association)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    below = (p1 - first[0]) ** 2 - 2 * phi * (p1 - first[0]) * (second[1] - p2) + (second[1] - p2) ** 2
    above = (first[1] - p1) ** 2 - 2 * phi * (first[1] - p1) * (p2 - second[0]) + (p2 - second[0]) ** 2
    difference = p1 - p2
    return (max(-1.0, difference - math.sqrt(max(below, 0.0))), min(1.0, difference + math.sqrt(max(above, 0.0))))


def mean_interval(values: list[float], z: float = 1.96) -> dict:
    """A mean with its n and normal-approximation 95% interval (sample standard deviation); None values when empty."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "ci95": None}
    mean = sum(values) / n
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = z * spread / math.sqrt(n)
    return {"n": n, "mean": mean, "ci95": [mean - half, mean + half]}


def rank_correlation_interval(rho: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of Spearman's rank correlation ``rho`` from ``n`` points (n >= 4): Fisher's z transform with
    Bonett & Wright's (2000) standard error for Spearman, se = sqrt((1 + rho^2 / 2) / (n - 3)), back-transformed:
    tanh(atanh(rho) -/+ z se)."""
    if n < 4:
        raise ValueError(f"rank_correlation_interval: needs 4 points or more, got {n}")
    # A rank correlation varies more from sample to sample than Pearson's (whose Fisher-z variance is 1 / (n - 3)):
    # Bonett & Wright's factor 1 + rho^2 / 2 widens the interval to keep its coverage. With the 5-8 points a report
    # correlates (one per configuration) the interval is wide, and that is the honest answer. At rho = +-1 the
    # transform is infinite, so rho is clipped to +-0.9999 first; a perfect ordering of so few points then gives a
    # narrow interval near +-1, an approximation at that edge.
    se = math.sqrt((1 + rho * rho / 2) / (n - 3))
    centre = math.atanh(max(-0.9999, min(0.9999, rho)))
    return (math.tanh(centre - z * se), math.tanh(centre + z * se))


def spearman_interval(x: list[float], y: list[float], z: float = 1.96) -> dict:
    """Spearman's rank correlation of two aligned samples with its 95% interval (:func:`rank_correlation_interval`):
    ``{"n", "rho", "ci95"}``. With fewer than 4 points, or when either sample is constant (nothing to rank, so no
    correlation), rho and the interval are None."""
    from scipy.stats import spearmanr  # scipy loads in ~1 s: only when a correlation is computed

    n = len(x)
    if n != len(y):
        raise ValueError(f"spearman_interval: {n} x values against {len(y)} y values")
    if n < 4 or len(set(x)) < 2 or len(set(y)) < 2:
        return {"n": n, "rho": None, "ci95": None, "p": None}
    rho = float(spearmanr(x, y).statistic)
    return {"n": n, "rho": rho, "ci95": list(rank_correlation_interval(rho, n, z)), "p": rank_permutation_p(x, y)}


EXACT_PERMUTATIONS_UP_TO = 8  # 8! = 40,320 orderings: a fraction of a second


def rank_permutation_p(x: list[float], y: list[float]) -> float:
    """Two-sided p-value of Spearman's rho under the null of no relation: exact, over every ordering of ``y``, for
    up to 8 points (where the Fisher-z interval is least trustworthy: 4 points in perfect order have p = 2/24), and
    scipy's permutation test with 20,000 resamples (seeded) above."""
    from scipy.stats import permutation_test, rankdata  # scipy loads in ~1 s: only when a correlation is computed

    rx, ry = rankdata(x), rankdata(y)

    def rho_of(ranks_y):
        return np.corrcoef(rx, ranks_y)[0, 1]

    observed = abs(rho_of(ry))
    if len(x) <= EXACT_PERMUTATIONS_UP_TO:
        orderings = np.array(list(itertools.permutations(ry)))
        centred = orderings - orderings.mean(axis=1, keepdims=True)
        cx = rx - rx.mean()
        rhos = centred @ cx / (np.linalg.norm(centred, axis=1) * np.linalg.norm(cx))
        return float(np.mean(np.abs(rhos) >= observed - 1e-12))
    result = permutation_test((ry,), rho_of, permutation_type="pairings", n_resamples=20_000,
                              alternative="two-sided", random_state=0)
    return float(result.pvalue)


def rate(successes: int, n: int) -> dict:
    """A proportion with its n and 95% Wilson interval, as every rate in the project is reported."""
    interval = wilson_interval(successes, n)
    return {"n": n, "rate": successes / n if n else None, "ci95": list(interval) if interval else None}


def agreement(gold: list[int], predicted: list[int]) -> dict:
    """Agreement, precision, recall (positive class 1) and Cohen's kappa of two aligned 0/1 labellings."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, precision_score, recall_score  # slow import

    if not gold:
        return {"n": 0, "agreement": None, "precision": None, "recall": None, "kappa": None}
    # kappa is undefined when both labellings use one and the same class (chance agreement is 1)
    kappa = float(cohen_kappa_score(gold, predicted)) if len(set(gold) | set(predicted)) > 1 else None
    return {
        "n": len(gold),
        "agreement": float(accuracy_score(gold, predicted)),
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "kappa": kappa,
    }
