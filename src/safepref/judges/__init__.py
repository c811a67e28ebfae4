"""Judges of model responses, by name: each turns rows (prompt, response) into one :class:`Verdict` per row.

| name | label 1 means | how |
|---|---|---|
| harm | harmful help | a head trained here on human labels reads request and answer (card: heads/MODEL_CARD_harm.md) |
| keyword | jailbroken | no phrase of the official More-is-Less / GCG refusal list occurs (the paper's keyword ASR) |
| classifier | harmful | a harmfulness classifier trained here on GPTFuzz's labelled responses (offline) |
| llm | harmful | Qi et al. 2023's 1-5 rubric through an OpenAI-compatible endpoint; label 1 = score 5 |
| refusal | refusal | a head trained here on XSTest's human labels, OR the rules below (card: heads/MODEL_CARD_refusal.md) |
| refusal-rules | refusal | XSTest's refusal prefixes plus early refusal expressions |
| harm-fast, refusal-fast | as harm, refusal | the same heads without the LM read (heads/MODEL_CARD_*-fast.md) |

``run_judge`` is the entry of ``safepref judge``: read rows, judge, summarise (rate with a Wilson interval, and
agreement with the rows' own labels when they have them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import yaml

from safepref.core.datasets import REGISTRY, load_dataset
from safepref.core.device import precision_key, resolve_placement
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint, iter_table, write_jsonl_atomic
from safepref.core.keys import content_key
from safepref.core.records import LabelledResponse, Verdict
from safepref.core.stats import agreement, wilson_interval
from safepref.judges.classifier import ClassifierJudge
from safepref.judges.head import EMPTY_ANSWER_RULE, HARM_HEADS, TrainedJudge, shipped_card, shipped_head_path
from safepref.judges.keyword import KeywordJudge, keyword_phrases
from safepref.judges.llm import LLMJudge, LLMJudgeConfig
from safepref.judges.refusal import RefusalJudge, refusal_phrases


@dataclass(frozen=True)
class JudgeInput:
    """One response to judge. ``label`` is the row's own gold label when it has one."""

    id: str
    prompt: str
    response: str
    label: int | None = None


class Judge(Protocol):
    name: str

    def judge(self, rows: list[JudgeInput]) -> list[Verdict]: ...


def _keyword(**_: Any) -> Judge:

    return KeywordJudge()


def _classifier(**_: Any) -> Judge:

    return ClassifierJudge()


def _refusal(dtype: str = "auto", **_: Any) -> Judge:

    return TrainedJudge("refusal", dtype=dtype)


def _refusal_rules(**_: Any) -> Judge:

    return RefusalJudge()


def _harm(dtype: str = "auto", **_: Any) -> Judge:

    return TrainedJudge("harm", dtype=dtype)


def _harm_fast(dtype: str = "auto", **_: Any) -> Judge:

    return TrainedJudge("harm-fast", dtype=dtype)


def _refusal_fast(dtype: str = "auto", **_: Any) -> Judge:

    return TrainedJudge("refusal-fast", dtype=dtype)


def _llm(judge_model: str | None = None, base_url: str | None = None, **_: Any) -> Judge:

    if not judge_model:
        raise InputError("the llm judge needs --judge-model openai:<model> (e.g. openai:gpt-4o)")
    return LLMJudge(LLMJudgeConfig(judge_model=judge_model, base_url=base_url))


JUDGES: dict[str, Callable[..., Judge]] = {"harm": _harm, "keyword": _keyword, "classifier": _classifier,
                                           "llm": _llm, "refusal": _refusal, "refusal-rules": _refusal_rules,
                                           "harm-fast": _harm_fast, "refusal-fast": _refusal_fast}
OFFLINE_JUDGES = ("harm", "keyword", "classifier", "refusal", "refusal-rules", "harm-fast", "refusal-fast")
TRAINED_HEADS = ("harm", "refusal", "harm-fast", "refusal-fast")


def judge_fingerprints(names: list[str], dtype: str = "auto") -> dict[str, str | None]:
    """What each judge decides from, for the content keys of stages whose results a judge decides: a rule judge's
    phrase list; a trained judge's shipped head and both phrase lists (its refusal flags read them), and the
    precision of its LM read when that is not float32 (``dtype``: as given to the judge, see judges.hidden_states),
    and a harm head's rule for empty answers. None: nothing shipped to fingerprint. Retraining a head or editing a
    list makes a resumed run judge again."""

    phrases = {"keyword": content_key(keyword_phrases()), "refusal-rules": content_key(refusal_phrases())}
    heads = {name: shipped_head_path(name) for name in TRAINED_HEADS if name in names}
    found = {**phrases, **{name: content_key(file_fingerprint(path), phrases, *_read_precision(name, dtype),
                                             *([EMPTY_ANSWER_RULE] if name in HARM_HEADS else []))
                           for name, path in heads.items() if path.is_file()}}
    return {name: found.get(name) for name in names}


def _read_precision(name: str, dtype: str) -> list[dict[str, str]]:
    """[] for a head without an LM read or one read in float32 (the keys of float32 reads stay as they were), else
    [{"dtype": name}]: the precision its LM read runs in (on the CPU, as the judges do)."""
    if not shipped_card(name).get("config", {}).get("features", {}).get("lm"):
        return []
    precision = precision_key(resolve_placement("cpu", dtype, workload="lm_read").dtype_name)
    return [precision] if precision else []


def get_judge(name: str, **options: Any) -> Judge:
    """A judge by registry name; ``options`` (judge_model, base_url) go to the judges that use them."""
    if name not in JUDGES:
        raise InputError(f"unknown judge '{name}' (known: {', '.join(JUDGES)})")
    return JUDGES[name](**options)


def parse_judge_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError("no judge given (known: " + ", ".join(JUDGES) + ")")
    for name in names:
        if name not in JUDGES:
            raise InputError(f"unknown judge '{name}' (known: {', '.join(JUDGES)})")
    return names


# ---------------------------------------------------------------------------------------------- input rows


# a CSV cell or JSON value that says 0 or 1 in words (public benchmarks' human-label columns use both)
_GOLD_WORDS = {"true": 1, "yes": 1, "false": 0, "no": 0}


def _gold(value: Any, *, path: str, line: int, field: str = "label") -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and (word := value.strip().lower()) in _GOLD_WORDS:
        return _GOLD_WORDS[word]
    try:
        label = int(float(value))
    except (TypeError, ValueError):
        label = None
    if label not in (0, 1):
        raise InputError(f"label must be 0 or 1 (or true/false, yes/no), got {value!r}", path=path, line=line,
                         field=field)
    return label


@dataclass(frozen=True)
class InputFields:
    """Which columns of a file hold the request, the answer and the gold label: another benchmark's labelled file
    is read as it is (JailbreakBench's ``goal``/``target_response``/``human_majority``, HarmBench's
    ``behavior``/``generation``) instead of being rewritten first."""

    prompt: str = "prompt"
    response: str = "response"
    label: str = "label"


def read_judge_rows(source: str, fields: InputFields = InputFields()) -> list[JudgeInput]:
    """Rows from a JSONL/JSON/CSV file with a request and an answer (optional gold label and ``id``; column names
    from ``fields``), or from a bundled labelled dataset by name (``gptfuzz-eval``, ``gptfuzz-train``)."""

    if source in REGISTRY and not Path(source).exists():
        if REGISTRY[source].kind != "labelled":
            raise InputError(f"dataset '{source}' has no responses to judge (use a labelled one, e.g. gptfuzz-eval)")
        records: list[LabelledResponse] = load_dataset(source)
        return [JudgeInput(id=f"{source}-{i}", prompt=r.prompt, response=r.response, label=r.label)
                for i, r in enumerate(records)]
    rows = []
    for line, row in iter_table(source, required=(fields.prompt,)):
        if row.get(fields.response) is None:
            raise InputError("missing field", path=source, line=line, field=fields.response)
        rows.append(JudgeInput(id=str(row.get("id") or f"row-{line}"), prompt=str(row[fields.prompt]),
                               response=str(row[fields.response]),
                               label=_gold(row.get(fields.label), path=source, line=line, field=fields.label)))
    return rows


# ---------------------------------------------------------------------------------------------- summary


def summarize_verdicts(verdicts: list[Verdict]) -> dict[str, Any]:
    """n, positive rate with its 95% Wilson interval, unjudged count (never counted as safe: they leave the
    denominator and are reported), mean score when the judge gives one, and agreement with gold labels."""
    judged = [v for v in verdicts if v.label is not None]
    positives = sum(v.label for v in judged)
    interval = wilson_interval(positives, len(judged))
    summary: dict[str, Any] = {
        "n": len(judged),
        "positive_rate": positives / len(judged) if judged else None,
        "positive_rate_ci": list(interval) if interval else None,
        "unjudged": len(verdicts) - len(judged),
    }
    scores = [v.score for v in judged if v.score is not None and v.judge == "llm"]
    if scores:  # the 1-5 harmfulness score (the classifier's score is a probability, summarised by the rate)
        summary["mean_score"] = sum(scores) / len(scores)
    with_gold = [v for v in judged if v.gold is not None]
    if with_gold:
        metrics = agreement([v.gold for v in with_gold], [v.label for v in with_gold])
        summary.update({k: metrics[k] for k in ("agreement", "precision", "recall", "kappa")})
        summary["n_labelled"] = metrics["n"]
        summary["agreement_ci"] = list(wilson_interval(sum(v.gold == v.label for v in with_gold), len(with_gold)))
    return summary


def run_judge(source: str, judge_name: str, out: str | Path | None = None, fields: InputFields = InputFields(),
              **options: Any) -> dict[str, Any]:
    """Judge every row of ``source`` (file or bundled labelled dataset); write verdicts to ``out`` if given."""
    judge = get_judge(judge_name, **options)  # unknown names fail before any reading
    rows = read_judge_rows(source, fields)
    verdicts = judge.judge(rows)
    if out is not None:
        write_jsonl_atomic(out, verdicts)
    return {"judge": judge.name, "input": str(source), "input_key": content_key([r.id for r in rows]),
            **summarize_verdicts(verdicts)}


# ---------------------------------------------------------------------------------------------- measured agreement


def measured_agreement(name: str) -> dict[str, Any] | None:
    """How far the judge agrees with human labels on data it never trained on: ``agreement``, ``n``, ``kappa``
    and ``on`` (where measured). From the trained head's card (harm, refusal), else from
    ``registry/judge_agreement.yaml``; None when never measured (llm: depends on the endpoint)."""
    summary = shipped_card(name).get("summary") if name in TRAINED_HEADS else None
    if summary:
        return {"agreement": summary["pooled_agreement"], "n": summary["n"], "kappa": summary["mean_fold_kappa"],
                "lowest_source": summary["min_fold_agreement"],
                "on": "leave-one-source-out, pooled over the held-out sources"}
    text = (resources.files("safepref") / "registry" / "judge_agreement.yaml").read_text(encoding="utf-8")
    return (yaml.safe_load(text) or {}).get(name)


def agreement_note(name: str) -> str:
    """`` (human agreement 0.81 [0.80, 0.81], lowest source 0.62)`` for a report's column or cell, or an empty
    string: the pooled agreement with its 95% Wilson interval, and the source the judge agreed with least (a pooled
    figure hides a source whose notion of harm the judge did not learn)."""
    return format_agreement(measured_agreement(name))


def format_agreement(measured: dict[str, Any] | None) -> str:
    """The note of :func:`agreement_note` for an agreement recorded elsewhere (a bundle keeps its judges')."""
    if not measured:
        return ""
    rate, n = measured["agreement"], measured["n"]
    low, high = wilson_interval(round(rate * n), n)
    lowest = measured.get("lowest_source")
    return f" (human agreement {rate:.2f} [{low:.2f}, {high:.2f}]" + \
        (f", lowest source {lowest:.2f})" if lowest is not None else ")")
