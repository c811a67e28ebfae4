"""`safepref debias`: filter and rewrite, provenance, resume, bad input; WPO / ld_alpha reach TRL; recipe variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safepref.audit import cue_descriptions
from safepref.core.errors import InputError
from safepref.core.io import read_pairs
from safepref.core.records import Message, Pair, Side
from safepref.pairs.debias import DebiasConfig, choose_drops, debias_pairs, rewrite_log_path, summary_path
from tests.conftest import run_cli

TOPICS = ["locks", "medicine", "chemistry", "cars", "money", "computers", "weapons", "drugs", "travel", "pets",
          "cooking", "gardens", "phones", "banks", "schools", "games", "music", "sports", "boats", "houses"]


def _pair(index: int, chosen: str, rejected: str, chosen_source: str = "gpt4o", rejected_source: str = "target"):
    return Pair(id=f"p{index}", prompt=[Message(role="user", content=f"Question {index} about {TOPICS[index % 20]}?")],
                chosen=[Message(role="assistant", content=chosen)], rejected=[Message(role="assistant", content=rejected)],
                recipe="test", chosen_from=Side(source=chosen_source), rejected_from=Side(source=rejected_source))


def mixed_pairs() -> list[Pair]:
    """20 pairs a shallow cue gives away (a refusal phrase and length) and 20 that differ only in content."""
    pairs = []
    for i in range(20):
        topic = TOPICS[i]
        pairs.append(_pair(i, "I'm sorry, but I cannot help with that request. As an AI, I must decline.",
                           f"Sure, here is how: take the {topic} and do it quickly yourself, then repeat it twice."))
    for i in range(20, 40):  # same length, words and punctuation: the cues cannot tell these apart
        topic = TOPICS[i % 20]
        pairs.append(_pair(i, f"Please call a trained doctor about {topic} first.",
                           f"Please skip a trained doctor about {topic} first."))
    return pairs


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFEPREF_HOME", str(tmp_path / "home"))  # a fresh feature cache
    return tmp_path / "home"


def test_choose_drops_most_confident_first_until_target_or_floor():
    margins = np.array([5.0, -1.0, 3.0, 0.0, 4.0, -2.0, 1.0, 2.0])
    drops, reason = choose_drops(margins, max_cue_accuracy=0.55, min_keep=0.1)
    assert drops[:3] == [0, 4, 2] and "cue accuracy" in reason
    kept = np.delete(margins, drops)
    assert ((kept > 0).sum() + 0.5 * (kept == 0).sum()) / len(kept) <= 0.55
    drops, reason = choose_drops(margins, max_cue_accuracy=0.5, min_keep=0.75)
    assert len(drops) == 2 and "floor" in reason  # 8 pairs, at least 6 kept


def test_filter_drops_the_cue_separated_pairs_and_says_why(tmp_path: Path, home: Path):
    pairs = mixed_pairs()
    out = tmp_path / "filtered.jsonl"
    summary = debias_pairs(pairs, DebiasConfig(method="filter", min_keep=0.4), out)
    kept = read_pairs(out)
    assert summary["n_out"] == len(kept) >= 20 and summary["n_in"] == 40
    dropped_ids = {row["id"] for row in summary["dropped"]}
    cue_pairs = {f"p{i}" for i in range(20)}
    assert dropped_ids and dropped_ids <= cue_pairs  # only the give-away pairs go
    assert summary["cue_accuracy_before"] == 0.75  # 20 give-aways right, 20 ties at one half
    assert summary["cue_accuracy_after"] <= 0.55 and "cue accuracy" in summary["stop_reason"]
    assert all(row["confidence"] > 0.5 and row["cues"] for row in summary["dropped"])
    assert set(summary["dropped_by_main_cue"]) <= set(cue_descriptions())
    assert all(p.debias["method"] == "filter" and 0 <= p.debias["cue_confidence"] <= 1 for p in kept)
    assert json.loads(summary_path(out).read_text())["n_out"] == len(kept)


def _tiny_rewrite_pairs(target: str) -> list[Pair]:
    pairs = [_pair(i, f"A reference answer number {i}: please do not do that, it is dangerous.",
                   f"My own answer {i}.", rejected_source=target) for i in range(6)]
    pairs.append(_pair(6, "Already the target's own words.", "Other words.", chosen_source=target,
                       rejected_source=target))
    return pairs


def test_rewrite_keeps_the_original_and_resumes_after_an_interruption(tiny_model_dir: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    import safepref.generation.generate as generate

    target = str(tiny_model_dir)
    pairs = _tiny_rewrite_pairs(target)
    config = DebiasConfig(method="rewrite", max_new_tokens=6, batch_size=2)
    reference = tmp_path / "whole" / "rewritten.jsonl"
    debias_pairs(pairs, config, reference)  # the target comes from the rejected provenance

    real_backend = generate._transformers_batches
    answered: list[str] = []

    def interrupted(prompts, source, generation_config):
        for index, batch in enumerate(real_backend(prompts, source, generation_config)):
            if index == 2:
                raise KeyboardInterrupt
            answered.extend(r.prompt_id for r in batch)
            yield batch

    monkeypatch.setattr(generate, "_transformers_batches", interrupted)
    out = tmp_path / "resumed" / "rewritten.jsonl"
    with pytest.raises(KeyboardInterrupt):
        debias_pairs(pairs, config, out)
    assert not out.exists() and not summary_path(out).exists()  # nothing half-written
    assert len(rewrite_log_path(out).read_text().splitlines()) == 2

    def counting(prompts, source, generation_config):
        answered.extend(p.id for p in prompts)
        yield from real_backend(prompts, source, generation_config)

    monkeypatch.setattr(generate, "_transformers_batches", counting)
    answered.clear()
    summary = debias_pairs(pairs, config, out)
    assert len(answered) == 4  # the 2 rewrites in the log are not generated again
    assert out.read_text() == reference.read_text()  # same result as the uninterrupted run
    rows = read_pairs(out)
    by_id = {p.id: p for p in pairs}
    rewritten = [p for p in rows if p.debias["rewritten"]]
    assert summary["target"] == target and summary["counts"].get("kept_as_is (chosen already the target's)") == 1
    assert len(rewritten) + sum(summary["counts"].get(k, 0) for k in ("dropped_empty_rewrite",
                                                                       "dropped_rewrite_equals_rejected")) == 6
    for pair in rewritten:
        assert pair.debias["original_chosen"] == by_id[pair.id].chosen_text != pair.chosen_text
        assert pair.debias["model"] == target and pair.rejected_text == by_id[pair.id].rejected_text
    own = next(p for p in rows if p.id == "p6")
    assert own.chosen_text == "Already the target's own words." and own.debias["rewritten"] is False


def test_rewrite_needs_a_target_when_provenance_names_none(tmp_path: Path):
    pairs = [_pair(0, "a", "b", rejected_source="one"), _pair(1, "c", "d", rejected_source="two")]
    with pytest.raises(InputError, match="--target") as info:
        debias_pairs(pairs, DebiasConfig(method="rewrite"), tmp_path / "out.jsonl")
    assert info.value.field == "target"


@pytest.mark.parametrize("args, needle", [
    (["--method", "filter"], "bad.jsonl:2"),
    (["--method", "shuffle"], "method"),
    (["--method", "filter", "--min-keep", "0"], "min_keep"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], needle: str):
    bad = tmp_path / "bad.jsonl"
    good = {"prompt": "q", "chosen": "yes", "rejected": "no"}
    bad.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "q", "chosen": "yes"}) + "\n")
    source = str(bad) if needle == "bad.jsonl:2" else str(tmp_path / "good.jsonl")
    (tmp_path / "good.jsonl").write_text(json.dumps(good) + "\n")
    result = run_cli("debias", source, *args, "--out", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_filter_on_a_bundled_pair_set(tmp_path: Path, home: Path):
    out = tmp_path / "xs.jsonl"
    result = run_cli("debias", "xstest-multisource", "--method", "filter", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_in"] == 176 and summary["kept_fraction"] >= 0.4
    assert len(read_pairs(out)) == summary["n_out"] == summary["n_in"] - len(summary["dropped"])


def test_wpo_weighting_and_ld_alpha_reach_trl(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import safepref.training.dpo as train
    from tests.test_train import write_pairs

    monkeypatch.setenv("SAFEPREF_HOME", str(tmp_path / "home"))
    seen = {}
    real = train.make_trainer

    def capture(reference_hash, **kwargs):
        seen["args"] = kwargs["args"]
        return real(reference_hash, **kwargs)

    monkeypatch.setattr(train, "make_trainer", capture)
    pairs = write_pairs(tmp_path / "pairs.jsonl", 8)
    config = train.DPOTrainingConfig(max_steps=2, batch_size=4, weighting="wpo", ld_alpha=0.5, save_steps=100)
    result = train.train_dpo(tiny_model_dir, pairs, tmp_path / "wpo", config)
    assert seen["args"].use_weighting is True and seen["args"].ld_alpha == 0.5
    assert result.steps == 2 and result.final_loss is not None and np.isfinite(result.final_loss)
    summary = json.loads((tmp_path / "wpo" / "train_summary.json").read_text())
    assert summary["config"]["weighting"] == "wpo" and summary["config"]["ld_alpha"] == 0.5
    # at their defaults the new fields stay out of the record, so runs keyed before they existed keep their keys
    assert "weighting" not in train.training_record(train.DPOTrainingConfig())
    with pytest.raises(ValueError):
        train.DPOTrainingConfig(ld_alpha=1.5)


def test_recipe_variants_inherit_their_base_and_bad_ones_are_refused(tmp_path: Path):
    from safepref.pairs.recipes import load_recipe

    variant, base = load_recipe("gpt4o_self_rewrite"), load_recipe("gpt4o_self")
    assert variant.base == "gpt4o_self" and variant.chosen == base.chosen and variant.rejected == base.rejected
    assert variant.debias.method == "rewrite" and load_recipe("gpt4o_self_wpo").training == {"weighting": "wpo"}
    assert load_recipe("stronger_self_filter").debias.settings() == {"method": "filter"}
    redefined = tmp_path / "bad.yaml"
    redefined.write_text("name: bad\nbase: gpt4o_self\nchosen: {from: [gpt4o]}\n")
    with pytest.raises(InputError, match="inherits") as info:
        load_recipe(redefined)
    assert info.value.field == "base"
    chained = tmp_path / "chained.yaml"
    chained.write_text("name: chained\nbase: gpt4o_self_rewrite\ndebias: {method: filter}\n")
    with pytest.raises(InputError, match="itself a variant"):
        load_recipe(chained)
    sideless = tmp_path / "sideless.yaml"
    sideless.write_text("name: sideless\ndebias: {method: filter}\n")
    with pytest.raises(InputError, match="needs chosen and rejected"):
        load_recipe(sideless)
