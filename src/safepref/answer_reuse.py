"""Which rows of an existing answers file a generate call may reuse (see safepref.generate).

A row is the same answer when it was made from the same prompt text with the same decoding settings, backend and
weights (safepref.generate.answer_identity). A file holding this source's answers made otherwise is refused (exit 2,
nothing mixed); the same answers under another name of the model (a local folder whose path changed because a run
folder was moved or copied) are reused instead of being generated and appended a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safepref.errors import InputError
from safepref.io import AppendLog
from safepref.records import Prompt, response_id


def refuse_other_inputs(log: AppendLog, prompts: Sequence[Prompt], source: str,
                         identity: dict[str, Any] | None, indices: set[int]) -> None:
    """Stop (exit 2, one line) when ``log`` holds rows this call would reuse (same source and sample indices: a
    greedy row never stands in for a sampled one) made from other settings, weights or prompt texts."""
    if not log.done:
        return
    texts = {p.id: p.text for p in prompts}
    for row in log.rows():
        if row.get("source") != source or row.get("sample_index") not in indices:
            continue
        if row.get("prompt_id") in texts and row.get("prompt") != texts[row["prompt_id"]]:
            raise InputError(f"holds an answer to prompt '{row['prompt_id']}' with another prompt text; "
                             "choose another --out", path=log.path)
        if identity is None:
            continue
        made_with = row.get("generation") or {}
        differs = [f"{k} {made_with.get(k)!r} there, {v!r} now" for k, v in identity.items() if made_with.get(k) != v]
        if differs:
            raise InputError(f"holds answers from {source} made with other settings ({'; '.join(differs[:3])}): "
                             "choose another --out (nothing was mixed or reused)", path=log.path)


def same_answers_elsewhere(log: AppendLog, source: str, identity: dict[str, Any] | None, texts: dict[str, str],
                            wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Rows this call would write, already in ``log`` under another name of the same model: a local model folder
    whose path changed (a run folder moved or copied) with the same weights and settings, answering the same prompt
    text. Keyed by this call's response id; they are reused, not generated and appended again."""
    if identity is None or not log.done:
        return {}
    found = {}
    for row in log.rows():
        key = response_id(row.get("prompt_id"), source, row.get("sample_index"))
        made_with = row.get("generation") or {}
        if (row.get("source") != source and key in wanted and row.get("prompt") == texts.get(row.get("prompt_id"))
                and all(made_with.get(k) == v for k, v in identity.items())):
            found.setdefault(key, row)
    return found
