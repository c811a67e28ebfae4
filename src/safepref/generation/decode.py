"""Continuous-batching decoder on a transformers causal LM (the generate stage's transformers backend).

Why not ``model.generate``: on a CPU the compute per token is fixed, so speed comes from not computing what is
thrown away. ``generate`` with ``num_return_sequences=k`` prefills every prompt k times, and it keeps decoding
every row of a batch until the longest one ends. This loop prefills each prompt once and copies its KV cache to
its k rows, drops a row from the batch (and from the KV cache) the moment it ends, and refills the freed slots
with waiting prompts, so every step computes ``batch_size`` live rows.

Sampling is transformers' own: the logits processors ``generate`` builds for the same settings, then a
multinomial draw. Each row draws from its own random generator seeded by (seed, prompt, sample index), so a
row's answer does not depend on which other rows share its batch (a resumed run draws the same answers).

Device: every tensor (tokens, masks, indices, each row's random generator) is created on the model's device, so
the same loop runs on the CPU and on CUDA (on CUDA the draws differ from the CPU's: each device has its own
generator algorithm).

Layout: all rows are right-aligned on one column axis (left padding), as in ``generate``. ``tokens`` and
``mask`` hold every row's prompt + generated tokens; the KV cache covers all columns but the last, whose token
is the next step's input.

Two costs ``generate`` pays at every step, measured with torch's profiler on SmolLM2-135M (12 prompts x 5 samples,
64 new tokens, 2 CPU cores): concatenating each layer's KV cache with the new column (17% of the time: the whole
cache is copied every step) and sampling over the full 49k-token vocabulary (sorting it for top-p, and drawing from
it: about 20%). Here the cache appends into spare columns (``GrowingLayer``), and when top-k is on (the paper's
settings: transformers' default 50) top-p and the draw run on the k best tokens only, which gives the same
distribution: every token outside the top k has probability 0 after transformers' ``TopKLogitsWarper``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.generation.logits_process import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from safepref.core.device import model_device


@dataclass(frozen=True)
class SamplingSettings:
    """The subset of GenerationConfig the decoder needs (documented there)."""

    max_new_tokens: int
    greedy: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int


@dataclass
class DecodeRequest:
    """One answer to produce: the prompt's token ids and the seed of this row's random generator."""

    key: object  # handed back unchanged with the answer
    prompt_ids: list[int]
    seed: int


SPARE_COLUMNS = 64  # room a cache layer keeps for appended columns: one copy per 64 steps instead of one per step


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` that appends a step's keys and values into spare columns instead of concatenating.

    ``keys`` / ``values`` read as the filled columns (a view); assigning them (the decoder does when rows leave,
    join or are copied) stores the tensor with ``SPARE_COLUMNS`` of room after it.
    """

    def __init__(self, **kwargs):
        self._stored: dict[str, tuple[torch.Tensor | None, int]] = {"keys": (None, 0), "values": (None, 0)}
        super().__init__(**kwargs)

    def _filled(self, name: str) -> torch.Tensor | None:
        buffer, length = self._stored[name]
        return buffer if buffer is None or buffer.dim() < 4 else buffer[:, :, :length]

    def _store(self, name: str, tensor: torch.Tensor | None) -> None:
        if tensor is None or tensor.dim() < 4:  # unset, or the empty placeholder of lazy_initialization
            self._stored[name] = (tensor, 0)
            return
        batch, heads, length, width = tensor.shape
        buffer = tensor.new_empty(batch, heads, length + SPARE_COLUMNS, width)
        buffer[:, :, :length] = tensor
        self._stored[name] = (buffer, length)

    keys = property(lambda self: self._filled("keys"), lambda self, tensor: self._store("keys", tensor))
    values = property(lambda self: self._filled("values"), lambda self, tensor: self._store("values", tensor))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        for name, states in (("keys", key_states), ("values", value_states)):
            buffer, length = self._stored[name]
            if buffer is None or buffer.dim() < 4:
                self._store(name, states)
                continue
            end = length + states.shape[-2]
            if end > buffer.shape[-2]:  # out of room: one copy into a buffer with room again
                self._store(name, buffer[:, :, :length])
                buffer = self._stored[name][0]
            buffer[:, :, length:end] = states
            self._stored[name] = (buffer, end)
        return self.keys, self.values


def growing_cache() -> DynamicCache:
    """A ``DynamicCache`` whose layers are :class:`GrowingLayer`."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowingLayer
    return cache


@dataclass
class _Row:
    request: DecodeRequest
    generator: torch.Generator
    generated: list[int] = field(default_factory=list)


@dataclass
class _Batch:
    """The live rows, their tokens and attention mask (B x T) and their KV cache (T - 1 columns)."""

    rows: list[_Row]
    tokens: torch.Tensor
    mask: torch.Tensor
    cache: DynamicCache


def decode(model, requests: Sequence[DecodeRequest], settings: SamplingSettings, *, batch_size: int,
           stop_ids: set[int], pad_id: int) -> Iterator[tuple[DecodeRequest, list[int]]]:
    """Yield (request, generated token ids) as each answer ends (stop token included, if one was drawn).

    Requests sharing ``prompt_ids`` back to back (a prompt's k samples) are prefilled once together.
    """
    waiting = _group_by_prompt(requests)
    batch: _Batch | None = None
    with torch.inference_mode():
        while True:
            batch, finished = _retire_finished(batch, settings.max_new_tokens, stop_ids)
            yield from finished
            free = batch_size - (len(batch.rows) if batch else 0)
            if waiting and (free >= len(waiting[0]) or batch is None):
                admitted = _take_groups(waiting, free)
                batch = _merge(batch, _prefill(model, admitted, settings, pad_id), pad_id)
                continue  # a new row may already have ended (its first token was a stop token)
            if batch is None:
                return
            _step(model, batch, settings)


def _group_by_prompt(requests: Sequence[DecodeRequest]) -> list[list[DecodeRequest]]:
    groups: list[list[DecodeRequest]] = []
    for request in requests:
        if groups and groups[-1][0].prompt_ids == request.prompt_ids:
            groups[-1].append(request)
        else:
            groups.append([request])
    return groups


def _take_groups(waiting: list[list[DecodeRequest]], free: int) -> list[list[DecodeRequest]]:
    """As many whole prompt groups as fit in the free slots (at least one, so an oversized group still runs)."""
    taken = [waiting.pop(0)]
    used = len(taken[0])
    while waiting and used + len(waiting[0]) <= free:
        used += len(waiting[0])
        taken.append(waiting.pop(0))
    return taken


def _prefill(model, groups: list[list[DecodeRequest]], settings: SamplingSettings, pad_id: int) -> _Batch:
    """Run each distinct prompt once, copy its cache to its k rows, and draw every row's first token."""
    device = model_device(model)
    prompts = [group[0].prompt_ids for group in groups]
    width = max(len(ids) for ids in prompts)
    tokens = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in prompts], device=device)
    starts = torch.tensor([width - len(ids) for ids in prompts], device=device)
    mask = (torch.arange(width, device=device)[None, :] >= starts[:, None]).long()
    cache = growing_cache()
    logits = model(input_ids=tokens, attention_mask=mask, position_ids=_positions(mask), past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1, :]
    copies = torch.tensor([len(group) for group in groups], device=device)
    for layer in cache.layers:  # the k rows of a prompt share its prompt cache
        layer.keys = layer.keys.repeat_interleave(copies, dim=0)
        layer.values = layer.values.repeat_interleave(copies, dim=0)
    rows = [_Row(request, row_generator(request.seed, device)) for group in groups for request in group]
    batch = _Batch(rows, tokens.repeat_interleave(copies, dim=0), mask.repeat_interleave(copies, dim=0), cache)
    _append(batch, _choose(batch, logits.repeat_interleave(copies, dim=0), settings))
    return batch


def row_generator(seed: int, device: torch.device) -> torch.Generator:
    """A row's own random generator, on the device its probabilities are on (multinomial requires that)."""
    return torch.Generator(device=device).manual_seed(seed)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as ``generate`` computes them."""
    positions = mask.cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def _step(model, batch: _Batch, settings: SamplingSettings) -> None:
    """One decoding step for every live row: feed the last token, draw the next."""
    logits = model(input_ids=batch.tokens[:, -1:], attention_mask=batch.mask,
                   position_ids=_positions(batch.mask)[:, -1:], past_key_values=batch.cache,
                   use_cache=True).logits[:, -1, :]
    _append(batch, _choose(batch, logits, settings))


def _choose(batch: _Batch, logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    if settings.greedy:
        return logits.argmax(dim=-1)
    scores = _penalties(batch.mask, settings)(batch.tokens, logits.float())
    if settings.top_k <= 0:  # no top-k: transformers' warpers on the full vocabulary
        return _draw(batch, _full_vocabulary_warpers(settings)(batch.tokens, scores).softmax(dim=-1))
    values, candidates = top_k_top_p(scores, settings)
    return candidates.gather(1, _draw(batch, values.softmax(dim=-1))[:, None]).squeeze(1)


def top_k_top_p(scores: torch.Tensor, settings: SamplingSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Temperature, top-k and top-p as transformers' warpers apply them, computed on each row's k best tokens.

    Returns (filtered logits, token ids), both ``rows x k``, best first; removed tokens hold ``-inf``. One
    difference from ``TopKLogitsWarper``: a token tied with the k-th best score is kept there, not here.
    """
    values, candidates = scores.topk(min(settings.top_k, scores.shape[-1]), dim=-1)  # sorted, best first
    if settings.temperature != 1.0:
        values = values / settings.temperature  # a positive scale keeps the order, so the top k are the same
    if settings.top_p < 1.0:
        # TopPLogitsWarper: ascending order, drop tokens whose cumulative probability is <= 1 - top_p, keep the best
        cumulative = values.flip(-1).softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= 1 - settings.top_p
        remove[..., -1] = False
        values = values.masked_fill(remove.flip(-1), float("-inf"))
    return values, candidates


def _draw(batch: _Batch, probs: torch.Tensor) -> torch.Tensor:
    """One draw per row from the row's own generator: the answer does not depend on its batch neighbours."""
    return torch.cat([torch.multinomial(probs[i], 1, generator=row.generator) for i, row in enumerate(batch.rows)])


def _penalties(mask: torch.Tensor, settings: SamplingSettings) -> LogitsProcessorList:
    """The processors ``generate`` applies before its warpers, in its order (rebuilt because rows come and go)."""
    processors = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        # generate penalises prompt tokens too, but not the left padding.
        padding = (mask != 0).int().argmax(dim=1)
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty, prompt_ignore_length=padding))
    if settings.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(settings.no_repeat_ngram_size))
    return processors


def _full_vocabulary_warpers(settings: SamplingSettings) -> LogitsProcessorList:
    """``generate``'s warpers when top-k is off (with it on, :func:`top_k_top_p` does their work on k tokens)."""
    warpers = LogitsProcessorList()
    if settings.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_p < 1.0:
        warpers.append(TopPLogitsWarper(settings.top_p))
    return warpers


def _append(batch: _Batch, next_tokens: torch.Tensor) -> None:
    batch.tokens = torch.cat([batch.tokens, next_tokens[:, None]], dim=1)
    batch.mask = torch.cat([batch.mask, torch.ones_like(next_tokens)[:, None]], dim=1)
    for row, token in zip(batch.rows, next_tokens.tolist(), strict=True):
        row.generated.append(token)


def _retire_finished(batch: _Batch | None, max_new_tokens: int, stop_ids: set[int]):
    """Split off the rows that drew a stop token or reached the length limit; drop them from tensors and cache."""
    if batch is None:
        return None, []
    done = [row.generated[-1] in stop_ids or len(row.generated) >= max_new_tokens for row in batch.rows]
    if not any(done):
        return batch, []
    finished = [(row.request, row.generated) for row, is_done in zip(batch.rows, done, strict=True) if is_done]
    keep = [i for i, is_done in enumerate(done) if not is_done]
    if not keep:
        return None, finished
    index = torch.tensor(keep, device=batch.tokens.device)
    batch.rows = [batch.rows[i] for i in keep]
    batch.tokens, batch.mask = batch.tokens[index], batch.mask[index]
    # Columns that are padding in every remaining row (a long row just left) are dropped too.
    first_used = int(batch.mask.any(dim=0).int().argmax())
    batch.tokens, batch.mask = batch.tokens[:, first_used:], batch.mask[:, first_used:]
    for layer in batch.cache.layers:
        layer.keys = layer.keys.index_select(0, index)[:, :, first_used:]
        layer.values = layer.values.index_select(0, index)[:, :, first_used:]
    return batch, finished


def _merge(batch: _Batch | None, new: _Batch, pad_id: int) -> _Batch:
    """Stack new rows under the live ones, left-padding whichever is shorter so the last columns align."""
    if batch is None:
        return new
    width = max(batch.tokens.shape[1], new.tokens.shape[1])
    for part in (batch, new):
        extra = width - part.tokens.shape[1]
        if extra:
            part.tokens = F.pad(part.tokens, (extra, 0), value=pad_id)
            part.mask = F.pad(part.mask, (extra, 0), value=0)
            for layer in part.cache.layers:
                layer.keys = F.pad(layer.keys, (0, 0, extra, 0))
                layer.values = F.pad(layer.values, (0, 0, extra, 0))
    for layer, new_layer in zip(batch.cache.layers, new.cache.layers, strict=True):
        layer.keys = torch.cat([layer.keys, new_layer.keys])
        layer.values = torch.cat([layer.values, new_layer.values])
    return _Batch(batch.rows + new.rows, torch.cat([batch.tokens, new.tokens]), torch.cat([batch.mask, new.mask]),
                  batch.cache)


# ---------------------------------------------------------------------------------------------- model.generate


def generate_rows(model, requests: Sequence[DecodeRequest], settings: SamplingSettings, *, batch_size: int,
                  stop_ids: set[int], pad_id: int, static_cache: bool = False
                  ) -> Iterator[tuple[DecodeRequest, list[int]]]:
    """The other engine: transformers' ``model.generate`` on batches of ``batch_size`` rows (whole prompt groups).

    Same contract as :func:`decode`. Differences: a batch runs until its longest row ends, the prompt is prefilled
    once per row, and sampling draws from torch's global generator seeded by the batch's first row, so a row's
    answer depends on its batch (still reproducible for the same prompts, settings and batch size).
    ``static_cache`` asks for a static KV cache (on CUDA, transformers then compiles the forward pass).
    """
    # similar prompt lengths share a batch, as in the usual length-sorted model.generate loop: less left padding
    waiting = sorted(_group_by_prompt(requests), key=lambda group: len(group[0].prompt_ids))
    device = model_device(model)
    with torch.inference_mode():
        while waiting:
            rows = [request for group in _take_groups(waiting, batch_size) for request in group]
            width = max(len(r.prompt_ids) for r in rows)
            tokens = torch.tensor([[pad_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows], device=device)
            mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows],
                                device=device)
            torch.manual_seed(rows[0].seed)
            output = model.generate(input_ids=tokens, attention_mask=mask, pad_token_id=pad_id,
                                    eos_token_id=sorted(stop_ids), **_generate_kwargs(settings, static_cache))
            for request, row in zip(rows, output[:, width:].tolist(), strict=True):
                yield request, _until_stop(row, stop_ids)


def _generate_kwargs(settings: SamplingSettings, static_cache: bool) -> dict:
    """``generate`` arguments for these settings (greedy passes no sampling ones, so generate does not warn)."""
    kwargs: dict = {"max_new_tokens": settings.max_new_tokens, "do_sample": not settings.greedy}
    if static_cache:
        kwargs["cache_implementation"] = "static"
    if not settings.greedy:
        kwargs.update(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                      repetition_penalty=settings.repetition_penalty,
                      no_repeat_ngram_size=settings.no_repeat_ngram_size)
    return kwargs


def _until_stop(row: list[int], stop_ids: set[int]) -> list[int]:
    """Generated ids up to and including the first stop token (what follows is padding)."""
    for position, token in enumerate(row):
        if token in stop_ids:
            return row[:position + 1]
    return row
