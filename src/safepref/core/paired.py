"""Two configurations measured on the same prompts, compared prompt by prompt.

Every configuration of a run answers the same evaluation prompts, so a comparison of two of them is paired: what
carries the evidence is the prompts on which they disagree (one jailbroken, the other not). Treating the two rates
as independent samples throws that away and widens the interval. This module gives, for 0/1 outcomes per prompt:

- the difference of the paired proportions with Newcombe's (1998) method-10 interval
  (:func:`safepref.core.stats.paired_difference_interval`);
- McNemar's exact test: a two-sided binomial test of the discordant prompts against 1/2 (``scipy.stats.binomtest``);
- the discordant counts in words ("12 prompts jailbroke only under A, 3 only under B");
- the resolution: the smallest difference the comparison could detect with 80% power at a two-sided 5% level, by
  Connor's (1987) formula for paired proportions from n and the observed share of discordant prompts;
- a verdict that reads the interval and the resolution together (:func:`verdict`).

With several training seeds per configuration each prompt has one outcome per seed. :func:`compare_pooled` then
resamples prompts (a cluster bootstrap keeping each prompt's seeds together, so that the correlated answers of one
prompt are never counted as independent evidence) for the interval and the resolution, and flips A and B within
prompts (a randomisation test; McNemar's test is its one-seed case) for the p-value. Scores that are not 0/1
(TruthfulQA's mc2) are compared by the mean paired difference (:func:`compare_paired_scores`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

import numpy as np

from safepref.core.stats import difference_interval, paired_difference_interval, wilson_interval

ALPHA = 0.05
POWER = 0.80
RESAMPLES = 2000  # bootstrap resamples and sign flips: the 2.5% quantile moves by about 0.005 between reruns
METHOD_PAIRED = ("paired: Newcombe (1998) method-10 interval, McNemar's exact test, resolution by Connor (1987) "
                 "at 80% power, two-sided 5%")
METHOD_POOLED = ("seeds pooled: mean over seeds per prompt; 95% interval from a bootstrap over prompts keeping each "
                 "prompt's seeds together, p-value from sign flips of A and B within prompts, resolution "
                 "(z 0.975 + z 0.80) x the bootstrap standard error")
METHOD_SCORES = "paired scores: mean paired difference, t interval, paired t-test, resolution (z 0.975 + z 0.80) x SE"
METHOD_UNPAIRED = "unpaired: Newcombe's hybrid score interval for independent samples"


def _z(probability: float) -> float:
    return NormalDist().inv_cdf(probability)


# ---------------------------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class PairedCounts:
    """A paired 2x2 table: prompts positive under both, under the first only, under the second only, under neither."""

    both: int
    first_only: int
    second_only: int
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.first_only + self.second_only + self.neither

    @property
    def discordant(self) -> int:
        return self.first_only + self.second_only


def paired_counts(first: Mapping[str, int], second: Mapping[str, int]) -> PairedCounts:
    """The table of two 0/1 outcome maps (prompt id -> outcome) over the prompts both have."""
    common = first.keys() & second.keys()
    cells = {(1, 1): 0, (1, 0): 0, (0, 1): 0, (0, 0): 0}
    for key in common:
        cells[(int(first[key]), int(second[key]))] += 1
    return PairedCounts(cells[(1, 1)], cells[(1, 0)], cells[(0, 1)], cells[(0, 0)])


def mcnemar_exact_p(first_only: int, second_only: int) -> float:
    """McNemar's exact (conditional) two-sided p-value: the discordant prompts against a fair coin. 1 when none."""
    # scipy loads in about a second: imported only where used
    from scipy.stats import binomtest

    discordant = first_only + second_only
    if discordant == 0:
        return 1.0
    return float(binomtest(first_only, discordant, 0.5).pvalue)


# ---------------------------------------------------------------------------------------------- resolution


def paired_sample_size(difference: float, discordance: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Prompts needed to detect a paired difference of proportions ``difference`` when a share ``discordance`` of
    prompts is discordant (Connor 1987, Biometrics 43:207): n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2."""
    if not 0 < abs(difference) <= discordance <= 1:
        raise ValueError("need 0 < |difference| <= discordance <= 1")
    z_alpha, z_beta = _z(1 - alpha / 2), _z(power)
    root = z_alpha * math.sqrt(discordance) + z_beta * math.sqrt(discordance - difference ** 2)
    return math.ceil(root ** 2 / difference ** 2)


def minimum_detectable_difference(n: int, discordance: float, alpha: float = ALPHA,
                                  power: float = POWER) -> float | None:
    """The smallest paired difference of proportions that n prompts detect with ``power`` at a two-sided ``alpha``
    (Connor's formula solved for the difference). A difference d needs at least a share d of discordant prompts, so
    the discordance used for d is max(observed, d): with no observed discordance the answer is the difference that
    n prompts would detect if every discordant prompt went one way. None when n is 0; 1.0 when nothing smaller is
    detectable."""
    if n <= 0:
        return None
    z_alpha, z_beta = _z(1 - alpha / 2), _z(power)

    def detects(d: float) -> bool:
        psi = max(discordance, d)
        return math.sqrt(n) * d >= z_alpha * math.sqrt(psi) + z_beta * math.sqrt(max(psi - d * d, 0.0))

    grid = [i / 1000 for i in range(1, 1001)]  # the left side is not monotone in d everywhere: scan, then bisect
    first = next((d for d in grid if detects(d)), None)
    if first is None:
        return 1.0
    low, high = first - 0.001, first
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (low, middle) if detects(middle) else (middle, high)
    return high


def detectable_from_standard_error(standard_error: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Resolution of an estimate with this standard error: (z_{1-alpha/2} + z_power) x SE (the normal approximation
    behind every power formula of this kind)."""
    return (_z(1 - alpha / 2) + _z(power)) * standard_error


# ---------------------------------------------------------------------------------------------- verdicts


def verdict(difference: float | None, interval: Sequence[float] | None, resolution: float | None) -> str:
    """The verdict words of one comparison, ``difference`` oriented so that > 0 is the expected direction.

    - holds: the 95% interval excludes 0 in the expected direction;
    - reversed: it excludes 0 the other way;
    - no measurable difference: it holds 0 and lies within (-resolution, +resolution), so every difference the
      comparison could detect is ruled out;
    - direction only: it holds 0, reaches a detectable difference, and the observed difference is in the expected
      direction;
    - too little evidence: it holds 0, reaches a detectable difference, and the observed one is not in the expected
      direction (neither a difference nor its absence is shown).
    """
    if difference is None or interval is None:
        return "not measured"
    low, high = interval
    if low > 0:
        return "holds"
    if high < 0:
        return "reversed"
    if resolution is not None and -resolution < low and high < resolution:
        return "no measurable difference"
    return "direction only" if difference > 0 else "too little evidence"


def resolution_text(resolution: float | None) -> str:
    return "" if resolution is None else f"could detect {resolution:.2f} or more"


# ---------------------------------------------------------------------------------------------- comparisons


def _rate(positives: int, n: int) -> dict:
    interval = wilson_interval(positives, n)
    return {"n": n, "rate": positives / n if n else None, "ci95": list(interval) if interval else None}


def compare_paired(first: Mapping[str, int], second: Mapping[str, int]) -> dict:
    """One paired comparison of 0/1 outcomes (prompt id -> outcome) over the prompts both have: both rates,
    difference (first - second), Newcombe's paired interval, McNemar's exact p, the discordant counts and the
    resolution. JSON-able."""
    counts = paired_counts(first, second)
    n = counts.n
    if n == 0:
        return {"paired": True, "n": 0, "difference": None, "difference_ci95": None, "p_value": None,
                "resolution": None, "method": METHOD_PAIRED}
    interval = paired_difference_interval(counts.both, counts.first_only, counts.second_only, counts.neither)
    return {
        "paired": True, "n": n, "n_seeds": [1, 1],
        "first": _rate(counts.both + counts.first_only, n), "second": _rate(counts.both + counts.second_only, n),
        "difference": (counts.first_only - counts.second_only) / n, "difference_ci95": list(interval),
        "p_value": mcnemar_exact_p(counts.first_only, counts.second_only),
        "first_only": counts.first_only, "second_only": counts.second_only, "both": counts.both,
        "neither": counts.neither, "discordance": counts.discordant / n,
        "resolution": minimum_detectable_difference(n, counts.discordant / n), "method": METHOD_PAIRED,
    }


def compare_pooled(first: Mapping[str, Sequence[float]], second: Mapping[str, Sequence[float]],
                   resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """A comparison that pools seeds: per prompt the mean outcome over its seeds (lists may differ in length, e.g.
    an untrained SFT model evaluated once against a configuration trained with three seeds).

    Difference: mean over prompts of (first's seed mean - second's). Interval: percentile bootstrap resampling
    prompts, each with all of its seeds (the cluster is the prompt: its seeds share the request, so they are not
    independent evidence). p-value: a randomisation test flipping first and second within prompts (with one seed a
    side it is McNemar's test). Resolution: (z 0.975 + z 0.80) x the bootstrap standard error."""
    common = sorted(first.keys() & second.keys())
    if not common:
        return {"paired": True, "pooled": True, "n": 0, "difference": None, "difference_ci95": None,
                "p_value": None, "resolution": None, "method": METHOD_POOLED}
    a = np.array([fmean(first[key]) for key in common])
    b = np.array([fmean(second[key]) for key in common])
    deltas = a - b
    n = len(common)
    generator = np.random.default_rng(seed)
    picks = generator.integers(0, n, size=(resamples, n))
    boot = deltas[picks].mean(axis=1)
    low, high = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
    observed = float(deltas.mean())
    signs = generator.choice([-1.0, 1.0], size=(resamples, n))
    flipped = np.abs((signs * deltas).mean(axis=1))
    p_value = float((1 + np.sum(flipped >= abs(observed) - 1e-12)) / (1 + resamples))
    standard_error = float(boot.std(ddof=1))
    return {
        "paired": True, "pooled": True, "n": n,
        "n_seeds": [max(len(first[k]) for k in common), max(len(second[k]) for k in common)],
        "first": _pooled_rate(a, generator, resamples), "second": _pooled_rate(b, generator, resamples),
        "difference": observed, "difference_ci95": [low, high], "p_value": p_value,
        "first_only": int(np.sum(deltas > 0)), "second_only": int(np.sum(deltas < 0)),
        "discordance": float(np.mean(deltas != 0)), "standard_error": standard_error,
        "resolution": detectable_from_standard_error(standard_error) if standard_error > 0 else
        minimum_detectable_difference(n, 0.0), "method": METHOD_POOLED,
    }


def _pooled_rate(means: np.ndarray, generator: np.random.Generator, resamples: int) -> dict:
    boot = means[generator.integers(0, len(means), size=(resamples, len(means)))].mean(axis=1)
    return {"n": len(means), "rate": float(means.mean()), "ci95": [float(q) for q in np.quantile(boot, [0.025, 0.975])]}


def pooled_rate(per_prompt: Mapping[str, Sequence[float]], resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Mean over prompts of each prompt's mean outcome over seeds, with a 95% bootstrap interval over prompts."""
    means = np.array([fmean(values) for values in per_prompt.values()])
    if not len(means):
        return {"n": 0, "rate": None, "ci95": None}
    return _pooled_rate(means, np.random.default_rng(seed), resamples)


def compare(first: Mapping[str, Sequence[float]], second: Mapping[str, Sequence[float]]) -> dict:
    """The paired comparison that fits the data: McNemar and Newcombe for one 0/1 outcome per prompt and side, the
    pooled bootstrap when either side has several seeds, the paired mean difference for scores that are not 0/1."""
    values = [v for side in (first, second) for outcomes in side.values() for v in outcomes]
    binary = all(v in (0, 1) for v in values)
    single = all(len(outcomes) == 1 for side in (first, second) for outcomes in side.values())
    if binary and single:
        return compare_paired({k: int(v[0]) for k, v in first.items()}, {k: int(v[0]) for k, v in second.items()})
    if single:
        return compare_paired_scores({k: float(v[0]) for k, v in first.items()},
                                     {k: float(v[0]) for k, v in second.items()})
    return compare_pooled(first, second)


def compare_paired_scores(first: Mapping[str, float], second: Mapping[str, float]) -> dict:
    """Mean paired difference of scores in [0, 1] per prompt (e.g. TruthfulQA mc2), with a t interval, the paired
    t-test's p and the resolution (z 0.975 + z 0.80) x SE."""
    # scipy loads in about a second: imported only where used
    from scipy.stats import t as student

    common = sorted(first.keys() & second.keys())
    n = len(common)
    if n < 2:
        return {"paired": True, "n": n, "difference": None, "difference_ci95": None, "p_value": None,
                "resolution": None, "method": METHOD_SCORES}
    deltas = [first[k] - second[k] for k in common]
    mean, spread = fmean(deltas), stdev(deltas)
    standard_error = spread / math.sqrt(n)
    half = float(student.ppf(0.975, n - 1)) * standard_error
    p_value = 1.0 if standard_error == 0 else float(2 * student.sf(abs(mean) / standard_error, n - 1))
    return {
        "paired": True, "n": n, "n_seeds": [1, 1],
        "first": {"n": n, "rate": fmean(first[k] for k in common), "ci95": None},
        "second": {"n": n, "rate": fmean(second[k] for k in common), "ci95": None},
        "difference": mean, "difference_ci95": [mean - half, mean + half], "p_value": p_value,
        "first_only": sum(d > 0 for d in deltas), "second_only": sum(d < 0 for d in deltas),
        "discordance": sum(d != 0 for d in deltas) / n, "standard_error": standard_error,
        "resolution": detectable_from_standard_error(standard_error) if standard_error > 0 else None,
        "method": METHOD_SCORES,
    }


def compare_unpaired(first: tuple[int, int], second: tuple[int, int]) -> dict:
    """Two rates on different prompt sets ((positives, n) each): Newcombe's interval for independent samples; the
    resolution from the normal approximation of the difference's standard error at the observed rates."""
    (k1, n1), (k2, n2) = first, second
    if not n1 or not n2:
        return {"paired": False, "difference": None, "difference_ci95": None, "resolution": None,
                "method": METHOD_UNPAIRED}
    p1, p2 = k1 / n1, k2 / n2
    # at a rate of 0 or 1 the binomial variance vanishes: use the Wilson centre instead, as its interval does
    pooled = (k1 + k2 + 2) / (n1 + n2 + 4)
    standard_error = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return {"paired": False, "n": [n1, n2], "first": _rate(k1, n1), "second": _rate(k2, n2),
            "difference": p1 - p2, "difference_ci95": list(difference_interval(k1, n1, k2, n2)), "p_value": None,
            "resolution": detectable_from_standard_error(standard_error), "method": METHOD_UNPAIRED}


def discordance_words(comparison: dict, first: str, second: str, event: str = "jailbroke",
                      unit: str = "prompts") -> str:
    """The discordant prompts in words: "12 prompts jailbroke only under A, 3 only under B" (pooled seeds: "more
    often under"; scores: "scored higher under")."""
    if not comparison.get("paired") or comparison.get("first_only") is None:
        return ""
    a, b = comparison["first_only"], comparison["second_only"]
    if comparison.get("pooled"):
        return f"{a} {unit} {event} more often under {first}, {b} more often under {second}"
    if comparison.get("method") == METHOD_SCORES:
        return f"{a} {unit} scored higher under {first}, {b} under {second}"
    return f"{a} {unit} {event} only under {first}, {b} only under {second}"


def seed_spread(rates: Sequence[float | None]) -> dict | None:
    """Per-seed rates, their mean, sample standard deviation and range (None when fewer than two are known)."""
    known = [r for r in rates if r is not None]
    if len(known) < 2:
        return None
    return {"rates": list(rates), "mean": fmean(known), "sd": stdev(known), "min": min(known), "max": max(known)}
