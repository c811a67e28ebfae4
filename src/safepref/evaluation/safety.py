"""Safety evaluation: answer a jailbreak suite under attacks (greedy), judge every answer, report rates with CIs.

Artifacts in the run folder:
- ``responses-<attack>-<key>.jsonl``: the model's greedy answers (resumable through ``generate_responses``; the
  key hashes the model's weights fingerprint, the prompt texts and the decoding settings, so retrained weights, an
  edited suite file or a changed setting never reuse old answers; a changed judge list does);
- ``verdicts.jsonl``: one row per prompt x attack x judge (label, score, raw reason);
- ``summary.json``: ASR (n, rate, 95% Wilson interval) per attack x judge (and per category when the suite has
  them: JailbreakBench's 10, HarmBench's 6), mean llm score, unjudged counts,
  pairwise agreement and Cohen's kappa between harmfulness judges, and XSTest's over-refusal rate.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from safepref.core.device import precision_key
from safepref.core.io import write_json_atomic, write_jsonl_atomic
from safepref.core.keys import stage_key
from safepref.core.paths import slug
from safepref.core.records import Prompt, Verdict
from safepref.core.stats import agreement, rate
from safepref.evaluation.suites import Attack, load_suite, parse_attack_names
from safepref.generation.generate import GenerationConfig, answer_identity, generate_responses
from safepref.judges import JudgeInput, get_judge, judge_fingerprints, parse_judge_names

# label 1 = jailbroken/harmful; "refusal" has the other polarity
HARM_JUDGES = ("harm", "keyword", "classifier", "llm", "harm-fast")


class SafetyEvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suite: str = Field("advbench", description="advbench | jbb | harmbench | xstest | path.csv:column")
    attacks: list[str] = Field(default_factory=lambda: ["none"], description="attack names (registry/attacks.yaml)")
    judges: list[str] = Field(default_factory=lambda: ["harm", "keyword"],
                               description="judge names (harm: the headline ASR; keyword: the paper's)")
    limit: int | None = Field(None, description="first N suite prompts (advbench's default is the paper's 100)")
    max_new_tokens: int = Field(512, ge=1, description="greedy answer length (the paper: 512)")
    # On 2 CPU cores a decoding step of 64 rows costs ~2.7x one of 16 (small batches are bound by reading weights).
    batch_size: int = Field(64, ge=1, description="generation batch size")
    seed: int = Field(0, description="generation seed (greedy decoding does not depend on it)")
    judge_model: str | None = Field(None, description="llm judge: openai:<model>")
    base_url: str | None = Field(None, description="llm judge endpoint (default $OPENAI_BASE_URL)")
    backend: str = Field("transformers", description="generation backend: transformers | vllm")
    device: str = Field("auto", description="where the model answers: auto | cpu | cuda | cuda:N")
    dtype: str = Field("auto", description="precision: auto (the device policy) | float32 | bfloat16 | float16")

    def key_dump(self) -> dict[str, Any]:
        """The settings an artifact key covers: where it ran is not one; a non-default backend is."""
        exclude = {"device", "dtype"} | ({"backend"} if self.backend == "transformers" else set())
        return self.model_dump(mode="json", exclude=exclude)

    @field_validator("attacks", mode="before")
    @classmethod
    def _split_attacks(cls, value: Any) -> Any:
        return parse_attack_names(value) if isinstance(value, str) else value

    @field_validator("judges", mode="before")
    @classmethod
    def _split_judges(cls, value: Any) -> Any:
        return parse_judge_names(value) if isinstance(value, str) else value


def _is_xstest(prompts: list[Prompt]) -> bool:
    return all(p.dataset == "xstest" for p in prompts)


def evaluate_safety(model: str, config: SafetyEvalConfig, out_dir: str | Path,
                    answers_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the evaluation; return (and write to ``out_dir/summary.json``) the summary.

    Answers go to ``answers_dir`` (default ``out_dir``) under a key of the model's weights, the attacked prompt
    texts and the decoding settings: evaluations that differ only in judges share them (a runner passes one folder).
    """
    out_dir = Path(out_dir)
    answers_dir = Path(answers_dir) if answers_dir else out_dir
    # resolve every name before any model runs, so a typo costs nothing
    prompts = load_suite(config.suite, config.limit)
    attacks = [Attack(name) for name in config.attacks]
    for attack in attacks:
        attack.check_disjoint(prompts)
    parse_judge_names(",".join(config.judges))
    xstest = _is_xstest(prompts)
    judge_names = list(dict.fromkeys([*config.judges, *(["refusal"] if xstest else [])]))
    judges = {name: get_judge(name, judge_model=config.judge_model, base_url=config.base_url, dtype=config.dtype)
              for name in judge_names}


    generation = GenerationConfig(greedy=True, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                                  seed=config.seed, backend=config.backend, device=config.device, dtype=config.dtype)
    identity = answer_identity(model, generation)  # covers a non-default backend; device and dtype are provenance
    generation_key = stage_key("eval_safety", identity)
    by_id = {p.id: p for p in prompts}
    verdict_rows: list[dict[str, Any]] = []
    answer_files: dict[str, str] = {}
    for attack in attacks:
        attacked = attack.attacked_prompts(prompts)
        answers_key = answer_cache_key(identity, attacked)
        answers_file = answers_dir / f"responses-{slug(attack.name)}-{answers_key}.jsonl"
        answer_files[attack.name] = str(answers_file)
        responses = generate_responses(attacked, model, answers_file, generation)
        answer = {r.prompt_id: r for r in responses if r.sample_index == -1} or {r.prompt_id: r for r in responses}
        rows = []
        for attacked_prompt in attacked:
            suite_prompt = by_id[attacked_prompt.meta["suite_prompt_id"]]
            # judges see the plain request, as the paper's judge does, and the answer to the attacked prompt
            rows.append(JudgeInput(id=suite_prompt.id, prompt=suite_prompt.text,
                                   response=answer[attacked_prompt.id].text))
        for judge in judges.values():
            for verdict in judge.judge(rows):
                verdict_rows.append({"attack": attack.name, **verdict.model_dump(mode="json"),
                                     "xstest_label": by_id[verdict.id].meta.get("label") if xstest else None})
    write_jsonl_atomic(out_dir / "verdicts.jsonl", verdict_rows)
    categories = {p.id: p.meta["category"] for p in prompts if p.meta.get("category")}
    summary = summarize_run(verdict_rows, attacks=[a.name for a in attacks], judges=judge_names, xstest=xstest,
                            categories=categories)
    summary = {"model": model, "suite": config.suite, "n_prompts": len(prompts),
               "config": config.model_dump(mode="json"), "generation_key": generation_key, "answers": answer_files,
               **summary}
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def answer_cache_key(identity: dict[str, Any], attacked: list[Prompt]) -> str:
    """Key of one attack's answer file: the model's weights and decoding (``identity``) and the prompt texts."""
    return stage_key("eval_safety", identity, [[p.id, p.text] for p in attacked])


def summarize_run(verdict_rows: list[dict[str, Any]], *, attacks: list[str], judges: list[str],
                  xstest: bool, categories: dict[str, str] | None = None) -> dict[str, Any]:
    """ASR per attack x judge (and per category, for suites whose prompts carry one: JailbreakBench, HarmBench),
    pairwise judge agreement, and (XSTest) over-refusal, from the verdict rows."""
    def rows_of(attack: str, judge: str, xstest_label: str | None = None) -> list[Verdict]:
        return [Verdict.model_validate({k: v for k, v in row.items() if k in Verdict.model_fields})
                for row in verdict_rows
                if row["attack"] == attack and row["judge"] == judge
                and (xstest_label is None or row["xstest_label"] == xstest_label)]

    results, agreements, refusals, by_category = [], [], [], []
    for attack in attacks:
        harm_judges = [j for j in judges if j in HARM_JUDGES]
        for judge in harm_judges:
            verdicts = rows_of(attack, judge, "unsafe" if xstest else None)  # XSTest: attacks target unsafe ones
            judged = [v for v in verdicts if v.label is not None]
            entry = {"attack": attack, "judge": judge, **_asr(judged), **unjudged_counts(len(verdicts), len(judged))}
            scores = [v.score for v in judged if v.score is not None]
            if judge == "llm" and scores:
                entry["mean_score"] = sum(scores) / len(scores)
            results.append(entry)
            for category in sorted(set((categories or {}).values())):
                mine = [v for v in verdicts if categories.get(v.id) == category]
                decided = [v for v in mine if v.label is not None]
                by_category.append({"attack": attack, "judge": judge, "category": category, **_asr(decided),
                                    "unjudged": len(mine) - len(decided)})
        for first, second in combinations(harm_judges, 2):
            a = {v.id: v.label for v in rows_of(attack, first) if v.label is not None}
            b = {v.id: v.label for v in rows_of(attack, second) if v.label is not None}
            common = sorted(set(a) & set(b))
            metrics = agreement([a[i] for i in common], [b[i] for i in common])
            agreements.append({"attack": attack, "judges": [first, second], "n": metrics["n"],
                               "agreement": metrics["agreement"], "kappa": metrics["kappa"]})
        if "refusal" in judges:
            for subset in (["safe", "unsafe"] if xstest else [None]):
                every = rows_of(attack, "refusal", subset)
                verdicts = [v for v in every if v.label is not None]
                refused = rate(sum(v.label for v in verdicts), len(verdicts))
                name = {"safe": "over_refusal", "unsafe": "refusal_unsafe", None: "refusal"}[subset]
                refusals.append({"attack": attack, "measure": name, "n": refused["n"], "rate": refused["rate"],
                                 "ci95": refused["ci95"], **unjudged_counts(len(every), len(verdicts))})
    summary: dict[str, Any] = {"results": results, "judge_agreement": agreements}
    if by_category:
        summary["categories"] = by_category
    if refusals:
        summary["refusal"] = refusals
    return summary


UNJUDGED_FLAG_SHARE = 0.05  # a rate with more unjudged rows than this is flagged: its denominator lost them


def unjudged_counts(total: int, judged: int) -> dict[str, Any]:
    """Rows a judge left undecided (an API judge refusing, an unparseable verdict): they leave the denominator, so
    every rate carries their count, and a share above 5% (or all of them) is flagged."""
    unjudged = total - judged
    share = unjudged / total if total else 0.0
    return {"unjudged": unjudged, "unjudged_share": share, "all_unjudged": total > 0 and judged == 0,
            "unjudged_flag": share > UNJUDGED_FLAG_SHARE}


def _asr(judged: list[Verdict]) -> dict[str, Any]:
    measured = rate(sum(v.label for v in judged), len(judged))
    return {"n": measured["n"], "asr": measured["rate"], "asr_ci95": measured["ci95"]}


def safety_key(model_fingerprint: str, config: SafetyEvalConfig, answer_dtype: str = "float32") -> str:
    """The safety evaluation's content key: the evaluated weights, the suite, attacks and decoding settings, the
    precision the answers are made in (``answer_dtype``, ``models.loading.dtype_name_for`` for generation; absent when float32)
    and the fingerprint of every judge asked for (with the precision of its LM read)."""
    return stage_key("eval_safety", model_fingerprint, config.key_dump(), *([precision_key(answer_dtype)]
                                                                            if answer_dtype != "float32" else []),
                     judge_fingerprints(list(config.judges), config.dtype))
