"""``safepref reward-model eval|train``: the offline reward models' held-out accuracy, and retraining them (see
``safepref.scoring.reward_model`` and ``safepref.scoring.safety_rm``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from safepref.commands import print_table
from safepref.core.datasets import get_dataset
from safepref.core.errors import InputError
from safepref.core.paths import safepref_home
from safepref.scoring.reward_model import (
    EMBEDDING_RM,
    REGISTRY_REWARD_MODELS,
    SAFETY_RM,
    EmbeddingRMConfig,
    evaluate_embedding_rm,
    load_reward_model,
    train_embedding_rm,
)
from safepref.scoring.safety_rm import SafetyRewardModel, SafetyRMConfig, evaluate_safety_rm, train_safety_rm


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The offline reward models (safety-bt, minilm-bt): held-out accuracy, retraining.",
                        no_args_is_help=True)
    app.add_typer(group, name="reward-model")
    group.command("eval")(rm_eval)
    group.command("train")(rm_train)


def rm_eval(
    model: str = typer.Option("safety-bt", "--model", help="safety-bt or minilm-bt."),
    weights: Path = typer.Option(None, "--weights",
                                 help="A file from `reward-model train` (.joblib: safety-bt, .safetensors: "
                                      "minilm-bt) instead of --model."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Pairwise accuracy on held-out preference pairs (prompts never seen in training), with n and 95% CI."""

    if weights is None and model not in REGISTRY_REWARD_MODELS:
        raise InputError(f"unknown reward model '{model}' (known: {', '.join(REGISTRY_REWARD_MODELS)})",
                         field="--model")
    if weights is not None and not weights.is_file():
        raise InputError("reward model file not found", path=weights)
    loaded = load_reward_model(str(weights) if weights else model)
    evaluate = evaluate_safety_rm if isinstance(loaded, SafetyRewardModel) else evaluate_embedding_rm
    _print_accuracy(evaluate(loaded), as_json)


def rm_train(
    kind: str = typer.Option("safety-bt", "--kind", help="safety-bt or minilm-bt."),
    out: Path = typer.Option(None, "--out",
                             help="Folder to write the model into (default: $SAFEPREF_HOME/reward_models); "
                                  "load it with --reward-model/--weights <folder>/<kind>.joblib|.safetensors."),
    seed: int = typer.Option(0, "--seed", help="Seeds the prompt split (and minilm-bt's head)."),
    datasets: str = typer.Option(None, "--datasets",
                                 help="Bundled preference datasets to train on (default: hh-harmless,saferlhf "
                                      "for safety-bt, hh-harmless for minilm-bt)."),
    features: str = typer.Option("response,prompt_x_response", "--features",
                                 help="minilm-bt only. Comma-separated: response, prompt_x_response, joint."),
    hidden: int = typer.Option(0, "--hidden", min=0, help="minilm-bt only. 0 = linear BT head; >0 = one hidden "
                                                          "layer."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Retrain a reward model into a folder you name (never into the installed package); print its held-out
    accuracy."""

    if kind not in (SAFETY_RM, EMBEDDING_RM):
        raise InputError(f"unknown reward model kind '{kind}' (known: {SAFETY_RM}, {EMBEDDING_RM})",
                         field="--kind")
    names = _pair_datasets(datasets) if datasets else None
    folder = out if out is not None else safepref_home() / "reward_models"
    if folder.exists() and not folder.is_dir():
        raise InputError("--out must be a folder", path=folder)
    if kind == SAFETY_RM:
        config = SafetyRMConfig(seed=seed, **({"datasets": names} if names else {}))
        _, metrics = train_safety_rm(config, folder / f"{SAFETY_RM}.joblib")
    else:
        config = EmbeddingRMConfig(datasets=names or ["hh-harmless"], seed=seed, hidden=hidden,
                                   features=[f.strip() for f in features.split(",") if f.strip()])
        _, metrics = train_embedding_rm(config, folder / f"{EMBEDDING_RM}.safetensors")
    _print_accuracy(metrics, as_json)


def _pair_datasets(text: str) -> list[str]:

    names = [d.strip() for d in text.split(",") if d.strip()]
    for name in names:
        if get_dataset(name).kind != "pairs":
            raise InputError(f"dataset '{name}' holds {get_dataset(name).kind}, not preference pairs",
                             field="--datasets")
    return names


def _print_accuracy(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    table = Table("held-out pairs", "accuracy", "n", "95% CI (Wilson)")
    for name, rate in [*result["by_dataset"].items(), ("overall", result["overall"])]:
        low, high = rate["ci95"]
        table.add_row(name, f"{rate['rate']:.3f}", str(rate["n"]), f"{low:.3f}-{high:.3f}")
    Console().print(f"reward model {result['reward_model']} (split seed {result['split_seed']}, "
                    f"{result['held_out_fraction']:.0%} of prompts held out)")
    print_table(table)
