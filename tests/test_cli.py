"""The command line as a user meets it: piped tables keep whole names, listings speak JSON, repeated options."""

from __future__ import annotations

import json

from safepref.cli import spread_repeated_options
from safepref.models.loading import REGISTRY

from .conftest import run_cli


def test_piped_table_keeps_whole_names_at_80_columns():
    result = run_cli("models", "list", env={"COLUMNS": "80"})  # captured: stdout is not a terminal
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name, model in REGISTRY.items():
        assert sum(name in line for line in lines) == 1, (name, result.stdout)  # one row, not cut, not wrapped
        assert any(model.description in line for line in lines)
    assert "…" not in result.stdout
    assert max(len(line) for line in lines) > 80  # wider than the window it was told about


def test_listing_commands_print_one_json_document():
    listed = json.loads(run_cli("models", "list", "--json", env={"COLUMNS": "80"}).stdout)
    assert [row["name"] for row in listed["models"]] == list(REGISTRY)
    coder = next(row for row in listed["models"] if row["name"] == "qwen2.5-coder-0.5b-instruct")
    assert coder["model"].startswith("Qwen2.5-Coder-0.5B-Instruct")
    recipes = json.loads(run_cli("recipes", "--json").stdout)["recipes"]
    assert "self_rm" in {r["name"] for r in recipes}


def test_repeatable_option_takes_several_values_after_one_flag():
    typed = ["build", "--recipe", "self_rm", "--responses", "a.jsonl", "b.jsonl", "--scores", "s.jsonl", "--out", "o"]
    spread = ["build", "--recipe", "self_rm", "--responses", "a.jsonl", "--responses", "b.jsonl", "--scores",
              "s.jsonl", "--out", "o"]
    assert spread_repeated_options(typed) == spread
    assert spread_repeated_options(spread) == spread  # typer's own form is left as it is
    assert spread_repeated_options(["score", "--responses", "a", "b", "--batch-size", "4"]) == \
        ["score", "--responses", "a", "--responses", "b", "--batch-size", "4"]
    # a command with a positional argument keeps its words: a bare word there may be the argument
    assert spread_repeated_options(["models", "verify", "smollm2-135m-instruct", "gemma3-270m"]) == \
        ["models", "verify", "smollm2-135m-instruct", "gemma3-270m"]


def test_two_response_files_after_one_flag_reach_the_command(tmp_path):
    result = run_cli("score", "--responses", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out",
                     str(tmp_path / "s.jsonl"))
    assert result.returncode == 2 and "a.jsonl" in result.stderr  # the files are read (the first is missing) ...
    assert "unexpected extra argument" not in result.stderr.lower()  # ... not refused as an extra argument


def test_progress_labels_name_model_and_recipe_not_hashes(tmp_path):
    from safepref.models.loading import display_name, set_display_name

    trained = tmp_path / "stronger_self-1a5a0a9471a7-e605bfa41e28"  # how the runner names a trained model
    trained.mkdir()
    (trained / "train_summary.json").write_text(json.dumps(
        {"model": "smollm2-135m-instruct", "pairs": "run/pairs/smollm2-135m-instruct/stronger_self-1a5a0a9471a7.jsonl"}))
    assert display_name(trained) == "smollm2-135m-instruct DPO stronger_self"
    assert display_name(str(trained)) == display_name(trained)
    assert display_name("smollm2-135m-instruct") == "smollm2-135m-instruct"
    untrained = tmp_path / "my-model"
    untrained.mkdir()
    assert display_name(untrained) == "my-model"
    set_display_name(trained, "Stronger+Self, seed 2")  # what a run calls the model it trained
    assert display_name(str(trained)) == "Stronger+Self, seed 2"


def test_a_zero_token_budget_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "b.jsonl"
    out.write_text("")  # an existing file stays as it was
    result = run_cli("generate", "--source", "smollm2-135m-instruct", "--limit", "1", "--max-new-tokens", "0",
                     "--out", str(out))
    assert result.returncode == 2
    assert "max_new_tokens" in result.stderr and "Traceback" not in result.stderr
    assert out.read_text() == ""


def test_every_command_help_shows_an_example_of_itself():
    from typer.testing import CliRunner

    from safepref.cli import app

    runner = CliRunner()
    names = [command.name for command in app.registered_commands]
    assert {"run", "generate", "train", "eval-safety"} <= set(names)
    for name in names:
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert f"Example: safepref {name}" in result.output, f"`safepref {name} --help` shows no example"
