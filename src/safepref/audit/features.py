"""The audit's features: every response (chosen and rejected of each pair) as a vector, per feature set.

``shallow`` (length, punctuation, markdown, phrase cues: ``registry/audit_cues.yaml``), ``embed`` (sentence
embeddings of the response alone) or ``hidden:MODEL[:LAYER]`` (the model's hidden states over the response tokens,
given its prompt). Matrices are cached under ``$SAFEPREF_HOME/cache/audit``, keyed by spec, model and texts.
"""

from __future__ import annotations

import os
import re
import string
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from safepref.core.errors import InputError
from safepref.core.keys import content_key
from safepref.core.paths import safepref_home
from safepref.core.progress import progress_bar
from safepref.core.records import Message, Pair
from safepref.judges.features import Embedder, FeatureConfig
from safepref.models.loading import DEFAULT_TARGET, REGISTRY, load_model, load_tokenizer, placement_for, resolve_model_path

if TYPE_CHECKING:
    from safepref.audit.config import AuditConfig

CUES_FILE = Path(__file__).parents[1] / "registry" / "audit_cues.yaml"
SHALLOW_VERSION = 1  # bump when a shallow cue's definition changes, so cached features are recomputed


# ---------------------------------------------------------------------------------------------- specs


def parse_feature_specs(specs: list[str]) -> list[str]:
    """Normalise feature specs (comma lists and ``all`` expanded); unknown ones raise InputError."""

    out: list[str] = []
    for raw in specs:
        for spec in (s.strip() for s in raw.split(",")):
            if not spec:
                continue
            expanded = ["shallow", "embed", f"hidden:{DEFAULT_TARGET}"] if spec == "all" else [spec]
            for one in expanded:
                kind = one.split(":", 1)[0]
                if kind not in ("shallow", "embed", "hidden") or (kind == "shallow" and one != "shallow") or one in (
                    "hidden", "hidden:"
                ):
                    raise InputError(f"unknown feature spec '{one}' (expected shallow, embed, hidden:MODEL[:LAYER] "
                                     "or all)", field="features")
                if one not in out:
                    out.append(one)
    if not out:
        raise InputError("no feature set given", field="features")
    return out


def hidden_spec(spec: str) -> tuple[str, int]:
    """``hidden:MODEL[:LAYER]`` -> (model, layer); a trailing integer is the layer, anything else is the model."""
    body = spec.split(":", 1)[1]
    model, sep, tail = body.rpartition(":")
    if sep and re.fullmatch(r"-?\d+", tail):
        return model, int(tail)
    return body, -1


# ---------------------------------------------------------------------------------------------- shallow cues


@cache
def phrase_cues() -> dict[str, dict[str, Any]]:
    """The phrase lists (data, in ``registry/audit_cues.yaml``): name -> {description, phrases}."""
    return yaml.safe_load(CUES_FILE.read_text(encoding="utf-8"))


_WORD = re.compile(r"\w+", re.UNICODE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.MULTILINE)
_HEADER = re.compile(r"^\s*#{1,6}\s+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_PUNCTUATION = set(string.punctuation)

# name -> (description, function of the raw text); phrase cues are appended from the YAML file
STRUCTURAL_CUES: dict[str, tuple[str, Callable[[str], float]]] = {
    "length_words": ("length in whitespace-separated words", lambda t: len(t.split())),
    "length_chars": ("length in characters", len),
    "n_lines": ("non-empty lines", lambda t: sum(1 for line in t.splitlines() if line.strip())),
    "n_sentences": ("sentence ends (. ! ?)", lambda t: len(_SENTENCE_END.findall(t))),
    "punctuation": ("punctuation characters", lambda t: sum(c in _PUNCTUATION for c in t)),
    "exclamations": ("exclamation marks", lambda t: t.count("!")),
    "questions": ("question marks", lambda t: t.count("?")),
    "markdown_lists": ("markdown list items (-, *, 1.)", lambda t: len(_LIST_ITEM.findall(t))),
    "markdown_headers": ("markdown headers (#)", lambda t: len(_HEADER.findall(t))),
    "markdown_bold": ("markdown bold spans (**x**)", lambda t: len(_BOLD.findall(t))),
    "type_token_ratio": ("lexical diversity: distinct words / words",
                         lambda t: len({w.lower() for w in _WORD.findall(t)}) / max(1, len(_WORD.findall(t)))),
    "mean_word_length": ("mean word length in characters",
                         lambda t: float(np.mean([len(w) for w in _WORD.findall(t)])) if _WORD.findall(t) else 0.0),
}


def _normalise(text: str) -> str:
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def cue_descriptions() -> dict[str, str]:
    described = {name: description for name, (description, _) in STRUCTURAL_CUES.items()}
    described.update({name: entry["description"] for name, entry in phrase_cues().items()})
    return described


def shallow_features(texts: list[str]) -> np.ndarray:
    """One row of shallow cues per text, columns in ``cue_descriptions()`` order."""
    phrase_lists = {name: [_normalise(p) for p in entry["phrases"]] for name, entry in phrase_cues().items()}
    rows = []
    for text in texts:
        row = [float(fn(text)) for _, fn in STRUCTURAL_CUES.values()]
        lowered = _normalise(text)
        row += [float(sum(lowered.count(p) for p in phrases)) for phrases in phrase_lists.values()]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- model features


EMBED_TOKENS, EMBED_CHARS = 128, 768  # the answer's opening, as the harm and refusal judges read it


def embedding_features(texts: list[str], model_name: str, batch_size: int, device: str = "cpu") -> np.ndarray:
    """Sentence embeddings of each response alone (the style a reader sees, without the prompt), over its first
    ``EMBED_TOKENS`` word pieces: the same pass the harm and refusal judges make over an answer, so the pair
    diagnostics that follow an audit reuse it instead of embedding every answer again."""

    embedder = Embedder(FeatureConfig(embedder=model_name), device=device)
    try:
        _ = embedder.model  # a bad name fails here, with its own message
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load embedding model '{model_name}': {str(error).splitlines()[0]}") from None
    return embedder.encode(texts, batch_size=batch_size, progress=True, tokens=EMBED_TOKENS,
                           chars=EMBED_CHARS).astype(np.float64)


def _chat_prefix(tokenizer: Any, prompt: list[Message]) -> str:
    """The model's view of the prompt up to where the answer starts (chat template, or plain text for base models)."""
    messages = [m.model_dump() for m in prompt]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m.content for m in prompt) + "\n\n"


def response_token_mask(tokenizer: Any, prompt: list[Message], response: str, max_length: int) -> tuple[list[int], list[bool]]:
    """Token ids of chat-templated prompt + response (truncated from the left) and which ids belong to the response.

    Membership comes from character offsets, so a token that straddles the prompt/response boundary counts as prompt.
    """
    prefix = _chat_prefix(tokenizer, prompt)
    encoded = tokenizer(prefix + response, add_special_tokens=False, return_offsets_mapping=True,
                        truncation=True, max_length=max_length)
    in_response = [start >= len(prefix) for start, _ in encoded["offset_mapping"]]
    if not any(in_response):  # an answer cut away entirely: fall back to the last token rather than nothing
        in_response[-1] = True
    return encoded["input_ids"], in_response


CPU_BATCH_SIZE, GPU_BATCH_SIZE = 8, 64


def hidden_state_features(items: list[tuple[list[Message], str]], model_name: str, layer: int,
                          batch_size: int | None, max_length: int, device: str = "cpu",
                          dtype: str | None = None) -> np.ndarray:
    """Mean hidden state over each response's tokens at ``layer``, given its prompt through the chat template."""
    # torch loads in seconds: imported only where used
    import torch


    tokenizer = load_tokenizer(model_name)
    tokenizer.truncation_side = "left"  # keep the answer, drop the oldest prompt tokens
    model = load_model(model_name, device=device, dtype=dtype)
    n_states = model.config.num_hidden_layers + 1
    if not -n_states <= layer < n_states:
        raise InputError(f"layer {layer} out of range for '{model_name}' ({n_states} hidden states: "
                         f"0..{n_states - 1} or negative from the end)", field="features")
    backbone = model.base_model  # the transformer without the LM head: no vocabulary-sized logits
    batch_size = batch_size or (GPU_BATCH_SIZE if model.device.type == "cuda" else CPU_BATCH_SIZE)
    encoded = [response_token_mask(tokenizer, prompt, response, max_length) for prompt, response in items]
    order = sorted(range(len(items)), key=lambda i: len(encoded[i][0]))  # similar lengths share a batch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    features = np.zeros((len(items), model.config.hidden_size), dtype=np.float64)
    with progress_bar(len(items), desc=f"hidden {model_name}[{layer}]", unit="resp") as bar, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            # right padding: with causal attention the real tokens never see the pads, and positions start at 0
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            pool = torch.zeros((len(batch), width), dtype=torch.float32)
            for row, i in enumerate(batch):
                token_ids, in_response = encoded[i]
                ids[row, : len(token_ids)] = torch.tensor(token_ids)
                attention[row, : len(token_ids)] = 1
                pool[row, : len(token_ids)] = torch.tensor(in_response, dtype=torch.float32)
            ids, attention, pool = ids.to(model.device), attention.to(model.device), pool.to(model.device)
            states = backbone(input_ids=ids, attention_mask=attention, output_hidden_states=True).hidden_states[layer]
            pooled = (states.float() * pool.unsqueeze(-1)).sum(1) / pool.sum(1, keepdim=True)
            features[batch] = pooled.double().cpu().numpy()
            bar.update(len(batch))
    return features


def _model_identity(model_name: str) -> Any:
    """What a cached hidden-state feature depends on: the model name, or a local folder's weights (size, mtime)."""

    if model_name in REGISTRY:
        return model_name
    path = Path(resolve_model_path(model_name))
    if not path.is_dir():
        return model_name
    return [str(path.resolve())] + sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()
                                          if p.is_file())


def _precision_key(model_name: str, config: AuditConfig) -> list[str]:
    """Hidden states in half precision differ from float32 ones: a non-float32 choice is part of the cache key (and
    float32, the CPU's, adds nothing, so existing keys stay)."""

    if config.dtype == "float32" or (config.dtype == "auto" and config.device == "cpu"):
        return []
    name = placement_for(resolve_model_path(model_name), config.device, config.dtype).dtype_name
    return [] if name == "float32" else [name]


def compute_features(spec: str, pairs: list[Pair], config: AuditConfig) -> np.ndarray:
    """Feature matrix for one spec, rows ordered chosen_0, rejected_0, chosen_1, ... (cached by spec and texts)."""
    responses = [text for p in pairs for text in (p.chosen_text, p.rejected_text)]
    kind = spec.split(":", 1)[0]
    if kind == "hidden":
        model_name, layer = hidden_spec(spec)
        identity = (_model_identity(model_name), layer, config.max_length, *_precision_key(model_name, config))
        texts_key = [[m.model_dump() for m in p.prompt] for p in pairs], responses
    elif kind == "embed":
        model_name = spec.split(":", 1)[1] if ":" in spec else "minilm-l6"
        identity, texts_key = (model_name, EMBED_TOKENS, EMBED_CHARS), responses
    else:
        identity, texts_key = (SHALLOW_VERSION, phrase_cues(), list(STRUCTURAL_CUES)), responses
    cache_dir = Path(config.cache_dir) if config.cache_dir else safepref_home() / "cache" / "audit"
    cache_file = cache_dir / f"{kind}-{content_key(spec, identity, texts_key)}.npy"
    if cache_file.exists():
        return np.load(cache_file)
    if kind == "hidden":
        items = [(p.prompt, text) for p in pairs for text in (p.chosen_text, p.rejected_text)]
        matrix = hidden_state_features(items, model_name, layer, config.batch_size, config.max_length,
                                       device=config.device, dtype=config.dtype)
    elif kind == "embed":
        matrix = embedding_features(responses, model_name, (config.batch_size or CPU_BATCH_SIZE) * 4,
                                    device=config.device)
    else:
        matrix = shallow_features(responses)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npy.tmp", delete=False) as handle:
        np.save(handle, matrix)
    os.replace(handle.name, cache_file)
    return matrix
