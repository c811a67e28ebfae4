"""The report's comparisons read per-prompt verdicts: paired tests, seeds pooled over prompts, and `safepref compare`,
on a run folder written by hand (no model runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safepref.core.paired import mcnemar_exact_p
from safepref.report import collect_results, render_markdown, write_report
from tests.conftest import run_cli

N = 40


def _evaluation(folder: Path, name: str, jailbroken: set[int], refused: set[int] | None = None) -> str:
    """A safety evaluation folder: summary, verdicts (keyword judge) and answers for N AdvBench prompts."""
    folder.mkdir(parents=True)
    answers = folder / "responses-none.jsonl"
    answers.write_text("".join(json.dumps({"prompt_id": f"advbench-{i}|none", "prompt": f"request {i}",
                                           "source": name, "sample_index": -1, "text": f"{name} answers {i}"}) + "\n"
                               for i in range(N)))
    verdicts = [{"attack": "none", "id": f"advbench-{i}", "judge": "keyword", "label": int(i in jailbroken),
                 "score": None, "raw": None, "gold": None, "xstest_label": None} for i in range(N)]
    (folder / "verdicts.jsonl").write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    k = len(jailbroken)
    from safepref.core.stats import wilson_interval

    summary = {"model": name, "suite": "advbench", "n_prompts": N, "answers": {"none": str(answers)},
               "results": [{"attack": "none", "judge": "keyword", "n": N, "asr": k / N,
                            "asr_ci95": list(wilson_interval(k, N)), "unjudged": 0, "unjudged_share": 0.0,
                            "all_unjudged": False, "unjudged_flag": False}],
               "judge_agreement": []}
    (folder / "summary.json").write_text(json.dumps(summary))
    return str(folder / "summary.json")


def _general(folder: Path, right: set[int]) -> str:
    folder.mkdir(parents=True)
    value = len(right) / N
    record = {"tasks": {"arc_easy": {"metric": "acc", "value": value, "stderr": 0.05, "n": N, "num_fewshot": 0,
                                     "chance": 0.25, "metrics": {},
                                     "per_question": {str(i): float(i in right) for i in range(N)}}}}
    (folder / "general.json").write_text(json.dumps(record))
    return str(folder / "general.json")


def _training(folder: Path, loss: float) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dynamics.jsonl").write_text("".join(json.dumps({"step": s, "loss": loss}) + "\n" for s in range(8)))
    return {"out_dir": str(folder), "dynamics": str(folder / "dynamics.jsonl"), "final_loss": loss, "steps": 8}


def _run(tmp_path: Path, seeds: list[int]) -> Path:
    """SFT, GPT4o+Self and Self+RM on the same 40 prompts; GPT4o+Self jailbroken far more often than Self+RM."""
    run = tmp_path / "run"
    jailbroken = {"sft": set(range(20)), "gpt4o_self": set(range(24)), "self_rm": set(range(4, 12))}
    right = {"sft": set(range(20)), "gpt4o_self": set(range(26)), "self_rm": set(range(20))}
    targets: dict = {"sft": {"safety": [_evaluation(run / "safety" / "sft", "sft", jailbroken["sft"])],
                             "general": _general(run / "general" / "sft", right["sft"])}}
    for name in ("gpt4o_self", "self_rm"):
        per_seed = []
        for seed in seeds:
            flipped = jailbroken[name] ^ {30 + seed}  # each seed jailbreaks one more prompt of its own
            per_seed.append({"seed": seed,
                             "training": _training(run / "models" / f"{name}-{seed}", 0.2 + 0.1 * seed),
                             "safety": [_evaluation(run / "safety" / f"{name}-{seed}", f"{name}-{seed}", flipped)],
                             "general": _general(run / "general" / f"{name}-{seed}", right[name])})
        entry = {k: per_seed[0][k] for k in ("training", "safety", "general")}
        if len(seeds) > 1:
            entry["seeds"] = per_seed
        targets[name] = entry
    (run / "manifest.json").write_text(json.dumps({"name": "fake", "seed": seeds[0], "seeds": seeds,
                                                   "targets": {"tiny": targets}, "timings": {}}))
    return run


def test_one_seed_compares_by_mcnemar_with_discordant_counts_and_resolution(tmp_path):
    results = collect_results(_run(tmp_path, [0]))
    asr = results["paper_checks"]["tiny"][0]
    [gpt4o] = asr["comparisons"]
    # GPT4o+Self: prompts 0-23 and 30; Self+RM: 4-11 and 30 -> 16 discordant, all jailbroken under GPT4o+Self only
    assert (gpt4o["first_only"], gpt4o["second_only"]) == (16, 0) and gpt4o["paired"]
    assert gpt4o["difference"] == pytest.approx(16 / N)
    assert gpt4o["p_value"] == pytest.approx(mcnemar_exact_p(16, 0))
    assert gpt4o["difference_ci95"][0] > 0 and asr["verdict"] == "holds"
    assert 0 < gpt4o["resolution"] < 0.4
    general = next(c for c in results["paper_checks"]["tiny"] if c["claim"].startswith("multi-model pairs give"))
    [scores] = general["comparisons"]
    assert (scores["first_only"], scores["second_only"]) == (6, 0) and scores["paired"]
    summary = render_markdown(results)
    assert "16 prompts jailbroke only under GPT4o+Self, 0 only under Self+RM" in summary
    assert "6 questions right only under GPT4o+Self, 0 only under Self+RM" in summary
    # each configuration against SFT, paired: Self+RM jailbroke 4-11 and 30, SFT 0-19 -> 1 vs 12 discordant
    row = next(r for r in results["against_sft"]["tiny"] if r["configuration"] == "Self+RM" and r["kind"] == "safety")
    assert (row["first_only"], row["second_only"]) == (1, 12) and row["verdict_text"] == "lower"


def test_seeds_pool_over_prompts_and_their_spread_shows(tmp_path, monkeypatch):
    run = _run(tmp_path, [0, 1])
    results = collect_results(run)
    self_rm = results["targets"]["tiny"]["self_rm"]
    [asr] = self_rm["safety"]
    assert [s["seed"] for s in asr["seeds"]] == [0, 1] and asr["pooled"]
    assert [s["asr"] for s in asr["seeds"]] == [9 / N, 9 / N]
    assert asr["asr"] == pytest.approx(9 / N)  # prompt 30 half, prompt 31 half
    assert asr["seed_spread"]["sd"] == 0
    assert self_rm["training"]["late_loss"] == pytest.approx(0.25)
    assert self_rm["training"]["late_loss_spread"]["min"] == pytest.approx(0.2)
    [gpt4o] = results["paper_checks"]["tiny"][0]["comparisons"]
    assert gpt4o["pooled"] and gpt4o["n_seeds"] == [2, 2] and gpt4o["method"].startswith("seeds pooled")
    assert gpt4o["difference"] == pytest.approx(16 / N) and gpt4o["difference_ci95"][0] > 0
    sft_row = next(r for r in results["against_sft"]["tiny"] if r["configuration"] == "Self+RM" and r["kind"] == "safety")
    assert sft_row["pooled"] and sft_row["n_seeds"] == [2, 1]  # SFT is evaluated once: nothing trained

    summary = render_markdown(results)
    assert "training seeds 0, 1" in summary and "seeds pooled (2 vs 2)" in summary
    assert "(seeds 0.23–0.23, sd 0.00)" in summary  # the headline cell shows the seeds' spread
    page = (Path(write_report(run)["report"])).read_text()
    assert "per seed (95% Wilson CI)" in page and "seed 1: 0.23 [" in page

    import safepref.report.figures as figures

    drawn = []
    monkeypatch.setattr(figures, "_figure_to_data_uri", lambda figure: drawn.append(figure) or "")
    figures.asr_figure("tiny", results["targets"]["tiny"], "none", "advbench")
    from matplotlib.container import ErrorbarContainer

    seed_marks = [c for c in drawn[0].axes[0].containers if isinstance(c, ErrorbarContainer)]
    # SFT's bar with its Wilson interval, and two trained configurations x two seeds, each seed with its own
    assert len(seed_marks) == 1 + 4


def test_compare_prints_one_comparison_with_the_discordant_prompts(tmp_path):
    run = _run(tmp_path, [0])
    result = run_cli("compare", str(run), "gpt4o_self", "Self+RM", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["measure"] == "keyword" and found["comparison"]["first_only"] == 16
    assert len(found["discordant"]) == 16
    first = found["discordant"][0]
    assert first["prompt_id"] == "advbench-0" and first["request"].startswith("Write a script")
    assert first["first"]["answers"][0]["answer"] == "gpt4o_self-0 answers 0"
    assert first["second"]["answers"][0]["verdicts"]["keyword"]["label"] == 0
    text = run_cli("compare", str(run), "gpt4o_self", "self_rm")
    assert "McNemar p" in text.stdout and "16 discordant prompts" in text.stdout and "self_rm-0 answers 0" in text.stdout
    bad = run_cli("compare", str(run), "gpt4o_self", "nope")
    assert bad.returncode == 2 and "no configuration 'nope'" in bad.stderr
