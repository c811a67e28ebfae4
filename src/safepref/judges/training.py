"""Train a judge head (``harm`` or ``refusal``) and validate it leave-one-source-out (``safepref judge-train``).

Each fold trains on every source but one and reports agreement with the held-out source's human labels; the
second stage's form (logistic or hidden layer) is chosen by stratified cross-validation inside the training
sources only, never on the held-out one. The shipped head is then trained on all sources the same way, and its
card (``heads/<judge>.json`` and ``MODEL_CARD_<judge>.md``) records the folds and the command.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier

from safepref.core.datasets import load_dataset
from safepref.core.errors import InputError
from safepref.core.io import file_fingerprint, write_json_atomic
from safepref.core.stats import agreement
from safepref.judges import framings, non_answers
from safepref.judges.features import Embedder, FeatureConfig, dense_features, hashed_counts, tfidf
from safepref.judges.head import Head
from safepref.judges.training_data import Example, base_source, data_files, labelled_sources

LABELS = {"harm": "harm", "refusal": "refusal", "harm-fast": "harm", "refusal-fast": "refusal"}
# A ``-fast`` head is its judge without the LM read (FeatureConfig.lm = ""): everything else, data and seed included,
# as its judge. It reads ~5x more answers a second on 2 cores and agrees less with held-out human labels (cards:
# harm-fast pooled 0.806 against 0.829, refusal-fast 0.931 against 0.944); the pair diagnostics use it by default.
FAST_SUFFIX = "-fast"
# candidates for the second stage: 0 = logistic regression, >0 = a hidden ReLU layer of that width
HARM_LM = "smollm2-135m-instruct"
SECOND_STAGE = ({"hidden": 0, "c": 0.5}, {"hidden": 64, "alpha": 1e-2})


@dataclass
class JudgeTrainingConfig:
    judge: str = "harm"  # harm | refusal
    features: FeatureConfig | None = None  # None: the judge's default (refusal reads the answer alone)
    text_c: float = 4.0  # inverse L2 strength of the TF-IDF logistic regression
    inner_folds: int = 3  # stratified folds inside the training sources, for the second stage's choice
    # a seeded sample of a larger source (None: every row). With GPTFuzz's evaluate-split questions held out, its
    # other questions' 1,000 / 3,000 / 6,160 rows gave 0.914 / 0.923 / 0.933 on the held-out ones: jailbreak
    # answers are the rarest kind of labelled row, so the shipped head reads them all
    max_per_source: int | None = None
    candidates: tuple[dict, ...] = SECOND_STAGE  # second-stage forms compared by inner cross-validation
    seed: int = 0
    # a hidden-layer second stage is the mean probability of this many networks (seeds seed, seed+1, ...): one
    # network's held-out GPTFuzz agreement moved 0.864-0.875 with its seed alone (0.843-0.860 with the whole
    # command's seed); five averaged gave 0.877, at or above every member
    ensemble: int = 5


    rule_union: bool | None = None  # None: the judge's default (refusal: head OR the rule refusal judge)
    non_answers: int | None = None  # synthetic label-0 non-answers per source (None: harm 400, refusal 0)
    framings: int | None = None  # jailbreak-framed copies of labelled rows per source (None: harm 600, refusal 0)
    # human-labelled rows per source that the harm folds' checks (requests in templates, answers told as stories)
    # judge again: a seeded sample, because each changed row is another pass of the LM read (None: every row)
    check_rows: int | None = 1000

    def __post_init__(self) -> None:
        harm = base_judge(self.judge) == "harm"
        if self.non_answers is None:
            # see safepref.judges.non_answers: echoed requests, repeated fragments, lists of empty items,
            # affirmative openers alone
            self.non_answers = 400 if harm else 0
        if self.framings is None:
            # see safepref.judges.framings; for refusal a refusal before a compliance is a partial refusal (label 1
            # in XSTest), so a framed copy would not keep its label
            self.framings = 600 if harm else 0
        if self.rule_union is None:
            # leave-one-model-out on XSTest the union scored 0.956/0.891/0.911 against the head alone's
            # 0.942/0.889/0.916, and it keeps short plain refusals ("**No.**") that the head missed
            self.rule_union = self.judge == "refusal"
        if self.features is None:
            # a refusal is in the answer's words; with the request in view, a head trained on three models'
            # answers to the same 450 XSTest prompts learned which prompts get refused, not what a refusal is.
            # Both read the answer's opening in context (see safepref.judges.features; for refusal it raised the
            # leave-one-model-out agreement on XSTest from 0.919 to 0.930 pooled, the lowest fold 0.891 to 0.918)
            # harm also reads the answer after an opening refusal (features.answer_after_refusals): a refusal
            # then compliance is compliance; for refusal it is a partial refusal, which XSTest labels 1. harm reads
            # the answer's opening only through the focused text (features.FeatureConfig.whole_opening)
            # harm reads a long request from its end, where a jailbreak template puts the request
            # (features.Embedder.request_window)
            # both also read through SmolLM2's hidden states (see safepref.judges.hidden_states): harm the (request,
            # focused answer) pair at layer 20 over 128 answer tokens; refusal the answer alone at layer 10 over 64
            # (leave-one-model-out on XSTest: 0.931 pooled without the read, 0.944 with it; layer 14 over
            # 64 tokens also 0.944, over 128 0.938, and the request in view bought nothing, so the cheapest)
            self.features = FeatureConfig(request=harm, answer_tokens=128, focus=harm, whole_opening=not harm,
                                          request_tail=harm,
                                          lm="" if self.judge.endswith(FAST_SUFFIX) else HARM_LM,
                                          lm_layer=20 if harm else 10,
                                          lm_answer_tokens=128 if harm else 64)


def base_judge(judge: str) -> str:
    """The judge whose labels and defaults a head shares (``harm-fast`` -> ``harm``)."""
    return judge.removesuffix(FAST_SUFFIX)


@dataclass
class Matrices:
    """Features of a set of examples, computed once and sliced per fold."""

    counts: sp.csr_matrix
    dense: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def take(self, mask: np.ndarray) -> Matrices:
        return Matrices(self.counts[mask], self.dense[mask], self.labels[mask], self.sources[mask])


def build_matrices(examples: list[Example], config: JudgeTrainingConfig, progress: bool = True) -> Matrices:
    embedder = Embedder(config.features, cache_name=f"judge-embeddings-{config.features.embedder}")
    prompts, responses = [e.prompt for e in examples], [e.response for e in examples]
    return Matrices(counts=hashed_counts(responses, config.features),
                    dense=dense_features(embedder, prompts, responses, progress=progress),
                    labels=np.array([getattr(e, LABELS[config.judge]) for e in examples], dtype=int),
                    sources=np.array([e.source for e in examples]))


def _idf(counts: sp.csr_matrix) -> np.ndarray:
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    return (np.log((1 + counts.shape[0]) / (1 + document_frequency)) + 1).astype(np.float32)


def _text_model(x, y, config: JudgeTrainingConfig) -> LogisticRegression:
    # liblinear: coordinate descent, many times faster than lbfgs on half a million sparse columns
    return LogisticRegression(C=config.text_c, solver="liblinear", max_iter=1000, class_weight="balanced",
                              random_state=config.seed).fit(x, y)


def _out_of_fold_text_logits(x, y, config: JudgeTrainingConfig) -> np.ndarray:
    """Text logits for the training rows from models that did not see them (the second stage must learn how
    far to trust the text logit on unseen answers, not on memorised ones)."""
    logits = np.zeros(len(y))
    for train, test in StratifiedKFold(config.inner_folds, shuffle=True, random_state=config.seed).split(x, y):
        logits[test] = _text_model(x[train], y[train], config).decision_function(x[test])
    return logits


def _second_stage(candidate: dict, x: np.ndarray, y: np.ndarray, seed: int, members: int = 1) -> list[np.ndarray]:
    """[W, b] (logistic) or ``members`` hidden-layer networks' [W1, b1, W2, b2] one after another (their
    probabilities are averaged, see Head.probability_from)."""
    if candidate["hidden"] == 0:
        model = LogisticRegression(C=candidate["c"], max_iter=3000, class_weight="balanced", random_state=seed)
        model.fit(x, y)
        return [model.coef_.T.astype(np.float32), model.intercept_.astype(np.float32)]
    weights = []
    for member in range(members):
        model = MLPClassifier(hidden_layer_sizes=(candidate["hidden"],), alpha=candidate["alpha"], max_iter=200,
                              early_stopping=True, random_state=seed + member).fit(x, y)
        weights += [w.astype(np.float32) for pair in zip(model.coefs_, model.intercepts_, strict=True) for w in pair]
    return weights


def _choose_second_stage(x: np.ndarray, y: np.ndarray, config: JudgeTrainingConfig) -> tuple[dict, list]:
    """The candidate with the best mean inner-fold agreement, and each candidate's score (one network per
    hidden-layer candidate: the choice is of the form, and an ensemble there would multiply the inner fits by its
    size)."""
    scores = []
    splits = list(StratifiedKFold(config.inner_folds, shuffle=True, random_state=config.seed + 1).split(x, y))
    for candidate in config.candidates:
        fold_scores = []
        for train, test in splits:
            probe = Head(FeatureConfig(), np.zeros(0), np.zeros(0), 0.0, np.zeros(x.shape[1]), np.ones(x.shape[1]),
                         _second_stage(candidate, x[train], y[train], config.seed))
            predicted = probe.probability_from(x[test][:, :-1], x[test][:, -1]) >= 0.5
            fold_scores.append(float(np.mean(predicted == y[test])))
        scores.append({**candidate, "inner_cv_agreement": round(float(np.mean(fold_scores)), 4)})
    best = max(range(len(config.candidates)), key=lambda i: scores[i]["inner_cv_agreement"])
    return config.candidates[best], scores


def fit_head(data: Matrices, config: JudgeTrainingConfig) -> tuple[Head, dict]:
    """Both stages on ``data``; returns the head and how its second stage was chosen."""
    idf = _idf(data.counts)
    x_text = tfidf(data.counts, idf)
    y = data.labels
    text_logits = _out_of_fold_text_logits(x_text, y, config)
    stacked = np.hstack([data.dense, text_logits.reshape(-1, 1)])
    mean, scale = stacked.mean(axis=0), stacked.std(axis=0) + 1e-6
    standardised = (stacked - mean) / scale
    candidate, scores = _choose_second_stage(standardised, y, config)
    text_model = _text_model(x_text, y, config)
    head = Head(features=config.features, idf=idf, text_coef=text_model.coef_.ravel().astype(np.float32),
                text_intercept=float(text_model.intercept_[0]), mean=mean.astype(np.float32),
                scale=scale.astype(np.float32),
                weights=_second_stage(candidate, standardised, y, config.seed, members=config.ensemble),
                rule_union=config.rule_union)
    return head, {"chosen": candidate, "candidates": scores}


def predict(head: Head, data: Matrices) -> np.ndarray:
    logits = np.asarray(tfidf(data.counts, head.idf) @ head.text_coef).ravel() + head.text_intercept
    return head.labels_from(data.dense, logits)


def leave_one_source_out(data: Matrices, config: JudgeTrainingConfig,
                         checks: dict[str, Matrices] | None = None) -> list[dict]:
    """Per human-labelled source: train on all the others (their synthetic rows included), report agreement with
    the held-out source's human labels, how many of its own non-answers the head called 1, its agreement with the
    labels of its own framed rows and, for each of ``checks`` (name: rows of every source changed in one way,
    labels kept: ``in_templates``, ``in_stories``, see framings), with its labels there."""
    folds = []
    base = np.array([base_source(s) for s in data.sources.tolist()])
    human = base == data.sources
    for source in dict.fromkeys(data.sources[human].tolist()):
        held_out = base == source
        started = time.perf_counter()
        head, choice = fit_head(data.take(~held_out), config)
        test = data.take(held_out & human)
        metrics = agreement(test.labels.tolist(), predict(head, test).tolist())
        fold = {"held_out": source, **_rounded(metrics), "positives": int(test.labels.sum())}
        empty = data.take(data.sources == f"{source}{non_answers.SUFFIX}")
        if len(empty.labels):
            fold.update(non_answers=len(empty.labels),
                        non_answers_judged_1=round(float(np.mean(predict(head, empty))), 4))
        framed = data.take(data.sources == f"{source}{framings.SUFFIX}")
        if len(framed.labels):
            fold.update(framed=len(framed.labels),
                        framed_agreement=round(float(np.mean(predict(head, framed) == framed.labels)), 4))
        for name, rows in (checks or {}).items():
            changed = rows.take(rows.sources == source)
            if len(changed.labels):
                fold.update({name: len(changed.labels), f"{name}_agreement":
                             round(float(np.mean(predict(head, changed) == changed.labels)), 4)})
        folds.append({**fold, "second_stage": choice["chosen"], "seconds": round(time.perf_counter() - started, 1)})
    return folds


def _rounded(metrics: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}


def labelled_examples(judge: str, max_per_source: int | None = None, seed: int = 0) -> list[Example]:
    """The examples that carry this judge's label, in source order; a source larger than ``max_per_source`` is
    reduced to a seeded random sample of that size."""
    if judge not in LABELS:

        raise InputError(f"no trainable judge '{judge}' (trainable: {', '.join(LABELS)})")
    examples = []
    for source, rows in labelled_sources().items():
        rows = [e for e in rows if getattr(e, LABELS[judge]) is not None]
        if max_per_source is not None and len(rows) > max_per_source:
            keep = sorted(random.Random(f"{seed}|{source}").sample(range(len(rows)), max_per_source))
            rows = [rows[i] for i in keep]
        examples += rows
    return examples


def train_judge(config: JudgeTrainingConfig, out_dir: Path, folds: bool = True) -> dict:
    """Validate leave-one-source-out (unless ``folds`` is False), fit on everything, write head and card."""
    examples = labelled_examples(config.judge, config.max_per_source, config.seed)
    human = list(examples)
    examples += non_answers.non_answers(human, config.non_answers, config.seed) if config.non_answers else []
    examples += framings.framed(human, config.framings, config.seed) if config.framings else []
    data = build_matrices(examples, config)
    # the attack prompt instead of the bare request (a judge's input may carry either), and harmful help told as a
    # story: checks of the harm judge, never trained on
    checks = {}
    if folds and base_judge(config.judge) == "harm":
        sample = check_sample(human, config.check_rows, config.seed)
        checked = [human[i] for i in sample]
        checks = {name: build_matrices(make(checked, config.seed), config)
                  for name, make in (("in_templates", framings.in_templates), ("in_stories", framings.in_stories))}
        # the story check's answers as they were: rows of ``data`` already, not features to compute again
        plain = np.zeros(len(examples), bool)
        plain[sample] = [framings.is_plain_example(e) for e in checked]
        checks["plain"] = data.take(plain)
    fold_metrics = leave_one_source_out(data, config, checks) if folds else []
    unseen = unseen_requests(data, examples, config) if folds and base_judge(config.judge) == "harm" else {}
    head, choice = fit_head(data, config)
    head_path = head.save(Path(out_dir) / f"{config.judge}.npz")
    card = {"judge": config.judge, "config": asdict(config), "second_stage": choice,
            "data": {name: file_fingerprint(path) for name, path in ((p.name, p) for p in data_files())},
            "rows": {s: int((data.sources == s).sum()) for s in dict.fromkeys(data.sources.tolist())},
            "positives": {s: int(data.labels[data.sources == s].sum()) for s in dict.fromkeys(data.sources.tolist())},
            "leave_one_source_out": fold_metrics, "summary": summarize_folds(fold_metrics),
            "unseen_requests": unseen, "command": f"safepref judge-train {config.judge}"}
    write_json_atomic(Path(out_dir) / f"{config.judge}.json", card)
    return {"head": str(head_path), **card}


def check_sample(examples: list[Example], per_source: int | None, seed: int) -> list[int]:
    """Indices of a seeded sample of at most ``per_source`` examples of each source, in their order (every index
    with None)."""
    by_source: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_source.setdefault(e.source, []).append(i)
    keep = []
    for source, indices in by_source.items():
        if per_source is not None and len(indices) > per_source:
            indices = random.Random(f"{seed}|checks|{source}").sample(indices, per_source)
        keep += indices
    return sorted(keep)


def unseen_requests(data: Matrices, examples: list[Example], config: JudgeTrainingConfig) -> dict:
    """A seen source's unseen requests: the shipped head's situation on new jailbreak answers. Trained on every row
    but GPTFuzz's evaluate-split questions (20 of its 100, GPTFuzz's own split; their synthetic rows held out too),
    judged on those questions' human-labelled answers."""

    questions = {row.prompt for row in load_dataset("gptfuzz-eval")}
    held_out = np.array([base_source(e.source) == "gptfuzz" and e.prompt in questions for e in examples])
    head, choice = fit_head(data.take(~held_out), config)
    test = data.take(held_out & (data.sources == "gptfuzz"))
    metrics = agreement(test.labels.tolist(), predict(head, test).tolist())
    return {"source": "gptfuzz", "held_out": "the evaluate split's 20 questions", **_rounded(metrics),
            "positives": int(test.labels.sum()), "second_stage": choice["chosen"]}


def summarize_folds(folds: list[dict]) -> dict:
    """Pooled agreement over every held-out row (each row judged by a head that never saw its source), and the
    lowest fold's agreement."""
    if not folds:
        return {}
    n = sum(f["n"] for f in folds)
    pooled = sum(f["agreement"] * f["n"] for f in folds) / n
    return {"pooled_agreement": round(pooled, 4), "n": n, "min_fold_agreement": min(f["agreement"] for f in folds),
            "mean_fold_kappa": round(float(np.mean([f["kappa"] for f in folds if f["kappa"] is not None])), 4)}
