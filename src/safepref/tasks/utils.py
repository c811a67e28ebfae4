"""Data loading and doc processing for safepref's lm-eval task YAMLs (referenced from them as ``!function utils.x``).

The YAMLs name bundled files by their path inside ``safepref/datafiles``; the loaders here (lm-eval's
``custom_dataset`` hook) resolve them against the installed package at run time, so no absolute path is written
anywhere and the YAMLs also work from lm-eval's own CLI (``lm_eval --include_path <this folder> ...``).
Where lm-eval has a function for a task (HellaSwag preprocessing, TruthfulQA mc2) we call lm-eval's own.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import datasets
from lm_eval.api.samplers import ContextSampler
from lm_eval.tasks.hellaswag.utils import process_docs as lm_eval_hellaswag_docs
from lm_eval.tasks.truthfulqa.utils import process_results_mc2 as lm_eval_mc2

from safepref.core.errors import InputError
from safepref.core.io import iter_table
from safepref.core.paths import bundled_data_dir

# Fixed (not the run's seed) so that every run with the same --limit sees the same MMLU questions.
MMLU_SHUFFLE_SEED = 1234


def _bundled(relative: str) -> Path:
    path = bundled_data_dir() / relative
    if not path.exists():
        raise InputError("bundled task data missing (reinstall safepref)", path=path)
    return path


def _rows(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_table(path)]


def load_bundled(files: dict[str, str], **_metadata: Any) -> datasets.DatasetDict:
    """lm-eval custom_dataset: one split per bundled JSONL/JSON/CSV file, e.g. ``{test: llm-foundry-eval/x.jsonl}``."""
    return datasets.DatasetDict({split: datasets.Dataset.from_list(_rows(_bundled(rel))) for split, rel in files.items()})


def load_truthfulqa(files: dict[str, str], **_metadata: Any) -> datasets.DatasetDict:
    """TruthfulQA's mc_task.json stores each answer set as a dict {answer: label}; turn it into the HF
    ``truthful_qa/multiple_choice`` schema ({choices: [...], labels: [...]}, in the file's order) that lm-eval's
    truthfulqa templates and process_results_mc2 expect. Done here, not in process_docs: Arrow cannot hold
    817 dicts with different keys."""
    splits = {}
    for split, rel in files.items():
        rows = []
        for row in _rows(_bundled(rel)):
            rows.append({
                "question": row["question"],
                **{key: {"choices": list(row[key]), "labels": [int(v) for v in row[key].values()]}
                   for key in ("mc1_targets", "mc2_targets")},
            })
        splits[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(splits)


def load_mmlu(test_folder: str, dev_folder: str, **_metadata: Any) -> datasets.DatasetDict:
    """All MMLU test and dev rows in one ``test`` split, each with its subject (from the file name), its kind
    (test / dev) and its row number in its file. ``mmlu_test_docs`` and ``mmlu_dev_docs`` separate them again."""
    rows = []
    for kind, rel in (("test", test_folder), ("dev", dev_folder)):
        files = sorted(_bundled(rel).glob(f"*_{kind}.csv"))
        if not files:
            raise InputError(f"no MMLU {kind} CSV files", path=_bundled(rel))
        for path in files:
            subject = path.stem.removesuffix(f"_{kind}")
            for index, (line, row) in enumerate(iter_table(path, required=("question", "choice0", "answer"))):
                try:
                    answer = int(row["answer"])
                except ValueError:
                    raise InputError("answer must be an integer 0-3", path=path, line=line, field="answer") from None
                rows.append({
                    "question": row["question"],
                    "choices": [row[f"choice{i}"] for i in range(4)],
                    "answer": answer,
                    "subject": subject,
                    "subject_name": subject.replace("_", " "),
                    "kind": kind,
                    "row": index,
                })
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _rows_of_kind(dataset: datasets.Dataset, kind: str) -> list[int]:
    return [index for index, value in enumerate(dataset["kind"]) if value == kind]  # 10x faster than .filter


def mmlu_test_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    """The test questions in a seeded shuffle, so ``--limit N`` samples across subjects, not the first subject."""
    indices = _rows_of_kind(dataset, "test")
    random.Random(MMLU_SHUFFLE_SEED).shuffle(indices)
    return dataset.select(indices)


def mmlu_dev_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    return dataset.select(_rows_of_kind(dataset, "dev"))


class SameSubjectFirstN(ContextSampler):
    """lm-eval's first_n sampler applied per subject: the first n dev questions of the evaluated question's subject."""

    def sample(self, n: int, eval_doc: dict[str, Any] | None = None, df=None, **kwargs: Any) -> list[dict[str, Any]]:
        if n == 0:
            return []
        if eval_doc is None:
            raise ValueError("SameSubjectFirstN needs the evaluated question (fewshot_split must equal test_split)")
        pool = sorted((d for d in self.fewshot_docs() if d["subject"] == eval_doc["subject"]), key=lambda d: d["row"])
        if n > len(pool):
            raise ValueError(f"{n} shots requested but subject '{eval_doc['subject']}' has {len(pool)} dev questions")
        return pool[:n]


def hellaswag_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    return lm_eval_hellaswag_docs(dataset)


def process_results_mc2(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, float]:
    """lm-eval's TruthfulQA mc2 (probability mass on true answers), reported under the leaderboard's name ``mc2``."""
    return {"mc2": float(lm_eval_mc2(doc, results)["acc"])}
