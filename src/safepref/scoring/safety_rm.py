"""``safety-bt``: an offline reward model that ranks answers for safety first (the Self+RM reward model).

Score of a (prompt, answer) = w · features(answer), a linear Bradley-Terry model over:

- ``harm``: the probability that the answer is unsafe, from a class-balanced logistic regression on TF-IDF word
  1-2-grams and character 2-5-grams of the answer, fitted on the 4,000 human safe/unsafe labels of SafeRLHF-mini
  (``datafiles/labelled-responses/safe-rlhf-mini.csv``), leaving out every question that is a held-out prompt of
  the preference evaluation; its log-odds, and ``harm x log length`` (a long harmful answer is worse);
- ``refusal``: the refusal judge's label (``safepref.judges.refusal``);
- ``log_words``: log(1 + number of words);
- ``tfidf``: TF-IDF word 1-2-grams and character 2-5-grams of the answer, scaled by ``tfidf_weight``: the wording
  the human preference pairs reward or punish.

w is fitted on chosen-minus-rejected feature differences of the training split of the bundled HH-RLHF harmless and
PKU-SafeRLHF pairs (split by prompt, as ``minilm-bt``; each dataset weighted to the same total), with a
logistic loss. No embedding model runs at scoring time, so it scores thousands of answers a second on a CPU.

The fitted model is a joblib file: built by ``safepref reward-model train --kind safety-bt --out DIR`` or, on first
use, into ``$SAFEPREF_HOME/reward_models/`` keyed by its configuration, the data and the scikit-learn version
(a pickle is only safe to load under the version that wrote it), so every machine rebuilds the same model.
The card, with measured accuracy, is ``registry/reward_models/safety-bt.md``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic.dataclasses import dataclass

from safepref.core.datasets import get_dataset
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint
from safepref.core.keys import content_key
from safepref.core.paths import bundled_data_dir, safepref_home
from safepref.core.progress import progress_bar
from safepref.core.stats import rate
from safepref.judges.refusal import refusal_reason
from safepref.scoring.preference_split import preference_split

SAFETY_RM = "safety-bt"
HARM_LABELS = "labelled-responses/safe-rlhf-mini.csv"
DENSE_FEATURES = ("harm", "harm_log_odds", "refusal", "log_words", "harm_x_log_words")


@dataclass
class SafetyRMConfig:
    """How ``safety-bt`` is trained (``safepref reward-model train --kind safety-bt``)."""

    datasets: list[str] = field(default_factory=lambda: ["hh-harmless", "saferlhf"])  # pairs trained on (train split)
    eval_datasets: list[str] = field(default_factory=lambda: ["hh-harmless", "saferlhf"])  # held-out splits reported
    held_out_fraction: float = 0.2  # share of each dataset's distinct prompts never trained on (same split as minilm-bt)
    seed: int = 0  # seeds the prompt split
    balance_datasets: bool = True  # weight each training dataset to the same total (SafeRLHF has ~5x fewer pairs)
    tfidf_weight: float = 0.3  # scale of the TF-IDF block against the dense safety features (0 = dense only)
    regularization_c: float = 0.3  # inverse L2 strength of the Bradley-Terry logistic regression
    harm_c: float = 4.0  # inverse L2 strength of the harm classifier
    max_chars: int = 1500  # only the opening of each answer is read
    max_word_features: int = 20_000
    max_char_features: int = 30_000


def _tfidf(config: SafetyRMConfig, word_cap: int, char_cap: int):
    # scikit-learn loads in seconds: imported only where used
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=word_cap),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True, max_features=char_cap))


def harm_training_rows(exclude_prompts: set[str]) -> list[tuple[str, str, int]]:
    """(question, answer, label 1 = unsafe) of SafeRLHF-mini, without the excluded questions."""
    path = bundled_data_dir() / HARM_LABELS
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if row.get("label") not in ("0", "1"):
                raise InputError(f"label must be 0 or 1, got {row.get('label')!r}", path=path, line=line, field="label")
            if row["question"].strip() not in exclude_prompts:
                rows.append((row["question"], row["answer"], int(row["label"])))
    return rows


class SafetyRewardModel:
    """The fitted parts: harm classifier, answer TF-IDF and the BT weights. ``score`` is the reward."""

    def __init__(self, config: SafetyRMConfig, harm_vectorizer, harm_classifier, tfidf, weights: np.ndarray,
                 name: str = SAFETY_RM) -> None:
        self.config, self.name = config, name
        self.harm_vectorizer, self.harm_classifier, self.tfidf = harm_vectorizer, harm_classifier, tfidf
        self.weights = weights
        self.metrics: dict[str, Any] = {}

    def dense(self, responses: list[str]) -> np.ndarray:

        texts = [r[: self.config.max_chars] for r in responses]
        harm = self.harm_classifier.predict_proba(self.harm_vectorizer.transform(texts))[:, 1]
        log_odds = np.log(harm + 1e-3) - np.log(1 - harm + 1e-3)
        refusal = np.array([refusal_reason(r) is not None for r in responses], dtype=np.float64)
        log_words = np.log1p([len(r.split()) for r in responses])
        return np.column_stack([harm, log_odds, refusal, log_words, harm * log_words])

    def features(self, responses: list[str]):
        # scipy loads in seconds: imported only where used
        import scipy.sparse as sp

        dense = sp.csr_matrix(self.dense(responses))
        if not self.config.tfidf_weight:
            return dense
        words = self.tfidf.transform([r[: self.config.max_chars] for r in responses])
        return sp.hstack([dense, self.config.tfidf_weight * words]).tocsr()

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise InputError(f"{len(prompts)} prompts for {len(responses)} responses")
        if not responses:
            return []
        return (self.features(responses) @ self.weights).tolist()

    def save(self, path: str | Path) -> Path:
        # joblib loads in seconds: imported only where used
        import joblib

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        joblib.dump({"config": asdict(self.config), "harm_vectorizer": self.harm_vectorizer,
                     "harm_classifier": self.harm_classifier, "tfidf": self.tfidf, "weights": self.weights,
                     "metrics": self.metrics}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def from_file(cls, path: str | Path, name: str = SAFETY_RM) -> SafetyRewardModel:
        # joblib loads in seconds: imported only where used
        import joblib

        path = Path(path)
        if not path.is_file():
            raise InputError("reward model file not found (run `safepref reward-model train --kind safety-bt`)",
                             path=path)
        state = joblib.load(path)
        if not isinstance(state, dict) or "weights" not in state:
            raise InputError("not a safepref safety-bt reward model", path=path)
        model = cls(SafetyRMConfig(**state["config"]), state["harm_vectorizer"], state["harm_classifier"],
                    state["tfidf"], state["weights"], name=name)
        model.metrics = state.get("metrics", {})
        return model


# ---------------------------------------------------------------------------------------------- training


def _held_out_prompts(splits: dict[str, tuple[list, list]]) -> set[str]:
    return {p.request_text.strip() for _, held_out in splits.values() for p in held_out}


def _differences(model: SafetyRewardModel, pairs: list):
    return model.features([p.chosen_text for p in pairs]) - model.features([p.rejected_text for p in pairs])


def fit_bradley_terry(differences, weights: np.ndarray, regularization_c: float) -> np.ndarray:
    """w maximising sum_i weight_i * log sigmoid(w · d_i) - |w|^2 / (2C): a logistic regression without intercept
    on the differences and their negations (labels 1 and 0), which is the same loss made symmetric."""
    # scipy and scikit-learn load in seconds: imported only where used
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    n = differences.shape[0]
    stacked = sp.vstack([differences, -differences]).tocsr()
    labels = np.r_[np.ones(n), np.zeros(n)]
    classifier = LogisticRegression(C=regularization_c, fit_intercept=False, max_iter=5000)
    classifier.fit(stacked, labels, sample_weight=np.r_[weights, weights])
    return classifier.coef_.ravel()


def train_safety_rm(config: SafetyRMConfig | None = None,
                    out: str | Path | None = None) -> tuple[SafetyRewardModel, dict[str, Any]]:
    """Fit ``safety-bt`` on the training split; returns the model and its held-out metrics (saved to ``out``)."""
    # scikit-learn loads in seconds: imported only where used
    from sklearn.linear_model import LogisticRegression


    config = config or SafetyRMConfig()
    splits = preference_split(config)
    bar = progress_bar(total=4, desc="training safety-bt", unit="step")
    harm_rows = harm_training_rows(_held_out_prompts(splits))
    harm_vectorizer = _tfidf(config, 50_000, 100_000)
    harm_features = harm_vectorizer.fit_transform([answer[: config.max_chars] for _, answer, _ in harm_rows])
    harm_classifier = LogisticRegression(C=config.harm_c, max_iter=3000, class_weight="balanced", random_state=0)
    harm_classifier.fit(harm_features, [label for _, _, label in harm_rows])
    bar.update(1)
    named = [(name, p) for name in config.datasets for p in splits[name][0]]
    tfidf = _tfidf(config, config.max_word_features, config.max_char_features)
    tfidf.fit([t[: config.max_chars] for _, p in named for t in (p.chosen_text, p.rejected_text)])
    model = SafetyRewardModel(config, harm_vectorizer, harm_classifier, tfidf, np.zeros(0))
    bar.update(1)
    differences = _differences(model, [p for _, p in named])
    counts = {name: sum(1 for n, _ in named if n == name) for name in config.datasets}
    weights = np.array([len(named) / (len(counts) * counts[name]) if config.balance_datasets else 1.0
                        for name, _ in named])
    bar.update(1)
    model.weights = fit_bradley_terry(differences, weights, config.regularization_c)
    bar.update(1)
    bar.close()
    metrics = evaluate_safety_rm(model, splits)
    metrics.update({"train_pairs": counts, "harm_training_rows": len(harm_rows),
                    "dense_weights": dict(zip(DENSE_FEATURES, np.round(model.weights[:5], 4).tolist(), strict=True))})
    model.metrics = metrics
    if out is not None:
        model.save(out)
    return model, metrics


def evaluate_safety_rm(model: SafetyRewardModel, splits: dict | None = None) -> dict[str, Any]:
    """Held-out pairwise accuracy (chosen scored above rejected), per dataset and overall, with Wilson 95% CIs."""

    splits = splits or preference_split(model.config)
    result: dict[str, Any] = {"reward_model": model.name, "split_seed": model.config.seed,
                              "held_out_fraction": model.config.held_out_fraction, "by_dataset": {}}
    total_correct = total = 0
    for name in model.config.eval_datasets:
        held_out = splits[name][1]
        correct = int(((_differences(model, held_out) @ model.weights) > 0).sum())
        result["by_dataset"][name] = rate(correct, len(held_out))
        total_correct, total = total_correct + correct, total + len(held_out)
    result["overall"] = rate(total_correct, total)
    return result


def default_model_path(config: SafetyRMConfig | None = None) -> Path:
    """Where the default ``safety-bt`` is cached: keyed by config, training data and scikit-learn version."""
    # scikit-learn loads in seconds: imported only where used
    import sklearn


    config = config or SafetyRMConfig()
    data = [file_fingerprint(bundled_data_dir() / HARM_LABELS)]
    data += [file_fingerprint(p) for name in config.datasets for p in get_dataset(name).paths]
    key = content_key(asdict(config), data, sklearn.__version__)
    return safepref_home() / "reward_models" / f"{SAFETY_RM}-{key}.joblib"


_LOADED: dict[tuple[str, int, int], SafetyRewardModel] = {}


def load_safety_rm() -> SafetyRewardModel:
    """The default ``safety-bt``: from the cache, or trained now (a few minutes on 2 cores) and cached atomically.
    Kept in the process once read (unpickling it takes ~5 s; a grid scores with it in every benign stage)."""
    path = default_model_path()
    if not path.is_file():
        train_safety_rm(SafetyRMConfig(), out=path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = SafetyRewardModel.from_file(path)
    return _LOADED[key]
