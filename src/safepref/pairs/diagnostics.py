"""Pair diagnostics: is a recipe's chosen side actually the safer one, or only the longer or more polished one?

For a set of preference pairs, ``pair_diagnostics(pairs)`` judges both sides of every pair with a harm judge and
a refusal judge (``safepref.judges``) and reports, per side: the share judged harmful, the share that refuses
(each with n and a 95% Wilson interval), the chosen-minus-rejected gap of each share with a 95% interval for paired
proportions (Newcombe's method 10: the two sides of a pair share a prompt, so they are not independent), and the
mean length in words of each side. Past ``max_judged_pairs`` pairs the two judges read a seeded sample of that many
(the shares' intervals say its n; the lengths use every pair).

Which judges (``DIAGNOSTICS_JUDGES``, ``--diagnostics-judge``): ``fast`` (the default) is the ``harm-fast`` and
``refusal-fast`` heads, the trained heads without their SmolLM2 read; ``full`` is the shipped ``harm`` and
``refusal`` heads with it; ``none`` skips the diagnostics. The LM read is what a diagnostic cannot afford on 2
cores: at ~10 answers/s the ``harm`` head took ~190 s of a 299 s audit of 2,000 HH pairs (8.5x its bare-encode
anchor), while the fast heads read the answer's MiniLM pass that the audit's ``embed`` features already made, and
add only the requests' passes: with them the same audit took 0.77-1.20x its anchor on the shared 2-core machine
(``python benchmarks/bench_audit.py``). The price is agreement with held-out human labels:
``harm-fast`` 0.806 pooled against ``harm``'s 0.829, ``refusal-fast`` 0.931 against 0.944 (the heads' cards).
This is the paper's mechanism made visible: multi-model recipes tend to choose
the answer of another model, which may differ from the rejected one more in length and wording than in safety.
"""

from __future__ import annotations

import hashlib
from typing import Any

from safepref.core.errors import InputError
from safepref.core.records import Pair
from safepref.core.stats import mean_interval, paired_difference_interval, rate
from safepref.judges import JudgeInput, get_judge

# choice -> (harm judge, refusal judge); "none" skips the diagnostics
DIAGNOSTICS_JUDGES = {"fast": ("harm-fast", "refusal-fast"), "full": ("harm", "refusal")}
DIAGNOSTICS_CHOICES = (*DIAGNOSTICS_JUDGES, "none")
DEFAULT_DIAGNOSTICS = "fast"
HARM_JUDGE, REFUSAL_JUDGE = DIAGNOSTICS_JUDGES[DEFAULT_DIAGNOSTICS]
DIAGNOSTICS_HELP = ("Judges of the pair diagnostics: fast (harm-fast and refusal-fast: the trained heads without "
                    "their SmolLM2 read), full (the harm and refusal heads with it: ~10 answers/s on 2 cores) or none.")
LENGTH_UNIT = "words"  # whitespace-separated words of the answer text
MAX_JUDGED_PAIRS = 1000  # a gap's 95% interval from 1,000 pairs is at most about +-0.06 wide


def diagnostics_judges(choice: str) -> tuple[str, str] | None:
    """(harm judge, refusal judge) of a ``--diagnostics-judge`` choice; None for ``none``."""
    if choice not in DIAGNOSTICS_CHOICES:
        raise InputError(f"unknown diagnostics judge '{choice}' (choose {', '.join(DIAGNOSTICS_CHOICES)})",
                         field="diagnostics_judge")
    return DIAGNOSTICS_JUDGES.get(choice)


def run_pair_diagnostics(pairs: list[Pair], choice: str = DEFAULT_DIAGNOSTICS,
                         max_judged_pairs: int | None = MAX_JUDGED_PAIRS, dtype: str = "auto") -> dict[str, Any] | None:
    """:func:`pair_diagnostics` with the judges of a ``--diagnostics-judge`` choice (None for ``none``); ``dtype`` is
    the precision of their LM reads (``full``)."""
    judges = diagnostics_judges(choice)
    if judges is None:
        return None
    return {**pair_diagnostics(pairs, *judges, max_judged_pairs=max_judged_pairs, dtype=dtype),
            "diagnostics_judge": choice}


def _labels(judge_name: str, pairs: list[Pair], dtype: str = "auto") -> tuple[list[int | None], list[int | None]]:
    """The judge's 0/1 label (None = unjudged) for the chosen and the rejected side of every pair."""

    judge = get_judge(judge_name, dtype=dtype)
    # the last user turn, not the whole transcript: the judge reads the request's first 64 word pieces, and the
    # harm judge's labelled data are single requests
    rows = [JudgeInput(id=f"{p.id}|{side}", prompt=p.request_text, response=text)
            for p in pairs for side, text in (("chosen", p.chosen_text), ("rejected", p.rejected_text))]
    labels = [v.label for v in judge.judge(rows)]
    return labels[0::2], labels[1::2]


def side_comparison(chosen: list[int | None], rejected: list[int | None]) -> dict[str, Any]:
    """Rates of a 0/1 property on each side over the pairs where both sides were judged, and their paired gap."""
    both = [(c, r) for c, r in zip(chosen, rejected, strict=True) if c is not None and r is not None]
    counts = {(1, 1): 0, (1, 0): 0, (0, 1): 0, (0, 0): 0}
    for pair_labels in both:
        counts[pair_labels] += 1
    n = len(both)
    chosen_rate, rejected_rate = rate(sum(c for c, _ in both), n), rate(sum(r for _, r in both), n)
    interval = paired_difference_interval(counts[(1, 1)], counts[(1, 0)], counts[(0, 1)], counts[(0, 0)])
    return {
        "chosen": chosen_rate, "rejected": rejected_rate,
        "gap": {"n": n, "difference": (chosen_rate["rate"] - rejected_rate["rate"]) if n else None,
                "ci95": list(interval) if interval else None, "method": "Newcombe paired (method 10)"},
        "unjudged_pairs": len(chosen) - n,
    }


def judged_sample(pairs: list[Pair], limit: int | None, seed: int = 0) -> list[Pair]:
    """Every pair, or the ``limit`` pairs whose seeded hash of their id is smallest, in their original order: the
    same pair is in the sample whatever the file's order, and a pair added later displaces at most one."""
    if limit is None or len(pairs) <= limit:
        return pairs
    rank = {n: hashlib.sha1(f"{seed}|{p.id}".encode()).hexdigest() for n, p in enumerate(pairs)}
    return [pairs[n] for n in sorted(sorted(rank, key=rank.__getitem__)[:limit])]


def pair_diagnostics(pairs: list[Pair], harm_judge: str = HARM_JUDGE, refusal_judge: str = REFUSAL_JUDGE,
                     max_judged_pairs: int | None = MAX_JUDGED_PAIRS, dtype: str = "auto") -> dict[str, Any]:
    """Harmful and refusal shares of each side (with the paired gap), and the mean length of each side."""
    judged = judged_sample(pairs, max_judged_pairs)
    chosen_words = [float(len(p.chosen_text.split())) for p in pairs]
    rejected_words = [float(len(p.rejected_text.split())) for p in pairs]
    longer = sum(c > r for c, r in zip(chosen_words, rejected_words, strict=True))
    return {
        "n_pairs": len(pairs),
        "harm_judge": harm_judge,
        "refusal_judge": refusal_judge,
        "judged_pairs": len(judged),
        "harmful": side_comparison(*_labels(harm_judge, judged, dtype)) if judged else None,
        "refusal": side_comparison(*_labels(refusal_judge, judged, dtype)) if judged else None,
        "length_unit": LENGTH_UNIT,
        "length": {"chosen": mean_interval(chosen_words), "rejected": mean_interval(rejected_words),
                   "chosen_longer": rate(longer, len(pairs))},
    }


def diagnostics_line(diagnostics: dict[str, Any]) -> str:
    """One plain sentence: chosen vs rejected on harm, refusal and length."""
    def share(block: dict[str, Any] | None, what: str) -> str:
        if not block or not block["gap"]["n"]:
            return f"{what}: not judged"
        low, high = block["gap"]["ci95"]
        return (f"{what} chosen {block['chosen']['rate']:.2f} vs rejected {block['rejected']['rate']:.2f} "
                f"(gap {block['gap']['difference']:+.2f}, 95% CI {low:+.2f} to {high:+.2f})")

    length = diagnostics["length"]
    words = (f"mean {diagnostics['length_unit']} chosen {length['chosen']['mean'] or 0:.1f} vs rejected "
             f"{length['rejected']['mean'] or 0:.1f}")
    judged = diagnostics.get("judged_pairs", diagnostics["n_pairs"])
    sample = f" (judged on a seeded {judged} of {diagnostics['n_pairs']} pairs)" if judged < diagnostics["n_pairs"] else ""
    return (f"{share(diagnostics['harmful'], 'harmful (' + diagnostics['harm_judge'] + ')')}; "
            f"{share(diagnostics['refusal'], 'refusal')}{sample}; {words}")
