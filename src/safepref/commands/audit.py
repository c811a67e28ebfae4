"""``safepref audit PAIRS``: how separable are chosen and rejected, and by which cue."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from safepref.audit import AuditConfig, audit_pairs, resolve_pairs
from safepref.commands import print_table
from safepref.core.device import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype
from safepref.core.errors import input_error_from
from safepref.pairs.diagnostics import DIAGNOSTICS_HELP, diagnostics_judges


def register(app: typer.Typer) -> None:
    @app.command("audit", epilog="Example: safepref audit pairs.jsonl --features shallow --features embed --out audit-mine")
    def audit(
        pairs: str = typer.Argument(..., help="Preference file (TRL standard or conversational; .jsonl/.json/.csv) "
                                              "or a bundled dataset with pairs (saferlhf, hh-harmless)."),
        features: list[str] = typer.Option(["shallow,embed"], "--features", "-f",
                                           help="Feature sets, repeatable or comma-separated: shallow, embed, "
                                                "hidden:MODEL[:LAYER], or all (= shallow, embed, hidden:<target>)."),
        out: Path = typer.Option(None, "--out", help="Output folder (default: audit-<name> in the current folder)."),
        as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
        folds: int = typer.Option(5, "--folds", help="k of the cross-validation grouped by prompt."),
        seed: int = typer.Option(0, "--seed", help="Seed of folds, control label swaps and bootstrap."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Responses per forward pass for hidden "
                                              "features (default: 8 on the CPU, 64 on a GPU)."),
        device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
        dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
        diagnostics_judge: str = typer.Option("fast", "--diagnostics-judge", help=DIAGNOSTICS_HELP),
        diagnostics_pairs: int = typer.Option(1000, "--diagnostics-pairs", help="Most pairs the diagnostics judge "
                                              "(a seeded sample beyond that; the shares' intervals say its n)."),
    ) -> None:
        """Probe whether a linear classifier tells chosen from rejected (grouped k-fold CV, shuffled-label control,
        per-cue accuracies), and write a summary, PCA plots and a plain-language verdict."""

        diagnostics_judges(diagnostics_judge)  # an unknown choice fails naming the choices
        try:
            config = AuditConfig(features=features, folds=folds, seed=seed, batch_size=batch_size,
                                 device=check_device(device), dtype=check_dtype(dtype),
                                 diagnostics_judge=diagnostics_judge, diagnostics_pairs=diagnostics_pairs)
        except ValidationError as error:
            raise input_error_from(error) from None
        records = resolve_pairs(pairs)
        out_dir = out if out is not None else Path(f"audit-{Path(pairs).stem}")
        summary = audit_pairs(records, config, out_dir)
        summary["source"] = pairs
        summary["out_dir"] = str(out_dir)
        if as_json:
            print(json.dumps(summary, ensure_ascii=False))
            return
        console = Console()
        table = Table("features", "accuracy [95% CI]", "pairwise", "control", "risk")
        for name, result in summary["features"].items():
            low, high = result["accuracy_ci"]
            c_low, c_high = result["control_accuracy_ci"]
            table.add_row(name, f"{result['accuracy']:.3f} [{low:.3f}, {high:.3f}]", f"{result['pairwise_accuracy']:.3f}",
                          f"{result['control_accuracy']:.3f} [{c_low:.3f}, {c_high:.3f}]", result["risk"])
        console.print(f"{summary['n_pairs']} pairs on {summary['n_prompts']} prompts, {summary['folds']}-fold CV "
                      "grouped by prompt; CIs: bootstrap over prompts")
        print_table(table)
        cues = Table("cue", "accuracy alone [95% CI]", "Cohen's d", "chosen mean", "rejected mean")
        for cue in summary["cues"][:8]:
            d = "-" if cue["cohens_d"] is None else f"{cue['cohens_d']:+.2f}"
            cues.add_row(cue["cue"], f"{cue['accuracy']:.3f} [{cue['accuracy_ci'][0]:.3f}, {cue['accuracy_ci'][1]:.3f}]",
                         d, f"{cue['chosen_mean']:.2f}", f"{cue['rejected_mean']:.2f}")
        print_table(cues)
        console.print(f"[bold]verdict:[/] {summary['verdict']}", highlight=False)
        console.print(f"written to {out_dir}/ (audit.json, verdict.txt, projection-*.png)", highlight=False)
