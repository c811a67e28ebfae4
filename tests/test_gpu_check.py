"""scripts/gpu_check.py on the CPU: it runs the stages through safepref's code and reports the CPU as the CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_run_reports_the_cpu_and_every_requested_stage(gpu_check, tmp_path, capsys, smollm2_dir):
    if torch.cuda.is_available():
        pytest.skip("this test checks the report of a machine without CUDA")
    out = tmp_path / "report.json"
    gpu_check.main(["--tiny", "--prompts", "2", "--samples", "2", "--max-new-tokens", "3", "--batch-size", "4",
                    "--stages", "generate,audit,score", "--json", str(out)])
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "no CUDA device visible" in report["machine"] and report["machine"] in printed
    assert report["placement"] == {"device": "cpu", "dtype": "float32"}
    stages = [row["stage"] for row in report["stages"]]
    assert stages == ["plain model.generate (warmed)", "safepref generate (decoder)", "safepref generate (generate)",
                      "audit hidden states", "score (HF reward model)"]
    for row in report["stages"]:
        assert row["device"] == "cpu" and row["peak_gpu_mib"] is None  # no GPU figure is made up on a CPU
        assert row["rate"] > 0 and row["seconds"] > 0
    ratios = {row["stage"]: row["vs_plain_generate"] for row in report["stages"]}
    assert ratios["plain model.generate (warmed)"] == 1.0 and ratios["audit hidden states"] is None
    assert all(row["stage"] in printed for row in report["stages"])


@pytest.mark.integration
def test_cpu_run_of_every_stage(gpu_check, tmp_path, smollm2_dir):
    report = gpu_check.main(["--tiny", "--prompts", "2", "--samples", "2", "--max-new-tokens", "3",
                             "--batch-size", "4", "--train-steps", "1"])
    assert len(report["stages"]) == 9 and all(row["device"] == "cpu" for row in report["stages"])


def test_exported_architecture_runs_without_the_bundled_packages(gpu_check, tmp_path, monkeypatch, smollm2_dir):
    """The GPU machine has configs and tokenizers only: the check builds both random-weight models from them."""
    arch = tmp_path / "arch"
    gpu_check.main(["--export-architecture", str(arch)])
    assert (arch / "lm" / "tokenizer.json").is_file() and (arch / "embedder" / "1_Pooling" / "config.json").is_file()
    assert not list(arch.rglob("*.safetensors"))  # configs and tokenizers only, nothing the size of weights
    monkeypatch.setattr(gpu_check.models, "prepare_model", lambda name: pytest.fail(f"bundled {name} was loaded"))
    report = gpu_check.main(["--architecture", str(arch), "--tiny", "--prompts", "2", "--samples", "2",
                             "--max-new-tokens", "2", "--batch-size", "4", "--repeats", "1",
                             "--stages", "embed", "--engines", ""])
    embed = [row for row in report["stages"] if row["stage"].startswith("embed")]
    assert len(embed) == 1 and "error" not in embed[0] and embed[0]["rate"] > 0


def test_a_failing_stage_is_reported_and_the_others_still_run(gpu_check, monkeypatch, smollm2_dir):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image is available")

    stages = tuple((name, unit, broken if name == "audit" else check) for name, unit, check in gpu_check.OTHER_STAGES)
    monkeypatch.setattr(gpu_check, "OTHER_STAGES", stages)
    report = gpu_check.main(["--tiny", "--prompts", "2", "--samples", "2", "--max-new-tokens", "2", "--batch-size", "4",
                             "--repeats", "1", "--stages", "audit,score", "--engines", ""])
    by_stage = {row["stage"]: row for row in report["stages"]}
    assert by_stage["audit"]["error"] == "RuntimeError: no kernel image is available"
    assert "error" not in by_stage["score (HF reward model)"] and by_stage["score (HF reward model)"]["rate"] > 0
