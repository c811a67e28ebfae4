"""Reward models: anything that gives a (prompt, response) a scalar, higher = preferred.

Two kinds, one interface (``load_reward_model(name).score(prompts, responses)``):

- Any Hugging Face sequence-classification reward model, by hub id or local folder (e.g. the paper's
  ``OpenAssistant/reward-model-deberta-v3-large-v2`` for users with hub access). The score is the model's single
  logit for the (prompt, response) as that model expects it: through the tokenizer's chat template when it has
  one, else as a question/answer text pair.
- ``safety-bt``, the offline default (``safepref.scoring.safety_rm``): a linear Bradley-Terry model over a harm
  classifier's probability (trained on 4,000 human safe/unsafe labels), refusal, length and TF-IDF features of the
  answer, fitted on the same preference pairs; card in ``registry/reward_models/safety-bt.md``.
- ``minilm-bt``, the first offline model, kept by name: a Bradley-Terry head on frozen MiniLM sentence
  embeddings, trained on real human preference pairs (HH-RLHF harmless, split by prompt) by
  ``train_embedding_rm``. Its weights ship in ``registry/reward_models/`` (rebuild into a folder of your choice
  with ``safepref reward-model train --kind minilm-bt --out DIR``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, field
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic.dataclasses import dataclass

from safepref.core.errors import InputError
from safepref.core.paths import safepref_home
from safepref.core.progress import progress_bar
from safepref.core.stats import rate
from safepref.models.loading import EMBEDDING_MODEL, load_embedder, model_label, placement_for, resolve_model_path
from safepref.scoring.preference_split import preference_split
from safepref.scoring.safety_rm import SAFETY_RM, SafetyRewardModel, load_safety_rm

EMBEDDING_RM = "minilm-bt"
REWARD_MODELS_DIR = Path(__file__).parents[1] / "registry" / "reward_models"
DEFAULT_REWARD_MODEL = SAFETY_RM
REGISTRY_REWARD_MODELS = (SAFETY_RM, EMBEDDING_RM)


class RewardModel(Protocol):
    name: str

    def score(self, prompts: list[str], responses: list[str]) -> list[float]: ...


def load_reward_model(name: str = DEFAULT_REWARD_MODEL, *, batch_size: int = 8, max_length: int = 512,
                      device: str = "cpu", dtype: str = "auto") -> RewardModel:
    """``safety-bt``, ``minilm-bt``, a file written by ``safepref reward-model train`` (``.joblib``: safety-bt,
    ``.safetensors``: minilm-bt), or a HF sequence-classification model by id/folder.

    ``device``/``dtype`` follow safepref.core.device: a HF model runs there; minilm-bt runs its embedder there (the small
    head on the CPU); safety-bt is scikit-learn and always runs on the CPU."""
    if name == SAFETY_RM:

        return load_safety_rm()
    path = Path(name).expanduser()
    if path.suffix == ".joblib" and path.is_file():

        return SafetyRewardModel.from_file(path, name=path.stem)
    if name == EMBEDDING_RM or (path.suffix == ".safetensors" and path.is_file()):
        weights = REWARD_MODELS_DIR / f"{EMBEDDING_RM}.safetensors" if name == EMBEDDING_RM else path
        model = EmbeddingRewardModel.from_file(weights, name=EMBEDDING_RM if name == EMBEDDING_RM else path.stem)
        model.device = device
        return model
    return SequenceClassifierRewardModel(name, batch_size=batch_size, max_length=max_length, device=device,
                                         dtype=dtype)


# ---------------------------------------------------------------------------------------------- HF reward models


class SequenceClassifierRewardModel:
    """A transformers ``AutoModelForSequenceClassification`` with one output: the score is that logit."""

    def __init__(self, name_or_path: str, *, batch_size: int = 8, max_length: int = 512, device: str = "cpu",
                 dtype: str = "auto") -> None:
        # transformers loads in seconds: imported only where used
        from transformers import AutoModelForSequenceClassification, AutoTokenizer


        path = resolve_model_path(name_or_path)
        placement = placement_for(path, device, dtype)
        self.name = model_label(name_or_path)
        self.batch_size, self.max_length = batch_size, max_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=placement.dtype)
        except (OSError, ValueError) as error:
            raise InputError(f"cannot load reward model '{name_or_path}': {str(error).splitlines()[0]}") from None
        if self.model.config.num_labels != 1:
            raise InputError(f"reward model '{name_or_path}' has {self.model.config.num_labels} outputs; "
                             "expected a reward model with a single score")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"  # sequence classifiers pool the last non-pad token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(placement.device).eval()
        self.uses_chat_template = bool(getattr(self.tokenizer, "chat_template", None))

    def _encode(self, prompts: list[str], responses: list[str]):
        if self.uses_chat_template:
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False)
                for p, r in zip(prompts, responses, strict=True)
            ]
            return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                  add_special_tokens=False, return_tensors="pt")
        return self.tokenizer(prompts, responses, padding=True, truncation="longest_first",
                              max_length=self.max_length, return_tensors="pt")

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        # torch loads in seconds: imported only where used
        import torch

        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[start:start + self.batch_size], responses[start:start + self.batch_size])
            with torch.no_grad():
                scores.extend(self.model(**batch.to(self.model.device)).logits[:, 0].float().tolist())
        return scores


# ---------------------------------------------------------------------------------------------- minilm-bt

FEATURE_KINDS = ("response", "prompt_x_response", "joint")


@dataclass
class EmbeddingRMConfig:
    """How the offline Bradley-Terry reward model is trained (``safepref reward-model train``)."""

    datasets: list[str] = field(default_factory=lambda: ["hh-harmless"])  # bundled pairs trained on (train split)
    # held-out splits reported by eval; SafeRLHF pairs did not help training (see registry/reward_models/README.md)
    eval_datasets: list[str] = field(default_factory=lambda: ["hh-harmless", "saferlhf"])
    held_out_fraction: float = 0.2  # share of each dataset's distinct prompts kept out of training, for eval
    seed: int = 0  # seeds the prompt split and the head's initialisation
    features: list[str] = field(default_factory=lambda: ["response", "prompt_x_response"])
    # response = embedding of the answer; prompt_x_response = its elementwise product with the prompt's
    # embedding; joint = embedding of "prompt\nanswer" as one text
    hidden: int = 0  # 0 = a linear BT head; >0 = one hidden layer of this width
    weight_decay: float = 0.1
    learning_rate: float = 0.01
    epochs: int = 300  # full-batch AdamW steps on the pairwise logistic loss
    embedder: str = EMBEDDING_MODEL


class EmbeddingRewardModel:
    """Frozen sentence embeddings of (prompt, response) -> feature vector -> a small Bradley-Terry head."""

    device = "cpu"  # where the embedder runs (load_reward_model sets it from the device policy)

    def __init__(self, head, config: EmbeddingRMConfig, name: str = EMBEDDING_RM, embedder=None) -> None:
        self.head, self.config, self.name = head, config, name
        self._embedder = embedder
        self.embedding_cache: EmbeddingCache | None = None

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = load_embedder(self.config.embedder, device=self.device)
        return self._embedder

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length sentence embeddings; through the on-disk cache when one is attached (training, eval)."""
        cache = self.embedding_cache
        todo = sorted({t for t in texts if cache is None or _text_key(t) not in cache.vectors})
        fresh = self.embedder.encode(todo, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False) if todo else np.zeros((0, 0), np.float32)
        if cache is None:
            table = dict(zip(todo, fresh, strict=True))
            return np.stack([table[t] for t in texts])
        cache.add({_text_key(t): v for t, v in zip(todo, fresh, strict=True)})
        return np.stack([cache.vectors[_text_key(t)] for t in texts])

    def features(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        kinds = self.config.features
        encode = self.encode
        parts = []
        response_vectors = encode(responses) if {"response", "prompt_x_response"} & set(kinds) else None
        if "response" in kinds:
            parts.append(response_vectors)
        if "prompt_x_response" in kinds:
            unique = sorted(set(prompts))
            table = dict(zip(unique, encode(unique), strict=True))
            parts.append(np.stack([table[p] for p in prompts]) * response_vectors)
        if "joint" in kinds:
            parts.append(encode([f"{p}\n{r}" for p, r in zip(prompts, responses, strict=True)]))
        return np.hstack(parts).astype(np.float32)

    def score_features(self, features: np.ndarray) -> np.ndarray:
        # torch loads in seconds: imported only where used
        import torch

        with torch.no_grad():
            return self.head(torch.from_numpy(features)).squeeze(-1).numpy()

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        return self.score_features(self.features(prompts, responses)).tolist()

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        # safetensors loads in seconds: imported only where used
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"config": json.dumps(asdict(self.config)), "metrics": json.dumps(metrics or {})}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(tmp), metadata=metadata)
        tmp.replace(path)
        return path

    @classmethod
    def from_file(cls, path: str | Path, name: str = EMBEDDING_RM) -> EmbeddingRewardModel:
        # safetensors loads in seconds: imported only where used
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise InputError("reward model weights not found (run `safepref reward-model train`)", path=path)
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "config" not in metadata:
            raise InputError("not a safepref embedding reward model (no config in its metadata)", path=path)
        config = EmbeddingRMConfig(**json.loads(metadata["config"]))
        state = load_file(str(path))
        head = _make_head(state["weight" if config.hidden == 0 else "0.weight"].shape[1], config.hidden)
        head.load_state_dict(state)
        head.eval()
        model = cls(head, config, name=name)
        model.metrics = json.loads(metadata.get("metrics", "{}"))
        return model


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings of the bundled preference texts, kept under SAFEPREF_HOME so train and eval embed each once.

    Keyed by the embedder's name and each text's sha1. The store only grows: each ``add`` writes its new vectors as
    one more shard file (temp + rename) in the embedder's folder, so adding never rewrites what is there, and
    opening the cache reads every shard (and the single ``.npz`` that earlier versions wrote).
    """

    def __init__(self, embedder: str) -> None:
        self.folder = safepref_home() / "embeddings" / Path(embedder).name
        self.vectors: dict[str, np.ndarray] = {}
        for shard in [self.folder.with_suffix(".npz"), *sorted(self.folder.glob("*.npz"))]:
            if shard.is_file():
                with np.load(shard) as data:
                    self.vectors.update(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def add(self, vectors: dict[str, np.ndarray]) -> None:
        new = {key: vector for key, vector in vectors.items() if key not in self.vectors}
        if not new:
            return
        self.vectors.update(new)
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = sorted(new)
        shard = self.folder / f"{_text_key(chr(0).join(keys))}.npz"  # named by its content: a rerun rewrites nothing
        tmp = self.folder / f".{shard.stem}.{os.getpid()}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([new[key] for key in keys]))
        os.replace(tmp, shard)


def _make_head(n_features: int, hidden: int):
    # torch loads in seconds: imported only where used
    import torch

    if hidden == 0:
        return torch.nn.Linear(n_features, 1)
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.GELU(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(hidden, 1))


def _pair_features(model: EmbeddingRewardModel, pairs: list) -> tuple[np.ndarray, np.ndarray]:
    prompts = [p.request_text for p in pairs]
    chosen = model.features(prompts, [p.chosen_text for p in pairs])
    rejected = model.features(prompts, [p.rejected_text for p in pairs])
    return chosen, rejected


def train_embedding_rm(config: EmbeddingRMConfig | None = None,
                       out: str | Path | None = None) -> tuple[EmbeddingRewardModel, dict]:
    """Train the BT head on the training split; returns the model and its held-out metrics (saved to ``out``)."""
    # torch loads in seconds: imported only where used
    import torch

    config = config or EmbeddingRMConfig()
    unknown = sorted(set(config.features) - set(FEATURE_KINDS))
    if unknown or not config.features:
        raise InputError(f"unknown reward-model feature '{(unknown or [''])[0]}' (known: {', '.join(FEATURE_KINDS)})")
    splits = preference_split(config)
    model = EmbeddingRewardModel(None, config)
    model.embedding_cache = EmbeddingCache(config.embedder)
    train = [p for name in config.datasets for p in splits[name][0]]
    bar = progress_bar(total=len(train), desc="embedding training pairs", unit="pair")
    chosen_parts, rejected_parts = [], []
    for start in range(0, len(train), 256):
        c, r = _pair_features(model, train[start:start + 256])
        chosen_parts.append(c)
        rejected_parts.append(r)
        bar.update(len(train[start:start + 256]))
    bar.close()
    chosen, rejected = torch.from_numpy(np.vstack(chosen_parts)), torch.from_numpy(np.vstack(rejected_parts))

    torch.manual_seed(config.seed)
    head = _make_head(chosen.shape[1], config.hidden)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    for _ in range(config.epochs):  # full batch: a few seconds for ~2,000 pairs
        head.train()
        optimizer.zero_grad()
        loss = -torch.nn.functional.logsigmoid(head(chosen) - head(rejected)).mean()
        loss.backward()
        optimizer.step()
    head.eval()
    model.head = head
    metrics = evaluate_embedding_rm(model, splits)
    metrics["train_pairs"] = len(train)
    metrics["train_loss"] = float(loss.detach())
    if out is not None:
        model.save(out, metrics)
    model.metrics = metrics
    return model, metrics


def evaluate_embedding_rm(model: EmbeddingRewardModel, splits: dict | None = None) -> dict:
    """Held-out pairwise accuracy (chosen scored above rejected), per dataset and overall, with Wilson 95% CIs."""
    splits = splits or preference_split(model.config)
    if model.embedding_cache is None:
        model.embedding_cache = EmbeddingCache(model.config.embedder)
    result: dict = {"reward_model": model.name, "split_seed": model.config.seed,
                    "held_out_fraction": model.config.held_out_fraction, "by_dataset": {}}
    total_correct = total = 0
    for name in model.config.eval_datasets:
        held_out = splits[name][1]
        chosen, rejected = _pair_features(model, held_out)
        correct = int((model.score_features(chosen) > model.score_features(rejected)).sum())
        result["by_dataset"][name] = rate(correct, len(held_out))
        total_correct += correct
        total += len(held_out)
    result["overall"] = rate(total_correct, total)
    return result
