"""``safepref debias PAIRS --method rewrite|filter --out F``: take the multi-model shortcut out of preference pairs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console

from safepref.audit import resolve_pairs
from safepref.core.device import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint
from safepref.pairs.debias import DebiasConfig, debias_pairs


def register(app: typer.Typer) -> None:
    @app.command("debias", epilog="Example: safepref debias pairs.jsonl --method rewrite --out pairs-rewritten.jsonl")
    def debias(
        pairs: str = typer.Argument(..., help="Preference file (TRL standard or conversational; .jsonl/.json/.csv) "
                                              "or a bundled dataset with pairs (e.g. xstest-multisource)."),
        method: str = typer.Option(..., "--method", help="rewrite (the target rewrites external chosen answers in "
                                                         "its own words) or filter (drop cue-separated pairs)."),
        out: Path = typer.Option(..., "--out", help="Output pairs JSONL (plus <out>.debias.json)."),
        target: str = typer.Option(None, "--target", help="rewrite: the model that rewrites (default: the model "
                                                          "named by the pairs' rejected provenance)."),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="rewrite: longest rewrite in tokens."),
        batch_size: int = typer.Option(None, "--batch-size", help="rewrite: rows decoded together."),
        max_cue_accuracy: float = typer.Option(0.55, "--max-cue-accuracy",
                                               help="filter: drop until cues rank at most this share of kept pairs "
                                                    "right."),
        min_keep: float = typer.Option(0.4, "--min-keep", help="filter: keep at least this share of the pairs."),
        folds: int = typer.Option(5, "--folds", help="filter: k of the cross-validation grouped by prompt."),
        seed: int = typer.Option(0, "--seed", help="Seed of the folds (filter) and of generation (rewrite)."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
        device: str = typer.Option("auto", "--device", help="rewrite: " + DEVICE_HELP),
        dtype: str = typer.Option("auto", "--dtype", help="rewrite: " + DTYPE_HELP),
    ) -> None:
        """Rewrite or filter preference pairs so that chosen and rejected differ in content, not in who wrote them;
        resumable (rewrites go to an append log beside OUT); every output pair records what was done to it."""

        try:
            config = DebiasConfig(method=method, target=target, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                  max_cue_accuracy=max_cue_accuracy, min_keep=min_keep, folds=folds, seed=seed,
                                  device=check_device(device), dtype=check_dtype(dtype))
        except ValidationError as error:
            first = error.errors()[0]
            raise InputError(first["msg"], field=".".join(str(p) for p in first["loc"])) from None
        records = resolve_pairs(pairs)
        source = Path(pairs)
        inputs = {pairs: file_fingerprint(source) if source.is_file() else "bundled"}
        summary = debias_pairs(records, config, out, inputs)
        if as_json:
            print(json.dumps(summary, ensure_ascii=False))
            return
        console = Console()
        console.print(f"{summary['n_in']} pairs -> {summary['n_out']} ({summary['kept_fraction']:.0%} kept) by "
                      f"{summary['method']}: {summary['counts']}", highlight=False)
        if method == "filter":
            console.print(f"shallow-cue accuracy {summary['cue_accuracy_before']:.2f} -> "
                          f"{summary['cue_accuracy_after']:.2f} (stopped: {summary['stop_reason']}); dropped by "
                          f"main cue: {summary['dropped_by_main_cue']}", highlight=False)
        else:
            console.print(f"mean words: {summary['mean_words']}", highlight=False)
        console.print(f"written to {out} and {out.name.removesuffix('.jsonl')}.debias.json; check the result with "
                      f"`safepref audit {out}`", highlight=False)
