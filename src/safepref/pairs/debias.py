"""Stage 3b, debias: pairs -> pairs that teach the safety constraint rather than "who wrote it".

The paper's diagnosis (Wang et al. 2025): when chosen and rejected come from different models, DPO learns the
shortcut (style, length, refusal phrasing) instead of safety. The audit measures that shortcut; this stage takes it
away, on the data side (the training-side mitigations, WPO weighting and LD-DPO length control, are
``DPOTrainingConfig`` settings):

- ``rewrite`` (self-distillation, after SDFT, Yang et al. 2024, arXiv 2402.13669): the target model rewrites each
  external chosen answer in its own words, shown the prompt and the original as a reference, so both sides speak
  with one voice and mostly the content differs. Rewriting goes through the generate stage (greedy, as the target's
  own rejected answers are), whose append log is keyed by the content it rewrites: a killed run resumes where it
  stopped. The original text stays in the pair's ``debias`` provenance.
- ``filter``: the audit's shallow-cue probe (the same features, folds grouped by prompt, out-of-fold scores) gives
  every pair a margin: how far cues alone put its chosen answer above its rejected one. The most confidently
  separated pairs are dropped until the cues rank at most ``max_cue_accuracy`` of the kept pairs right, but never
  below ``min_keep`` of the pairs. Each dropped pair is reported with its confidence and the cues that drove it.

Output: the pairs file (written atomically; each pair's ``debias`` field says what was done to it) and
``<out>.debias.json`` (settings, counts, and for ``filter`` what was dropped and why).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from safepref.audit import AuditConfig, compute_features, cue_descriptions, grouped_splits
from safepref.audit.features import SHALLOW_VERSION, phrase_cues
from safepref.core.device import precision_key
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint, write_json_atomic, write_jsonl_atomic
from safepref.core.keys import content_key, stage_key
from safepref.core.records import Pair, Prompt
from safepref.generation.generate import GenerationConfig, generate_responses
from safepref.models.loading import resolve_model_path

REWRITE_VERSION = 1  # bump when the rewrite prompt changes: rewrites are keyed by it
# Our wording of SDFT's distillation idea: answer the request yourself, guided by the reference answer.
REWRITE_TEMPLATE = (
    "Below is a request and a reference answer written by someone else. Write your own answer to the request, in "
    "your own words and your usual style, keeping what the reference answer says and does (if it declines, you "
    "decline too).\n\nRequest:\n{prompt}\n\nReference answer:\n{answer}\n\nYour answer:"
)


@dataclass(config=ConfigDict(extra="forbid"))
class DebiasConfig:
    """How to debias a pair set."""

    method: Literal["rewrite", "filter"]
    """``rewrite``: the target rewrites external chosen answers in its own words; ``filter``: drop the pairs that
    shallow cues separate most confidently."""
    target: str | None = None
    """rewrite: the model that rewrites (default: the one model named by the pairs' rejected provenance)."""
    max_new_tokens: int = Field(128, ge=1)
    """rewrite: longest rewritten answer in tokens (the paper's answers: 128)."""
    batch_size: int | None = Field(None, ge=1)
    """rewrite: rows decoded together (default: the generate stage's own)."""
    max_cue_accuracy: float = Field(0.55, ge=0.5, le=1.0)
    """filter: stop dropping once the cue probe ranks at most this share of the kept pairs right (0.5 = chance)."""
    min_keep: float = Field(0.4, gt=0.0, le=1.0)
    """filter: never keep fewer than this share of the pairs (the stop reason says when this floor bound)."""
    folds: int = Field(5, ge=2)
    """filter: k of the cross-validation grouped by prompt (as the audit)."""
    seed: int = 0
    """filter: seed of the fold assignment; rewrite: seed recorded with the (greedy) generation."""
    device: str = "auto"
    """rewrite: where the target runs (safepref.core.device); provenance, not part of a key."""
    dtype: str = "auto"
    """rewrite: the target's precision (auto: the device policy)."""


def summary_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".debias.json")


def rewrite_log_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".rewrite-log.jsonl")


def debias_pairs(pairs: list[Pair], config: DebiasConfig, out: str | Path,
                 inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Debias ``pairs`` into ``out`` (and ``<out>.debias.json``); returns the summary."""
    if not pairs:
        raise InputError("no pairs to debias")
    if config.method == "rewrite":
        kept, summary = rewrite_pairs(pairs, config, rewrite_log_path(out))
    else:
        kept, summary = filter_pairs(pairs, config)
    if not kept:
        raise InputError(f"debias --method {config.method} kept no pairs (see the counts: {summary['counts']})")
    summary = {"method": config.method, "n_in": len(pairs), "n_out": len(kept),
               "kept_fraction": round(len(kept) / len(pairs), 4), **summary,
               "config": {k: getattr(config, k) for k in DebiasConfig.__dataclass_fields__},
               "inputs": inputs or {}, "out": str(out)}
    write_jsonl_atomic(out, kept)
    write_json_atomic(summary_path(out), summary)  # written last: its presence marks a finished run
    return summary


# ---------------------------------------------------------------------------------------------- rewrite


def rewrite_target(pairs: list[Pair], config: DebiasConfig) -> str:
    if config.target:
        return config.target
    sources = {p.rejected_from.source for p in pairs if p.rejected_from is not None}
    if len(sources) == 1 and all(p.rejected_from is not None for p in pairs):
        return sources.pop()
    raise InputError("rewrite needs the target model: pass --target (the pairs' rejected answers do not name one "
                     f"source: {', '.join(sorted(sources)) or 'no provenance'})", field="target")


def rewrite_request(pair: Pair, config: DebiasConfig) -> Prompt:
    """The generate stage's prompt for one rewrite, keyed by everything the rewrite depends on."""
    key = content_key(REWRITE_VERSION, [m.model_dump() for m in pair.prompt], pair.chosen_text, config.max_new_tokens)
    return Prompt(id=f"rewrite-{key}", text=REWRITE_TEMPLATE.format(prompt=pair.prompt_text, answer=pair.chosen_text),
                  dataset="debias-rewrite")


def rewrite_pairs(pairs: list[Pair], config: DebiasConfig, log_path: Path) -> tuple[list[Pair], dict[str, Any]]:
    """Chosen answers from other sources than the target, rewritten by the target (greedy); the rest kept as is."""

    target = rewrite_target(pairs, config)
    resolve_model_path(target)  # an unknown model fails here, before any work
    external = [p for p in pairs if p.chosen_from is None or p.chosen_from.source != target]
    requests = {p.id: rewrite_request(p, config) for p in external}
    unique = list({r.id: r for r in requests.values()}.values())
    generation = GenerationConfig(greedy=True, max_new_tokens=config.max_new_tokens, seed=config.seed,
                                  device=config.device, dtype=config.dtype,
                                  **({"batch_size": config.batch_size} if config.batch_size else {}))
    rewritten = {r.prompt_id: r.text.strip() for r in generate_responses(unique, target, log_path, generation)} \
        if unique else {}
    counts: Counter[str] = Counter()
    kept: list[Pair] = []
    lengths: dict[str, list[int]] = {"original_chosen": [], "rewritten_chosen": [], "rejected": []}
    for pair in pairs:
        if pair.id not in requests:
            counts["kept_as_is (chosen already the target's)"] += 1
            kept.append(pair.model_copy(update={"debias": {"method": "rewrite", "model": target, "rewritten": False}}))
            continue
        text = rewritten.get(requests[pair.id].id, "")
        if not text:
            counts["dropped_empty_rewrite"] += 1
            continue
        if text == pair.rejected_text.strip():
            counts["dropped_rewrite_equals_rejected"] += 1
            continue
        counts["rewritten"] += 1
        for name, value in (("original_chosen", pair.chosen_text), ("rewritten_chosen", text),
                            ("rejected", pair.rejected_text)):
            lengths[name].append(len(value.split()))
        chosen = [*pair.chosen[:-1], pair.chosen[-1].model_copy(update={"content": text})]
        kept.append(pair.model_copy(update={"chosen": chosen, "debias": {
            "method": "rewrite", "model": target, "rewritten": True, "version": REWRITE_VERSION,
            "original_chosen": pair.chosen_text}}))
    return kept, {"target": target, "counts": dict(counts), "rewrite_log": str(log_path),
                  "mean_words": {k: round(float(np.mean(v)), 1) if v else None for k, v in lengths.items()}}


# ---------------------------------------------------------------------------------------------- filter


def cue_margins(pairs: list[Pair], config: DebiasConfig) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Per pair, the out-of-fold shallow-probe margin (log-odds of chosen minus rejected) and each cue's share of it.

    The probe is the audit's (standardised logistic regression on the shallow cues, chosen = 1), fitted on the
    other folds; folds are grouped by prompt, so no pair is scored by a probe that saw it.
    """
    # scikit-learn loads in seconds: imported only where used
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler


    prompt_keys = [content_key([m.model_dump() for m in p.prompt]) for p in pairs]
    n_prompts = len(set(prompt_keys))
    if n_prompts < 2:
        raise InputError(f"filter needs pairs on at least 2 distinct prompts (got {n_prompts})")
    folds = min(config.folds, n_prompts)
    features = compute_features("shallow", pairs, AuditConfig(features=["shallow"], folds=folds, seed=config.seed))
    labels = np.tile([1, 0], len(pairs))
    splits = grouped_splits(np.repeat(np.asarray(prompt_keys), 2), folds, config.seed)
    contributions = np.zeros((len(pairs), features.shape[1]))
    for train, test in splits:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features[train], labels[train])
        scaler, model = probe[0], probe[1]
        held_out = np.unique(test // 2)  # both sides of a pair share a prompt, hence a fold
        standardised = scaler.transform(features)
        # the intercept cancels in chosen minus rejected: the margin is a sum of per-cue terms
        contributions[held_out] = (standardised[2 * held_out] - standardised[2 * held_out + 1]) * model.coef_[0]
    return contributions.sum(axis=1), contributions, list(cue_descriptions()), folds


def _ranked_right(margins: np.ndarray) -> float:
    return float(((margins > 0).sum() + 0.5 * (margins == 0).sum()) / len(margins))


def choose_drops(margins: np.ndarray, max_cue_accuracy: float, min_keep: float) -> tuple[list[int], str]:
    """Indices to drop, most confident first, and why dropping stopped."""
    floor = math.ceil(min_keep * len(margins))
    right = float((margins > 0).sum() + 0.5 * (margins == 0).sum())
    kept = len(margins)
    drops: list[int] = []
    for index in np.argsort(-margins, kind="stable"):
        if right / kept <= max_cue_accuracy:
            return drops, f"cue accuracy on the kept pairs reached {max_cue_accuracy}"
        if kept <= floor:
            return drops, f"min_keep floor ({min_keep} of the pairs) reached"
        drops.append(int(index))
        right -= 1.0 if margins[index] > 0 else 0.5 if margins[index] == 0 else 0.0
        kept -= 1
    return drops, "all pairs dropped"


def filter_pairs(pairs: list[Pair], config: DebiasConfig) -> tuple[list[Pair], dict[str, Any]]:
    """Drop the pairs that shallow cues separate most confidently; report what was dropped and why."""
    margins, contributions, cue_names, folds = cue_margins(pairs, config)
    drops, stop_reason = choose_drops(margins, config.max_cue_accuracy, config.min_keep)
    dropped_set = set(drops)
    confidence = 1.0 / (1.0 + np.exp(-margins))  # the cue model's probability that chosen is the chosen one
    dropped, main_cues = [], Counter()
    for index in drops:
        order = np.argsort(-contributions[index])
        cues = [cue_names[j] for j in order[:2] if contributions[index, j] > 0]
        main_cues[cues[0] if cues else "(none alone)"] += 1
        dropped.append({"id": pairs[index].id, "confidence": round(float(confidence[index]), 4), "cues": cues})
    kept = [p.model_copy(update={"debias": {"method": "filter", "cue_confidence": round(float(confidence[i]), 4)}})
            for i, p in enumerate(pairs) if i not in dropped_set]
    kept_margins = np.asarray([m for i, m in enumerate(margins) if i not in dropped_set]) if kept else np.zeros(1)
    return kept, {
        "counts": {"kept": len(kept), "dropped_cue_separated": len(drops)},
        "stop_reason": stop_reason, "folds": folds,
        "cue_accuracy_before": round(_ranked_right(margins), 4),
        "cue_accuracy_after": round(_ranked_right(kept_margins), 4),
        "note": "cue accuracy: share of pairs whose chosen side the out-of-fold shallow probe scores higher; "
                "'after' is on the same scores (re-audit the output for a fresh estimate)",
        "dropped_min_confidence": round(float(min(confidence[drops])), 4) if drops else None,
        "dropped_by_main_cue": dict(main_cues.most_common()),
        "dropped": dropped,
    }


def debias_key(target_fingerprint: str, pairs_path: Path, settings: dict[str, Any],
               rewrite_dtype: str = "float32") -> str:
    """The debiased pairs' content key: the rewriting model's weights, the input pairs' bytes, the step's settings,
    the precision the rewrite answers in (absent when float32), and the versions of the rewrite and of the cues it
    removes."""
    precision = precision_key(rewrite_dtype)
    return stage_key("debias", target_fingerprint, file_fingerprint(pairs_path), settings, REWRITE_VERSION,
                     SHALLOW_VERSION, phrase_cues(), *([precision] if precision else []))
