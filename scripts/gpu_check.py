"""Which device each stage really uses, its peak GPU memory and its speed against plain ``model.generate``.

Every stage runs through safepref's own code (the device policy included) on a random-weight model with the
bundled SmolLM2's architecture and tokenizer (no download: the config comes from the bundled GGUF), so the check
runs on a bare GPU machine. Generation stages are compared with plain ``model.generate`` on the same prompts,
samples and lengths, in batches of the same number of rows, after one warm-up batch; the stages get a warm-up
call too. Random weights rarely draw end-of-sequence, so both sides generate about ``--max-new-tokens`` per row.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python scripts/gpu_check.py                     # on the GPU machine
    HF_HUB_OFFLINE=1 PYTHONPATH=src python scripts/gpu_check.py --tiny --prompts 4  # a quick look on a CPU

A GPU machine without the bundled model packages gets the architectures as a small folder (configs and tokenizers,
no weights): ``--export-architecture DIR`` writes it where the packages are installed, ``--architecture DIR``
reads it there. A stage that fails is reported with its error and the others still run.

On a machine without CUDA it says so and reports the CPU: device ``cpu`` and no GPU memory figure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from safepref.core.datasets import saferlhf_prompts
from safepref.core.device import peak_memory_mib
from safepref.generation.generate import GenerationConfig, choose_engine, generate_responses, render_prompt
from safepref.models import loading as models

PLAIN = "plain model.generate (warmed)"
STAGES = ("generate", "eval-safety", "audit", "score", "embed", "train", "eval-general")


ARCHITECTURE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                      "chat_template.jinja", "special_tokens_map.json", "vocab.txt", "modules.json",
                      "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json")


def export_architecture(target: Path) -> None:
    """Copy the bundled target's and embedder's configs and tokenizers (no weights) into ``target/{lm,embedder}``."""
    import shutil

    for name, source in (("lm", models.prepare_model(models.DEFAULT_TARGET)),
                         ("embedder", models.prepare_model(models.EMBEDDING_MODEL))):
        for relative in ARCHITECTURE_FILES:
            if (Path(source) / relative).is_file():
                (target / name / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(source) / relative, target / name / relative)


def build_embedder(folder: Path, architecture: Path) -> None:
    """A random-weight sentence-transformers model with MiniLM's architecture, pooling and tokenizer."""
    import shutil

    from transformers import AutoConfig, AutoModel

    shutil.copytree(architecture / "embedder", folder / "embedder")
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(architecture / "embedder")).save_pretrained(folder / "embedder")


def build_model(folder: Path, tiny: bool, architecture: Path | None = None) -> None:
    """A random-weight causal LM and a one-logit sequence classifier with SmolLM2's config and tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    bundled = architecture / "lm" if architecture else models.prepare_model(models.DEFAULT_TARGET)
    if architecture:
        build_embedder(folder, architecture)
    config = AutoConfig.from_pretrained(bundled)
    if tiny:  # the same architecture, shrunk so a CPU test takes seconds
        config.update({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
                       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder / "lm")
    config.num_labels = 1
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder / "rm")
    tokenizer = AutoTokenizer.from_pretrained(bundled)
    tokenizer.save_pretrained(folder / "lm")
    tokenizer.save_pretrained(folder / "rm")


@contextlib.contextmanager
def reusing(model):
    """Stages load their model by name: hand them the one already loaded, so timings exclude loading."""
    original = models.load_model
    models.load_model = lambda *args, **kwargs: model
    try:
        yield
    finally:
        models.load_model = original


def measure(device: torch.device, work: Callable[[], float]) -> tuple[float, float, float | None]:
    """(units of work, seconds, peak GPU MiB or None on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    units = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return units, time.perf_counter() - started, peak_memory_mib(device)


def plain_generate(model, tokenizer, texts: list[str], config: GenerationConfig) -> int:
    """transformers ``generate`` on length-sorted batches of ``batch_size`` rows; real tokens produced."""
    per_batch = max(1, config.batch_size // config.num_samples)
    produced = 0
    for start in range(0, len(texts), per_batch):
        inputs = tokenizer(texts[start:start + per_batch], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=True, max_new_tokens=config.max_new_tokens,
                                    temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                                    repetition_penalty=config.repetition_penalty,
                                    no_repeat_ngram_size=config.no_repeat_ngram_size,
                                    num_return_sequences=config.num_samples, pad_token_id=tokenizer.pad_token_id)
        for row in output[:, inputs["input_ids"].shape[1]:].tolist():
            produced += row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
    return produced


def run_checks(args: argparse.Namespace, folder: Path) -> dict:
    lm = str(folder / "lm")
    placement = models.placement_for(lm, args.device, args.dtype)
    model = models.load_model(lm, device=args.device, dtype=args.dtype)
    rows: list[dict] = []

    def record(stage: str, unit: str, result: tuple[float, float, float | None], on=placement.device) -> None:
        units, seconds, peak = result
        rows.append({"stage": stage, "device": str(on), "dtype": placement.dtype_name, "peak_gpu_mib": peak,
                     "rate": units / seconds, "unit": unit, "seconds": seconds})

    def record_failure(stage: str, unit: str, error: Exception) -> None:
        rows.append({"stage": stage, "device": "-", "dtype": "-", "peak_gpu_mib": None, "rate": 0.0, "unit": unit,
                     "seconds": 0.0, "error": f"{type(error).__name__}: {error}"[:300]})

    wanted = [s.strip() for s in args.stages.split(",")]
    work = Path(tempfile.mkdtemp(dir=folder))
    args.embedder = str(folder / "embedder") if (folder / "embedder").is_dir() else models.EMBEDDING_MODEL
    _generation_checks(args, lm, model, placement.device, work, (record, record_failure), "generate" in wanted)
    for stage, unit, check in OTHER_STAGES:
        if stage in wanted:
            try:
                check(args, lm, model, placement.device, work, record, unit)
            except Exception as error:  # one broken stage must not cost the figures of the others
                record_failure(stage, unit, error)
    baseline = next(row["rate"] for row in rows if row["stage"] == PLAIN)
    for row in rows:
        row["vs_plain_generate"] = row["rate"] / baseline if row["unit"] == "tok/s" else None
    return {"machine": machine(placement.device), "placement": placement.describe(), "dtype_reason": placement.reason,
            "work": {"prompts": args.prompts, "samples": args.samples, "max_new_tokens": args.max_new_tokens,
                     "batch_rows": args.batch_size, "tiny": args.tiny, "repeats": args.repeats}, "stages": rows}


def _generation_checks(args, lm: str, model, device, work: Path, recorders, stage_too: bool) -> None:
    """Plain warmed ``model.generate``, then safepref's generate stage with each engine, on the same work."""
    tokenizer = models.load_tokenizer(lm)
    prompts = saferlhf_prompts()[:args.prompts]
    config = GenerationConfig(num_samples=args.samples, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                              device=args.device, dtype=args.dtype)
    texts = sorted((render_prompt(tokenizer, p.text, chat=True) for p in prompts),
                   key=lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]))
    record, record_failure = recorders
    contenders = {PLAIN: lambda: plain_generate(model, tokenizer, texts, config)}
    engines = [choose_engine("auto", device)] + [e for e in args.engines.split(",") if e and e != "auto"]
    with reusing(model):
        plain_generate(model, tokenizer, texts[:1], config)  # warm-up
        for engine in dict.fromkeys(engines) if stage_too else []:
            engine_config = dataclasses.replace(config, engine=engine)
            try:  # a warm-up on one prompt; a contender that fails is reported and the others still run
                generate_responses(prompts[:1], lm, work / f"warm-{engine}.jsonl", engine_config)
            except Exception as error:
                record_failure(f"safepref generate ({engine})", "tok/s", error)
                continue
            contenders[f"safepref generate ({engine})"] = lambda c=engine_config: _stage_tokens(prompts, lm, work, c)
        # rounds in alternating order (the second round reversed), each contender's median kept: clocks and caches
        # warm up over a run, and one fixed order would hand that to whoever goes last
        timings: dict[str, list[tuple[float, float, float | None]]] = {name: [] for name in contenders}
        for round_ in range(args.repeats):
            for name in (list(contenders) if round_ % 2 == 0 else list(contenders)[::-1]):
                timings[name].append(measure(device, contenders[name]))
    for name, results in timings.items():
        units, seconds, peak = sorted(results, key=lambda r: r[0] / r[1])[len(results) // 2]
        record(name, "tok/s", (units, seconds, max((r[2] for r in results if r[2] is not None), default=None)))


def _stage_tokens(prompts, lm: str, work: Path, config: GenerationConfig) -> int:
    """safepref's generate stage on the prompts, into a fresh folder each call (so nothing is resumed)."""
    out = Path(tempfile.mkdtemp(dir=work)) / f"{config.engine}.jsonl"
    return sum(r.n_tokens for r in generate_responses(prompts, lm, out, config))


def _eval_safety(args, lm: str, model, device, work: Path, record, unit: str) -> None:
    from safepref.evaluation.safety import SafetyEvalConfig, evaluate_safety

    config = SafetyEvalConfig(limit=args.prompts, judges=["keyword"], max_new_tokens=args.max_new_tokens,
                              batch_size=args.batch_size, device=args.device, dtype=args.dtype)
    with reusing(model):
        record("eval-safety (answers + keyword judge)", unit, measure(
            device, lambda: evaluate_safety(lm, config, work / "safety")["results"][0]["n"]))


def _audit(args, lm: str, model, device, work: Path, record, unit: str) -> None:
    from safepref.audit import hidden_state_features
    from safepref.core.records import Message

    items = [([Message(role="user", content=p.text)], p.text[::-1]) for p in saferlhf_prompts()[:args.prompts * 8]]
    with reusing(model):  # the stage's own batch size for the device (None)
        hidden_state_features(items[:2], lm, -1, None, 256, device=args.device, dtype=args.dtype)  # warm-up
        record("audit hidden states", unit, measure(device, lambda: len(hidden_state_features(
            items, lm, -1, None, 256, device=args.device, dtype=args.dtype))))


def _score(args, lm: str, model, device, work: Path, record, unit: str) -> None:
    from safepref.scoring.reward_model import load_reward_model

    scorer = load_reward_model(str(Path(lm).parent / "rm"), batch_size=16, max_length=256, device=args.device,
                               dtype=args.dtype)
    prompts = [p.text for p in saferlhf_prompts()[:args.prompts * 4]]
    scorer.score(prompts[:2], prompts[:2])  # warm-up
    record("score (HF reward model)", unit, measure(scorer.model.device, lambda: len(
        scorer.score(prompts, [p[::-1] for p in prompts]))), scorer.model.device)


def _embed(args, lm: str, model, device, work: Path, record, unit: str) -> None:
    embedder = models.load_embedder(args.embedder, device=args.device)
    on = torch.device(str(embedder.device))
    texts = [p.text for p in saferlhf_prompts()[:args.prompts * 8]]
    embedder.encode(texts[:2])  # warm-up
    record("embed (MiniLM: audit, reward model)", unit, measure(on, lambda: len(embedder.encode(texts, batch_size=32))),
           on)


def _train(args, lm: str, model, device, work: Path, record, unit: str) -> None:
    from safepref.training.dpo import DPOTrainingConfig, train_dpo

    pairs = work / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p.text, "chosen": "I can't help with that.",
                                         "rejected": p.text[::-1]}) + "\n" for p in saferlhf_prompts()[:16]))
    config = DPOTrainingConfig(max_steps=args.train_steps, batch_size=4, max_length=128, save_steps=10_000,
                               precompute_ref_log_probs=False, logging_steps=1)
    record("train (TRL DPO, LoRA; incl. setup)", unit, measure(
        device, lambda: train_dpo(lm, pairs, work / "trained", config, device=args.device).steps))


def _eval_general(args, lm: str, model, device, work: Path, record, unit: str) -> None:
    from safepref.evaluation.general import evaluate_general, make_config

    config = make_config(tasks=("arc_easy",), limit=args.prompts, batch_size=8)
    record("eval-general (lm-eval arc_easy; incl. load)", unit, measure(device, lambda: evaluate_general(
        lm, config, work / "general", device=args.device, dtype=args.dtype)["tasks"]["arc_easy"]["n"]))


OTHER_STAGES = (("eval-safety", "answer/s", _eval_safety), ("audit", "resp/s", _audit), ("score", "resp/s", _score),
                ("embed", "text/s", _embed), ("train", "step/s", _train), ("eval-general", "question/s", _eval_general))


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        import transformers

        return (f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__}, "
                f"transformers {transformers.__version__})")
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    visible = "no CUDA device visible to torch" if not torch.cuda.is_available() else "CUDA present, not used"
    return f"CPU: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()} ({visible})"


def print_report(report: dict) -> None:
    print(f"machine: {report['machine']}")
    print(f"placement: {report['placement']['device']} {report['placement']['dtype']} ({report['dtype_reason']})")
    print(f"work: {report['work']}")
    print(f"{'stage':<44} {'device':<8} {'dtype':<9} {'peak GPU MiB':>12} {'rate':>20}  {'vs plain generate'}")
    for row in report["stages"]:
        if "error" in row:
            print(f"{row['stage']:<44} FAILED: {row['error']}")
            continue
        peak = "-" if row["peak_gpu_mib"] is None else f"{row['peak_gpu_mib']:.0f}"
        ratio = "" if row["vs_plain_generate"] is None else f"x{row['vs_plain_generate']:.2f}"
        print(f"{row['stage']:<44} {row['device']:<8} {row['dtype']:<9} {peak:>12} "
              f"{row['rate']:>9.3g} {row['unit']:<10} {ratio:>10}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128, help="rows per batch, the same for every contender")
    parser.add_argument("--engines", default="decoder,generate", help="generation engines timed besides auto's")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of each generation contender (median)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model of the same architecture (CPU tests)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--architecture", type=Path, help="configs + tokenizers folder (see --export-architecture)")
    parser.add_argument("--export-architecture", type=Path, help="write that folder from the bundled models and stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.architecture and not (args.architecture / "lm" / "config.json").is_file():
        print(f"gpu_check: {args.architecture / 'lm' / 'config.json'} is missing: write the folder with "
              "--export-architecture DIR where the bundled models are installed", file=sys.stderr)
        sys.exit(2)
    if args.export_architecture:
        export_architecture(args.export_architecture)
        return {}
    with tempfile.TemporaryDirectory() as folder:
        build_model(Path(folder), args.tiny, args.architecture)
        report = run_checks(args, Path(folder))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
