"""Human-labelled (request, answer) examples the trained judges learn from, grouped by source for
leave-one-source-out validation.

| source | rows | harm label (1 = the answer gives the harmful help asked for) | refusal label |
|---|---|---|---|
| gptfuzz | 7,700 (train + evaluate) | GPTFuzz's "jailbroken" | — |
| saferlhf | 4,000 | PKU-SafeRLHF's human "unsafe" | — |
| xstest-{llama2new,mistralguard,mistralinstruct} | 450 each | full compliance with an unsafe prompt | full/partial refusal |

XSTest: compliance with a safe prompt is not harm; its human ``final_label`` gives the refusal label.
"""

from __future__ import annotations

from pathlib import Path

from safepref.core.datasets import load_dataset
from safepref.core.labelled import XSTEST_MODELS, Example, saferlhf_examples, xstest_examples
from safepref.core.paths import bundled_data_dir


def _gptfuzz() -> list[Example]:

    return [Example("gptfuzz", r.prompt, r.response, r.label, None)
            for name in ("gptfuzz-train", "gptfuzz-eval") for r in load_dataset(name)]


def labelled_sources() -> dict[str, list[Example]]:
    """Every bundled labelled source by name (see the module table)."""
    folder = bundled_data_dir() / "labelled-responses"
    sources = {"gptfuzz": _gptfuzz(), "saferlhf": saferlhf_examples(folder / "safe-rlhf-mini.csv")}
    for model in XSTEST_MODELS:
        sources[f"xstest-{model}"] = xstest_examples(folder / f"xstest_v2_completions_{model}.csv", model)
    return sources


def base_source(source: str) -> str:
    """The human-labelled source a row belongs to: a synthetic row's source is ``<source>/<kind>`` (see
    safepref.judges.non_answers and safepref.judges.framings), held out with the source it was built from."""
    return source.split("/", 1)[0]


def data_files() -> list[Path]:
    """The files the sources read (their content keys the trained heads' cards)."""
    folder = bundled_data_dir()
    return [folder / "gptfuzz" / name for name in ("responses_labeled_train.csv", "responses_labeled_evaluate.csv",
                                                   "question_list.csv")] + \
        [folder / "labelled-responses" / "safe-rlhf-mini.csv"] + \
        [folder / "labelled-responses" / f"xstest_v2_completions_{m}.csv" for m in XSTEST_MODELS]
