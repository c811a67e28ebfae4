"""``safepref export RUN_DIR --to results/NAME`` and ``safepref rejudge BUNDLE``: a run's evidence kept and
judged again without its run folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from safepref.bundle import BundleWriter, read_manifest, rejudge_bundle
from safepref.commands.run import run_bundle
from safepref.judges import parse_judge_names
from safepref.report import write_report


def register(app: typer.Typer) -> None:
    @app.command("export", epilog="Example: safepref export runs/quick --to results/quick")
    def export(
        run_dir: Path = typer.Argument(..., help="A run folder written by `safepref run`."),
        to: Path = typer.Option(..., "--to", help="The bundle folder to write (e.g. results/<name>, to commit)."),
    ) -> None:
        """Copy a run's evidence into a bundle folder, with its report: a bundle already there keeps every complete
        configuration that the run does not hold complete under another key."""

        source = run_bundle(run_dir)
        manifest = read_manifest(source)
        BundleWriter(to, manifest.name, manifest.config).adopt(source)
        paths = write_report(to)
        Console().print(f"bundle: {to}\nsummary: {paths['summary']}")

    @app.command("rejudge", epilog="Example: safepref rejudge results/quick --judges harm,refusal")
    def rejudge(
        bundle: Path = typer.Argument(..., help="A bundle folder (results/<name>, or RUN_DIR/bundle)."),
        judges: str = typer.Option(None, "--judges", help="Comma-separated judges (default: every judge the "
                                   "bundle's rates use, and refusal for its benign measures and pair diagnostics)."),
        judge_model: str = typer.Option(None, "--judge-model", help="openai:<model> for the llm judge."),
        force: bool = typer.Option(False, "--force", help="Judge every stored answer again, also where its verdict "
                                   "is already the current judge's."),
    ) -> None:
        """Judge a bundle's stored answers with the judges as they are now and rewrite its report: no generation,
        no training. Only verdicts whose judge fingerprint differs from the current judge's are judged."""

        names = parse_judge_names(judges) if judges else None
        console = Console(stderr=True)
        found = rejudge_bundle(bundle, names, judge_model=judge_model, force=force,
                               log=lambda text: console.print(f"judging {text}", highlight=False))
        paths = write_report(bundle)
        Console().print(f"judges {', '.join(found['judges'])}: {found['judged']} texts judged, {found['changed']} "
                        f"verdicts new or changed over {found['answers']} answers, {found['files']} files rewritten "
                        f"({found['seconds']} s)\nsummary: {paths['summary']}", highlight=False)
