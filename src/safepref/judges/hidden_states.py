"""What a bundled language model's hidden states say about an answer to a request (the ``harm`` judge's LM read).

The request (its last ``lm_request_tokens`` tokens: a jailbreak template puts the request last) and the answer's
focused text (its first ``lm_answer_tokens`` tokens, read past an opening refusal, see
``features.answer_after_refusals``) go through the model's chat template as one user turn and one assistant turn;
the feature is the mean of layer ``lm_layer``'s hidden states over the answer's tokens. Only the first ``lm_layer``
decoder layers run.

Why: on SmolLM2-135M-Instruct, a logistic probe on layer 20's mean answer state alone,
trained without GPTFuzz, agreed 0.910 (kappa 0.80) with GPTFuzz's human labels on 1,500 of its answers, where the
MiniLM head's fold scores 0.878 (0.69); trained without SafeRLHF, 0.674 against 0.615. Layers 6 / 10 / 14 / 17
gave 0.890 / 0.879 / 0.903 / 0.901 on GPTFuzz; the last token's state instead of the mean, 0.74-0.84. A generative
model trained to follow and refuse instructions reads "does this answer carry out that request" better than a
sentence-similarity encoder. It costs: ~10 answers/s on 2 cores for 20 layers over ~100 tokens.

Precision: the read runs in the device policy's precision for the ``lm_read`` workload (safepref.core.device):
bfloat16 weights on a CPU where bfloat16 measured faster, float32 elsewhere; the states are averaged in float32.
The heads were trained on float32 states; ``benchmarks/bench_bf16.py`` measures how often a verdict read in
bfloat16 agrees with float32's. Training (``cache_name``) reads in float32 unless told otherwise.
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

from safepref.core.device import resolve_device
from safepref.core.paths import safepref_home
from safepref.core.progress import progress_bar
from safepref.models.loading import dtype_name_for, load_model, load_tokenizer, weights_fingerprint

_MODELS: dict[tuple[str, int, str, str], tuple[object, object]] = {}
_RECENT: dict[str, np.ndarray] = {}  # states computed in this process (no disk cache): shared, bounded
_RECENT_LIMIT = 20_000  # 576 float32 each for SmolLM2: ~46 MB
_SAVE_EVERY_S = 60.0
_USER, _ANSWER = "\ue000", "\ue001"  # private-use markers where the request and the answer go in the template


class HiddenStateReader:
    """Mean hidden state of an answer's tokens at one layer of a causal LM, the request in context. Training keeps
    the states in an on-disk cache (each pair is read once across runs); at run time they are shared in-process."""

    def __init__(self, model: str, layer: int, request_tokens: int, answer_tokens: int,
                 cache_name: str | None = None, device: str = "cpu", batch_size: int = 16,
                 dtype: str = "float32") -> None:

        self.model_name, self.layer = model, layer
        self.weights = weights_fingerprint(model)  # cached states are keyed by the weights, not the model's name
        self.request_tokens, self.answer_tokens = request_tokens, answer_tokens
        self.device, self.batch_size = str(resolve_device(device)), batch_size
        self.dtype = dtype_name_for(model, self.device, dtype, workload="lm_read")
        self.cache_path = safepref_home() / "judges" / f"{cache_name}.npz" if cache_name else None
        self.states: dict[str, np.ndarray] = _RECENT if self.cache_path is None else {}
        if self.cache_path is not None and self.cache_path.is_file():
            with np.load(self.cache_path) as data:
                self.states = dict(zip(data["keys"].tolist(), data["states"], strict=True))

    def _loaded(self):
        key = (self.model_name, self.layer, self.device, self.dtype)
        if key not in _MODELS:
            model = load_model(self.model_name, device=self.device, dtype=self.dtype)
            # the layers after the one read are never needed: drop them (a private copy, never used to generate)
            model.model.layers = model.model.layers[: self.layer]
            _MODELS[key] = (model, load_tokenizer(self.model_name))
        return _MODELS[key]

    def _template(self, tokenizer) -> tuple[list[int], list[int]]:
        """Token ids before the request and between the request and the answer, from the model's chat template."""
        text = tokenizer.apply_chat_template([{"role": "user", "content": _USER},
                                              {"role": "assistant", "content": _ANSWER}], tokenize=False)
        before, rest = text.split(_USER)
        between = rest.split(_ANSWER)[0]
        encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        return encode(before), encode(between)

    def _key(self, request: str, answer: str) -> str:
        # float32 states keep the keys they had before the precision was a choice
        precision = "" if self.dtype == "float32" else f"|{self.dtype}"
        head = f"{self.weights}|{self.layer}|{self.request_tokens}|{self.answer_tokens}{precision}"
        return hashlib.sha1(f"{head}|{request[-16 * self.request_tokens:]}|"
                            f"{answer[: 16 * self.answer_tokens]}".encode()).hexdigest()

    def read(self, requests: list[str], answers: list[str], progress: bool = False) -> np.ndarray:
        keys = [self._key(r, a) for r, a in zip(requests, answers, strict=True)]
        todo = {k: (r, a) for k, r, a in zip(keys, requests, answers, strict=True) if k not in self.states}
        if todo:
            if self.states is _RECENT and len(_RECENT) + len(todo) > _RECENT_LIMIT:
                kept = {k: _RECENT[k] for k in keys if k in _RECENT}
                _RECENT.clear()
                _RECENT.update(kept)
            self._compute(todo, progress)
        return np.stack([self.states[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)

    def _ids(self, tokenizer, request: str, answer: str, before: list[int], between: list[int]) -> tuple[list, int]:
        # cut the texts before tokenising (a cheap upper bound: a token is rarely longer than 16 characters)
        request_ids = tokenizer(request[-16 * self.request_tokens:], add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer[: 16 * self.answer_tokens], add_special_tokens=False)["input_ids"]
        prompt = before + request_ids[-self.request_tokens:] + between
        return prompt + answer_ids[: self.answer_tokens], len(prompt)

    def _compute(self, todo: dict[str, tuple[str, str]], progress: bool) -> None:
        # torch loads in seconds: imported only where used
        import torch


        model, tokenizer = self._loaded()
        before, between = self._template(tokenizer)
        encoded = {k: self._ids(tokenizer, r, a, before, between) for k, (r, a) in todo.items()}
        order = sorted(encoded, key=lambda k: len(encoded[k][0]))  # similar lengths batch with little padding
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        bar = progress_bar(len(order), desc=f"reading answers ({self.model_name})", unit="answer",
                           disable=not progress)
        saved = time.monotonic()
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                width = max(len(encoded[k][0]) for k in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, k in enumerate(batch):
                    tokens = encoded[k][0]
                    ids[row, : len(tokens)] = torch.tensor(tokens)
                    mask[row, : len(tokens)] = 1
                out = model.model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                  output_hidden_states=True)
                hidden = out.hidden_states[self.layer].float().cpu()
                for row, k in enumerate(batch):
                    length, answer_start = len(encoded[k][0]), encoded[k][1]
                    # an empty answer has no tokens of its own: the state after the prompt stands for it
                    span = hidden[row, answer_start:length] if length > answer_start else hidden[row, length - 1:length]
                    self.states[k] = span.mean(dim=0).numpy().astype(np.float32)
                if self.cache_path is not None and time.monotonic() - saved > _SAVE_EVERY_S:
                    self._save()
                    saved = time.monotonic()
                bar.update(len(batch))
        bar.close()
        self._save()

    def _save(self) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_name(f".{self.cache_path.stem}.{os.getpid()}.tmp.npz")
        keys = list(self.states)
        np.savez(tmp, keys=np.array(keys), states=np.stack([self.states[k] for k in keys]))
        os.replace(tmp, self.cache_path)
