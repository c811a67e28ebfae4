"""``safepref score``: score every response with a reward model (see ``safepref.scoring.score``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from safepref.core.device import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype
from safepref.pairs.build import read_responses
from safepref.scoring.score import ScoreConfig, score_responses


def register(app: typer.Typer) -> None:
    @app.command("score",
                 epilog="Example: safepref score --responses answers.jsonl "
                 "--reward-model safety-bt --out scores.jsonl")
    def score(
        responses: list[Path] = typer.Option(..., "--responses", help="Response JSONL file(s) from `safepref generate`."),
        reward_model: str = typer.Option("safety-bt", "--reward-model",
                                         help="safety-bt (offline default), minilm-bt, a file from `reward-model "
                                              "train`, or a HF sequence-classification reward "
                                              "model id/folder, e.g. OpenAssistant/reward-model-deberta-v3-large-v2."),
        out: Path = typer.Option(..., "--out", help="Scores JSONL (appended to; a rerun resumes)."),
        batch_size: int = typer.Option(16, "--batch-size", min=1),
        max_length: int = typer.Option(512, "--max-length", min=8, help="Token limit for HF reward models."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object on stdout."),
        device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
        dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    ) -> None:
        """Score every response with a reward model (resumable)."""

        rows = read_responses(responses)
        config = ScoreConfig(batch_size=batch_size, max_length=max_length, device=check_device(device),
                             dtype=check_dtype(dtype))
        scores = score_responses(rows, reward_model, out, config)
        summary = {"scores": len(scores), "reward_model": scores[0].reward_model if scores else reward_model,
                   "out": str(out)}
        if as_json:
            print(json.dumps(summary))
        else:
            Console(stderr=True).print(f"{summary['scores']} scores by {summary['reward_model']} in {out}")
