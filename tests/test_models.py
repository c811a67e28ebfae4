import shutil

import pytest

from safepref.core.errors import InputError
from safepref.models import loading as models

from .conftest import run_cli


def test_unknown_model_name_is_input_error():
    with pytest.raises(InputError, match="unknown model"):
        models.resolve_model_path("no-such-model")


def test_local_folder_and_hub_id_resolve(tiny_model_dir):
    assert models.resolve_model_path(tiny_model_dir) == str(tiny_model_dir)
    assert models.resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_tokenizer_pads_left_with_pad_token(tiny_model_dir):
    tokenizer = models.load_tokenizer(tiny_model_dir)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


def test_bad_sha256_fails_with_file_name(tmp_path, monkeypatch):
    fake = tmp_path / "fake_pkg"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "model.gguf").write_bytes(b"not the model")
    monkeypatch.syspath_prepend(str(tmp_path))
    bad = models.BundledModel("fake", "test", "0", "fake", (("fake_pkg", "model.gguf"),), "0" * 64)
    monkeypatch.setitem(models.REGISTRY, "fake", bad)
    with pytest.raises(InputError, match="sha256 mismatch") as info:
        models.verify_model("fake")
    assert "model.gguf" in str(info.value)
    (fake / "model.gguf").unlink()
    with pytest.raises(InputError, match="file missing"):
        models.verify_model("fake")


def test_verify_cli_reports_every_bundled_model_ok():
    result = run_cli("models", "verify")
    assert result.returncode == 0, result.stderr
    for name in models.REGISTRY:
        assert name in result.stdout
    assert result.stdout.count("ok") >= len(models.REGISTRY) and "failed" not in result.stdout


def test_unknown_model_cli_exit_2():
    result = run_cli("models", "verify", "nope")
    assert result.returncode == 2 and "unknown model 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_interrupted_preparation_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEPREF_HOME", str(tmp_path))
    folder = models.prepared_dir("smollm2-135m-instruct")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # a half-written folder without the ready marker
    assert not models.is_prepared("smollm2-135m-instruct")

    def crash(model, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        models.prepare_model("smollm2-135m-instruct")
    assert not models.is_prepared("smollm2-135m-instruct")
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".") and p.is_dir()] == []
    shutil.rmtree(tmp_path / "models")


@pytest.mark.integration
def test_real_smollm2_generates_from_prepared_folder(smollm2_dir):
    import torch

    assert (smollm2_dir / models.READY_MARKER).exists()
    tokenizer = models.load_tokenizer("smollm2-135m-instruct")
    model = models.load_model("smollm2-135m-instruct")
    assert not getattr(model, "is_quantized", False) and model.dtype == torch.float32
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
