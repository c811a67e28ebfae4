import json
from statistics import fmean

import pytest

from safepref.core.datasets import load_dataset
from safepref.core.errors import InputError
from safepref.evaluation import general as eval_general
from safepref.evaluation.general import DEFAULT_TASKS, evaluate_general, make_config

from .conftest import run_cli


@pytest.fixture(scope="module")
def tiny_results(tiny_model_dir, tmp_path_factory):
    """The tiny random model on every task, 4 questions each (one lm-eval run shared by several tests).

    Returns the out folder, the record, and lm-eval's own results as ``simple_evaluate`` returned them.
    """
    import lm_eval

    out = tmp_path_factory.mktemp("general-tiny")
    raw = []
    real = lm_eval.simple_evaluate
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lm_eval, "simple_evaluate", lambda *args, **kwargs: raw.append(real(*args, **kwargs)) or raw[-1])
        record = evaluate_general(str(tiny_model_dir), make_config(limit=4), out)
    assert len(raw) == 1
    return out, record, raw[0]


def test_every_task_reports_its_metric_stderr_and_chance(tiny_results):
    _, record, raw = tiny_results
    assert list(record["tasks"]) == list(DEFAULT_TASKS)
    for name, row in record["tasks"].items():  # the numbers are lm-eval's, under the task's leaderboard metric
        assert row["value"] == pytest.approx(raw["results"][name][f"{row['metric']},none"])
        stderr = raw["results"][name][f"{row['metric']}_stderr,none"]
        assert row["stderr"] == (pytest.approx(stderr) if isinstance(stderr, float) else None)
        if row["metric"] != "mc2":  # mc2 averages probabilities; the others are shares of 4 questions
            assert round(row["value"] * 4) == pytest.approx(row["value"] * 4)
    expected_metric = {"arc_easy": "acc_norm", "arc_challenge": "acc_norm", "hellaswag": "acc_norm", "mmlu": "acc",
                       "truthfulqa_mc2": "mc2", "winogrande": "acc"}
    for name, row in record["tasks"].items():
        assert row["metric"] == expected_metric[name]
        assert row["n"] == 4
        assert 0 <= row["value"] <= 1 and 0 <= row["stderr"] <= 1, (name, row)
        assert row["metrics"][row["metric"]] == {"value": row["value"], "stderr": row["stderr"]}
        assert 0 < row["chance"] < 1
        # each question's score, so that two models compare question by question: they average to the value
        assert len(row["per_question"]) == 4
        assert sum(row["per_question"].values()) / 4 == pytest.approx(row["value"])
        if row["metric"] != "mc2":
            assert set(row["per_question"].values()) <= {0.0, 1.0}
    assert record["tasks"]["arc_easy"]["metrics"]["acc"]["value"] is not None  # every metric lm-eval computed
    assert record["tasks"]["winogrande"]["chance"] == 0.5
    assert record["limit"] == 4 and record["num_fewshot"] == 0 and record["seed"] == 1234
    assert set(record["versions"]) >= {"lm_eval", "transformers", "torch"}
    assert record["versions"]["lm_eval"] == "0.4.13"


def test_rerun_with_same_model_and_config_reuses_the_results(tiny_model_dir, tiny_results, monkeypatch):
    import lm_eval

    out, record, _ = tiny_results

    def must_not_run(*args, **kwargs):
        raise AssertionError("lm-eval ran although the results were cached")

    monkeypatch.setattr(lm_eval, "simple_evaluate", must_not_run)
    assert evaluate_general(str(tiny_model_dir), make_config(limit=4), out) == record
    with pytest.raises(AssertionError, match="cached"):  # another config is another key
        evaluate_general(str(tiny_model_dir), make_config(limit=3), out)


def test_a_copied_model_folder_keeps_its_results(tiny_model_dir, tiny_results, tmp_path, monkeypatch):
    """The key is the model files' content: a moved or copied run folder does not run lm-eval again."""
    import shutil

    import lm_eval

    out, record, _ = tiny_results
    copy = shutil.copytree(tiny_model_dir, tmp_path / "moved-model")
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda *a, **k: pytest.fail("lm-eval ran for a copied folder"))
    assert evaluate_general(str(copy), make_config(limit=4), out)["key"] == record["key"]
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("{", '{"retrained": 1, ', 1))
    with pytest.raises(pytest.fail.Exception, match="copied folder"):  # other files are another key
        evaluate_general(str(copy), make_config(limit=4), out)


def test_lora_adapter_is_evaluated_on_its_base(tiny_model_dir, tiny_results, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # Random, scaled-up LoRA weights (also on lm_head: the tiny model's logits are nearly flat), so the
    # adapter visibly changes the log-likelihoods.
    adapted = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=["lm_head", "q_proj", "v_proj"],
                                              init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    adapted.save_pretrained(adapter_dir)
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)

    record = evaluate_general(str(adapter_dir), make_config(tasks=("truthfulqa_mc2",), limit=4), tmp_path / "out")
    assert record["adapter"] == str(adapter_dir) and record["pretrained"] == str(tiny_model_dir)
    mc2 = record["tasks"]["truthfulqa_mc2"]
    assert 0 <= mc2["value"] <= 1 and mc2["stderr"] is not None
    # The tiny model's scores barely move (its near-flat logits make mc2 pick the shortest answer either way), so
    # compare what lm-eval computed: the same requests got other log-likelihoods than on the bare base model.
    base_lls, adapter_lls = _cached_loglikelihoods(tiny_results[0]), _cached_loglikelihoods(tmp_path / "out")
    shared = base_lls.keys() & adapter_lls.keys()
    assert len(shared) == len(adapter_lls) > 0
    assert max(abs(base_lls[key][0] - adapter_lls[key][0]) for key in shared) > 1.0


def _cached_loglikelihoods(out_dir):
    """lm-eval's request cache of a run: request hash -> (log-likelihood, is_greedy)."""
    from sqlitedict import SqliteDict

    [db] = (out_dir / ".lm-eval-cache").glob("*.db")
    with SqliteDict(str(db)) as cache:
        return dict(cache.items())


def test_unknown_task_is_an_input_error_listing_known_tasks(tmp_path):
    result = run_cli("eval-general", "--model", "smollm2-135m-instruct", "--tasks", "arc_easy,gsm8k",
                     "--out", str(tmp_path))
    assert result.returncode == 2
    assert "unknown task 'gsm8k'" in result.stderr and "arc_challenge" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "general.json").exists()
    with pytest.raises(InputError, match="limit"):
        make_config(limit=0)


def test_chance_levels_come_from_the_data():
    rows = {row["task"]: row for row in eval_general.describe_tasks(("arc_challenge", "truthfulqa_mc2", "winogrande"))}
    truthfulqa = load_dataset("truthfulqa")
    expected_mc2 = fmean(sum(row["mc2_targets"].values()) / len(row["mc2_targets"]) for row in truthfulqa)
    assert rows["truthfulqa_mc2"]["questions"] == 817
    assert rows["truthfulqa_mc2"]["chance"] == pytest.approx(expected_mc2)
    expected_arc = fmean(1 / len(row["choices"]) for row in load_dataset("arc_challenge"))
    assert rows["arc_challenge"]["chance"] == pytest.approx(expected_arc)
    assert rows["winogrande"]["chance"] == 0.5 and rows["winogrande"]["metric"] == "acc"


def test_mmlu_limit_spans_subjects_and_shots_come_from_the_same_subject():
    task = eval_general.load_tasks(["mmlu"])["mmlu"]
    first = task.eval_docs.select(range(50))
    assert len(set(first["subject"])) >= 20  # not 50 questions of abstract_algebra
    doc = first[0]
    task.set_fewshot_seed(0)
    context = task.fewshot_context(doc, num_fewshot=2)
    subject_dev = [row for row in task.fewshot_docs() if row["subject"] == doc["subject"]]
    subject_dev.sort(key=lambda row: row["row"])
    assert context.startswith(f"The following are multiple choice questions (with answers) about "
                              f"{doc['subject'].replace('_', ' ')}.\n\n{subject_dev[0]['question'].strip()}\nA. ")
    assert subject_dev[1]["question"].strip() in context and subject_dev[2]["question"].strip() not in context
    assert context.endswith("D. " + doc["choices"][3] + "\nAnswer:")


@pytest.mark.integration
def test_real_smollm2_on_arc_easy_scores_above_chance(smollm2_dir, tmp_path):
    from safepref.core.stats import wilson_interval

    record = evaluate_general("smollm2-135m-instruct", make_config(tasks=("arc_easy",), limit=100), tmp_path)
    arc = record["tasks"]["arc_easy"]
    assert arc["n"] == 100 and arc["chance"] == pytest.approx(0.25, abs=0.01) and 0 < arc["stderr"] < 0.1
    # The first 100 ARC-Easy questions are fixed and the model deterministic: measured acc_norm 0.40 (40/100)
    # 0-shot here. Asserted: the 95% interval lies above chance (it does from 34 right answers on).
    low, _ = wilson_interval(round(arc["value"] * 100), 100)
    assert low > arc["chance"]


def test_lm_eval_gets_safeprefs_task_manager_not_its_default_index(tmp_path, monkeypatch):
    """Without a task manager ``simple_evaluate`` builds lm-eval's default one, indexing every bundled task YAML
    (~14 s a call on 2 cores); the one handed over reads safepref's task folder only."""
    from types import SimpleNamespace

    import lm_eval

    seen = {}

    def fake_simple_evaluate(**kwargs):
        seen.update(kwargs)
        return {"results": {}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_simple_evaluate)
    resolved = eval_general.ResolvedModel("model-dir", None, "model-dir", {"hub": "model-dir"})
    placement = SimpleNamespace(dtype_name="float32", device="cpu")
    eval_general._run_lm_eval(resolved, placement, {}, make_config(tasks=("arc_easy",), limit=2), tmp_path)
    manager = seen["task_manager"]
    assert str(manager.include_path) == str(eval_general.TASKS_DIR)
    assert "arc_easy" in manager.all_tasks and len(manager.all_tasks) < 100  # lm-eval's own index has thousands
    assert manager.metadata["pretrained"] == "model-dir"
