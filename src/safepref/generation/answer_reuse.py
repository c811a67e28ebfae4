"""Which rows of an existing answers file a generate call may reuse (see safepref.generation.generate).

A row is the same answer when it was made from the same prompt text with the same decoding settings, backend and
weights (safepref.generation.generate.answer_identity). A file holding this source's answers made otherwise is refused (exit 2,
nothing mixed); the same answers under another name of the model (a local folder whose path changed because a run
folder was moved or copied) are reused instead of being generated and appended a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safepref.core.errors import InputError
from safepref.core.io import AppendLog
from safepref.core.records import Prompt, response_id


def answers_to_reuse(log: AppendLog, prompts: Sequence[Prompt], source: str, identity: dict[str, Any] | None,
                     indices: set[int]) -> dict[str, dict[str, Any]]:
    """One pass over ``log``: stop (exit 2, one line) when it holds rows this call would reuse (same source and
    sample indices: a greedy row never stands in for a sampled one) made from other settings, weights or prompt
    texts; return the same answers written under another name of the model, keyed by this call's response id."""
    if not log.done:
        return {}
    texts = {p.id: p.text for p in prompts}
    moved: dict[str, dict[str, Any]] = {}
    for row in log.rows():
        if row.get("sample_index") not in indices:
            continue
        asked = row.get("prompt_id") in texts
        same_text = asked and row.get("prompt") == texts[row["prompt_id"]]
        differs = _differences(row, identity)
        if row.get("source") != source:
            if same_text and identity is not None and not differs:
                moved.setdefault(response_id(row["prompt_id"], source, row["sample_index"]), row)
        elif asked and not same_text:
            raise InputError(f"holds an answer to prompt '{row['prompt_id']}' with another prompt text; "
                             "choose another --out", path=log.path)
        elif differs:
            raise InputError(f"holds answers from {source} made with other settings ({'; '.join(differs[:3])}): "
                             "choose another --out (nothing was mixed or reused)", path=log.path)
    return moved


def _differences(row: dict[str, Any], identity: dict[str, Any] | None) -> list[str]:
    made_with = row.get("generation") or {}
    found = [f"{k} {made_with.get(k)!r} there, {v!r} now" for k, v in (identity or {}).items() if made_with.get(k) != v]
    # an identity leaves float32 out (keys made before precision was keyed stay valid), while every row made by a
    # local model records its precision: a float32 call must not reuse rows made in another one
    if identity is not None and "dtype" not in identity and made_with.get("dtype", "float32") != "float32":
        found.append(f"dtype {made_with['dtype']!r} there, 'float32' now")
    return found
