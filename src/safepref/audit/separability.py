"""The separability audit itself: :func:`audit_pairs` wires features, probes, controls, verdicts and the pair
diagnostics into one summary; :func:`resolve_pairs` reads its input."""


from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from safepref.audit.config import CONTROL_PAIRS_BUDGET, LENGTH_UNIT, AuditConfig
from safepref.audit.features import (
    EMBED_TOKENS,
    compute_features,
    hidden_spec,
    parse_feature_specs,
)
from safepref.audit.plots import projection_name, projection_plot
from safepref.audit.probe import (
    control_swapped_labels,
    cue_table,
    grouped_splits,
    probe_feature_set,
)
from safepref.audit.verdict import verdict_for
from safepref.core import datasets as data
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint, read_pairs, write_json_atomic, write_text_atomic
from safepref.core.keys import content_key
from safepref.core.records import Pair
from safepref.judges import judge_fingerprints
from safepref.models.loading import resolve_model_path
from safepref.pairs.diagnostics import DEFAULT_DIAGNOSTICS, diagnostics_judges, diagnostics_line, run_pair_diagnostics

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- inputs


def resolve_pairs(source: str | Path) -> list[Pair]:
    """Pairs from a preference file (TRL standard or conversational) or a bundled dataset name with pairs."""
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
    summary["pair_diagnostics"] = run_pair_diagnostics(pairs, config.diagnostics_judge, config.diagnostics_pairs,
                                                       config.dtype)
    if out is not None:
        _write_summary(summary, out)
    return summary


def _check_inputs(pairs: list[Pair], specs: list[str]) -> None:
    """Fail on no pairs or an unknown model before any slow work."""
    if not pairs:
        raise InputError("no pairs to audit")
    for spec in specs:
        if spec.startswith("hidden:"):

            resolve_model_path(hidden_spec(spec)[0])


def _prompt_groups(pairs: list[Pair], config: AuditConfig, warnings: list[str]) -> tuple[np.ndarray, int, int]:
    """(the prompt group of every response, the number of distinct prompts, the number of folds): fewer folds, with a
    warning, when there are fewer prompts than ``config.folds``."""
    prompt_keys = [content_key([m.model_dump() for m in p.prompt]) for p in pairs]
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
    diagnostics = summary["pair_diagnostics"]
    pairs_line = [f"pairs: {diagnostics_line(diagnostics)}"] if diagnostics else []
    text = "\n".join([f"overall: {summary['verdict']}", *lines, *pairs_line,
                      *(f"warning: {w}" for w in summary["warnings"])]) + "\n"
    write_text_atomic(out / "verdict.txt", text)
    write_json_atomic(out / "audit.json", summary)


def audit_key(pairs_path: Path, settings: dict[str, Any], seed: int,
              diagnostics_judge: str = DEFAULT_DIAGNOSTICS, dtype: str = "auto") -> str:
    """The audit's content key: the pairs file's bytes, the audit settings and seed, the embedding length, and the
    diagnostics choice with the fingerprints of the judges it names (none: no judge; ``dtype``: their LM reads')."""
    judges = diagnostics_judges(diagnostics_judge) or ()
    return content_key(file_fingerprint(pairs_path), settings, seed, EMBED_TOKENS, diagnostics_judge,
                       judge_fingerprints(list(judges), dtype))
