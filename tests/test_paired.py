"""Paired statistics: the interval, the test and the resolution against published and hand-computed values."""

from __future__ import annotations

import json
import math

import pytest

from safepref.core.paired import (
    compare,
    compare_paired,
    compare_paired_scores,
    compare_pooled,
    discordance_words,
    mcnemar_exact_p,
    minimum_detectable_difference,
    paired_counts,
    paired_sample_size,
    verdict,
)
from safepref.core.stats import paired_difference_interval, rank_correlation_interval, rank_permutation_p, spearman_interval
from tests.conftest import run_cli


def _outcomes(both: int, first_only: int, second_only: int, neither: int) -> tuple[dict, dict]:
    """Two per-prompt outcome maps with the given paired table."""
    cells = [(1, 1)] * both + [(1, 0)] * first_only + [(0, 1)] * second_only + [(0, 0)] * neither
    return ({f"p{i}": a for i, (a, _) in enumerate(cells)}, {f"p{i}": b for i, (_, b) in enumerate(cells)})


def test_newcombe_paired_interval_matches_the_published_example():
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), chapter 8: complete response
    # before and after consolidation therapy (Cavo et al. 2012), table [[59, 6], [16, 80]]; Newcombe's
    # square-and-add interval -0.0621 (-0.1186 to -0.0046), as their contingencytables package prints it
    low, high = paired_difference_interval(59, 6, 16, 80)
    assert (low, high) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    # without the continuity-corrected phi the limits would be (-0.1174, -0.0059): the correction is what differs
    assert paired_difference_interval(0, 0, 0, 0) is None


def test_mcnemar_exact_p_matches_published_and_hand_computed_values():
    # Armitage & Berry (1994, p. 127) via StatsDirect's manual: 12 specimens grew on medium A only, 2 on B only,
    # exact two-sided P = 0.0129; by hand 2 * (1 + 14 + 91) / 2^14 = 0.012939...
    assert mcnemar_exact_p(12, 2) == pytest.approx(2 * (1 + 14 + 91) / 2 ** 14, rel=1e-12)
    assert mcnemar_exact_p(12, 2) == pytest.approx(0.0129, abs=5e-5)
    # the Cavo table: 6 vs 16 discordant, 2 * sum_{k<=6} C(22, k) / 2^22
    assert mcnemar_exact_p(6, 16) == pytest.approx(2 * sum(math.comb(22, k) for k in range(7)) / 2 ** 22)
    assert mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(5, 5) == 1.0


def test_connor_sample_size_and_its_inverse():
    # Connor (1987, Biometrics 43:209): p10 = 0.05, p01 = 0.45, two-sided 5%, 80% power -> 23 pairs
    assert paired_sample_size(0.05 - 0.45, 0.05 + 0.45) == 23
    # by hand: psi 0.25, d 0.1: (1.95996 * 0.5 + 0.84162 * sqrt(0.24))^2 / 0.01 = 193.8 -> 194
    assert paired_sample_size(0.1, 0.25) == 194
    for n, psi in ((194, 0.25), (100, 0.2), (50, 0.3), (400, 0.1)):
        detectable = minimum_detectable_difference(n, psi)
        assert paired_sample_size(detectable, max(psi, detectable)) <= n  # n prompts suffice for it ...
        assert paired_sample_size(detectable * 0.97, max(psi, detectable)) > n  # ... and for nothing much smaller
    assert minimum_detectable_difference(0, 0.2) is None


def _exact_power(n: int, psi: float, difference: float) -> float:
    """Power of McNemar's exact test at 5% when a share psi of n prompts is discordant and p10 - p01 = difference."""
    from scipy.stats import binom

    towards_first = (psi + difference) / (2 * psi)
    power = 0.0
    for discordant in range(1, n + 1):
        rejecting = [b for b in range(discordant + 1) if mcnemar_exact_p(b, discordant - b) <= 0.05]
        power += binom.pmf(discordant, n, psi) * sum(binom.pmf(b, discordant, towards_first) for b in rejecting)
    return power


def test_the_resolution_is_what_the_exact_test_detects_about_80_percent_of_the_time():
    # Connor's formula is a normal approximation; the exact test it stands for is slightly conservative
    for n, psi in ((100, 0.2), (50, 0.3)):
        detectable = minimum_detectable_difference(n, psi)
        assert 0.72 <= _exact_power(n, psi, detectable) <= 0.85
        assert _exact_power(n, psi, detectable / 2) < 0.4


def test_without_discordance_the_resolution_is_what_one_sided_discordance_would_show():
    # 50 identical verdicts: the interval is [-0.07, 0.07] and a difference of 0.15 would have been seen
    result = compare_paired(*_outcomes(50, 0, 0, 0))
    assert result["difference"] == 0 and result["p_value"] == 1.0
    assert 0.1 < result["resolution"] < 0.2
    assert verdict(result["difference"], result["difference_ci95"], result["resolution"]) == "no measurable difference"


def test_compare_paired_counts_words_and_verdicts():
    first, second = _outcomes(10, 12, 3, 25)
    assert paired_counts(first, second).discordant == 15
    result = compare_paired(first, second)
    assert result["n"] == 50 and result["difference"] == pytest.approx(9 / 50)
    assert result["first"]["rate"] == pytest.approx(22 / 50) and result["second"]["rate"] == pytest.approx(13 / 50)
    assert result["p_value"] == pytest.approx(mcnemar_exact_p(12, 3))
    assert discordance_words(result, "A", "B") == "12 prompts jailbroke only under A, 3 only under B"
    assert verdict(result["difference"], result["difference_ci95"], result["resolution"]) == "holds"
    assert verdict(-result["difference"], [-result["difference_ci95"][1], -result["difference_ci95"][0]],
                   result["resolution"]) == "reversed"


@pytest.mark.parametrize(("difference", "interval", "resolution", "expected"), [
    (0.10, (0.02, 0.18), 0.12, "holds"),
    (-0.10, (-0.18, -0.02), 0.12, "reversed"),
    (0.01, (-0.08, 0.10), 0.12, "no measurable difference"),   # everything detectable is ruled out
    (0.06, (-0.03, 0.15), 0.12, "direction only"),             # a detectable gap in the expected direction remains
    (-0.06, (-0.15, 0.03), 0.12, "too little evidence"),       # a detectable gap the other way remains
    (None, None, None, "not measured"),
])
def test_verdict_reads_interval_and_resolution_together(difference, interval, resolution, expected):
    assert verdict(difference, interval, resolution) == expected


def test_pooled_seeds_keep_each_prompt_together():
    first, second = _outcomes(10, 12, 3, 25)
    one_seed = compare_pooled({k: [v] for k, v in first.items()}, {k: [v] for k, v in second.items()})
    # three seeds that answer every prompt alike add no evidence: resampling prompts (not prompt x seed rows) keeps
    # the interval as wide as one seed's, where treating 150 rows as independent would narrow it by sqrt(3)
    copied = compare_pooled({k: [v] * 3 for k, v in first.items()}, {k: [v] for k, v in second.items()})
    assert copied["difference_ci95"] == one_seed["difference_ci95"]
    assert copied["n"] == 50 and copied["n_seeds"] == [3, 1]
    # sign flips within prompts are McNemar's test when each side has one seed (up to Monte Carlo error)
    assert one_seed["p_value"] == pytest.approx(mcnemar_exact_p(12, 3), abs=0.01)
    low, high = one_seed["difference_ci95"]
    assert low < 9 / 50 < high and low > 0
    assert 0 < one_seed["resolution"] < 0.3
    assert discordance_words(one_seed, "A", "B") == "12 prompts jailbroke more often under A, 3 more often under B"
    # seeds that disagree: a prompt half jailbroken counts half
    mixed = compare_pooled({"a": [1, 0], "b": [1, 1]}, {"a": [0], "b": [1]})
    assert mixed["difference"] == pytest.approx(0.25) and mixed["first"]["rate"] == pytest.approx(0.75)


def test_compare_picks_the_method_by_the_data():
    first, second = _outcomes(5, 4, 1, 10)
    assert compare({k: [v] for k, v in first.items()}, {k: [v] for k, v in second.items()})["method"].startswith(
        "paired: Newcombe")
    assert compare({k: [v, v] for k, v in first.items()}, {k: [v] for k, v in second.items()}).get("pooled")
    scores = compare({"q1": [0.5], "q2": [0.7], "q3": [0.2]}, {"q1": [0.4], "q2": [0.5], "q3": [0.3]})
    assert scores["method"].startswith("paired scores")


def test_paired_scores_match_the_paired_t_test():
    from scipy.stats import ttest_rel

    first = {"q1": 0.5, "q2": 0.7, "q3": 0.2, "q4": 0.9}
    second = {"q1": 0.4, "q2": 0.5, "q3": 0.3, "q4": 0.6}
    result = compare_paired_scores(first, second)
    expected = ttest_rel(list(first.values()), list(second.values()))
    assert result["difference"] == pytest.approx(0.125)
    assert result["p_value"] == pytest.approx(expected.pvalue)
    low, high = result["difference_ci95"]
    assert low < 0.125 < high and result["first_only"] == 3 and result["second_only"] == 1


def test_rank_correlation_interval_is_fisher_z_with_the_bonett_wright_standard_error():
    # by hand: se = sqrt((1 + 0.6^2 / 2) / (8 - 3)) = 0.4858; tanh(atanh(0.6) -/+ 1.96 x 0.4858) = tanh(0.6931 -/+ 0.9522)
    low, high = rank_correlation_interval(0.6, 8)
    assert (round(low, 2), round(high, 2)) == (-0.25, 0.93)
    assert rank_correlation_interval(-0.6, 8) == pytest.approx((-high, -low))
    with pytest.raises(ValueError):
        rank_correlation_interval(0.9, 3)

    # a perfect ordering of 6 points: rho 1, clipped to 0.9999 for the transform, so the interval ends just below 1
    perfect = spearman_interval([0.55, 0.6, 0.7, 0.72, 0.8, 0.9], [0.05, 0.1, 0.12, 0.3, 0.31, 0.5])
    assert perfect["rho"] == pytest.approx(1.0) and perfect["n"] == 6
    assert perfect["ci95"][1] == pytest.approx(1.0, abs=1e-4) and perfect["ci95"][0] == pytest.approx(0.998, abs=1e-3)
    assert spearman_interval([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])["rho"] == pytest.approx(-1.0)
    # ranks with a tie: Pearson's correlation of the mid-ranks [1, 2.5, 2.5, 4, 5] and [1, 3, 2, 4, 5]
    assert spearman_interval([1, 2, 2, 3, 4], [1, 3, 2, 4, 5])["rho"] == pytest.approx(0.9746794344808963)
    # too few points, or a constant sample: no correlation
    assert spearman_interval([1, 2, 3], [1, 2, 3]) == {"n": 3, "rho": None, "ci95": None, "p": None}
    assert spearman_interval([1, 2, 3, 4], [0.2] * 4)["rho"] is None


def test_rank_correlation_permutation_p_is_exact_for_few_points():
    # 4 points in perfect order: 2 of the 24 orderings are as extreme (rho +1 and -1), whatever the interval says
    assert rank_permutation_p([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(2 / 24)
    assert spearman_interval([1, 2, 3, 4], [10, 20, 30, 40])["p"] == pytest.approx(2 / 24)
    assert rank_permutation_p([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(2 / 120)
    # rho 0 for 4 points: [1, 2, 3, 4] against [2, 4, 1, 3] has rho 0, and every ordering is at least as extreme
    assert rank_permutation_p([1, 2, 3, 4], [2, 4, 1, 3]) == pytest.approx(1.0)
    # above 8 points, a seeded permutation test: a perfect order of 10 is far beyond chance
    assert rank_permutation_p(list(range(10)), list(range(10))) < 0.001


def test_resolution_command_sizes_a_comparison_both_ways():
    needed = run_cli("resolution", "--detect", "0.05", "--discordance", "0.15", "--json")
    assert needed.returncode == 0 and json.loads(needed.stdout)["n"] == paired_sample_size(0.05, 0.15) == 469
    reach = json.loads(run_cli("resolution", "--n", "469", "--discordance", "0.15", "--json").stdout)
    assert reach["detectable_difference"] == pytest.approx(0.05, abs=0.001)
    both = run_cli("resolution", "--n", "10", "--detect", "0.1", "--discordance", "0.2")
    assert both.returncode == 2 and "exactly one of --n and --detect" in both.stderr
