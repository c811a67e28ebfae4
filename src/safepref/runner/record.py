"""A configuration's finished stages, as named by its run manifest entry, recorded in the run's bundle: what a run
does as its stages finish, and what exporting a run folder does afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safepref.bundle import BundleWriter
from safepref.core.io import file_fingerprint
from safepref.models import loading as models
from safepref.report import configuration_label
from safepref.runner.config import TargetSpec


def _key_in_name(path: str | Path) -> str:
    """The content key an artifact's file or folder name ends with (``<label>-<key>``)."""
    return Path(path).name.removesuffix(".jsonl").rsplit("-", 1)[-1]


def _evaluation_keys(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The stage keys of one evaluated model: its training, safety suites, benign and general evaluations."""
    keys = {"train": _key_in_name(evaluation["training"]["out_dir"]) if evaluation.get("training") else None,
            "safety": [_key_in_name(Path(p).parent) for p in evaluation.get("safety") or []],
            "benign": _key_in_name(Path(evaluation["benign"]).parent) if evaluation.get("benign") else None,
            "general": _key_in_name(Path(evaluation["general"]).parent) if evaluation.get("general") else None}
    return {k: v for k, v in keys.items() if v}


def _weights(target: TargetSpec, evaluation: dict[str, Any]) -> dict[str, str]:
    used = {"target": models.weights_fingerprint(target.model)}
    trained = (evaluation.get("training") or {}).get("out_dir")
    if trained and Path(trained).is_dir():
        used["evaluated"] = models.weights_fingerprint(trained)
    return used


def record_configuration(bundle: BundleWriter, target: TargetSpec, recipe: str, entry: dict[str, Any], *,
                         complete: bool) -> None:
    """Export what ``entry`` names (each seed's evaluation too) into ``bundle`` under the entry's key."""
    stage_keys = {"pairs": file_fingerprint(entry["pairs"]) if entry.get("pairs") else None,
                  "audit": _key_in_name(Path(entry["audit"]).parent) if entry.get("audit") else None,
                  **_evaluation_keys(entry)}
    seeds = [{**evaluation, "stage_keys": _evaluation_keys(evaluation), "models": _weights(target, evaluation)}
             for evaluation in entry.get("seeds") or []]
    bundle.record(models.model_label(target.model), recipe, key=entry["key"], label=configuration_label(recipe),
                  entry={**entry, "seeds": seeds}, complete=complete, models=_weights(target, entry),
                  stage_keys={k: v for k, v in stage_keys.items() if v})
