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

from safepref.core.keys import content_key
from safepref.core.paths import safepref_home

Sequences = list[tuple[list[int], list[int]]]  # (prompt ids, completion ids)


def ref_logps_cache_dir() -> Path:
    return safepref_home() / "ref-logps"


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

    def fill(self, sequences: Sequences, compute: Callable[[Sequences], list[float]],
             batch: int) -> tuple[int, int]:
        """Compute the log-probs of the sequences not yet stored, ``batch`` at a time, saving after each batch;
        returns (how many were computed, how many distinct sequences there are). Sequences are sorted by length so
        batches carry little padding."""
        distinct = {answer_key(p, c): (p, c) for p, c in sequences}
        todo = {key: sequence for key, sequence in distinct.items() if key not in self.values}
        items = sorted(todo.items(), key=lambda kv: len(kv[1][0]) + len(kv[1][1]))
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            self.values.update(zip([k for k, _ in chunk], compute([s for _, s in chunk]), strict=True))
            self.save()
        return len(items), len(distinct)

    def lookup(self, sequences: Sequences) -> list[float]:
        return [self.values[answer_key(p, c)] for p, c in sequences]


class PerAnswerReference:
    """Mixed into TRL's ``DPOTrainer`` (``safepref.training.dpo.make_trainer``): reference log-probs from the per-answer
    store, computing only the answers no earlier run on this reference has seen, with TRL's own
    ``compute_ref_log_probs``."""

    def _per_answer_ref_logps(self, dataset, batch_size: int, reference_hash: str | None):
        # datasets loads in seconds: imported only where used
        from datasets import Dataset, concatenate_datasets

        args = self.args
        key = content_key(reference_hash, args.max_length, args.truncation_mode, args.bf16, length=20)
        store = AnswerLogpStore(ref_logps_cache_dir() / f"answers-{key}.npz")
        prompts = dataset["prompt_ids"]
        chosen = list(zip(prompts, dataset["chosen_ids"], strict=True))
        rejected = list(zip(prompts, dataset["rejected_ids"], strict=True))
        computed, unique = store.fill(chosen + rejected, self._sequence_ref_logps, batch=2 * batch_size)
        self.reference_source = ("cached" if computed == 0 else "computed" if computed == unique
                                 else f"computed {computed} of {unique} answers, the rest cached")
        refs = Dataset.from_dict({"ref_chosen_logps": store.lookup(chosen), "ref_rejected_logps": store.lookup(rejected)})
        return concatenate_datasets([dataset, refs], axis=1)

    def _sequence_ref_logps(self, sequences: Sequences) -> list[float]:
        """log p_ref(completion | prompt) of each (prompt ids, completion ids), truncated and padded as TRL's collator
        does, one row per sequence (TRL's batch halves are chosen and rejected; here any rows, an even count)."""
        # torch loads in seconds: imported only where used
        import torch

        rows = list(sequences) + ([sequences[-1]] if len(sequences) % 2 else [])
        limit = self.args.max_length
        cut = (slice(None) if limit is None else slice(None, limit) if self.args.truncation_mode == "keep_start"
               else slice(-limit, None))
        ids = [(list(p) + list(c))[cut] for p, c in rows]
        completion = [([0] * len(p) + [1] * len(c))[cut] for p, c in rows]
        width = max(len(x) for x in ids)
        pad_id = self.data_collator.pad_token_id
        device = self.accelerator.device
        inputs = {
            "input_ids": torch.tensor([x + [pad_id] * (width - len(x)) for x in ids], device=device),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=device),
            "completion_mask": torch.tensor([m + [0] * (width - len(m)) for m in completion], device=device),
        }
        first, second = self.compute_ref_log_probs(self.ref_model or self.model, inputs)
        return torch.cat([first, second]).float().cpu().tolist()[: len(sequences)]
