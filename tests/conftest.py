"""Shared fixtures: a tiny random-initialised model with the real SmolLM2 tokenizer, and CLI helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# float32 on every CPU, so the suite's figures do not depend on the machine's bfloat16 instructions (the policy's own
# tests turn the measurement back on); CLI subprocesses inherit it
os.environ["SAFEPREF_CPU_BF16"] = "off"

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real bundled SmolLM2, prepared once into SAFEPREF_HOME (about 30 s the first time)."""
    from safepref.models.loading import DEFAULT_TARGET, prepare_model

    return prepare_model(DEFAULT_TARGET)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """A 2-layer random Llama with SmolLM2's real tokenizer and chat template, saved as a local HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m safepref`` in a subprocess, as a user would (exit codes, stderr)."""
    full_env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "safepref", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


# The child imports the target, wraps it so that the process SIGKILLs itself right after the target's Nth call
# returns, then runs the CLI: a kill at a known point, by count, with no clock and no polling.
_KILL_SWITCH = """
import functools, importlib, os, signal, sys
target, calls = sys.argv[1], int(sys.argv[2])
module_name, _, attribute = target.partition(":")
owner_name, _, name = attribute.rpartition(".")
owner = importlib.import_module(module_name)
for part in filter(None, owner_name.split(".")):
    owner = getattr(owner, part)
original, seen = getattr(owner, name), [0]
@functools.wraps(original)
def wrapped(*args, **kwargs):
    result = original(*args, **kwargs)
    seen[0] += 1
    if seen[0] == calls:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(owner, name, wrapped)
from safepref.cli import main
main(sys.argv[3:])
"""


def run_cli_killed_after(target: str, calls: int, *args: str, env: dict[str, str] | None = None,
                         timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the CLI and SIGKILL it right after ``target`` (``"module:Class.method"``) has returned ``calls`` times."""
    full_env = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    return subprocess.run([sys.executable, "-c", _KILL_SWITCH, target, str(calls), *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


def tiny_grid_config(folder: Path, model_dir: Path, name: str = "tiny", **overrides) -> Path:
    """A grid config on the tiny model, small enough for a test: 6 prompts, 8-token answers, 2 DPO steps, 4
    AdvBench behaviours judged by `keyword`; ``overrides`` replace top-level keys. Written to FOLDER/config.yaml."""
    config = {
        "name": name,
        "seed": 0,
        "targets": [{"model": str(model_dir), "stronger": str(model_dir), "peers": []}],
        "prompts": {"dataset": "saferlhf", "require": ["gpt4o"], "limit": 6},
        "generation": {"samples": 2, "max_new_tokens": 8},
        "recipes": ["sft", "gpt4o_self", "self_rm"],
        "training": {"lora": False, "max_steps": 2, "batch_size": 2, "max_length": 128, "learning_rate": 1e-3,
                     "save_steps": 1},
        "safety": {"suites": ["advbench"], "limit": 4, "attacks": ["none"], "judges": ["keyword"],
                   "max_new_tokens": 8},
        "general": None,
        "benign": {"limit": 4},
        "audit": {"features": ["shallow"], "folds": 2},
        **overrides,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
