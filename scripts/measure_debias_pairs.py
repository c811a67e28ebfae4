"""Pairs side of the default grid's mitigations, without training: build, debias and audit, through the runner.

    python scripts/measure_debias_pairs.py configs/default.yaml runs/debias-pairs [--limit 32]

For the first target of the config: generates (or reuses) the sources its recipes need on the first LIMIT prompts,
scores them, builds every recipe's pairs (a mitigation variant: its base's, then its debias step) and audits them, as
`safepref run` would, then prints one line per recipe: pairs and probe accuracy [95% CI] per feature set. Training and
evaluation are left out, so this takes minutes rather than the grid's hour.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safepref.pairs.build import read_responses
from safepref.pairs.recipes import load_recipe
from safepref.runner.run import SFT, Run, load_config
from safepref.scoring.score import score_responses


def measure(config_path: str, run_dir: str, limit: int | None) -> list[dict]:
    config = load_config(config_path)
    if limit:
        config.prompts.limit = limit
    run = Run(config, run_dir, config_path)
    target = config.targets[0]
    prompts = run.training_prompts()
    files = run.responses_for(target, prompts)
    scores = score_responses(read_responses(files), config.reward_model,
                             run.dir / "scores" / f"{config.reward_model}.jsonl")
    rows = []
    for name in config.recipes_for(target):
        if name == SFT:
            continue
        recipe = load_recipe(name)
        pairs = run.pairs_for(target, recipe.base or name, files, scores)
        if recipe.debias:
            pairs, _ = run.debias(target, pairs, recipe)
        audit = json.loads(Path(run.audit(pairs)).read_text())
        rows.append({"recipe": name, "n_pairs": audit["n_pairs"],
                     **{f: (v["accuracy"], v["accuracy_ci"]) for f, v in audit["features"].items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    arguments = sys.argv[1:]
    limit = None
    if "--limit" in arguments:
        at = arguments.index("--limit")
        limit = int(arguments[at + 1])
        del arguments[at:at + 2]
    if len(arguments) != 2:
        sys.exit(__doc__)
    measure(arguments[0], arguments[1], limit)
