"""``safepref judge`` and ``safepref eval-safety``: thin wrappers over safepref.judges and safepref.evaluation.safety."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console

from safepref.core.device import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype
from safepref.core.errors import input_error_from
from safepref.evaluation.safety import SafetyEvalConfig, evaluate_safety
from safepref.judges import InputFields, run_judge


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    console = Console()
    for key, value in result.items():
        console.print(f"{key}: {value}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command("judge", epilog="Example: safepref judge --in answers.jsonl --judge harm")
    def judge(
        input_path: str = typer.Option(..., "--in", help="JSONL/CSV with prompt (the request, or the attack "
                                                          "prompt that carried it), response (label optional), "
                                                          "or a bundled labelled dataset name (gptfuzz-eval)."),
        judge_name: str = typer.Option(..., "--judge", help="harm | keyword | classifier | llm | refusal"),
        judge_model: str = typer.Option(None, "--judge-model", help="llm judge: openai:<model>"),
        base_url: str = typer.Option(None, "--base-url", help="llm judge endpoint (default $OPENAI_BASE_URL)"),
        out: Path = typer.Option(None, "--out", help="write one verdict per row here (JSONL)"),
        as_json: bool = typer.Option(False, "--json", help="print exactly one JSON object"),
        prompt_field: str = typer.Option("prompt", "--prompt-field", help="column with the request "
                                                                          "(JailbreakBench: goal; HarmBench: behavior)"),
        response_field: str = typer.Option("response", "--response-field",
                                           help="column with the answer (JailbreakBench: target_response)"),
        label_field: str = typer.Option("label", "--label-field", help="column with the gold 0/1 label, optional "
                                                                       "(JailbreakBench: human_majority)"),
    ) -> None:
        """Judge responses; print the positive rate (95% Wilson CI) and agreement with labels when present."""

        fields = InputFields(prompt=prompt_field, response=response_field, label=label_field)
        _print(run_judge(input_path, judge_name, out=out, fields=fields, judge_model=judge_model, base_url=base_url),
               as_json)

    @app.command("eval-safety",
                 epilog="Example: safepref eval-safety --model smollm2-135m-instruct "
                 "--suite advbench --limit 50 --out safety-sft")
    def eval_safety(
        model: str = typer.Option(..., "--model", help="registry name, HF folder/id, or openai:<model>"),
        suite: str = typer.Option("advbench", "--suite", help="advbench | jbb | harmbench | xstest | path.csv:column"),
        attack: str = typer.Option("none", "--attack", help="comma-separated attacks (see registry/attacks.yaml; "
                                                            "jbb-attacks:METHOD with --suite jbb)"),
        judge_names: str = typer.Option("harm,keyword", "--judge", help="comma-separated judges"),
        out: Path = typer.Option(..., "--out", help="run folder (resumable)"),
        limit: int = typer.Option(None, "--limit", help="first N prompts of the suite (advbench default: 100)"),
        max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="greedy answer length"),
        batch_size: int = typer.Option(64, "--batch-size"),
        judge_model: str = typer.Option(None, "--judge-model", help="llm judge: openai:<model>"),
        base_url: str = typer.Option(None, "--base-url", help="llm judge endpoint (default $OPENAI_BASE_URL)"),
        as_json: bool = typer.Option(False, "--json", help="print exactly one JSON object (the summary)"),
        backend: str = typer.Option("transformers", "--backend", help="generation backend: transformers or vllm (GPU)"),
        device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
        dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    ) -> None:
        """Answer a jailbreak suite under attacks (greedy), judge every answer, report ASR with 95% CIs."""
        try:
            config = SafetyEvalConfig(suite=suite, attacks=attack, judges=judge_names, limit=limit,
                                      max_new_tokens=max_new_tokens, batch_size=batch_size, judge_model=judge_model,
                                      base_url=base_url, backend=backend, device=check_device(device),
                                      dtype=check_dtype(dtype))
        except ValidationError as error:
            raise input_error_from(error) from None
        _print(evaluate_safety(model, config, out), as_json)
