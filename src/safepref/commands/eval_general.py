"""``safepref eval-general``: general ability through lm-evaluation-harness on the bundled tasks."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from safepref.commands import print_table
from safepref.core.device import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype
from safepref.core.errors import InputError
from safepref.evaluation import general as eval_general
from safepref.models.loading import DEFAULT_TARGET


def _task_names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def register(app: typer.Typer) -> None:
    @app.command("eval-general",
                 epilog="Example: safepref eval-general --model "
                 "smollm2-135m-instruct --tasks arc_easy,mmlu --limit 100 --out general-sft")
    def eval_general_command(
        model: str = typer.Option(DEFAULT_TARGET, "--model", help="Registry name, HF folder, hub id, or trained output "
                                  "(full fine-tune folder or LoRA adapter folder)."),
        tasks: str = typer.Option(",".join(eval_general.DEFAULT_TASKS), "--tasks", help="Comma-separated task names."),
        limit: int = typer.Option(None, "--limit", help="Questions per task (MMLU: drawn across subjects); "
                                  "default all."),
        num_fewshot: int = typer.Option(0, "--num-fewshot", help="Few-shot examples per question."),
        batch_size: int = typer.Option(8, "--batch-size", help="lm-eval batch size."),
        seed: int = typer.Option(1234, "--seed", help="Seed for lm-eval's samplers."),
        out: Path = typer.Option(None, "--out", help="Folder for general.json (required unless --list-tasks)."),
        list_tasks: bool = typer.Option(False, "--list-tasks", help="Print each task's size, metric and chance level "
                                        "(on --limit questions if given) and exit, without a model."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
        device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
        dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    ) -> None:
        """Evaluate a model on ARC, HellaSwag, MMLU, TruthfulQA mc2 and WinoGrande (lm-eval, offline)."""
        config = eval_general.make_config(tasks=_task_names(tasks), limit=limit, num_fewshot=num_fewshot,
                                          batch_size=batch_size, seed=seed)
        if list_tasks:
            rows = eval_general.describe_tasks(config.tasks, config.limit)
            if as_json:
                print(json.dumps({"tasks": rows}))
                return
            table = Table("task", "metric", "questions", "evaluated", "chance")
            for row in rows:
                table.add_row(row["task"], row["metric"], f"{row['questions']:,}", f"{row['evaluated']:,}",
                              f"{row['chance']:.4f}")
            print_table(table)
            return
        if out is None:
            raise InputError("--out is required (the folder for general.json)", field="--out")
        record = eval_general.evaluate_general(model, config, out, device=check_device(device),
                                               dtype=check_dtype(dtype))
        if as_json:
            print(json.dumps(record))
            return
        table = Table("task", "metric", "score ± stderr", "chance", "n", "shots")
        for name, row in record["tasks"].items():
            stderr = "n/a" if row["stderr"] is None else f"{row['stderr']:.3f}"
            table.add_row(name, row["metric"], f"{row['value']:.3f} ± {stderr}", f"{row['chance']:.3f}", str(row["n"]),
                          str(row["num_fewshot"]))
        console = Console()
        print_table(table)
        console.print(f"{record['model']}: {Path(out) / eval_general.RESULTS_FILE} "
                      f"(lm-eval {record['versions']['lm_eval']}, {record['wall_seconds']} s)")
