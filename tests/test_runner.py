import json
import shutil
import sys
from pathlib import Path

import pytest

from safepref.audit import AuditConfig, audit_pairs
from safepref.bundle import read_manifest
from safepref.core.errors import InputError
from safepref.core.io import read_pairs
from safepref.models.loading import display_name
from safepref.runner.run import load_config, run_experiment

from .conftest import run_cli, tiny_grid_config


def _config(folder: Path, model_dir: Path, **overrides) -> Path:
    return tiny_grid_config(folder, model_dir, name="tiny", **overrides)


def test_unknown_key_names_the_key(tmp_path, tiny_model_dir):
    path = _config(tmp_path, tiny_model_dir, safety={"suites": ["advbench"], "judgez": ["keyword"]})
    with pytest.raises(InputError) as info:
        load_config(path)
    assert info.value.field == "safety.judgez" and "unknown key" in str(info.value)
    result = run_cli("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "safety.judgez" in result.stderr and "Traceback" not in result.stderr


def test_unknown_recipe_is_an_error(tmp_path, tiny_model_dir):
    with pytest.raises(InputError, match="no_such_recipe"):
        load_config(_config(tmp_path, tiny_model_dir, recipes=["sft", "no_such_recipe"]))


def test_target_training_overrides_the_top_level(tmp_path, tiny_model_dir):
    target = {"model": str(tiny_model_dir), "peers": [], "training": {"learning_rate": 2e-5}}
    config = load_config(_config(tmp_path, tiny_model_dir, targets=[target]))
    merged = config.training_for(config.targets[0])
    assert merged["learning_rate"] == 2e-5 and merged["max_steps"] == 2 and merged["seed"] == 0

    target["training"] = {"learnin_rate": 2e-5}
    with pytest.raises(InputError) as info:
        load_config(_config(tmp_path, tiny_model_dir, targets=[target]))
    assert info.value.field == "targets[0].training.learnin_rate" and "unknown key" in str(info.value)


def test_safety_limits_and_attacks_may_be_given_per_suite(tmp_path, tiny_model_dir):
    safety = {"suites": ["advbench", "jbb"], "limit": {"advbench": 50}, "judges": ["keyword"],
              "attacks": {"jbb": ["none", "jbb-attacks:PAIR"]}}
    spec = load_config(_config(tmp_path, tiny_model_dir, safety=safety)).safety
    assert (spec.limit_for("advbench"), spec.limit_for("jbb")) == (50, None)  # jbb in full
    assert spec.attacks_for("jbb") == ["none", "jbb-attacks:PAIR"] and spec.attacks_for("advbench") == ["none"]
    with pytest.raises(InputError) as info:
        load_config(_config(tmp_path, tiny_model_dir, safety={**safety, "limit": {"advbench": 0}}))
    assert info.value.field == "safety.limit"
    shipped = load_config(Path(__file__).resolve().parents[1] / "configs" / "quick-seeds.yaml")
    assert shipped.training_seeds() == [0, 1] and shipped.safety.attacks_for("jbb")[-1] == "jbb-attacks:PAIR"


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_model_dir):
    """The tiny grid run once: (config path, run folder, results.json, what run_experiment returned)."""
    folder = tmp_path_factory.mktemp("grid")
    path = _config(folder, tiny_model_dir)
    run_dir = folder / "run"
    paths = run_experiment(path, run_dir)
    return path, run_dir, json.loads((run_dir / "results.json").read_text()), paths


def test_grid_runs_reports_and_reruns_from_cache(grid, tiny_model_dir, monkeypatch):
    path, run_dir, results, paths = grid
    rows = results["targets"][tiny_model_dir.name]
    assert list(rows) == ["sft", "gpt4o_self", "self_rm"]
    for name, row in rows.items():
        asr = row["safety"][0]
        assert asr["judge"] == "keyword" and asr["n"] == 4 and len(asr["asr_ci95"]) == 2
        if name != "sft":
            assert row["training"]["steps"] == 2 and row["training"]["dynamics"]
    # the runner audits the pairs it built: its numbers are that file's audit, and GPT-4o's long answers (chosen)
    # against the tiny model's 8-token ones (rejected) show in the length cue
    [pairs_file] = (run_dir / "pairs").rglob("gpt4o_self-*.jsonl")
    direct = audit_pairs(read_pairs(pairs_file), AuditConfig(features=["shallow"], folds=2, seed=0))
    audit = rows["gpt4o_self"]["audit"]
    assert audit["n_pairs"] == direct["n_pairs"] == 6
    assert audit["features"]["shallow"]["accuracy"] == direct["features"]["shallow"]["accuracy"]
    length = {c["cue"]: c for c in direct["features"]["shallow"]["cues"]}["length_words"]
    assert length["rejected_mean"] <= 8 < 20 < length["chosen_mean"]
    # every configuration of the target trains on exactly the configured prompts (the manifest says which)
    data = [row["data"] for row in rows.values() if "data" in row]
    assert len(data) == 2 and {(d["n_prompts"], d["prompt_set"]) for d in data} == \
        {(6, results["training_prompt_set"])}
    assert not any("prompt sets" in warning for warning in results["warnings"][tiny_model_dir.name])
    # progress bars and log lines name a trained model by its recipe and seed, not by its hashed folder
    trained = json.loads((run_dir / "manifest.json").read_text())["targets"][tiny_model_dir.name]["self_rm"]
    assert display_name(trained["training"]["out_dir"]) == "Self+RM, seed 0"
    page = (run_dir / "report.html").read_text()
    assert page.count("<img") >= 2 and "data:image/png;base64," in page and "GPT4o+Self" in page
    assert paths["report"] == str(run_dir / "report.html")
    summary = (run_dir / "summary.md").read_text().splitlines()
    header = ("| configuration | ASR keyword (human agreement 0.67 [0.66, 0.67], lowest source 0.31), advbench (n=4) "
              "| probe accuracy, shallow "
              "| DPO loss, last quarter (steps) |")  # each judge's measured agreement beside its column
    assert header in summary
    # a row per configuration in the headline table, the benign-quality table, the harmful-answers table and the
    # table beside the paper's published figures, and one per trained configuration (SFT has no pairs; SFT is the
    # baseline) in the pair-diagnostics table and the table of each configuration against SFT
    assert sum(line.startswith(("| SFT |", "| GPT4o+Self |", "| Self+RM |")) for line in summary) == 3 * 4 + 2 + 2
    # the paper's ASR check is paired: every configuration answered the same 4 prompts
    [asr_check] = [line for line in summary if line.startswith("- Self+RM has lower ASR")]
    assert "McNemar p" in asr_check and "could detect" in asr_check and "only under Self+RM" in asr_check
    against_sft = [line for line in summary if line.startswith("| Self+RM | advbench | none | keyword |")]
    assert len(against_sft) == 1 and "unpaired" not in against_sft[0]
    # ASR (one judge), separability, final loss, and the check that names configurations whose answers collapsed
    assert len(results["paper_checks"][tiny_model_dir.name]) == 4
    assert all(row["benign"]["n"] == 4 and row["benign"]["harmful"][0]["suite"] == "advbench" for row in rows.values())
    assert rows["sft"]["benign"]["win_rate_vs_reference"] == 0.5  # SFT against its own answers: all ties
    assert "Answer quality on benign prompts:" in summary
    answer_files = [f for f in (run_dir / "benign" / "answers").glob("answers-*.jsonl") if ".scores." not in f.name]
    assert len(answer_files) == 3  # one per configuration: SFT's answers are made once and are the others' reference

    # a rerun of the same config reuses every artifact: nothing is generated, trained or evaluated again
    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached stage ran again")

    monkeypatch.setattr("safepref.runner.run.train_dpo", must_not_run)
    monkeypatch.setattr("safepref.runner.run.evaluate_safety", must_not_run)
    monkeypatch.setattr("safepref.models.loading.load_model", must_not_run)
    clock = iter(range(0, 10**6, 5))  # every cached step now seems to take 5 s: it must not replace the real timing
    monkeypatch.setattr("safepref.runner.run.time.perf_counter", lambda: next(clock))
    run_experiment(path, run_dir)
    rerun = json.loads((run_dir / "results.json").read_text())
    assert rerun["targets"] == results["targets"] and rerun["timings"] == results["timings"]


def test_report_renders_in_a_browser(request, tmp_path):
    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the report was not rendered")
    grid = request.getfixturevalue("grid")
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from screenshot_report import is_blank, screenshot

    png = screenshot(grid[1] / "report.html", tmp_path / "report.png")
    assert png.stat().st_size > 10_000 and not is_blank(png)


def _row(label, group, asr, n=100, accuracy=None, final_loss=None):
    from safepref.core.stats import wilson_interval

    row = {"label": label, "group": group,
           "safety": [{"attack": "none", "judge": "classifier", "suite": "advbench", "n": n, "asr": asr,
                       "asr_ci95": list(wilson_interval(round(asr * n), n))}]}
    if accuracy is not None:
        probe = {"accuracy": accuracy, "accuracy_ci": [accuracy - 0.05, accuracy + 0.05], "control_accuracy": 0.5}
        row["audit"] = {"n_pairs": 40, "features": {"embed": probe}}
    if final_loss is not None:
        row["training"] = {"final_loss": final_loss, "late_loss": final_loss, "steps": 10, "dynamics": []}
    return row


def test_late_loss_averages_the_last_quarter_of_steps():
    from safepref.report import late_loss

    dynamics = [{"step": i, "loss": loss} for i, loss in enumerate([0.69] * 9 + [0.3, 0.6, 0.0])]
    assert abs(late_loss(dynamics) - 0.3) < 1e-9  # 12 steps: the last 3, not the lucky last one
    assert abs(late_loss(dynamics * 2) - (0.69 * 3 + 0.9) / 6) < 1e-9  # 24 steps: the last 6
    assert late_loss([{"step": 1, "grad_norm": 1.0}]) is None


def test_rate_of_one_draws_without_a_negative_error_bar():
    from safepref.report import asr_figure, separability_figure

    rows = {"sft": _row("SFT", "sft", 1.0), "gpt4o_self": _row("GPT4o+Self", "multi", 1.0, accuracy=0.9),
            "self_rm": _row("Self+RM", "rm", 0.97, n=33, accuracy=0.6)}
    assert asr_figure("t", rows, "none", "advbench").startswith("data:image/png;base64,")
    assert separability_figure("t", rows, "classifier", "embed").startswith("data:image/png;base64,")


def test_asr_figure_counts_n_of_its_own_suite_only(monkeypatch):
    import safepref.report.figures as figures

    titles = []
    monkeypatch.setattr(figures, "_figure_to_data_uri", lambda figure: titles.append(figure.axes[0].get_title()) or "")
    rows = {"sft": _row("SFT", "sft", 0.5), "self_rm": _row("Self+RM", "rm", 0.2)}
    for row in rows.values():
        row["safety"].append(dict(row["safety"][0], suite="xstest", n=50))
    figures.asr_figure("t", rows, "none", "advbench")
    assert "(n=100 prompts" in titles[0]


def test_paper_checks_without_per_prompt_verdicts_compare_unpaired_and_say_so():
    from safepref.report import paper_checks

    rows = {"sft": _row("SFT", "sft", 0.5),
            "gpt4o_self": _row("GPT4o+Self", "multi", 0.60, accuracy=0.85, final_loss=0.1),
            "stronger_self": _row("Stronger+Self", "multi", 0.55, accuracy=0.80, final_loss=0.2),
            "self_rm": _row("Self+RM", "rm", 0.20, accuracy=0.60, final_loss=0.6)}
    asr, separability, loss = paper_checks(rows)
    assert asr["verdict"] == "holds" and asr["self_rm"] == 0.20
    assert all(c["difference_ci95"][0] > 0 and not c["paired"] and "not found" in c["note"]
               for c in asr["comparisons"])
    assert separability["verdict"] == "holds" and loss["verdict"] == "holds"

    rows["stronger_self"] = _row("Stronger+Self", "multi", 0.25, accuracy=0.55, final_loss=0.7)  # gap inside the noise
    asr, separability, loss = paper_checks(rows)
    assert asr["verdict"].startswith("mixed: GPT4o+Self holds; Stronger+Self ")
    assert separability["verdict"] == "direction only" and loss["verdict"] == "direction only"

    rows["gpt4o_self"] = _row("GPT4o+Self", "multi", 0.19, accuracy=0.5, final_loss=0.9)
    rows["stronger_self"] = _row("Stronger+Self", "multi", 0.20, accuracy=0.5, final_loss=0.9)  # a tie, not a reversal
    verdicts = [check["verdict"] for check in paper_checks(rows)]
    assert verdicts[0].startswith("no measurable difference (could detect 0.1") and verdicts[1:] == ["reversed"] * 2
    rows["stronger_self"] = _row("Stronger+Self", "multi", 0.05)
    rows["gpt4o_self"] = _row("GPT4o+Self", "multi", 0.05)
    assert paper_checks(rows)[0]["verdict"] == "reversed"
    assert paper_checks({"sft": rows["sft"], "self_rm": rows["self_rm"]}) == []


def test_paper_checks_correlate_separability_with_asr_across_configurations():
    from safepref.report import paper_checks
    from safepref.report.render import checks_markdown

    def with_harm(row, harm_asr):  # the harm judge's ASR beside the classifier's: the correlation reads harm's
        row["safety"].append(dict(row["safety"][0], judge="harm", asr=harm_asr))
        return row

    # probe accuracy and harm ASR in the same order; the classifier's ASR in another; SFT (no pairs) left out
    accuracies = {"hc_self": 0.70, "gpt4o_self": 0.85, "stronger_self": 0.80, "peer_rm": 0.65, "self_rm": 0.60}
    harm = {"hc_self": 0.30, "gpt4o_self": 0.50, "stronger_self": 0.40, "peer_rm": 0.25, "self_rm": 0.20}
    classifier = {"hc_self": 0.50, "gpt4o_self": 0.10, "stronger_self": 0.45, "peer_rm": 0.30, "self_rm": 0.35}

    def rows_of(harm_asr, names=tuple(accuracies)):
        rows = {"sft": with_harm(_row("SFT", "sft", 0.9, accuracy=0.99), 0.9)}
        rows.update({name: with_harm(_row(name, "multi", classifier[name], accuracy=accuracies[name]), harm_asr[name])
                     for name in names})
        return rows

    def correlation(rows):
        found = [c for c in paper_checks(rows) if c["claim"].startswith("more separable pairs go with higher ASR")]
        return found[0] if found else None

    check = correlation(rows_of(harm))
    # n = 5, rho = 1 (clipped to 0.9999): atanh 4.95 -/+ 1.96 x sqrt(1.5 / 2) gives [0.997, 1.000], above 0
    assert check["verdict"] == "holds" and check["correlation"]["rho"] == pytest.approx(1.0)
    assert check["correlation"]["ci95"][0] == pytest.approx(0.997, abs=1e-3)
    assert check["claim"] == ("more separable pairs go with higher ASR (Spearman rank correlation across 5 configurations, "
                              "probe accuracy (embed features) against harm ASR (advbench))")
    assert [p["configuration"] for p in check["points"]] == ["self_rm", "peer_rm", "hc_self", "stronger_self",
                                                             "gpt4o_self"]  # by accuracy, SFT not among them
    [line] = [line for line in checks_markdown(paper_checks(rows_of(harm))) if "more separable pairs go" in line]
    assert "**holds**" in line and "Spearman rho 1.00, 95% CI [1.00, 1.00]" in line and "gpt4o_self 0.85 / 0.50" in line

    swapped = dict(harm, hc_self=0.40, stronger_self=0.30)  # one adjacent pair swapped: rho 0.9, interval holds 0
    assert correlation(rows_of(swapped))["verdict"] == "direction only"
    assert correlation(rows_of({name: 1 - value for name, value in harm.items()}))["verdict"] == "reversed"
    flat = dict(harm, self_rm=0.40, gpt4o_self=0.20)  # rho -0.1
    assert correlation(rows_of(flat))["verdict"] == "no evidence of a relation"
    without_harm = rows_of(harm)
    for row in without_harm.values():
        row["safety"] = row["safety"][:1]  # no harm judge: the first judge the ASR check reads (classifier)
    assert "against classifier ASR" in correlation(without_harm)["claim"]
    # 4 in perfect order: the interval excludes 0, but 2 of the 24 orderings are as extreme (p 0.083): not decided
    four = correlation(rows_of(harm, names=("hc_self", "gpt4o_self", "stronger_self", "self_rm")))
    assert four["correlation"]["ci95"][0] > 0 and four["verdict"] == "direction only"
    # 3 trained configurations: too few for the interval, so no such check
    assert correlation(rows_of(harm, names=("hc_self", "gpt4o_self", "self_rm"))) is None


@pytest.fixture(scope="module")
def other_tiny_model_dir(tmp_path_factory, tiny_model_dir):
    """Another random model of the same shape: a 'stronger' source whose answers differ from the target's."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("other-tiny-model")
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_model_dir)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def test_grid_with_mitigations_debiases_between_build_and_train(tmp_path, tiny_model_dir, other_tiny_model_dir,
                                                                monkeypatch):
    from safepref.core.io import read_pairs

    target = {"model": str(tiny_model_dir), "stronger": str(other_tiny_model_dir), "peers": []}
    recipes = ["gpt4o_self", "gpt4o_self_rewrite", "gpt4o_self_wpo", "stronger_self", "stronger_self_filter"]
    path = _config(tmp_path, tiny_model_dir, targets=[target], recipes=recipes,
                   prompts={"dataset": "saferlhf", "require": ["gpt4o"], "limit": 10})
    run_dir = tmp_path / "run"
    run_experiment(path, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    entries = manifest["targets"][tiny_model_dir.name]
    assert entries["gpt4o_self_rewrite"]["base"] == "gpt4o_self" and "debias" not in entries["gpt4o_self_wpo"]
    original = {p.id: p for p in read_pairs(entries["gpt4o_self"]["pairs"])}
    rewritten = read_pairs(entries["gpt4o_self_rewrite"]["pairs"])
    assert rewritten and all(p.debias["rewritten"] and p.debias["original_chosen"] == original[p.id].chosen_text
                             for p in rewritten)
    filtered = read_pairs(entries["stronger_self_filter"]["pairs"])
    n_stronger = len(read_pairs(entries["stronger_self"]["pairs"]))
    # random models' answers may leave the cues nothing to give away: then nothing is dropped, and that is said
    filter_summary = json.loads(Path(entries["stronger_self_filter"]["debias"]).read_text())
    assert 0.4 * n_stronger <= len(filtered) <= n_stronger and all(p.debias["method"] == "filter" for p in filtered)
    assert filter_summary["n_out"] == len(filtered) == n_stronger - len(filter_summary["dropped"])
    wpo = json.loads(Path(entries["gpt4o_self_wpo"]["training"]["summary"]).read_text())
    assert wpo["config"]["weighting"] == "wpo" and "weighting" not in json.loads(
        Path(entries["gpt4o_self"]["training"]["summary"]).read_text())["config"]
    # the WPO variant trains on the very pairs file of its original (built once)
    assert entries["gpt4o_self_wpo"]["pairs"] == entries["gpt4o_self"]["pairs"]

    results = json.loads((run_dir / "results.json").read_text())
    comparisons = results["mitigations"][tiny_model_dir.name]
    assert [(c["configuration"], c["original"]) for c in comparisons] == [
        ("GPT4o+Self+rewrite", "GPT4o+Self"), ("GPT4o+Self+WPO", "GPT4o+Self"), ("Stronger+Self+filter", "Stronger+Self")]
    for comparison in comparisons:
        asr = comparison["asr"][0]
        low, high = asr["difference_ci95"]
        assert asr["n"] == 4 and -1 <= low <= asr["difference"] <= high <= 1
        assert set(comparison["separability"]) == {"shallow"}
    summary = (run_dir / "summary.md").read_text()
    assert "### Mitigations" in summary and "| Stronger+Self+filter (vs Stronger+Self) |" in summary
    assert f"{len(filtered)}/{n_stronger} (filter)" in summary
    assert "Mitigations: each debiased configuration" in (run_dir / "report.html").read_text()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached stage ran again")

    monkeypatch.setattr("safepref.runner.run.debias_pairs", must_not_run)
    monkeypatch.setattr("safepref.runner.run.train_dpo", must_not_run)
    monkeypatch.setattr("safepref.runner.run.evaluate_safety", must_not_run)
    run_experiment(path, run_dir)
    assert json.loads((run_dir / "results.json").read_text())["mitigations"] == results["mitigations"]


def test_seeds_train_each_configuration_per_seed_and_seed_zero_keeps_its_keys(tmp_path, tiny_model_dir, monkeypatch):
    path = _config(tmp_path, tiny_model_dir, recipes=["sft", "self_rm"], seeds=[0, 1], benign=None, audit=None)
    run_dir = tmp_path / "run"
    run_experiment(path, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    entries = manifest["targets"][tiny_model_dir.name]
    assert manifest["seeds"] == [0, 1] and "seeds" not in entries["sft"]  # SFT is not trained: evaluated once
    seeds = entries["self_rm"]["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1]
    assert seeds[0]["training"] == entries["self_rm"]["training"]  # the first seed stays where one seed would be
    assert seeds[0]["training"]["out_dir"] != seeds[1]["training"]["out_dir"]
    trained = [json.loads(Path(s["training"]["summary"]).read_text()) for s in seeds]
    assert [t["seed"] for t in trained] == [0, 1]
    assert {label for label in manifest["timings"] if label.startswith("train ")} == {
        f"train {tiny_model_dir.name} self_rm seed 0", f"train {tiny_model_dir.name} self_rm seed 1"}
    results = json.loads((run_dir / "results.json").read_text())
    [asr] = results["targets"][tiny_model_dir.name]["self_rm"]["safety"]
    assert [s["seed"] for s in asr["seeds"]] == [0, 1] and asr["n"] == 4
    assert "per seed (95% Wilson CI)" in (run_dir / "report.html").read_text()
    # every seed's evaluated model is evidence in the bundle: the first where one seed would be, the others beside
    record = read_manifest(run_dir / "bundle").targets[tiny_model_dir.name]["self_rm"]
    assert record.complete and record.seed == 0 and [s.seed for s in record.seeds] == [1]
    assert record.seeds[0].files["safety"] != record.files["safety"] and record.seeds[0].training["seed"] == 1

    # the same grid with one seed (0) finds everything trained: seed 0's keys are the single-seed run's
    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached stage ran again")

    monkeypatch.setattr("safepref.training.dpo.train_dpo", must_not_run)
    monkeypatch.setattr("safepref.evaluation.safety.evaluate_safety", must_not_run)
    single = _config(tmp_path, tiny_model_dir, recipes=["sft", "self_rm"], benign=None, audit=None)
    run_experiment(single, run_dir)
    again = json.loads((run_dir / "manifest.json").read_text())["targets"][tiny_model_dir.name]["self_rm"]
    assert again["training"]["out_dir"] == seeds[0]["training"]["out_dir"] and "seeds" not in again

    bad = run_cli("run", str(single), "--run-dir", str(run_dir), "--seeds", "0,0")
    assert bad.returncode == 2 and "seeds repeat" in bad.stderr and "Traceback" not in bad.stderr


def test_pairs_only_builds_and_audits_every_configuration_and_trains_nothing(tmp_path, tiny_model_dir):
    path = _config(tmp_path, tiny_model_dir)
    run_dir = tmp_path / "run"
    result = run_cli("run", str(path), "--run-dir", str(run_dir), "--pairs-only")
    assert result.returncode == 0, result.stderr
    assert not (run_dir / "models").exists() and not (run_dir / "safety").exists()
    rows = json.loads((run_dir / "results.json").read_text())["targets"][tiny_model_dir.name]
    for recipe in ("gpt4o_self", "self_rm"):  # what each recipe's pairs carry, measured before any training
        assert rows[recipe]["audit"]["n_pairs"] > 0 and not rows[recipe]["safety"] and not rows[recipe].get("training")
    # the bundle holds the pairs but no configuration complete: a later full run trains and evaluates every one
    held = json.loads((run_dir / "bundle" / "manifest.json").read_text())["targets"][tiny_model_dir.name]
    assert set(held) == {"gpt4o_self", "self_rm"} and not any(entry["complete"] for entry in held.values())


def test_every_shipped_config_is_valid():
    """A config a user is told to run must load: keys, recipes, suites and limits validated before any stage."""
    shipped = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(shipped) >= 5
    for path in shipped:
        config = load_config(path)
        assert config.targets and config.recipes, path.name
    science = load_config(Path(__file__).resolve().parents[1] / "configs" / "science.yaml")
    assert science.training_seeds() == [0, 1, 2] and science.safety.limit_for("harmbench") is None
