"""``safepref eval-benign``: a thin wrapper over safepref.evaluation.benign."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from safepref.core.device import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype
from safepref.evaluation.benign import evaluate_benign, make_config
from safepref.models.loading import DEFAULT_TARGET

HEADLINE = ("n", "refusal_rate", "refusal_rate_ci", "win_rate_vs_reference", "win_rate_ci", "mean_reward",
            "mean_tokens", "distinct_2", "restatement_rate")


def _number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return f"[{value[0]:.2f}, {value[1]:.2f}]"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _print_table(summary: dict) -> None:
    console = Console()
    table = Table("measure", "value", title=f"{summary['model']} on benign prompts (reference: {summary['reference']})")
    for key in HEADLINE:
        table.add_row(key, _number(summary[key]))
    console.print(table)
    for quality in summary["harmful"]:
        console.print(f"harmful prompts, {quality['suite']}: n={quality['n']}, mean tokens "
                      f"{_number(quality['mean_tokens'])}, restatement {_number(quality['restatement_rate'])} "
                      f"{_number(quality['restatement_rate_ci'])}, refusal {_number(quality['refusal_rate'])}",
                      highlight=False)
    verdict = "; ".join(summary["collapse"]) or "not collapsed (against the reference)"
    console.print(f"answers: {verdict}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("eval-benign",
                 epilog="Example: safepref eval-benign --model "
                 "runs/quick/models/self_rm-... --reference smollm2-135m-instruct --out benign-self-rm")
    def eval_benign(
        model: str = typer.Option(DEFAULT_TARGET, "--model", help="registry name, HF folder/id, trained output, "
                                                                  "or openai:<model>"),
        out: Path = typer.Option(..., "--out", help="folder for summary.json and the cached answers (resumable)"),
        limit: int = typer.Option(100, "--limit", help="benign prompts in all, split evenly between the pools"),
        reference: str = typer.Option(None, "--reference", help="model, or answers file (prompt, response), to "
                                      "compare with (default: the model a trained folder came from, else itself)"),
        pools: str = typer.Option("harmless-instructions,xstest-safe", "--pools",
                                  help="comma-separated benign pools: xstest-safe, a bundled prompt dataset, "
                                       "or path[:column]"),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="greedy answer length"),
        batch_size: int = typer.Option(64, "--batch-size"),
        reward_model: str = typer.Option("safety-bt", "--reward-model", help="judges model vs reference pairwise"),
        safety: list[Path] = typer.Option([], "--safety", help="an eval-safety --out folder of the same model: its "
                                          "answers to harmful prompts are measured too, its XSTest answers reused "
                                          "(repeatable)"),
        as_json: bool = typer.Option(False, "--json", help="print exactly one JSON object (the summary)"),
        device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
        dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    ) -> None:
        """Answer benign prompts (greedy): refusal, win rate vs the reference by the reward model, length,
        distinct-2 and restatement, each with n and 95% CIs for rates."""

        config = make_config(pools=[p.strip() for p in pools.split(",") if p.strip()], limit=limit,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, reference=reference,
                             reward_model=reward_model, device=check_device(device), dtype=check_dtype(dtype))
        summary = evaluate_benign(model, config, out, safety_dirs=safety)
        if as_json:
            print(json.dumps(summary, ensure_ascii=False))
            return
        _print_table(summary)
