"""``safepref build``: preference pairs from cached responses by a recipe (see ``safepref.pairs.build``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from safepref.core.errors import InputError
from safepref.core.io import read_records
from safepref.core.records import Score
from safepref.pairs.build import BuildConfig, BuildSummary, build_pairs, read_responses, summary_path, write_pairs
from safepref.pairs.diagnostics import DIAGNOSTICS_HELP, diagnostics_judges, diagnostics_line, run_pair_diagnostics
from safepref.pairs.recipes import load_recipe


def register(app: typer.Typer) -> None:
    @app.command("build",
                 epilog="Example: safepref build --recipe self_rm --responses "
                 "answers.jsonl --scores scores.jsonl --out pairs.jsonl")
    def build(
        recipe: str = typer.Option(..., "--recipe", help="Bundled recipe name (see `safepref recipes`) or a YAML file."),
        responses: list[Path] = typer.Option(..., "--responses", help="Response JSONL file(s)."),
        scores: list[Path] = typer.Option(None, "--scores", help="Scores JSONL from `safepref score` (RM recipes)."),
        target: str = typer.Option("smollm2-135m-instruct", "--target", help="The model the pairs are for (`self`)."),
        out: Path = typer.Option(..., "--out", help="Pairs JSONL (TRL conversational format)."),
        seed: int = typer.Option(0, "--seed", help="Seeds `select: random`."),
        stronger: str = typer.Option("qwen2.5-coder-0.5b-instruct", "--stronger", help="Source named by `stronger`."),
        peers: str = typer.Option("gemma3-270m", "--peers", help="Comma-separated sources named by `peers`."),
        reward_model: str = typer.Option(None, "--reward-model",
                                         help="Use this reward model's scores (needed if --scores holds several)."),
        as_json: bool = typer.Option(False, "--json", help="Print the build summary as one JSON object on stdout."),
        diagnostics_judge: str = typer.Option("fast", "--diagnostics-judge", help=DIAGNOSTICS_HELP),
    ) -> None:
        """Build preference pairs from cached responses by a recipe (nothing is generated)."""
        diagnostics_judges(diagnostics_judge)  # an unknown choice fails before any work

        parsed = load_recipe(recipe)
        rows = read_responses(responses)
        score_rows = [s for path in (scores or []) for s in read_records(path, Score)]
        config = BuildConfig(stronger=stronger, peers=[p.strip() for p in peers.split(",") if p.strip()], seed=seed,
                             reward_model=reward_model)
        summary = BuildSummary(recipe=parsed.name, target=target)
        pairs = build_pairs(parsed, rows, score_rows, target, config, summary=summary)
        if not pairs:
            raise InputError(f"recipe '{parsed.name}' built no pairs ({summary.model_dump_json()})")
        summary.diagnostics = run_pair_diagnostics(pairs, diagnostics_judge)
        write_pairs(pairs, out, summary, [*responses, *(scores or [])])
        if as_json:
            print(json.dumps({**summary.model_dump(), "out": str(out)}))
        else:
            console = Console(stderr=True)
            console.print(
                f"{summary.pairs} pairs ({parsed.name}) -> {out}; dropped {summary.dropped_identical} identical, "
                f"{summary.dropped_empty} empty; skipped {summary.skipped_missing_source} lacking a source "
                f"(summary: {summary_path(out)})", highlight=False)
            if summary.diagnostics:
                console.print(f"pairs: {diagnostics_line(summary.diagnostics)}", highlight=False)
