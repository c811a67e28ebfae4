"""Reference log-probabilities per answer, shared by every DPO run on the same reference model.

DPO needs log p_ref(answer | prompt) for both sides of every pair. The value depends on the reference weights, the
prompt's and the answer's token ids, the truncation (max_length, mode) and the precision, and on nothing else: not
on the other side of the pair, the recipe, the learning rate or beta. A grid's recipes share most answers (the
target's own samples are the rejected side of HC+Self, GPT4o+Self and Stronger+Self, and both sides of Self+RM), so
a store keyed per answer computes each once for the whole grid, where a cache keyed by the whole pair set (TRL's,
or safepref's earlier one) computes every recipe's pairs again.

The store is one ``.npz`` per reference setting under ``$SAFEPREF_HOME/ref-logps/``: answer keys and values,
merged and replaced atomically on every write, so an interrupted run loses at most the batch in flight and two
runs writing the same store keep each other's values.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Sequences = list[tuple[list[int], list[int]]]  # (prompt ids, completion ids)


def answer_key(prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> str:
    data = np.asarray([*prompt_ids, -1, *completion_ids], dtype=np.int64).tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class AnswerLogpStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, float] = self._read()

    def _read(self) -> dict[str, float]:
        if not self.path.is_file():
            return {}
        with np.load(self.path) as data:
            return dict(zip(data["keys"].tolist(), data["values"].tolist(), strict=True))

    def save(self) -> None:
        merged = {**self._read(), **self.values}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(merged)), values=np.array(list(merged.values()), dtype=np.float64))
        os.replace(tmp, self.path)
        self.values = merged

    def fill(self, sequences: Sequences, compute: Callable[[Sequences], list[float]], batch: int) -> int:
        """Compute the log-probs of the sequences not yet stored, ``batch`` at a time, saving after each batch;
        returns how many were computed. Sequences are sorted by length so batches carry little padding."""
        todo = {}
        for prompt, completion in sequences:
            key = answer_key(prompt, completion)
            if key not in self.values:
                todo[key] = (prompt, completion)
        items = sorted(todo.items(), key=lambda kv: len(kv[1][0]) + len(kv[1][1]))
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            self.values.update(zip([k for k, _ in chunk], compute([s for _, s in chunk]), strict=True))
            self.save()
        return len(items)

    def lookup(self, sequences: Sequences) -> list[float]:
        return [self.values[answer_key(p, c)] for p, c in sequences]
