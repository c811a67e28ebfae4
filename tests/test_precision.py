"""The CPU precision policy: bfloat16 chosen by measurement for generation, LM reads and training, float32 on a CPU
without bfloat16 instructions, and the chosen precision in every content key it changes.

The suite runs with ``SAFEPREF_CPU_BF16=off`` (conftest); these tests turn the policy back on with a CPU flag set and
a measurement they control, so they check the same thing on every machine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from safepref.core import device as policy
from safepref.core.errors import InputError
from safepref.core.records import Prompt

WORKLOADS = tuple(policy.BF16_WORKLOADS)


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """The policy on a simulated CPU: ``state["flags"]`` its flags, ``state["speedups"]`` what the probe measures
    (``state["measured"]`` counts the measurements); a fresh SAFEPREF_HOME holds the cached measurement."""
    state = {"flags": {"avx2", "avx512f", "avx512_bf16"}, "speedups": {"inference": 2.0, "training": 1.5},
             "measured": 0}

    def measure():
        state["measured"] += 1
        return dict(state["speedups"])

    monkeypatch.delenv(policy.BF16_ENV, raising=False)
    monkeypatch.setenv("SAFEPREF_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(policy, "cpu_flags", lambda: frozenset(state["flags"]))
    monkeypatch.setattr(policy, "measure_bf16_speedups", measure)
    policy._cached_speedups.cache_clear()
    yield state
    policy._cached_speedups.cache_clear()


def _dtypes(workloads=(*WORKLOADS, None), requested: str = "auto") -> dict:
    return {w: policy.choose_dtype(torch.device("cpu"), requested, None, w)[0] for w in workloads}


# ---------------------------------------------------------------------------------------------- the policy


def test_a_cpu_without_bf16_instructions_keeps_float32_and_measures_nothing(cpu):
    cpu["flags"] = {"avx2", "avx512f", "fma"}
    assert set(_dtypes().values()) == {torch.float32}
    assert policy.cpu_bf16_speedups() is None and cpu["measured"] == 0
    assert policy.resolve_placement("auto", "auto", workload="generation").dtype == torch.float32
    assert policy.precision_record("cpu")["workloads"]["training"]["dtype"] == "float32"


def test_bf16_where_measured_faster_by_the_margin_per_kind_of_work(cpu):
    cpu["speedups"] = {"inference": 2.0, "training": policy.BF16_MARGIN - 0.05}
    chosen = _dtypes()
    assert chosen == {"generation": torch.bfloat16, "lm_read": torch.bfloat16, "training": torch.float32,
                      None: torch.float32}  # a workload never checked against float32 keeps float32
    assert "measured" in policy.choose_dtype(torch.device("cpu"), "auto", None, "generation")[1]
    assert set(_dtypes(requested="float32").values()) == {torch.float32}  # --dtype float32: the old path
    record = policy.precision_record("cpu")
    assert record["workloads"]["lm_read"]["dtype"] == "bfloat16" and record["cpu_bf16_flags"] == ["avx512_bf16"]
    assert record["cpu_bf16_speedups"] == cpu["speedups"]


def test_the_measurement_is_made_once_per_flag_set_and_kept_on_disk(cpu):
    for _ in range(3):
        _dtypes()
    assert cpu["measured"] == 1
    policy._cached_speedups.cache_clear()  # a new process reads the file
    cpu["speedups"] = {"inference": 0.5, "training": 0.5}
    assert _dtypes()["generation"] == torch.bfloat16 and cpu["measured"] == 1
    files = list((Path(policy.safepref_home()) / "device").glob("cpu-bf16-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["speedups"]["inference"] == 2.0
    cpu["flags"] = {"avx512_bf16", "amx_bf16"}  # another CPU: measured again, and slower there
    assert _dtypes()["generation"] == torch.float32 and cpu["measured"] == 2


def test_the_environment_switch_turns_bf16_off(cpu, monkeypatch):
    monkeypatch.setenv(policy.BF16_ENV, "off")
    assert set(_dtypes().values()) == {torch.float32} and cpu["measured"] == 0


def test_the_probe_times_both_precisions():
    speedups = policy.measure_bf16_speedups(repeats=1)
    assert set(speedups) == {"inference", "training"} and all(v > 0 for v in speedups.values())


def test_cpu_flags_reads_the_flag_line_and_assumes_nothing_without_it(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    monkeypatch.setattr(policy, "CPUINFO", info)
    assert policy.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}
    monkeypatch.setattr(policy, "CPUINFO", tmp_path / "absent")
    assert policy.cpu_flags() == frozenset()
    assert policy.precision_key("float32") == {} and policy.precision_key("bfloat16") == {"dtype": "bfloat16"}


# ---------------------------------------------------------------------------------------------- keys


def test_generation_keys_carry_bf16_and_float32_keys_stay(cpu, tiny_model_dir):
    from safepref.generation.generate import GenerationConfig, answer_identity, generate_key

    prompts = [Prompt(id="p1", text="Hello")]
    auto, full = GenerationConfig(greedy=True), GenerationConfig(greedy=True, dtype="float32")
    assert answer_identity(str(tiny_model_dir), auto)["dtype"] == "bfloat16"
    assert "dtype" not in answer_identity(str(tiny_model_dir), full)
    assert generate_key(answer_identity(str(tiny_model_dir), auto), prompts) != \
        generate_key(answer_identity(str(tiny_model_dir), full), prompts)
    cpu["flags"] = {"avx2"}
    assert answer_identity(str(tiny_model_dir), auto) == answer_identity(str(tiny_model_dir), full)  # no bf16 CPU


def test_stage_keys_change_with_the_precision(cpu, tmp_path):
    from safepref.evaluation.benign import BenignEvalConfig, benign_key
    from safepref.evaluation.safety import SafetyEvalConfig, safety_key
    from safepref.judges import judge_fingerprints
    from safepref.training.dpo import DPOTrainingConfig, train_key

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("{}\n")
    config = DPOTrainingConfig()
    assert train_key("w", pairs, config) == train_key("w", pairs, config, mixed=False)
    assert train_key("w", pairs, config, mixed=True) != train_key("w", pairs, config)
    safety = SafetyEvalConfig(judges=["harm-fast", "keyword"])
    assert safety_key("w", safety, "bfloat16") != safety_key("w", safety, "float32")
    benign = BenignEvalConfig()
    assert benign_key("w", "r", benign, [], "bfloat16") != benign_key("w", "r", benign, [])
    # the LM read's precision is part of the harm head's fingerprint, not of a head without an LM read
    auto, full = judge_fingerprints(["harm", "harm-fast"]), judge_fingerprints(["harm", "harm-fast"], "float32")
    assert auto["harm"] != full["harm"] and auto["harm-fast"] == full["harm-fast"]
    cpu["flags"] = {"avx2"}
    assert judge_fingerprints(["harm"]) == judge_fingerprints(["harm"], "float32")


def test_a_float32_call_does_not_reuse_answers_made_in_bfloat16(tmp_path):
    from safepref.core.io import AppendLog
    from safepref.core.records import response_id
    from safepref.generation.answer_reuse import answers_to_reuse

    row = {"prompt_id": "p1", "prompt": "Hello", "source": "m", "sample_index": -1, "text": "hi",
           "generation": {"mode": "greedy", "weights": "w", "dtype": "bfloat16"}}
    log = AppendLog(tmp_path / "a.jsonl", key_of=lambda r: response_id(r["prompt_id"], r["source"], r["sample_index"]))
    log.append([row])
    prompts = [Prompt(id="p1", text="Hello")]
    with pytest.raises(InputError, match="dtype 'bfloat16' there, 'float32' now"):
        answers_to_reuse(log, prompts, "m", {"mode": "greedy", "weights": "w"}, {-1})
    assert answers_to_reuse(log, prompts, "m", {"mode": "greedy", "weights": "w", "dtype": "bfloat16"}, {-1}) == {}


# ---------------------------------------------------------------------------------------------- where it runs


def test_generation_loads_bf16_weights_and_records_them(cpu, tiny_model_dir, tmp_path):
    from safepref.generation.generate import GenerationConfig, generate_responses

    rows = generate_responses([Prompt(id="p1", text="Say hello.")], str(tiny_model_dir), tmp_path / "a.jsonl",
                              GenerationConfig(greedy=True, max_new_tokens=4))
    assert rows and all(r.generation["dtype"] == "bfloat16" for r in rows)


def test_the_lm_read_in_bf16_stays_close_to_float32(cpu, tiny_model_dir):
    from safepref.judges.hidden_states import HiddenStateReader

    requests, answers = ["How do I bake bread?"] * 3, ["Mix flour and water.", "I can't help.", "Knead it well."]
    low = HiddenStateReader(str(tiny_model_dir), 2, 16, 16, dtype="auto")
    full = HiddenStateReader(str(tiny_model_dir), 2, 16, 16)  # training's reader: float32 unless told
    assert (low.dtype, full.dtype) == ("bfloat16", "float32")
    a, b = low.read(requests, answers), full.read(requests, answers)  # keyed apart: not served from each other
    assert a.dtype == b.dtype == "float32" and not (a == b).all()
    cosine = (a * b).sum(1) / (abs(a) ** 2).sum(1) ** 0.5 / (abs(b) ** 2).sum(1) ** 0.5
    assert cosine.min() > 0.99


def test_training_takes_mixed_precision_over_float32_weights(cpu, tiny_model_dir, tmp_path):
    from safepref.training.dpo import DPOTrainingConfig, _dpo_args, mixed_precision, train_dpo
    from tests.test_train import write_pairs

    config = DPOTrainingConfig(lora=True, learning_rate=1e-2, max_steps=2, batch_size=4, save_steps=100)
    assert mixed_precision(config, "cpu", "auto") and mixed_precision(config, "cpu", "bfloat16")
    assert not mixed_precision(config, "cpu", "float32")
    assert not mixed_precision(DPOTrainingConfig(bf16=True), "cpu", "auto")  # --bf16 keeps its own meaning
    with pytest.raises(InputError, match="float16"):
        mixed_precision(config, "cpu", "float16")
    assert _dpo_args(config, tmp_path, use_cpu=True, mixed=True).bf16
    cpu["flags"] = {"avx512_bf16", "amx_bf16"}  # another CPU, where bfloat16 training measured no faster
    cpu["speedups"]["training"] = 1.0
    assert not mixed_precision(config, "cpu", "auto")

    result = train_dpo(tiny_model_dir, write_pairs(tmp_path / "pairs.jsonl", 8), tmp_path / "out", config,
                       device="cpu", dtype="bfloat16")
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["precision"] == "bfloat16 autocast over float32 weights" and result.steps == 2
    assert math.isfinite(result.final_loss)
    identity = json.loads((tmp_path / "out" / "safepref-train-identity.json").read_text())
    assert identity["precision"] == "bfloat16 autocast"


def test_a_bf16_generation_model_scores_its_logits_in_float32(cpu, tiny_model_dir):
    from safepref.models.loading import load_model

    model = load_model(str(tiny_model_dir), dtype="auto", workload="generation")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits
        hidden = model.model(input_ids=ids).last_hidden_state
    assert model.dtype == torch.bfloat16 and logits.dtype == torch.float32
    reference = hidden.float() @ load_model(str(tiny_model_dir)).lm_head.weight.T
    assert torch.allclose(logits, reference, atol=1e-2)  # the float32 head on the bfloat16 states
    assert load_model(str(tiny_model_dir), dtype="auto", workload="lm_read").lm_head.weight.dtype == torch.bfloat16
