"""A run folder's evidence into a bundle, after the fact: for a run folder whose bundle was removed, or one written
before runs kept bundles. The same recording a run does as its stages finish (:mod:`safepref.runner.run`)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from safepref.core.errors import InputError, input_error_from
from safepref.models import loading as models
from safepref.runner.config import ExperimentConfig
from safepref.runner.plan import configuration_key, evaluated
from safepref.runner.record import record_configuration
from safepref.runner.run import Run


def export_run(run_dir: str | Path, bundle_dir: str | Path | None = None) -> Path:
    """A run folder's evidence into a bundle (default ``RUN_DIR/bundle``), from the artifacts its manifest names:
    for a run folder whose bundle was removed or that was written without one. Returns the bundle's folder."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError("no manifest.json: not a safepref run folder (run `safepref run CONFIG.yaml` first)",
                         path=run_dir)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    try:
        config = ExperimentConfig.model_validate(manifest.get("config"))
    except ValidationError as error:
        raise input_error_from(error, path=manifest_path, field_prefix="config") from None
    run = Run(config, run_dir, manifest.get("config_path"), bundle_dir)
    prompts = run.training_prompts()
    for target in config.targets:
        label = models.model_label(target.model)
        for recipe, entry in manifest.get("targets", {}).get(label, {}).items():
            if entry.get("from_bundle"):  # its evidence was taken from a bundle, never made in this folder
                continue
            key = entry.get("key") or configuration_key(config, target, recipe, prompts)
            record_configuration(run.bundle, target, recipe, {**entry, "key": key},
                                 complete=evaluated(config, recipe, entry))
    run.bundle.update_run(versions=manifest.get("versions") or {}, seed=config.seed,
                          seeds=manifest.get("seeds") or config.training_seeds(), precision=manifest.get("precision"),
                          n_training_prompts=manifest.get("n_training_prompts"),
                          training_prompt_set=manifest.get("training_prompt_set"),
                          timings=manifest.get("timings") or {})
    run.bundle.finish()
    return run.bundle.dir
