"""``safepref run CONFIG.yaml`` and ``safepref report RUN_DIR``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from safepref.report import write_report
from safepref.runner.run import run_experiment


def register(app: typer.Typer) -> None:
    @app.command("run", epilog="Example: safepref run configs/quick.yaml --run-dir runs/quick")
    def run(
        config: Path = typer.Argument(..., help="Experiment YAML (see configs/)."),
        run_dir: Path = typer.Option(None, "--run-dir", help="Run folder (default runs/<name>); rerun to resume."),
    ) -> None:
        """Run a whole experiment grid: generate, score, build, audit, train, evaluate, report."""

        paths = run_experiment(config, run_dir)
        Console().print(f"report: {paths['report']}\nresults: {paths['results']}\nsummary: {paths['summary']}")

    @app.command("report", epilog="Example: safepref report runs/quick --markdown")
    def report(
        run_dir: Path = typer.Argument(..., help="A run folder written by `safepref run`."),
        markdown: bool = typer.Option(False, "--markdown", help="Also print the headline tables as Markdown."),
    ) -> None:
        """(Re)write report.html, summary.md and results.json for a run folder."""

        paths = write_report(run_dir)
        if markdown:
            print(Path(paths["summary"]).read_text(encoding="utf-8"))
        Console().print(f"report: {paths['report']}\nresults: {paths['results']}\nsummary: {paths['summary']}")
