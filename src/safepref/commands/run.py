"""``safepref run CONFIG.yaml`` and ``safepref report BUNDLE_OR_RUN_DIR``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from safepref.bundle import is_bundle
from safepref.core.errors import InputError
from safepref.report import write_report
from safepref.runner.export import export_run
from safepref.runner.run import run_experiment


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]; anything else is an input error naming the option."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--seeds takes comma-separated integers, got '{text}'") from None


def run_bundle(run_dir: Path) -> Path:
    """The bundle a run folder writes to (its manifest names it), made from its artifacts when there is none."""
    manifest = run_dir / "manifest.json"
    named = json.loads(manifest.read_text(encoding="utf-8")).get("bundle") if manifest.is_file() else None
    bundle = Path(named) if named else run_dir / "bundle"
    return bundle if is_bundle(bundle) else export_run(run_dir, bundle)


def register(app: typer.Typer) -> None:
    @app.command("run", epilog="Example: safepref run configs/quick.yaml --run-dir runs/quick --bundle results/quick")
    def run(
        config: Path = typer.Argument(..., help="Experiment YAML (see configs/)."),
        run_dir: Path = typer.Option(None, "--run-dir", help="Run folder (default runs/<name>); rerun to resume."),
        seeds: str = typer.Option(None, "--seeds", help="Training seeds, comma-separated (e.g. 0,1,2): each "
                                                        "configuration trains and is evaluated once per seed; "
                                                        "replaces the config's `seeds`."),
        bundle: Path = typer.Option(None, "--bundle", help="Bundle folder for the run's evidence (default "
                                    "RUN_DIR/bundle), e.g. results/<name> to commit it. A configuration it already "
                                    "holds under the same key is not trained or evaluated again."),
        pairs_only: bool = typer.Option(False, "--pairs-only", help="Stop after building and auditing every "
                                        "configuration's pairs: what each recipe's data carries (pair diagnostics, "
                                        "separability), before anything is trained or evaluated."),
    ) -> None:
        """Run a whole experiment grid: generate, score, build, audit, train, evaluate, report."""

        paths = run_experiment(config, run_dir, seeds=parse_seeds(seeds) if seeds else None, bundle_dir=bundle,
                               pairs_only=pairs_only)
        Console().print(f"report: {paths['report']}\nresults: {paths['results']}\nsummary: {paths['summary']}")

    @app.command("report", epilog="Example: safepref report results/quick --markdown")
    def report(
        source: Path = typer.Argument(..., help="A bundle (results/<name>) or a run folder written by `safepref run`."),
        markdown: bool = typer.Option(False, "--markdown", help="Also print the headline tables as Markdown."),
        out: Path = typer.Option(None, "--out", help="Also write the report into this folder."),
    ) -> None:
        """(Re)write report.html, summary.md and results.json from a bundle: no model, no network, no run folder."""

        # a run folder's report is its bundle's, written into the run folder as well
        paths = write_report(source, out) if is_bundle(source) else write_report(run_bundle(source), out or source)
        if markdown:
            print(Path(paths["summary"]).read_text(encoding="utf-8"))
        Console().print(f"report: {paths['report']}\nresults: {paths['results']}\nsummary: {paths['summary']}")
