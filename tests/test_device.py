"""The device policy and the GPU-facing wiring, checked on the CPU: resolution and dtype choice (CUDA simulated),
tensors the decoder creates on the model's device, the model.generate engine, vLLM with its import faked, and the
accelerate command line the runner launches."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from safepref.core import device as policy
from safepref.core.errors import InputError
from safepref.core.records import Prompt
from safepref.generation.generate import GenerationConfig, choose_engine, generate_responses


def _prompts(n: int) -> list[Prompt]:
    return [Prompt(id=f"p{i}", text=f"Say something about the number {i}.") for i in range(n)]


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch reports two CUDA devices; ``bf16`` toggles whether they support bfloat16."""
    state = {"bf16": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: state["bf16"])
    return state


# ---------------------------------------------------------------------------------------------- resolution


def test_auto_is_the_cpu_in_float32_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    placement = policy.resolve_placement("auto", "auto")
    assert placement.device == torch.device("cpu") and placement.dtype == torch.float32
    assert placement.describe() == {"device": "cpu", "dtype": "float32"}


def test_auto_picks_cuda_and_explicit_indices_are_checked(fake_cuda):
    assert policy.resolve_device("auto") == torch.device("cuda", 0)
    assert policy.resolve_device("cuda") == torch.device("cuda", 0)
    assert policy.resolve_device("CUDA:1") == torch.device("cuda", 1)
    assert policy.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="cuda:2.*2 CUDA device"):
        policy.resolve_device("cuda:2")


def test_cuda_without_a_gpu_is_an_input_error_not_a_silent_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA device"):
        policy.resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda1", "mps", ""])
def test_unknown_device_names_the_choices(bad):
    with pytest.raises(InputError, match="auto.*cpu.*cuda:N"):
        policy.check_device(bad)


def test_dtype_policy_follows_measurement_and_size(fake_cuda):
    cuda = torch.device("cuda", 0)
    assert policy.choose_dtype(torch.device("cpu"), "auto", 7_000_000_000)[0] == torch.float32
    assert policy.choose_dtype(cuda, "auto", 135_000_000)[0] == torch.float32  # small: fp32 measured faster
    assert policy.choose_dtype(cuda, "auto", 7_000_000_000)[0] == torch.bfloat16
    assert policy.choose_dtype(cuda, "auto", None)[0] == torch.bfloat16  # size unknown: treat as large
    fake_cuda["bf16"] = False
    assert policy.choose_dtype(cuda, "auto", 7_000_000_000)[0] == torch.float16
    for name in ("float32", "bfloat16", "float16"):  # an explicit choice wins on every device
        assert policy.choose_dtype(torch.device("cpu"), name)[0] == getattr(torch, name)
    with pytest.raises(InputError, match="dtype 'fp8'"):
        policy.choose_dtype(cuda, "fp8")


def test_model_placement_counts_parameters_only_for_auto_on_cuda(tiny_model_dir, fake_cuda, monkeypatch):
    from safepref.models import loading as models
    counted = []
    real_count = models.parameter_count
    monkeypatch.setattr(models, "parameter_count", lambda path: counted.append(path) or real_count(path))
    assert models.placement_for(str(tiny_model_dir), "cpu", "auto").dtype == torch.float32
    assert models.placement_for(str(tiny_model_dir), "cuda", "bfloat16").dtype == torch.bfloat16
    assert counted == []  # the CPU path and an explicit dtype never build the skeleton
    placement = models.placement_for(str(tiny_model_dir), "cuda", "auto")
    assert counted and placement.dtype == torch.float32  # a tiny model: under the 1B threshold
    assert 0 < real_count(str(tiny_model_dir)) < 10_000_000


def test_load_model_honours_a_dtype_name_and_stays_on_the_cpu(tiny_model_dir):
    from safepref.models.loading import load_model

    model = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and model.device == torch.device("cpu")
    assert load_model(str(tiny_model_dir)).dtype == torch.float32  # the default is unchanged


# ---------------------------------------------------------------------------------------------- decoder


class _DecoderTensorFactories(TorchFunctionMode):
    """Records the ``device`` argument of every tensor factory called from safepref/generation/decode.py."""

    FACTORIES = {torch.tensor, torch.arange, torch.zeros, torch.ones, torch.full, torch.empty}

    def __init__(self) -> None:
        super().__init__()
        self.devices: list[object] = []

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        caller = sys._getframe(1).f_code.co_filename
        if func in self.FACTORIES and caller.endswith(str(Path("safepref", "generation", "decode.py"))):
            self.devices.append(kwargs.get("device"))
        return func(*args, **kwargs)


@pytest.mark.parametrize("greedy", [True, False])
def test_decoder_creates_every_tensor_and_generator_on_the_models_device(tiny_model_dir, monkeypatch, greedy):
    """The bug seen on an H100 ("index is on cpu"): tensors built without the model's device."""
    from safepref.generation import decode
    from safepref.models.loading import load_model, load_tokenizer

    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    generator_devices = []
    real_generator = decode.row_generator
    monkeypatch.setattr(decode, "row_generator",
                        lambda seed, device: generator_devices.append(device) or real_generator(seed, device))
    requests = [decode.DecodeRequest(key=i, prompt_ids=tokenizer(f"prompt {i} " * (i + 1))["input_ids"], seed=i)
                for i in range(5) for _ in range(2)]
    settings = GenerationConfig(max_new_tokens=5, greedy=greedy).sampling()
    with _DecoderTensorFactories() as mode:  # batch 3 < 10 rows: rows leave and new ones join mid-run
        answers = list(decode.decode(model, requests, settings, batch_size=3, stop_ids={tokenizer.eos_token_id},
                                     pad_id=tokenizer.pad_token_id))
    assert len(answers) == 10
    assert mode.devices and all(d == model.device for d in mode.devices), mode.devices
    assert generator_devices and all(d == model.device for d in generator_devices)


def test_engine_choice_is_measured_per_device():
    assert choose_engine("auto", torch.device("cpu")) == "decoder"
    assert choose_engine("auto", torch.device("cuda", 0)) == "generate"
    assert choose_engine("generate-static", torch.device("cpu")) == "generate-static"
    with pytest.raises(InputError, match="engine 'fast'"):
        choose_engine("fast", torch.device("cpu"))


def test_generate_engine_matches_the_decoder_on_greedy_and_records_where_it_ran(tiny_model_dir, tmp_path):
    prompts = _prompts(5)
    by_engine = {}
    for engine in ("decoder", "generate"):
        rows = generate_responses(prompts, str(tiny_model_dir), tmp_path / f"{engine}.jsonl",
                                  GenerationConfig(max_new_tokens=7, greedy=True, batch_size=2, engine=engine))
        by_engine[engine] = {r.prompt_id: r.text for r in rows}
        assert all(r.generation["device"] == "cpu" and r.generation["dtype"] == "float32" for r in rows)
        assert all(0 < r.n_tokens <= 7 for r in rows)
    assert by_engine["decoder"] == by_engine["generate"]


def test_generate_engine_samples_k_answers_per_prompt(tiny_model_dir, tmp_path):
    config = GenerationConfig(max_new_tokens=5, num_samples=3, batch_size=4, engine="generate")
    rows = generate_responses(_prompts(3), str(tiny_model_dir), tmp_path / "k.jsonl", config)
    assert sorted((r.prompt_id, r.sample_index) for r in rows) == [(f"p{i}", k) for i in range(3) for k in range(3)]
    assert all(r.generation["engine"] == "generate" for r in rows)


# ---------------------------------------------------------------------------------------------- vLLM


@pytest.fixture
def fake_vllm(monkeypatch, tiny_model_dir):
    """A stand-in ``vllm`` module that records what safepref hands it and answers with fixed token ids."""
    from transformers import AutoTokenizer

    calls: dict[str, list] = {"llm": [], "params": [], "generate": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            calls["params"].append(kwargs)
            self.n = kwargs["n"]

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"].append(kwargs)

        def get_tokenizer(self):
            return AutoTokenizer.from_pretrained(tiny_model_dir)

        def generate(self, texts, params):
            calls["generate"].append(texts)
            completion = types.SimpleNamespace
            return [types.SimpleNamespace(outputs=[completion(text=f" answer {k} ", token_ids=[1] * (k + 2))
                                                   for k in range(params.n)]) for _ in texts]

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    from safepref.generation import generate
    monkeypatch.setattr(generate, "_VLLM_ENGINES", {})
    return calls


def test_vllm_gets_every_sampling_setting_including_top_k(fake_vllm, tiny_model_dir, tmp_path):
    config = GenerationConfig(backend="vllm", num_samples=2, top_k=7, top_p=0.8, temperature=0.6,
                              repetition_penalty=1.3, max_new_tokens=9, seed=5, device="cpu")
    rows = generate_responses(_prompts(3), str(tiny_model_dir), tmp_path / "v.jsonl", config)
    assert fake_vllm["params"] == [{"n": 2, "max_tokens": 9, "seed": 5, "temperature": 0.6, "top_p": 0.8, "top_k": 7,
                                    "repetition_penalty": 1.3, "stop": []}]
    assert fake_vllm["llm"] == [{"model": str(tiny_model_dir), "seed": 5, "dtype": "float32"}]
    assert len(rows) == 6 and {r.text for r in rows} == {"answer 0", "answer 1"}
    assert all(r.generation["backend"] == "vllm" and r.generation["top_k"] == 7 for r in rows)
    assert all(r.generation["not_applied"] == ["no_repeat_ngram_size"] for r in rows)  # vLLM has no such option


def test_vllm_greedy_turns_every_filter_off_and_reuses_one_engine(fake_vllm, tiny_model_dir, tmp_path):
    for name in ("a", "b"):
        generate_responses(_prompts(2), str(tiny_model_dir), tmp_path / f"{name}.jsonl",
                           GenerationConfig(backend="vllm", greedy=True, device="cpu"))
    assert len(fake_vllm["llm"]) == 1  # the engine is kept between calls (eval-safety answers once per attack)
    params = fake_vllm["params"][0]
    assert (params["n"], params["temperature"], params["top_p"], params["top_k"], params["repetition_penalty"]) == \
           (1, 0.0, 1.0, -1, 1.0)


def test_eval_safety_answers_through_vllm_when_asked(fake_vllm, tiny_model_dir, tmp_path):
    from safepref.evaluation.safety import SafetyEvalConfig, evaluate_safety

    config = SafetyEvalConfig(limit=3, judges=["keyword"], max_new_tokens=8, backend="vllm", device="cpu")
    summary = evaluate_safety(str(tiny_model_dir), config, tmp_path / "safety")
    assert len(fake_vllm["generate"]) == 1 and len(fake_vllm["generate"][0]) == 3
    assert summary["results"][0]["n"] == 3
    rows = [json.loads(line) for path in (tmp_path / "safety").glob("responses-*.jsonl")
            for line in path.read_text().splitlines()]
    assert rows and all(row["generation"]["backend"] == "vllm" for row in rows)
    plain = SafetyEvalConfig(limit=3, judges=["keyword"])
    assert "backend" not in plain.key_dump() and "device" not in plain.key_dump()  # keys of existing runs stay
    assert config.key_dump()["backend"] == "vllm"


# ---------------------------------------------------------------------------------------------- accelerate


def _run_config(tmp_path: Path, model: str, **training) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps({"name": "t", "targets": [{"model": model}], "recipes": ["sft"],
                                "training": training, "device": "auto"}))
    return path


def test_launcher_decision_and_settings_validation(tmp_path, tiny_model_dir):
    from safepref.runner.run import load_config
    from safepref.training.launch import LaunchSettings

    auto = LaunchSettings()
    assert not auto.uses_accelerate(0) and not auto.uses_accelerate(1) and auto.uses_accelerate(2)
    assert LaunchSettings(launcher="accelerate").uses_accelerate(1)
    assert not LaunchSettings(launcher="in-process").uses_accelerate(8)
    config = load_config(_run_config(tmp_path, str(tiny_model_dir), launcher="accelerate", beta=0.2))
    assert config.training_for(config.targets[0]) == {"seed": 0, "beta": 0.2}  # no launch key reaches DPO
    assert config.launch_for(config.targets[0]).launcher == "accelerate"
    with pytest.raises(InputError, match="training"):
        load_config(_run_config(tmp_path, str(tiny_model_dir), launcher="slurm"))


def test_runner_launches_accelerate_with_every_setting_when_several_gpus_are_visible(tmp_path, tiny_model_dir,
                                                                                     monkeypatch):
    import subprocess

    from safepref.runner.run import Run, load_config
    from safepref.training import launch

    config = load_config(_run_config(tmp_path, str(tiny_model_dir), lora_dropout=0.05, logging_steps=3))
    launched = []

    def fake_accelerate(command, **kwargs):
        launched.append(command)
        out = Path(command[command.index("--out") + 1])
        (out / "train_summary.json").write_text(json.dumps({"final_loss": 0.5, "steps": 2}))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(launch.subprocess, "run", fake_accelerate)
    monkeypatch.setattr("safepref.runner.run.visible_gpus", lambda: 4)
    monkeypatch.setattr("safepref.runner.run.train_dpo", lambda *a, **k: pytest.fail("trained in-process"))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    result = Run(config, tmp_path / "run").train(config.targets[0], pairs)

    (command,) = launched
    assert command[:4] == [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    assert Path(command[4]) == launch.ACCELERATE_DIR / "multi_gpu.yaml" and Path(command[4]).is_file()  # LoRA: DDP
    assert command[5:11] == ["--num_processes", "4", "-m", "safepref", "train", "--model"]
    assert command[command.index("--pairs") + 1] == str(pairs)
    settings = json.loads(Path(command[command.index("--config") + 1]).read_text())
    assert settings["lora_dropout"] == 0.05 and settings["logging_steps"] == 3  # no CLI option: only the file has it
    assert result["steps"] == 2 and result["out_dir"] == command[command.index("--out") + 1]


def test_one_visible_gpu_trains_in_process_and_full_fine_tunes_need_deepspeed(tmp_path, tiny_model_dir, monkeypatch):
    from safepref.runner.run import Run, load_config
    from safepref.training.launch import LaunchSettings

    config = load_config(_run_config(tmp_path, str(tiny_model_dir)))
    trained = []

    def fake_train(model, pairs, out, cfg, device):
        trained.append(device)
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "train_summary.json").write_text(json.dumps({"final_loss": 0.6, "steps": 1}))

    monkeypatch.setattr("safepref.runner.run.visible_gpus", lambda: 1)
    monkeypatch.setattr("safepref.runner.run.train_dpo", fake_train)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    Run(config, tmp_path / "run").train(config.targets[0], pairs)
    assert trained == ["auto"]
    monkeypatch.setattr("safepref.training.launch.importlib.util.find_spec", lambda name: None)
    with pytest.raises(InputError, match="DeepSpeed"):
        LaunchSettings(launcher="accelerate").config_file(lora=False)


def test_train_command_reads_its_settings_from_a_json_file(tmp_path):
    from safepref.commands.train import _config_from_file

    good = tmp_path / "ok.json"
    good.write_text(json.dumps({"beta": 0.3, "lora_dropout": 0.1}))
    config = _config_from_file(good)
    assert config.beta == 0.3 and config.lora_dropout == 0.1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"betta": 0.3}))
    with pytest.raises(InputError, match="bad.json"):
        _config_from_file(bad)


def test_run_config_device_and_dtype_are_checked(tmp_path, tiny_model_dir):
    from safepref.runner.run import load_config

    path = tmp_path / "grid.yaml"
    base = {"name": "t", "targets": [{"model": str(tiny_model_dir)}], "recipes": ["sft"]}
    path.write_text(json.dumps({**base, "device": "cuda:1", "dtype": "bfloat16"}))
    config = load_config(path)
    assert (config.device, config.dtype) == ("cuda:1", "bfloat16")
    for key, bad in (("device", "gpu"), ("dtype", "fp8")):
        path.write_text(json.dumps({**base, key: bad}))
        with pytest.raises(InputError, match=key):
            load_config(path)
