"""Registry of the datasets shipped inside the package: name -> loader returning typed records.

Every dataset folder keeps its SOURCE.md (repository, commit, license). Loaders go through :mod:`safepref.core.io`, so a
broken file fails with the file, line and field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from safepref.core.errors import InputError
from safepref.core.io import iter_csv, iter_jsonl, iter_table, pair_from_row
from safepref.core.labelled import saferlhf_examples, xstest_examples
from safepref.core.paths import bundled_data_dir
from safepref.core.records import LabelledResponse, Message, Pair, Prompt, Response, Side, Template


def prompt_id(text: str) -> str:
    """Stable id of a prompt from its text, so answers from different files join on the same prompt."""
    return "p" + hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class BundledDataset:
    name: str
    kind: str  # prompts | pairs | responses | labelled | templates | task | attack-prompts
    files: tuple[str, ...]  # relative to the bundled data folder
    license: str
    source: str
    description: str
    loader: Callable[[list[Path]], list[Any]]

    @property
    def paths(self) -> list[Path]:
        return [bundled_data_dir() / f for f in self.files]

    def load(self) -> list[Any]:
        return _load_cached(self.name)


# ---------------------------------------------------------------------------------------------- loaders


def _saferlhf_pairs(paths: list[Path]) -> list[Pair]:
    pairs = []
    for n, row in iter_jsonl(paths[0]):
        pair = pair_from_row(row, path=paths[0], line=n, default_id=f"saferlhf-{n}")
        pairs.append(pair.model_copy(update={"recipe": "original"}))
    return pairs


def _gpt4o_answers(paths: list[Path]) -> list[Response]:
    responses, per_prompt = [], {}
    for _, row in iter_table(paths[0], required=("prompt", "response")):
        pid = prompt_id(row["prompt"])
        index = per_prompt.get(pid, 0)  # a few prompts have two GPT-4o answers
        per_prompt[pid] = index + 1
        responses.append(
            Response(prompt_id=pid, prompt=row["prompt"], source="gpt4o", sample_index=index, text=row["response"])
        )
    return responses


def _advbench(paths: list[Path]) -> list[Prompt]:
    return [
        Prompt(id=f"advbench-{i}", text=row["goal"], dataset="advbench", meta={"target": row.get("target", "")})
        for i, (_, row) in enumerate(iter_csv(paths[0], required=("goal",)))
    ]


def _jailbreakbench(paths: list[Path]) -> list[Prompt]:
    """JBB-Behaviors: the goal is the request; behaviour and category travel in the metadata."""
    return [
        Prompt(id=f"jbb-{row['index']}", text=row["goal"], dataset="jbb",
               meta={"category": row["category"], "behavior": row["behavior"]})
        for _, row in iter_csv(paths[0], required=("index", "goal", "behavior", "category"))
    ]


HARMBENCH_FUNCTIONAL = "standard"  # copyright rows ask for lyrics and passages; contextual ones need their context


def _harmbench(paths: list[Path]) -> list[Prompt]:
    """HarmBench's standard text behaviours (200 of 400 rows), the semantic category in the metadata."""
    required = ("Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID")
    return [
        Prompt(id=f"harmbench-{row['BehaviorID']}", text=row["Behavior"], dataset="harmbench",
               meta={"category": row["SemanticCategory"], "behavior_id": row["BehaviorID"]})
        for _, row in iter_csv(paths[0], required=required) if row["FunctionalCategory"] == HARMBENCH_FUNCTIONAL
    ]


def _jailbreakbench_attacks(paths: list[Path]) -> list[Prompt]:
    """JailbreakBench's attack prompts, one per behaviour, attack method and model it was optimised against; the
    id names the behaviour (``jbb-<index>``), the method and the source model."""
    prompts = []
    for line, row in iter_jsonl(paths[0]):
        for field in ("index", "goal", "method", "source_model", "prompt"):
            if row.get(field) in (None, ""):
                raise InputError("missing field", path=paths[0], line=line, field=field)
        prompts.append(Prompt(id=f"jbb-{row['index']}|{row['method']}@{row['source_model']}", text=row["prompt"],
                              dataset="jbb-attacks",
                              meta={"behavior_id": f"jbb-{row['index']}", "goal": row["goal"],
                                    "method": row["method"], "source_model": row["source_model"]}))
    return prompts


_TURN = re.compile(r"\n\n(Human|Assistant):")


def _transcript_messages(text: str) -> list[Message]:
    parts = _TURN.split("\n\n" + text.lstrip("\n"))
    messages = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append(Message(role="user" if role == "Human" else "assistant", content=content.strip()))
    return messages


def _hh_harmless(paths: list[Path]) -> list[Pair]:
    pairs = []
    for n, row in iter_table(paths[0], required=("chosen", "rejected")):
        chosen, rejected = _transcript_messages(row["chosen"]), _transcript_messages(row["rejected"])
        if not chosen or not rejected or chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
            continue  # a handful of transcripts end on a human turn: nothing to prefer
        if not chosen[-1].content or not rejected[-1].content or chosen[:-1] != rejected[:-1]:
            continue
        pairs.append(
            Pair(id=f"hh-harmless-{n}", prompt=chosen[:-1], chosen=chosen[-1:], rejected=rejected[-1:], recipe="hh")
        )
    return pairs


def _gptfuzz_labelled(paths: list[Path]) -> list[LabelledResponse]:
    questions = {row["index"]: row["text"] for _, row in iter_csv(paths[1], required=("index", "text"))}
    rows = []
    for n, row in iter_csv(paths[0], required=("question", "Response", "label")):
        if row["question"] not in questions:
            raise InputError("unknown question index", path=paths[0], line=n, field="question")
        rows.append(LabelledResponse(prompt=questions[row["question"]], response=row["Response"], label=int(row["label"])))
    return rows


def _gptfuzz_templates(paths: list[Path]) -> list[Template]:
    return [Template(name=f"gptfuzz-{row['id']}", text=row["text"]) for _, row in iter_csv(paths[0], required=("id", "text"))]


def _self_reminder_templates(paths: list[Path]) -> list[Template]:
    templates = []
    for _, row in iter_csv(paths[0], required=("name", "prompt")):
        if "[INSERT PROMPT HERE]" in row["prompt"]:  # 2 of 75 have no slot for the request
            templates.append(Template(name=row["name"], text=row["prompt"]))
    return templates


def _xstest(paths: list[Path]) -> list[Prompt]:
    return [
        Prompt(id=f"xstest-{row['id']}", text=row["prompt"], dataset="xstest",
               meta={"label": row["label"], "type": row["type"]})
        for _, row in iter_csv(paths[0], required=("id", "prompt", "label", "type"))
    ]


XSTEST_COMPLETION_MODELS = ("llama2new", "mistralguard", "mistralinstruct")  # file order = preference order
_WANTED = {True: "2_full_refusal", False: "1_full_compliance"}  # by "is the prompt unsafe"


def _xstest_multisource_pairs(paths: list[Path]) -> list[Pair]:
    """Cross-model pairs from human-labelled XSTest completions: per prompt, the wanted behaviour (refuse an unsafe
    prompt, answer a safe one) from one model as chosen, the unwanted one from *another* model as rejected.

    Both sides come from models other than the bundled ones, and from different models: multi-source data of the
    kind the paper warns about, held out from everything safepref trains or tunes on.
    """
    prompts: dict[str, tuple[str, bool]] = {}
    answers: dict[str, dict[str, tuple[str, str]]] = {}  # prompt id -> model -> (label, completion)
    for path, model in zip(paths, XSTEST_COMPLETION_MODELS, strict=True):
        for _, row in iter_csv(path, required=("id", "type", "prompt", "completion", "final_label")):
            prompts.setdefault(row["id"], (row["prompt"], row["type"].startswith("contrast_")))
            if row["completion"].strip():
                answers.setdefault(row["id"], {})[model] = (row["final_label"], row["completion"].strip())
    pairs = []
    for row_id, (prompt, unsafe) in prompts.items():
        by_model = answers.get(row_id, {})
        chosen = next((m for m in XSTEST_COMPLETION_MODELS if by_model.get(m, ("",))[0] == _WANTED[unsafe]), None)
        rejected = next((m for m in XSTEST_COMPLETION_MODELS if m != chosen
                         and by_model.get(m, ("",))[0] == _WANTED[not unsafe]), None)
        if chosen is None or rejected is None:
            continue
        pairs.append(Pair(
            id=f"xstest-multisource-{row_id}", prompt=[Message(role="user", content=prompt)],
            chosen=[Message(role="assistant", content=by_model[chosen][1])],
            rejected=[Message(role="assistant", content=by_model[rejected][1])], recipe="xstest-multisource",
            chosen_from=Side(source=f"xstest:{chosen}"), rejected_from=Side(source=f"xstest:{rejected}"),
        ))
    return pairs


def _instructions(name: str) -> Callable[[list[Path]], list[Prompt]]:
    def load(paths: list[Path]) -> list[Prompt]:
        return [
            Prompt(id=f"{name}-{i}", text=row["instruction"], dataset=name)
            for i, (_, row) in enumerate(iter_table(paths[0], required=("instruction",)))
        ]
    return load


def _rows(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        if path.suffix == ".json":
            rows.extend(json.loads(path.read_text(encoding="utf-8")))
        else:
            rows.extend(row for _, row in iter_table(path))
    return rows


def _mmlu_files() -> tuple[str, ...]:
    folder = Path(__file__).parents[1] / "datafiles" / "mmlu" / "test"
    return tuple(f"mmlu/test/{p.name}" for p in sorted(folder.glob("*.csv")))


def _labelled_responses(kind: str) -> Callable[[list[Path]], list[LabelledResponse]]:
    """Human-labelled answers of the judges' training sources (harm label; see judges/training_data.py)."""

    def load(paths: list[Path]) -> list[LabelledResponse]:
        rows = saferlhf_examples(paths[0]) if kind == "saferlhf" else \
            [e for p in paths for e in xstest_examples(p, p.stem.rsplit("_", 1)[-1])]
        return [LabelledResponse(prompt=e.prompt, response=e.response, label=e.harm) for e in rows]

    return load


_LR = "labelled-responses"
_ML = "more-is-less"
REGISTRY: dict[str, BundledDataset] = {
    d.name: d
    for d in [
        BundledDataset("saferlhf", "pairs", (f"{_ML}/safeRLHF-50k_test.jsonl",), "CC-BY-NC-4.0 (PKU-SafeRLHF)",
                       "cacayaya/More-is-Less", "PKU-SafeRLHF prompts with human chosen/rejected answers",
                       _saferlhf_pairs),
        BundledDataset("gpt4o-saferlhf", "responses", (f"{_ML}/gpt4o_generated_10k_test.jsonl",),
                       "CC-BY-NC-4.0 (PKU-SafeRLHF prompts)", "cacayaya/More-is-Less",
                       "GPT-4o answers to 180 of the SafeRLHF prompts", _gpt4o_answers),
        BundledDataset("advbench", "prompts", ("advbench/harmful_behaviors.csv",), "MIT", "llm-attacks/llm-attacks",
                       "harmful behaviours (the paper evaluates the first 100)", _advbench),
        BundledDataset("jbb", "prompts", ("jailbreakbench/behaviors.csv",), "MIT", "JailbreakBench/artifacts",
                       "JBB-Behaviors: 100 harmful behaviours in 10 categories", _jailbreakbench),
        BundledDataset("harmbench", "prompts", ("harmbench/harmbench_behaviors_text_all.csv",), "MIT",
                       "centerforaisafety/HarmBench (via AdversariaLLM)",
                       "HarmBench's 200 standard text behaviours in 6 semantic categories", _harmbench),
        BundledDataset("jbb-attack-prompts", "attack-prompts", ("jailbreakbench/attack_prompts.jsonl.gz",), "MIT",
                       "JailbreakBench/artifacts",
                       "1,437 jailbreak prompts for the JBB behaviours (GCG, JailbreakChat, PAIR, random search), "
                       "optimised against four other models", _jailbreakbench_attacks),
        BundledDataset("hh-harmless", "pairs", ("hh-rlhf-harmless-test/harmless-base-test.jsonl.gz",), "MIT",
                       "anthropics/hh-rlhf", "human harmlessness preferences (harmless-base test)", _hh_harmless),
        BundledDataset("gptfuzz-train", "labelled", ("gptfuzz/responses_labeled_train.csv", "gptfuzz/question_list.csv"),
                       "MIT", "sherdencooper/GPTFuzz", "responses labelled jailbroken 0/1 (train split)",
                       _gptfuzz_labelled),
        BundledDataset("gptfuzz-eval", "labelled",
                       ("gptfuzz/responses_labeled_evaluate.csv", "gptfuzz/question_list.csv"), "MIT",
                       "sherdencooper/GPTFuzz", "responses labelled jailbroken 0/1 (evaluate split)", _gptfuzz_labelled),
        BundledDataset("saferlhf-labelled", "labelled", (f"{_LR}/safe-rlhf-mini.csv",), "MIT",
                       "ThuCCSLab/JailbreakEval", "4,000 PKU-SafeRLHF answers with human unsafe 0/1 labels",
                       _labelled_responses("saferlhf")),
        BundledDataset("xstest-completions", "labelled",
                       tuple(f"{_LR}/xstest_v2_completions_{m}.csv" for m in ("llama2new", "mistralguard",
                                                                             "mistralinstruct")),
                       "CC-BY-4.0 prompts", "paul-rottger/exaggerated-safety",
                       "3 x 450 XSTest answers; label 1 = full compliance with an unsafe prompt (human labels)",
                       _labelled_responses("xstest")),
        BundledDataset("gptfuzz-templates", "templates", ("gptfuzz/GPTFuzzer.csv",), "MIT", "sherdencooper/GPTFuzz",
                       "jailbreak templates from jailbreakchat.com", _gptfuzz_templates),
        BundledDataset("jailbreak-templates", "templates", ("self-reminder-jailbreaks/jailbreak_prompts.csv",), "MIT",
                       "yjw1029/Self-Reminder-Data", "named jailbreak templates (AIM, DAN, Dev Mode, ...)",
                       _self_reminder_templates),
        BundledDataset("xstest", "prompts", ("xstest/xstest_prompts.csv",), "CC-BY-4.0",
                       "paul-rottger/exaggerated-safety", "safe prompts that look unsafe, with unsafe contrasts",
                       _xstest),
        BundledDataset("xstest-multisource", "pairs",
                       tuple(f"{_LR}/xstest_v2_completions_{m}.csv" for m in XSTEST_COMPLETION_MODELS),
                       "CC-BY-4.0 prompts; completions under the models' terms", "paul-rottger/exaggerated-safety",
                       "cross-model pairs from XSTest completions (Llama-2-70b-chat, Mistral-7B-Instruct ± guardrail)",
                       _xstest_multisource_pairs),
        BundledDataset("harmful-instructions", "prompts", ("refusal-direction/harmful_train.json",), "none stated",
                       "andyrdt/refusal_direction (via AdversariaLLM)", "harmful instructions",
                       _instructions("harmful-instructions")),
        BundledDataset("harmless-instructions", "prompts", ("refusal-direction/harmless_val.json",), "none stated",
                       "andyrdt/refusal_direction (via AdversariaLLM)", "harmless Alpaca-style instructions",
                       _instructions("harmless-instructions")),
        BundledDataset("arc_easy", "task", ("llm-foundry-eval/arc_easy.jsonl",), "CC-BY-SA-4.0",
                       "mosaicml/llm-foundry", "ARC-Easy test (general ability)", _rows),
        BundledDataset("arc_challenge", "task", ("llm-foundry-eval/arc_challenge.jsonl",), "CC-BY-SA-4.0",
                       "mosaicml/llm-foundry", "ARC-Challenge test (general ability)", _rows),
        BundledDataset("winogrande", "task", ("llm-foundry-eval/winogrande.jsonl",), "CC-BY",
                       "mosaicml/llm-foundry", "WinoGrande dev (general ability)", _rows),
        BundledDataset("hellaswag", "task", ("hellaswag-subset/hellaswag_val_subset.jsonl",), "MIT",
                       "rowanz/hellaswag (1,000-row subset)", "HellaSwag validation subset (general ability)", _rows),
        BundledDataset("mmlu", "task", _mmlu_files(), "MIT", "hendrycks/test", "MMLU test, 57 subjects", _rows),
        BundledDataset("truthfulqa", "task", ("truthfulqa/v0_mc_task.json",), "Apache-2.0", "sylinrl/TruthfulQA",
                       "TruthfulQA multiple choice (817 questions)", _rows),
    ]
}


def get_dataset(name: str) -> BundledDataset:
    if name not in REGISTRY:
        raise InputError(f"unknown dataset '{name}' (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


@cache
def _load_cached(name: str) -> list[Any]:
    entry = REGISTRY[name]
    return entry.loader(entry.paths)


def load_dataset(name: str) -> list[Any]:
    """Records of a bundled dataset by registry name."""
    return get_dataset(name).load()


def saferlhf_prompts() -> list[Prompt]:
    """The distinct SafeRLHF prompts (391 of 500 rows), in file order: the default preference prompts."""
    seen, prompts = set(), []
    for pair in load_dataset("saferlhf"):
        text = pair.prompt_text
        pid = prompt_id(text)
        if pid not in seen:
            seen.add(pid)
            prompts.append(Prompt(id=pid, text=text, dataset="saferlhf"))
    return prompts


def load_prompts(spec: str, limit: int | None = None) -> list[Prompt]:
    """Prompts from a bundled dataset name or a file given as ``path[:column]``.

    Bundled: ``saferlhf`` (the 391 distinct prompts), ``advbench``, ``xstest``, ``harmful-instructions``,
    ``harmless-instructions``, or the prompts of any bundled pair set. Files: CSV, JSONL or JSON list; the column
    defaults to the first of ``prompt``, ``goal``, ``instruction``, ``question``, ``text`` that the file has.
    """
    if spec == "saferlhf":
        prompts = saferlhf_prompts()
    elif spec in REGISTRY:
        entry = REGISTRY[spec]
        if entry.kind == "prompts":
            prompts = entry.load()
        elif entry.kind == "pairs":
            seen: dict[str, Prompt] = {}
            for pair in entry.load():
                seen.setdefault(prompt_id(pair.prompt_text), Prompt(id=prompt_id(pair.prompt_text),
                                                                    text=pair.prompt_text, dataset=spec))
            prompts = list(seen.values())
        else:
            raise InputError(f"dataset '{spec}' holds {entry.kind}, not prompts")
    else:
        prompts = _prompts_from_file(spec)
    if limit is not None:
        prompts = prompts[:limit]
    if not prompts:
        raise InputError(f"no prompts in '{spec}'")
    return prompts


_PROMPT_COLUMNS = ("prompt", "goal", "instruction", "question", "text")


def _prompts_from_file(spec: str) -> list[Prompt]:
    path_text, _, column = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = Path(path_text)
    if not path.exists():
        raise InputError(f"unknown dataset or missing file '{spec}' (bundled: {', '.join(REGISTRY)})")
    rows = list(iter_table(path))
    if not column:
        column = next((c for c in _PROMPT_COLUMNS if c in rows[0][1]), "")
        if not column:
            raise InputError(f"no prompt column found (looked for {', '.join(_PROMPT_COLUMNS)}; give path:column)",
                             path=path, line=rows[0][0])
    texts = []
    for line, row in rows:
        value = row.get(column)
        if not isinstance(value, str) or not value.strip():
            raise InputError("missing or empty prompt", path=path, line=line, field=column)
        texts.append(value)
    return prompts_from_texts(texts, dataset=path.stem)


def prompts_from_texts(texts: list[str], dataset: str) -> list[Prompt]:
    """Prompts whose ids derive from their text (an edited file never meets old answers); repeats kept once."""
    prompts: dict[str, Prompt] = {}
    for text in texts:
        prompts.setdefault(prompt_id(text), Prompt(id=prompt_id(text), text=text, dataset=dataset))
    return list(prompts.values())
