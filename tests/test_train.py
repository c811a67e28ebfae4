"""DPO training: learning on easy pairs, dynamics, reference log-prob cache, bad input, resume after a kill."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_cli_killed_after


def write_pairs(path: Path, n: int) -> Path:
    """Learnable pairs: chosen is always the same short refusal, rejected a longer compliant answer."""
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({
                "prompt": [{"role": "user", "content": f"How do I do dangerous thing number {i}?"}],
                "chosen": [{"role": "assistant", "content": "I can't help with that."}],
                "rejected": [{"role": "assistant", "content": f"Sure! For thing {i}, first gather the parts, then "
                                                              "combine them carefully, step by step."}],
            }) + "\n")
    return path


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SAFEPREF_HOME, so the reference log-prob cache starts empty."""
    folder = tmp_path / "home"
    monkeypatch.setenv("SAFEPREF_HOME", str(folder))
    return folder


def read_dynamics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "dynamics.jsonl").read_text().splitlines()]


def test_dpo_learns_easy_pairs_caches_reference_and_generates(tiny_model_dir: Path, tmp_path: Path, home: Path):
    from safepref.models.loading import load_model, load_tokenizer
    from safepref.training.dpo import DPOTrainingConfig, ref_logps_cache_dir, train_dpo

    pairs = write_pairs(tmp_path / "pairs.jsonl", 32)
    out = tmp_path / "lora"
    config = DPOTrainingConfig(lora=True, learning_rate=1e-2, max_steps=6, batch_size=4, save_steps=100)
    result = train_dpo(tiny_model_dir, pairs, out, config)

    assert result.reference_log_probs == "computed" and result.steps == 6 and result.n_pairs == 32
    rows = read_dynamics(out)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    assert rows[-1]["loss"] < math.log(2) - 0.1
    assert rows[-1]["rewards/accuracies"] > rows[0]["rewards/accuracies"]
    assert rows[-1]["rewards/margins"] > 0
    assert (out / "dynamics.png").stat().st_size > 1000
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["n_pairs"] == 32 and summary["steps"] == 6 and set(summary["versions"]) >= {"torch", "trl", "peft"}
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir)
    assert not list(out.glob("checkpoint-*"))  # removed after a finished run

    # the trained adapter loads through the project's loader and generates
    model, tokenizer = load_model(out), load_tokenizer(out)
    inputs = tokenizer("How do I", return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4

    # a finished run is not retrained; another config on the same out dir is refused
    assert train_dpo(tiny_model_dir, pairs, out, config).skipped
    from safepref.core.errors import InputError

    with pytest.raises(InputError, match="--force"):
        train_dpo(tiny_model_dir, pairs, out, DPOTrainingConfig(lora=True, learning_rate=5e-3, max_steps=6))

    # retraining on the same pairs (another learning rate, full fine-tuning: the reference is the same base model)
    # reads the stored reference log-probs instead of recomputing them
    store_files = list(ref_logps_cache_dir().glob("answers-*.npz"))
    assert len(store_files) == 1
    stamp = store_files[0].stat().st_mtime_ns
    again = train_dpo(tiny_model_dir, pairs, tmp_path / "full",
                      DPOTrainingConfig(lora=False, learning_rate=1e-3, max_steps=1, batch_size=4))
    assert again.reference_log_probs == "cached"
    assert read_dynamics(tmp_path / "full")[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # right references
    assert list(ref_logps_cache_dir().glob("answers-*.npz")) == store_files
    assert store_files[0].stat().st_mtime_ns == stamp
    assert (tmp_path / "full" / "model.safetensors").is_file()

    # another recipe on the same prompts that keeps the rejected answers: only its new chosen answers are computed
    rows = [json.loads(line) for line in pairs.read_text().splitlines()[:8]]
    for i, row in enumerate(rows):
        row["chosen"][0]["content"] = f"No. Thing {i} is dangerous; please ask a professional instead."
    recipe = tmp_path / "recipe.jsonl"
    recipe.write_text("".join(json.dumps(row) + "\n" for row in rows))
    third = train_dpo(tiny_model_dir, recipe, tmp_path / "recipe", DPOTrainingConfig(max_steps=1, batch_size=4))
    assert third.reference_log_probs == "computed 8 of 16 answers, the rest cached"
    assert read_dynamics(tmp_path / "recipe")[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)


def test_per_answer_reference_log_probs_equal_trls_own(tiny_model_dir: Path, tmp_path: Path, home: Path):
    """The per-answer pass (rows of any pairs, length-sorted) gives TRL's precomputed values for every side."""
    import numpy as np
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from safepref.models.loading import load_model, load_tokenizer
    from safepref.training.dpo import make_trainer, weights_hash

    rows = [json.loads(line) for line in write_pairs(tmp_path / "pairs.jsonl", 6).read_text().splitlines()]
    rows[2]["rejected"][0]["content"] = "Sure. " * 40  # a long answer: truncated at max_length by both
    args = dict(bf16=False, use_cpu=True, report_to="none", precompute_ref_log_probs=True, max_length=64,
                per_device_train_batch_size=2)
    tokenizer = load_tokenizer(tiny_model_dir)
    trl = DPOTrainer(model=load_model(tiny_model_dir), processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
                     args=DPOConfig(output_dir=str(tmp_path / "trl"), **args))
    policy = load_model(tiny_model_dir)
    ours = make_trainer(weights_hash(policy), model=policy, ref_model=None, processing_class=tokenizer,
                        train_dataset=Dataset.from_list(rows), args=DPOConfig(output_dir=str(tmp_path / "ours"), **args))
    assert ours.reference_source == "computed"
    for column in ("ref_chosen_logps", "ref_rejected_logps"):
        assert np.allclose(ours.train_dataset[column], trl.train_dataset[column], atol=1e-4)


def test_bad_row_exits_2_naming_the_row(tiny_model_dir: Path, tmp_path: Path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 3)
    lines = pairs.read_text().splitlines()
    row = json.loads(lines[1])
    del row["rejected"]
    lines[1] = json.dumps(row)
    pairs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    done = run_cli("train", "--model", str(tiny_model_dir), "--pairs", str(pairs), "--out", str(out),
                   env={"SAFEPREF_HOME": str(tmp_path / "home")})
    assert done.returncode == 2, done.stderr
    assert f"{pairs}:2" in done.stderr and "rejected" in done.stderr
    assert not out.exists()


def test_interrupted_run_resumes_from_its_last_checkpoint(tiny_model_dir: Path, tmp_path: Path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 8)
    out = tmp_path / "out"
    args = ["train", "--model", str(tiny_model_dir), "--pairs", str(pairs), "--out", str(out),
            "--lr", "1e-2", "--max-steps", "4", "--batch-size", "2", "--save-steps", "1", "--json"]
    env = {"SAFEPREF_HOME": str(tmp_path / "home")}
    killed = run_cli_killed_after("transformers.trainer:Trainer._save_checkpoint", 2, *args, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # killed right after saving its second checkpoint
    assert not (out / "train_summary.json").exists()
    steps_saved = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")
                      if (p / "trainer_state.json").is_file())
    assert steps_saved == 2

    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["resumed_from"] == f"checkpoint-{steps_saved}"
    assert result["steps"] == 4 and result["reference_log_probs"] == "cached"
    assert [row["step"] for row in read_dynamics(out)] == [1, 2, 3, 4]  # no step lost or logged twice


@pytest.mark.integration
def test_smollm2_lora_two_steps_and_adapter_loads_back(smollm2_dir: Path, tmp_path: Path, home: Path):
    import torch

    from safepref.models.loading import DEFAULT_TARGET, load_model, load_tokenizer
    from safepref.training.dpo import DPOTrainingConfig, train_dpo

    (home / "models").parent.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(smollm2_dir.parent)  # the prepared SmolLM2, without converting it again
    pairs = write_pairs(tmp_path / "pairs.jsonl", 8)
    out = tmp_path / "smollm2-lora"
    result = train_dpo(DEFAULT_TARGET, pairs, out,
                       DPOTrainingConfig(lora=True, learning_rate=5e-4, max_steps=2, batch_size=4, max_length=128))
    assert result.steps == 2 and len(read_dynamics(out)) == 2
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == DEFAULT_TARGET

    tokenizer = load_tokenizer(out)
    inputs = tokenizer("How do I make a cake?", return_tensors="pt")
    with torch.no_grad():
        trained = load_model(out)(**inputs).logits
        base = load_model(DEFAULT_TARGET)(**inputs).logits
    assert not torch.allclose(trained, base, atol=1e-5)  # the adapter changed the model
    assert load_model(out).generate(**inputs, max_new_tokens=3, do_sample=False).shape[1] > inputs["input_ids"].shape[1]
