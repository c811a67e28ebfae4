"""Separability audit: can a linear probe tell chosen from rejected, and by which cue?

The paper's mechanism (Wang et al. 2025): when chosen and rejected come from different models, a linear probe on
their representations separates them almost perfectly, so DPO can learn "who wrote it" instead of the safety
constraint. This stage measures that for any preference data:

1. Each response (chosen and rejected of every pair) becomes a feature vector, per feature set:
   ``hidden:MODEL[:LAYER]`` (the target model's hidden states over the response tokens, given its prompt),
   ``embed`` (sentence embeddings of the response's first 128 word pieces) or ``shallow`` (length, punctuation,
   markdown, phrase cues).
2. A standardised logistic regression classifies chosen vs rejected, cross-validated in k folds grouped by prompt
   (no prompt, hence no pair, on both sides of a split), giving an out-of-fold score for every response.
3. Accuracy carries a 95% CI from a bootstrap over prompts: the two sides of a pair (and pairs that share a
   prompt) are not independent, so a Wilson interval over the 2n responses would be too narrow. Wilson is
   reported beside it for reference.
4. A control runs the same probe after swapping chosen/rejected in a random half of the pairs of every fold (the
   pair structure is kept, the label carries no information): it must come out near 0.5, or the protocol leaks.
5. Every shallow cue is also probed alone (same folds) with its Cohen's d, so the verdict can say which cue
   separates.

Verdict thresholds are set on the accuracy *above the control* (the margin), not on raw accuracy, so a leaky or
unbalanced setup does not read as separability. A margin of 0.30 (about 0.80 accuracy against a 0.5 control) means
the probe ranks four responses in five correctly from style alone: DPO's implicit reward can then reach most of its
margin without reading content — high shortcut risk. Below 0.15 (about 0.65) the shortcut explains little.
If the accuracy's CI does not clear the control, the data is called not separable.

The pieces: :mod:`.features` (feature sets and their cache), :mod:`.probe` (folds, probe, control, intervals),
:mod:`.verdict` (risk and sentence), :mod:`.plots` (PCA projection); :func:`audit_pairs` wires them.
"""

from __future__ import annotations

import logging
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from pydantic.dataclasses import dataclass

from safepref.audit.features import (
    CUES_FILE,
    SHALLOW_VERSION,
    STRUCTURAL_CUES,
    compute_features,
    cue_descriptions,
    embedding_features,
    hidden_spec,
    hidden_state_features,
    parse_feature_specs,
    phrase_cues,
    response_token_mask,
    shallow_features,
)
from safepref.audit.plots import projection_name, projection_plot
from safepref.audit.probe import (
    cluster_bootstrap_interval,
    cohens_d,
    control_swapped_labels,
    cue_table,
    grouped_splits,
    out_of_fold_scores,
    probe_feature_set,
)
from safepref.audit.verdict import separating_cues, verdict_for
from safepref.errors import InputError
from safepref.io import fingerprint, read_pairs, write_json_atomic, write_text_atomic
from safepref.pair_diagnostics import diagnostics_line, pair_diagnostics
from safepref.records import Pair

__all__ = ["CONTROL_PAIRS_BUDGET", "CUES_FILE", "LENGTH_UNIT", "SHALLOW_VERSION", "STRUCTURAL_CUES", "AuditConfig",
           "audit_pairs", "cluster_bootstrap_interval", "cohens_d", "compute_features", "control_swapped_labels",
           "cue_descriptions", "cue_table", "embedding_features", "grouped_splits", "hidden_state_features",
           "out_of_fold_scores", "parse_feature_specs", "phrase_cues", "probe_feature_set", "projection_plot",
           "resolve_pairs", "response_token_mask", "separating_cues", "shallow_features", "verdict_for"]

log = logging.getLogger(__name__)

CONTROL_PAIRS_BUDGET = 1000  # control draws x pairs: 5 draws up to 200 pairs, 2 at 500, 1 from 2,000 on
LENGTH_UNIT = "whitespace-separated words (no tokenizer: the same count for every model)"


@dataclass
class AuditConfig:
    """How to audit a preference dataset for separability."""

    features: list[str] = field(default_factory=lambda: ["shallow", "embed"])
    """Feature sets: ``shallow``, ``embed`` (bundled MiniLM over each answer's first 128 word pieces) or
    ``embed:NAME``, ``hidden:MODEL[:LAYER]`` (layer
    index into the hidden states, 0 = embeddings, negative from the end, last by default), or ``all``
    (shallow, embed and hidden of the default target model)."""
    folds: int = Field(default=5, ge=2)
    """k of the grouped k-fold cross-validation; reduced (with a warning) when there are fewer prompts than k."""
    seed: int = 0
    """Seed of the fold assignment, the control's label swaps and the bootstrap."""
    batch_size: int | None = Field(default=None, ge=1)
    """Responses per forward pass for hidden-state features (embeddings use 4x this); by default 8 on the CPU and
    64 on a GPU, where small batches leave it idle (measured on an H100: scripts/gpu_check.py)."""
    max_length: int = Field(default=1024, ge=16)
    """Longest prompt + response in tokens for hidden-state features; longer ones lose the start of the prompt."""
    control_repeats: int = Field(default=5, ge=1)
    """Most shuffled-label control runs (different label swaps) averaged: one draw alone varies by several points on
    small sets; large sets use fewer (see CONTROL_PAIRS_BUDGET)."""
    bootstrap: int = Field(default=2000, ge=100)
    """Bootstrap resamples of prompts for the confidence intervals."""
    high_risk_margin: float = 0.30
    """Accuracy above the shuffled-label control from which the shortcut risk is called high."""
    moderate_risk_margin: float = 0.15
    """Accuracy above the control from which the shortcut risk is called moderate (below: low)."""
    device: str = "auto"
    """Where hidden-state and embedding models run: auto | cpu | cuda | cuda:N (safepref.device)."""
    dtype: str = "auto"
    """Precision of the hidden-state model: auto (the device policy) | float32 | bfloat16 | float16."""
    cache_dir: str | None = None
    """Feature cache folder (default ``$SAFEPREF_HOME/cache/audit``); features are keyed by spec and texts."""


# ---------------------------------------------------------------------------------------------- inputs


def resolve_pairs(source: str | Path) -> list[Pair]:
    """Pairs from a preference file (TRL standard or conversational) or a bundled dataset name with pairs."""
    from safepref import data

    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        return read_pairs(path)
    if text in data.REGISTRY:
        entry = data.get_dataset(text)
        if entry.kind != "pairs":
            pair_sets = [d.name for d in data.REGISTRY.values() if d.kind == "pairs"]
            raise InputError(f"dataset '{text}' holds {entry.kind}, not pairs (bundled pairs: {', '.join(pair_sets)})")
        return list(entry.load())
    raise InputError("file not found (nor a bundled dataset with pairs)", path=text)


# ---------------------------------------------------------------------------------------------- entry


def audit_pairs(pairs: list[Pair], config: AuditConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Audit preference pairs for chosen/rejected separability; returns the summary (also written to ``out_dir``).

    ``out_dir`` (if given) receives ``audit.json``, ``verdict.txt`` and ``projection-<features>.png``.
    """
    specs = parse_feature_specs(config.features)
    _check_inputs(pairs, specs)
    warnings: list[str] = []
    groups, n_prompts, folds = _prompt_groups(pairs, config, warnings)
    labels = np.tile([1, 0], len(pairs))
    splits = grouped_splits(groups, folds, config.seed)
    # One control draw varies by about +-0.07 on 60 pairs but by about +-0.01 on 2,000: average fewer draws as n grows
    # (each draw costs a full cross-validated fit per feature set).
    control_repeats = min(config.control_repeats, max(1, round(CONTROL_PAIRS_BUDGET / len(pairs))))
    control_labels = [control_swapped_labels(labels, splits, config.seed + repeat) for repeat in range(control_repeats)]

    shallow = compute_features("shallow", pairs, config)
    cues = cue_table(shallow, labels, groups, splits, config)
    summary: dict[str, Any] = {
        "n_pairs": len(pairs), "n_prompts": n_prompts, "n_responses": 2 * len(pairs), "folds": folds,
        "control_repeats": control_repeats,
        "accuracy_ci_method": "95% percentile bootstrap over prompts (pairs sharing a prompt resampled together)",
        "length_unit": LENGTH_UNIT,
        "config": {**{k: getattr(config, k) for k in AuditConfig.__dataclass_fields__}, "features": specs},
        "features": {}, "cues": cues,
    }
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        features = shallow if spec == "shallow" else compute_features(spec, pairs, config)
        result = probe_feature_set(features, labels, control_labels, groups, splits, config)
        result["risk"], result["verdict"] = verdict_for(spec, result, cues, config)
        if spec == "shallow":
            result["cues"] = cues
        if out is not None:
            result["projection"] = _projection(spec, result, features, labels, out).name
        summary["features"][spec] = result
    ranks = {"none": 0, "low": 1, "moderate": 2, "high": 3}
    worst = max(summary["features"].values(), key=lambda r: (ranks[r["risk"]], r["accuracy"]))
    summary["risk"] = worst["risk"]
    summary["verdict"] = worst["verdict"]
    summary["warnings"] = warnings
    summary["pair_diagnostics"] = pair_diagnostics(pairs)
    if out is not None:
        _write_summary(summary, out)
    return summary


def _check_inputs(pairs: list[Pair], specs: list[str]) -> None:
    """Fail on no pairs or an unknown model before any slow work."""
    if not pairs:
        raise InputError("no pairs to audit")
    for spec in specs:
        if spec.startswith("hidden:"):
            from safepref.models import resolve_model_path

            resolve_model_path(hidden_spec(spec)[0])


def _prompt_groups(pairs: list[Pair], config: AuditConfig, warnings: list[str]) -> tuple[np.ndarray, int, int]:
    """(the prompt group of every response, the number of distinct prompts, the number of folds): fewer folds, with a
    warning, when there are fewer prompts than ``config.folds``."""
    prompt_keys = [fingerprint([m.model_dump() for m in p.prompt]) for p in pairs]
    n_prompts = len(set(prompt_keys))
    if n_prompts < 2:
        raise InputError(f"need pairs on at least 2 distinct prompts for grouped cross-validation (got {n_prompts})")
    folds = config.folds
    if n_prompts < folds:
        folds = n_prompts
        warnings.append(f"only {n_prompts} distinct prompts: using {folds} folds instead of {config.folds}")
        log.warning(warnings[-1])
    return np.repeat(np.asarray(prompt_keys), 2), n_prompts, folds


def _projection(spec: str, result: dict[str, Any], features: np.ndarray, labels: np.ndarray, out: Path) -> Path:
    title = (f"{spec}: accuracy {result['accuracy']:.2f} [{result['accuracy_ci'][0]:.2f}, "
             f"{result['accuracy_ci'][1]:.2f}], control {result['control_accuracy']:.2f}, n={len(labels) // 2} pairs")
    return projection_plot(features, labels, title, out / f"projection-{projection_name(spec)}.png")


def _write_summary(summary: dict[str, Any], out: Path) -> None:
    """``verdict.txt`` (the overall verdict, one line per feature set, the pair diagnostics, the warnings) and
    ``audit.json``."""
    lines = [result["verdict"] for result in summary["features"].values()]
    pairs_line = f"pairs: {diagnostics_line(summary['pair_diagnostics'])}"
    text = "\n".join([f"overall: {summary['verdict']}", *lines, pairs_line,
                      *(f"warning: {w}" for w in summary["warnings"])]) + "\n"
    write_text_atomic(out / "verdict.txt", text)
    write_json_atomic(out / "audit.json", summary)
