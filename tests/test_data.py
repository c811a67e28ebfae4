import pytest

from safepref.core.datasets import REGISTRY, load_dataset, prompt_id, saferlhf_prompts
from safepref.core.errors import InputError
from safepref.core.records import LabelledResponse, Pair, Prompt, Response, Template

from .conftest import run_cli


def test_every_bundled_dataset_loads_and_has_its_source():
    for entry in REGISTRY.values():
        assert entry.load(), entry.name
        folder = entry.paths[0].parent
        while not (folder / "SOURCE.md").exists():
            folder = folder.parent
        assert (folder / "SOURCE.md").stat().st_size > 0


def test_dataset_sizes_and_types():
    assert len(load_dataset("saferlhf")) == 500 and isinstance(load_dataset("saferlhf")[0], Pair)
    assert len(load_dataset("gpt4o-saferlhf")) == 201 and isinstance(load_dataset("gpt4o-saferlhf")[0], Response)
    assert len(load_dataset("advbench")) == 520 and isinstance(load_dataset("advbench")[0], Prompt)
    assert len(load_dataset("xstest")) == 450
    assert len(load_dataset("gptfuzz-train")) == 6160 and isinstance(load_dataset("gptfuzz-train")[0], LabelledResponse)
    assert len(load_dataset("gptfuzz-eval")) == 1540
    assert isinstance(load_dataset("jailbreak-templates")[0], Template)
    assert all(t.placeholder in t.text for t in load_dataset("gptfuzz-templates"))
    assert len(load_dataset("hh-harmless")) > 2250


def test_gpt4o_answers_join_saferlhf_prompts():
    prompts = {p.id for p in saferlhf_prompts()}
    assert len(prompts) == 391
    answered = {r.prompt_id for r in load_dataset("gpt4o-saferlhf")}
    assert len(answered) == 180 and answered <= prompts
    assert prompt_id("  hello ") == prompt_id("hello")


def test_hh_pairs_share_the_conversation_before_the_answer():
    pair = load_dataset("hh-harmless")[0]
    assert pair.prompt[-1].role == "user" and pair.chosen_text != pair.rejected_text


def test_unknown_dataset_is_exit_2_one_line():
    result = run_cli("data", "show", "no-such-dataset")
    assert result.returncode == 2
    assert "unknown dataset 'no-such-dataset'" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_data_list_prints_rows_and_license():
    result = run_cli("data", "list")
    assert result.returncode == 0, result.stderr
    assert "saferlhf" in result.stdout and "6,160" in result.stdout and "MIT" in result.stdout


def test_get_unknown_raises_input_error():
    from safepref.core.datasets import get_dataset

    with pytest.raises(InputError):
        get_dataset("x")
