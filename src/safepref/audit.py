"""Separability audit: can a linear probe tell chosen from rejected, and by which cue?

The paper's mechanism (Wang et al. 2025): when chosen and rejected come from different models, a linear probe on
their representations separates them almost perfectly, so DPO can learn "who wrote it" instead of the safety
constraint. This stage measures that for any preference data:

1. Each response (chosen and rejected of every pair) becomes a feature vector, per feature set:
   ``hidden:MODEL[:LAYER]`` (the target model's hidden states over the response tokens, given its prompt),
   ``embed`` (sentence embeddings of the response) or ``shallow`` (length, punctuation, markdown, phrase cues).
2. A standardised logistic regression classifies chosen vs rejected, cross-validated in k folds grouped by prompt
   (no prompt, hence no pair, on both sides of a split), giving an out-of-fold score for every response.
3. Accuracy carries a 95% CI from a bootstrap over prompts: the two sides of a pair (and pairs that share a
   prompt) are not independent, so a Wilson interval over the 2n responses would be too narrow. Wilson is
   reported beside it for reference.
4. A control runs the same probe after swapping chosen/rejected in a random half of the pairs of every fold (the
   pair structure is kept, the label carries no information): it must come out near 0.5, or the protocol leaks.
5. Every shallow cue is also probed alone (same folds) with its Cohen's d, so the verdict can say which cue
   separates.

Verdict thresholds are set on the accuracy *above the control* (the margin), not on raw accuracy, so a leaky or
unbalanced setup does not read as separability. A margin of 0.30 (about 0.80 accuracy against a 0.5 control) means
the probe ranks four responses in five correctly from style alone: DPO's implicit reward can then reach most of its
margin without reading content — high shortcut risk. Below 0.15 (about 0.65) the shortcut explains little.
If the accuracy's CI does not clear the control, the data is called not separable.
"""

from __future__ import annotations

import logging
import math
import os
import re
import string
import tempfile
from collections.abc import Callable
from dataclasses import field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import Field
from pydantic.dataclasses import dataclass

from safepref.errors import InputError
from safepref.io import fingerprint, read_pairs, write_json_atomic, write_text_atomic
from safepref.pair_diagnostics import diagnostics_line, pair_diagnostics
from safepref.paths import safepref_home, slug
from safepref.progress import progress_bar
from safepref.records import Message, Pair
from safepref.stats import wilson_interval

log = logging.getLogger(__name__)

CUES_FILE = Path(__file__).parent / "registry" / "audit_cues.yaml"
CONTROL_PAIRS_BUDGET = 1000  # control draws x pairs: 5 draws up to 200 pairs, 2 at 500, 1 from 2,000 on
SHALLOW_VERSION = 1  # bump when a shallow cue's definition changes, so cached features are recomputed
LENGTH_UNIT = "whitespace-separated words (no tokenizer: the same count for every model)"


@dataclass
class AuditConfig:
    """How to audit a preference dataset for separability."""

    features: list[str] = field(default_factory=lambda: ["shallow", "embed"])
    """Feature sets: ``shallow``, ``embed`` (bundled MiniLM) or ``embed:NAME``, ``hidden:MODEL[:LAYER]`` (layer
    index into the hidden states, 0 = embeddings, negative from the end, last by default), or ``all``
    (shallow, embed and hidden of the default target model)."""
    folds: int = Field(default=5, ge=2)
    """k of the grouped k-fold cross-validation; reduced (with a warning) when there are fewer prompts than k."""
    seed: int = 0
    """Seed of the fold assignment, the control's label swaps and the bootstrap."""
    batch_size: int | None = Field(default=None, ge=1)
    """Responses per forward pass for hidden-state features (embeddings use 4x this); by default 8 on the CPU and
    64 on a GPU, where small batches leave it idle (measured on an H100: scripts/gpu_check.py)."""
    max_length: int = Field(default=1024, ge=16)
    """Longest prompt + response in tokens for hidden-state features; longer ones lose the start of the prompt."""
    control_repeats: int = Field(default=5, ge=1)
    """Most shuffled-label control runs (different label swaps) averaged: one draw alone varies by several points on
    small sets; large sets use fewer (see CONTROL_PAIRS_BUDGET)."""
    bootstrap: int = Field(default=2000, ge=100)
    """Bootstrap resamples of prompts for the confidence intervals."""
    high_risk_margin: float = 0.30
    """Accuracy above the shuffled-label control from which the shortcut risk is called high."""
    moderate_risk_margin: float = 0.15
    """Accuracy above the control from which the shortcut risk is called moderate (below: low)."""
    device: str = "auto"
    """Where hidden-state and embedding models run: auto | cpu | cuda | cuda:N (safepref.device)."""
    dtype: str = "auto"
    """Precision of the hidden-state model: auto (the device policy) | float32 | bfloat16 | float16."""
    cache_dir: str | None = None
    """Feature cache folder (default ``$SAFEPREF_HOME/cache/audit``); features are keyed by spec and texts."""


# ---------------------------------------------------------------------------------------------- inputs


def resolve_pairs(source: str | Path) -> list[Pair]:
    """Pairs from a preference file (TRL standard or conversational) or a bundled dataset name with pairs."""
    from safepref import data

    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        return read_pairs(path)
    if text in data.REGISTRY:
        entry = data.get_dataset(text)
        if entry.kind != "pairs":
            pair_sets = [d.name for d in data.REGISTRY.values() if d.kind == "pairs"]
            raise InputError(f"dataset '{text}' holds {entry.kind}, not pairs (bundled pairs: {', '.join(pair_sets)})")
        return list(entry.load())
    raise InputError("file not found (nor a bundled dataset with pairs)", path=text)


def parse_feature_specs(specs: list[str]) -> list[str]:
    """Normalise feature specs (comma lists and ``all`` expanded); unknown ones raise InputError."""
    from safepref.models import DEFAULT_TARGET

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


def _hidden_spec(spec: str) -> tuple[str, int]:
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


def embedding_features(texts: list[str], model_name: str, batch_size: int, device: str = "cpu") -> np.ndarray:
    """Sentence embeddings of each response alone (the style a reader sees, without the prompt)."""
    from safepref.models import load_embedder

    try:
        embedder = load_embedder(model_name, device=device)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load embedding model '{model_name}': {str(error).splitlines()[0]}") from None
    chunks = []
    with progress_bar(len(texts), desc=f"embed {model_name}", unit="text") as bar:
        for start in range(0, len(texts), 256):
            chunk = texts[start:start + 256]
            chunks.append(embedder.encode(chunk, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False))
            bar.update(len(chunk))
    return np.concatenate(chunks).astype(np.float64)


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
    import torch

    from safepref.models import load_model, load_tokenizer

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
    from safepref.models import REGISTRY, resolve_model_path

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
    from safepref.models import placement_for, resolve_model_path

    if config.dtype == "float32" or (config.dtype == "auto" and config.device == "cpu"):
        return []
    name = placement_for(resolve_model_path(model_name), config.device, config.dtype).dtype_name
    return [] if name == "float32" else [name]


def compute_features(spec: str, pairs: list[Pair], config: AuditConfig) -> np.ndarray:
    """Feature matrix for one spec, rows ordered chosen_0, rejected_0, chosen_1, ... (cached by spec and texts)."""
    responses = [text for p in pairs for text in (p.chosen_text, p.rejected_text)]
    kind = spec.split(":", 1)[0]
    if kind == "hidden":
        model_name, layer = _hidden_spec(spec)
        identity = (_model_identity(model_name), layer, config.max_length, *_precision_key(model_name, config))
        texts_key = [[m.model_dump() for m in p.prompt] for p in pairs], responses
    elif kind == "embed":
        model_name = spec.split(":", 1)[1] if ":" in spec else "minilm-l6"
        identity, texts_key = model_name, responses
    else:
        identity, texts_key = (SHALLOW_VERSION, phrase_cues(), list(STRUCTURAL_CUES)), responses
    cache_dir = Path(config.cache_dir) if config.cache_dir else safepref_home() / "cache" / "audit"
    cache_file = cache_dir / f"{kind}-{fingerprint(spec, identity, texts_key)}.npy"
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


# ---------------------------------------------------------------------------------------------- probing


def grouped_splits(groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds over responses with every prompt group wholly on one side (both sides of a pair share a group)."""
    from sklearn.model_selection import GroupKFold

    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def control_swapped_labels(labels: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], seed: int) -> np.ndarray:
    """Labels with chosen/rejected swapped in a random half of the pairs of every test fold.

    A pair's two sides stay together (one 1, one 0), so the control keeps the pair structure and only the label's
    meaning is lost. Balancing the swaps per fold matters: with plain coin flips, a fold whose training part has
    more "long = chosen" pairs leaves a test part with fewer, and a probe on strongly separable features then
    scores systematically *below* 0.5 (the known downward bias of cross-validation under null labels).
    """
    rng = np.random.default_rng(seed)
    swapped = labels.copy()
    for _, test in splits:
        pair_indices = np.unique(test // 2)
        chosen_to_swap = rng.permutation(pair_indices)[: (len(pair_indices) + rng.integers(0, 2)) // 2]
        for pair_index in chosen_to_swap:
            swapped[2 * pair_index: 2 * pair_index + 2] = 1 - labels[2 * pair_index: 2 * pair_index + 2]
    return swapped


def out_of_fold_scores(features: np.ndarray, labels: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Decision score of a standardised logistic regression for every response, from the fold that held it out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros(len(labels))
    for train, test in splits:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(features[train], labels[train])
        scores[test] = probe.decision_function(features[test])
    return scores


def cluster_bootstrap_interval(values: np.ndarray, clusters: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of mean(values), resampling whole clusters (prompts) with replacement."""
    _, index = np.unique(clusters, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    low, high = np.quantile(means, [0.025, 0.975])
    return (float(low), float(high))


def _rate(values: np.ndarray, clusters: np.ndarray, config: AuditConfig) -> tuple[float, list[float]]:
    low, high = cluster_bootstrap_interval(values, clusters, config.bootstrap, config.seed)
    return round(float(values.mean()), 4), [round(low, 4), round(high, 4)]


def cohens_d(chosen: np.ndarray, rejected: np.ndarray) -> float | None:
    """Standardised mean difference; None when both sides are constant but differ (d is unbounded)."""
    pooled = math.sqrt((chosen.var(ddof=1) + rejected.var(ddof=1)) / 2) if len(chosen) > 1 else 0.0
    difference = float(chosen.mean() - rejected.mean())
    if pooled == 0:
        return 0.0 if difference == 0 else None
    return difference / pooled


def probe_feature_set(features: np.ndarray, labels: np.ndarray, control_labels: list[np.ndarray], groups: np.ndarray,
                      splits: list, config: AuditConfig) -> dict[str, Any]:
    """Accuracy (per response), pairwise accuracy (per pair) and the shuffled-label control, each with a CI."""
    scores = out_of_fold_scores(features, labels, splits)
    correct = ((scores > 0).astype(int) == labels).astype(np.float64)
    accuracy, accuracy_ci = _rate(correct, groups, config)
    # rows alternate chosen, rejected: a pair is ranked right when its chosen side scores higher (ties: half)
    chosen_scores, rejected_scores = scores[0::2], scores[1::2]
    ranked = (chosen_scores > rejected_scores) + 0.5 * (chosen_scores == rejected_scores)
    pairwise, pairwise_ci = _rate(ranked.astype(np.float64), groups[0::2], config)
    # each response's correctness averaged over the control repeats, so the control estimates the null, not one draw
    control_correct = np.mean([((out_of_fold_scores(features, swapped, splits) > 0).astype(int) == swapped)
                               for swapped in control_labels], axis=0)
    control, control_ci = _rate(control_correct, groups, config)
    return {
        "n_features": int(features.shape[1]),
        "n_responses": len(labels),
        "n_pairs": len(labels) // 2,
        "accuracy": accuracy,
        "accuracy_ci": accuracy_ci,
        "accuracy_ci_wilson": [round(x, 4) for x in wilson_interval(int(correct.sum()), len(correct))],
        "pairwise_accuracy": pairwise,
        "pairwise_accuracy_ci": pairwise_ci,
        "control_accuracy": control,
        "control_accuracy_ci": control_ci,
    }


def cue_table(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, splits: list,
              config: AuditConfig) -> list[dict[str, Any]]:
    """Each shallow cue on its own: single-feature probe accuracy (same folds) and Cohen's d, best first."""
    rows = []
    for column, (name, description) in enumerate(cue_descriptions().items()):
        values = features[:, column:column + 1]
        scores = out_of_fold_scores(values, labels, splits)
        correct = ((scores > 0).astype(int) == labels).astype(np.float64)
        accuracy, accuracy_ci = _rate(correct, groups, config)
        chosen, rejected = values[labels == 1, 0], values[labels == 0, 0]
        d = cohens_d(chosen, rejected)
        rows.append({
            "cue": name, "description": description, "accuracy": accuracy, "accuracy_ci": accuracy_ci,
            "cohens_d": None if d is None else round(d, 3),
            "chosen_mean": round(float(chosen.mean()), 3), "rejected_mean": round(float(rejected.mean()), 3),
        })
    return sorted(rows, key=lambda r: -r["accuracy"])


# ---------------------------------------------------------------------------------------------- verdict


def separating_cues(cues: list[dict[str, Any]], top: int = 2) -> list[dict[str, Any]]:
    """The strongest cues whose own accuracy clears chance (CI above 0.5)."""
    return [c for c in cues if c["accuracy_ci"][0] > 0.5][:top]


def _cue_phrase(cue: dict[str, Any]) -> str:
    direction = "higher in chosen" if cue["chosen_mean"] > cue["rejected_mean"] else "higher in rejected"
    d = "d undefined" if cue["cohens_d"] is None else f"d={cue['cohens_d']:+.2f}"
    return f"{cue['cue']} ({cue['accuracy']:.2f} alone, {d}, {direction})"


def verdict_for(name: str, result: dict[str, Any], cues: list[dict[str, Any]], config: AuditConfig) -> tuple[str, str]:
    """(risk level, one plain sentence) for one feature set."""
    accuracy, (low, high) = result["accuracy"], result["accuracy_ci"]
    control = result["control_accuracy"]
    margin = accuracy - control
    head = f"{name}: separable at {accuracy:.2f} ± {(high - low) / 2:.2f} (control {control:.2f})"
    if low <= control:
        risk, sentence = "none", f"{name}: not separable beyond the shuffled-label control ({accuracy:.2f}, " \
                                 f"95% CI {low:.2f}–{high:.2f}; control {control:.2f})"
    else:
        risk = "high" if margin >= config.high_risk_margin else "moderate" if margin >= config.moderate_risk_margin \
            else "low"
        strong = separating_cues(cues)
        cue_list = " and ".join(_cue_phrase(c) for c in strong)
        if name == "shallow":
            by = f"mostly by {cue_list}" if strong else "by no single cue alone (only in combination)"
        else:
            by = f"strongest shallow cues: {cue_list}" if strong else \
                "no single shallow cue separates (the difference is in content or wording beyond the cues)"
        sentence = f"{head}, {by}: {risk} shortcut risk"
    c_low, c_high = result["control_accuracy_ci"]
    if not c_low <= 0.5 <= c_high:
        sentence += f" [warning: control {control:.2f} is off chance, CI {c_low:.2f}–{c_high:.2f}]"
    return risk, sentence


# ---------------------------------------------------------------------------------------------- plot


def _safe_name(spec: str) -> str:
    return slug(spec).strip("_")


def projection_plot(features: np.ndarray, labels: np.ndarray, title: str, path: Path) -> Path:
    """2-D PCA of the standardised features, chosen vs rejected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    standardised = StandardScaler().fit_transform(features)
    components = min(2, standardised.shape[1])
    points = PCA(n_components=components).fit_transform(standardised)
    if components == 1:
        points = np.column_stack([points[:, 0], np.zeros(len(points))])
    figure, axes = plt.subplots(figsize=(6, 5))
    for label, name, colour in ((1, "chosen", "tab:blue"), (0, "rejected", "tab:orange")):
        mask = labels == label
        axes.scatter(points[mask, 0], points[mask, 1], s=8, alpha=0.5, label=name, color=colour)
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.set_title(title, fontsize=9)
    axes.legend()
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------- entry


def audit_pairs(pairs: list[Pair], config: AuditConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Audit preference pairs for chosen/rejected separability; returns the summary (also written to ``out_dir``).

    ``out_dir`` (if given) receives ``audit.json``, ``verdict.txt`` and ``projection-<features>.png``.
    """
    specs = parse_feature_specs(config.features)
    if not pairs:
        raise InputError("no pairs to audit")
    for spec in specs:  # fail on an unknown model before any slow work
        if spec.startswith("hidden:"):
            from safepref.models import resolve_model_path

            resolve_model_path(_hidden_spec(spec)[0])
    warnings: list[str] = []
    prompt_keys = [fingerprint([m.model_dump() for m in p.prompt]) for p in pairs]
    n_prompts = len(set(prompt_keys))
    if n_prompts < 2:
        raise InputError(f"need pairs on at least 2 distinct prompts for grouped cross-validation (got {n_prompts})")
    folds = config.folds
    if n_prompts < folds:
        folds = n_prompts
        warnings.append(f"only {n_prompts} distinct prompts: using {folds} folds instead of {config.folds}")
        log.warning(warnings[-1])
    groups = np.repeat(np.asarray(prompt_keys), 2)
    labels = np.tile([1, 0], len(pairs))
    splits = grouped_splits(groups, folds, config.seed)
    # One control draw varies by about +-0.07 on 60 pairs but by about +-0.01 on 2,000: average fewer draws as n grows
    # (each draw costs a full cross-validated fit per feature set).
    control_repeats = min(config.control_repeats, max(1, round(CONTROL_PAIRS_BUDGET / len(pairs))))
    control_labels = [control_swapped_labels(labels, splits, config.seed + repeat) for repeat in range(control_repeats)]

    shallow = compute_features("shallow", pairs, config)
    cues = cue_table(shallow, labels, groups, splits, config)
    summary: dict[str, Any] = {
        "n_pairs": len(pairs), "n_prompts": n_prompts, "n_responses": 2 * len(pairs), "folds": folds,
        "control_repeats": control_repeats,
        "accuracy_ci_method": "95% percentile bootstrap over prompts (pairs sharing a prompt resampled together)",
        "length_unit": LENGTH_UNIT,
        "config": {**{k: getattr(config, k) for k in AuditConfig.__dataclass_fields__}, "features": specs},
        "features": {}, "cues": cues,
    }
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    lines = []
    for spec in specs:
        features = shallow if spec == "shallow" else compute_features(spec, pairs, config)
        result = probe_feature_set(features, labels, control_labels, groups, splits, config)
        result["risk"], result["verdict"] = verdict_for(spec, result, cues, config)
        if spec == "shallow":
            result["cues"] = cues
        if out is not None:
            title = (f"{spec}: accuracy {result['accuracy']:.2f} [{result['accuracy_ci'][0]:.2f}, "
                     f"{result['accuracy_ci'][1]:.2f}], control {result['control_accuracy']:.2f}, n={len(pairs)} pairs")
            plot = projection_plot(features, labels, title, out / f"projection-{_safe_name(spec)}.png")
            result["projection"] = plot.name
        summary["features"][spec] = result
        lines.append(result["verdict"])
    ranks = {"none": 0, "low": 1, "moderate": 2, "high": 3}
    worst = max(summary["features"].values(), key=lambda r: (ranks[r["risk"]], r["accuracy"]))
    summary["risk"] = worst["risk"]
    summary["verdict"] = worst["verdict"]
    summary["warnings"] = warnings
    summary["pair_diagnostics"] = pair_diagnostics(pairs)
    if out is not None:
        pairs_line = f"pairs: {diagnostics_line(summary['pair_diagnostics'])}"
        text = "\n".join([f"overall: {worst['verdict']}", *lines, pairs_line, *(f"warning: {w}" for w in warnings)]) + "\n"
        write_text_atomic(out / "verdict.txt", text)
        write_json_atomic(out / "audit.json", summary)
    return summary
