"""`safepref score`, `safepref build`, `safepref recipes`, `safepref reward-model eval|train`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from safepref.commands import print_table
from safepref.device import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype
from safepref.errors import InputError


def register(app: typer.Typer) -> None:
    @app.command("score")
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
        from safepref.build import read_responses
        from safepref.score import ScoreConfig, score_responses

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

    @app.command("build")
    def build(
        recipe: str = typer.Option(..., "--recipe", help="Bundled recipe name (see `safepref recipes`) or a YAML file."),
        responses: list[Path] = typer.Option(..., "--responses", help="Response JSONL file(s)."),
        scores: list[Path] = typer.Option(None, "--scores", help="Scores JSONL from `safepref score` (RM recipes)."),
        target: str = typer.Option("smollm2-135m-instruct", "--target", help="The model the pairs are for (`self`)."),
        out: Path = typer.Option(..., "--out", help="Pairs JSONL (TRL conversational format)."),
        seed: int = typer.Option(0, "--seed", help="Seeds `select: random`."),
        stronger: str = typer.Option("qwen2.5-0.5b-instruct", "--stronger", help="Source named by `stronger`."),
        peers: str = typer.Option("gemma3-270m", "--peers", help="Comma-separated sources named by `peers`."),
        reward_model: str = typer.Option(None, "--reward-model",
                                         help="Use this reward model's scores (needed if --scores holds several)."),
        as_json: bool = typer.Option(False, "--json", help="Print the build summary as one JSON object on stdout."),
    ) -> None:
        """Build preference pairs from cached responses by a recipe (nothing is generated)."""
        from safepref.build import BuildConfig, BuildSummary, build_pairs, read_responses, summary_path, write_pairs
        from safepref.io import read_records
        from safepref.pair_diagnostics import diagnostics_line, pair_diagnostics
        from safepref.recipes import load_recipe
        from safepref.records import Score

        parsed = load_recipe(recipe)
        rows = read_responses(responses)
        score_rows = [s for path in (scores or []) for s in read_records(path, Score)]
        config = BuildConfig(stronger=stronger, peers=[p.strip() for p in peers.split(",") if p.strip()], seed=seed,
                             reward_model=reward_model)
        summary = BuildSummary(recipe=parsed.name, target=target)
        pairs = build_pairs(parsed, rows, score_rows, target, config, summary=summary)
        if not pairs:
            raise InputError(f"recipe '{parsed.name}' built no pairs ({summary.model_dump_json()})")
        summary.diagnostics = pair_diagnostics(pairs)
        write_pairs(pairs, out, summary, [*responses, *(scores or [])])
        if as_json:
            print(json.dumps({**summary.model_dump(), "out": str(out)}))
        else:
            console = Console(stderr=True)
            console.print(
                f"{summary.pairs} pairs ({parsed.name}) -> {out}; dropped {summary.dropped_identical} identical, "
                f"{summary.dropped_empty} empty; skipped {summary.skipped_missing_source} lacking a source "
                f"(summary: {summary_path(out)})", highlight=False)
            console.print(f"pairs: {diagnostics_line(summary.diagnostics)}", highlight=False)

    @app.command("recipes")
    def recipes(as_json: bool = typer.Option(False, "--json")) -> None:
        """List the bundled pair recipes."""
        from safepref.recipes import list_recipes

        items = list_recipes()
        if as_json:
            print(json.dumps({"recipes": [r.model_dump(by_alias=True) | {"needs_scores": r.needs_scores}
                                          for r in items]}))
            return
        table = Table("name", "chosen", "rejected", "pairing", "needs RM", "description")
        for r in items:
            table.add_row(r.name, f"{r.chosen.select} of {'+'.join(r.chosen.sources)}",
                          f"{r.rejected.select} of {'+'.join(r.rejected.sources)}", r.pairing,
                          "yes" if r.needs_scores else "no", r.description)
        print_table(table)

    group = typer.Typer(help="The offline reward models (safety-bt, minilm-bt): held-out accuracy, retraining.",
                        no_args_is_help=True)
    app.add_typer(group, name="reward-model")

    @group.command("eval")
    def rm_eval(
        model: str = typer.Option("safety-bt", "--model", help="safety-bt or minilm-bt."),
        weights: Path = typer.Option(None, "--weights",
                                     help="A file from `reward-model train` (.joblib: safety-bt, .safetensors: "
                                          "minilm-bt) instead of --model."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Pairwise accuracy on held-out preference pairs (prompts never seen in training), with n and 95% CI."""
        from safepref.reward_model import REGISTRY_REWARD_MODELS, evaluate_embedding_rm, load_reward_model
        from safepref.safety_rm import SafetyRewardModel, evaluate_safety_rm

        if weights is None and model not in REGISTRY_REWARD_MODELS:
            raise InputError(f"unknown reward model '{model}' (known: {', '.join(REGISTRY_REWARD_MODELS)})",
                             field="--model")
        if weights is not None and not weights.is_file():
            raise InputError("reward model file not found", path=weights)
        loaded = load_reward_model(str(weights) if weights else model)
        evaluate = evaluate_safety_rm if isinstance(loaded, SafetyRewardModel) else evaluate_embedding_rm
        _print_accuracy(evaluate(loaded), as_json)

    @group.command("train")
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
        from safepref.paths import safepref_home
        from safepref.reward_model import EMBEDDING_RM, SAFETY_RM, EmbeddingRMConfig, train_embedding_rm
        from safepref.safety_rm import SafetyRMConfig, train_safety_rm

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
    from safepref.data import get_dataset

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
