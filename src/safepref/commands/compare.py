"""``safepref compare RUN_OR_BUNDLE A B``: one comparison of two configurations in full (safepref.report.compare)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from safepref.bundle import is_bundle
from safepref.bundle.read import materialize
from safepref.report.compare import comparison_in_full, render_comparison


def register(app: typer.Typer) -> None:
    @app.command("compare", epilog="Example: safepref compare runs/quick gpt4o_self self_rm --judge harm")
    def compare(
        run_dir: Path = typer.Argument(..., help="A bundle (results/<name>) or a run folder written by `safepref run`."),
        first: str = typer.Argument(..., help="Configuration A: recipe name or label (self_rm, Self+RM, sft ...)."),
        second: str = typer.Argument(..., help="Configuration B, compared with A on the same prompts."),
        suite: str = typer.Option(None, "--suite", help="Suite (default: the first one evaluated)."),
        attack: str = typer.Option("none", "--attack", help="Attack the prompts were answered under."),
        measure: str = typer.Option(None, "--judge", help="Harm judge (default harm) or refusal measure "
                                                          "(over_refusal, refusal_unsafe, refusal)."),
        target: str = typer.Option(None, "--target", help="Target model of the run (needed when it has several)."),
        width: int = typer.Option(600, "--width", help="Characters of each request and answer shown."),
        as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
    ) -> None:
        """A against B prompt by prompt: both rates, paired difference and 95% interval, p-value, the difference
        it could detect, and every discordant prompt with both answers and the judges' verdicts."""

        with tempfile.TemporaryDirectory(prefix="safepref-compare-") as view:
            # a bundle is read through the run folder it stands for, rebuilt from its evidence
            folder = materialize(run_dir, view) if is_bundle(run_dir) else run_dir
            result = comparison_in_full(folder, first, second, suite=suite, attack=attack, measure=measure,
                                        target=target)
        result["run"] = str(run_dir)
        print(json.dumps(result, ensure_ascii=False) if as_json else render_comparison(result, width))
