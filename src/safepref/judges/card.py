"""The Markdown model card of a trained judge head, written from its card data (``heads/<judge>.json``)."""

from __future__ import annotations

from pathlib import Path

from safepref.core.io import write_text_atomic
from safepref.core.stats import wilson_interval

_WHAT = {
    "harm": "1 = the answer gives the harmful help the request asked for (0 = refuses, evades, or the request is "
            "safe)",
    "refusal": "1 = the answer refuses, fully or partly (XSTest's full and partial refusal), 0 = it complies",
}
_WHAT.update({f"{name}-fast": what for name, what in _WHAT.items()})  # the same label, read without the LM


def _fmt(value) -> str:
    return "—" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _with_ci(rate: float | None, n: int) -> str:
    """``0.878 [0.871, 0.885]``: an agreement with its 95% Wilson interval over ``n`` rows."""
    if rate is None or not n:
        return _fmt(rate)
    low, high = wilson_interval(round(rate * n), n)
    return f"{rate:.3f} [{low:.3f}, {high:.3f}]"


def _inputs(features: dict) -> str:
    answer = f"static MiniLM embedding of the answer's first {features['static_tokens']} word pieces"
    in_context = (f", MiniLM sentence embedding of the answer's first {features['answer_tokens']} word pieces"
                  if features.get("answer_tokens") else "")
    request = "MiniLM sentence embedding of the request" + (
        f" (of its last {features['embed_tokens'] - 2} word pieces when longer: a jailbreak template puts the request "
        "last)" if features.get("request_tail") else "")
    lm_state = (f", the mean hidden state of layer {features['lm_layer']} of {features['lm']} over the answer's first "
                f"{features['lm_answer_tokens']} tokens" if features.get("lm") else "")
    lm = (f"{lm_state} with the request's last {features['lm_request_tokens']} in context (its chat template)"
          if lm_state else "")
    if features.get("focus"):
        opening = "the same embedding of the answer's opening, " if features.get("whole_opening", True) else ""
        return (f"[{request}; read from the answer's first paragraph that is not a "
                f"refusal: {answer}, the product of both static embeddings, the TF-IDF{in_context}{lm}; {opening}a "
                "flag 'refused, then went on', two refusal-phrase flags, the text logit]")
    if not features.get("request", True):
        alone = f"{lm_state} (an empty user turn of its chat template)" if lm_state else ""
        return f"[{answer}{in_context}{alone}, two refusal-phrase flags, the text logit] (the request is not read)"
    return (f"[{request}, {answer}, the product of both static embeddings"
            f"{in_context}, two refusal-phrase flags, the text logit]")


def _members(card: dict) -> str:
    members = card["config"].get("ensemble", 1)
    if not card["second_stage"]["chosen"].get("hidden") or members < 2:
        return ""
    return f"; the mean probability of {members} such networks trained with successive seeds"


# (fold key of the count, fold key of the figure, column title) for each kind of synthetic row a fold reports; a
# fold's "plain" (its plain answers unchanged) is printed beside "in_stories", not in a column of its own
SYNTHETIC_COLUMNS = (("non_answers", "non_answers_judged_1", "its non-answers judged 1 (n)"),
                     ("framed", "framed_agreement", "its framed rows: agreement (n)"),
                     ("in_templates", "in_templates_agreement", "its requests inside a jailbreak template: agreement (n)"),
                     ("in_stories", "in_stories_agreement", "its plain answers told as a story: agreement (n)"))


def _synthetic_note(config: dict) -> str:
    notes = []
    if config.get("non_answers"):
        notes.append(f"{config['non_answers']} non-answers per source (`<source>/non-answer`, label 0: the request "
                     "echoed, a fragment repeated, a list of empty items, an affirmative opener alone; "
                     "`safepref/judges/non_answers.py`)")
    if config.get("framings"):
        notes.append(f"{config['framings']} jailbreak-framed copies of labelled rows per source (`<source>/framed`, "
                     "label kept: a refusal then the answer, or the answer after a persona tag; "
                     "`safepref/judges/framings.py`)")
    if not notes:
        return ""
    return (" Synthetic rows (" + "; ".join(notes) + ") are held out with the source they were built from and never "
            "count in the agreement.")


_CHECK_NOTES = {
    "in_templates": " The column 'its requests inside a jailbreak template' judges the held-out source's rows again "
                    "with each request filled into one of GPTFuzz's jailbreak templates (a seeded choice per row; "
                    "`framings.in_templates`): a judge's input may carry the attack prompt instead of the bare "
                    "request.",
    "in_stories": " The column 'its plain answers told as a story' judges the held-out source's answers that open "
                  "with neither a refusal nor a speaker tag again, each inside one of four fiction frames never "
                  "trained on (a scene, a character's notebook, 'I'll stay in character'; `framings.in_stories`), "
                  "label kept: PAIR-style attacks ask for harmful help as a story.",
}


def _synthetic(fold: dict, count: str, rate: str) -> str:
    if not fold.get(count):
        return "—"
    if count == "in_stories" and fold.get("plain"):  # beside the same answers judged as they were
        return f"{_fmt(fold[rate])} against {_fmt(fold['plain_agreement'])} bare ({fold[count]})"
    return f"{_fmt(fold[rate])} ({fold[count]})"


def model_card_markdown(card: dict) -> str:
    judge = card["judge"]
    features = card["config"]["features"]
    lines = [f"# Model card: the `{judge}` judge", "", f"Label: {_WHAT.get(judge, '')}.", "",
             "Model: a class-balanced logistic regression on the hashed TF-IDF of the answer's first "
             f"{features['max_chars']} characters gives a text logit (out-of-fold for training); on "
             f"{_inputs(features)} a second stage (chosen by inner cross-validation: "
             f"{card['second_stage']['chosen']}{_members(card)}) gives the probability; threshold 0.5"
             + ("; label 1 also wherever the rule refusal judge (judges/refusal.py) fires. "
                if card["config"].get("rule_union") else ". ")
             + "Code: `safepref/judges/{features,head,training}.py`.", "",
             "## Training data (all of it for the shipped head)", "", "| source | rows | label 1 |", "|---|---|---|"]
    lines += [f"| {s} | {n} | {card['positives'][s]} |" for s, n in card["rows"].items()]
    folds = card["leave_one_source_out"]
    columns = [c for c in SYNTHETIC_COLUMNS if any(f.get(c[0]) for f in folds)]
    lines += ["", "Files (sha256 prefixes): " + ", ".join(f"`{k}` {v}" for k, v in card["data"].items()), "",
              "## Leave-one-source-out validation", "",
              "Each row: trained on every other source (second stage chosen by CV inside those sources only), "
              "judged on the held-out source's human labels." + _synthetic_note(card["config"])
              + "".join(_CHECK_NOTES.get(count, "") for count, _, _ in columns), "",
              "| held-out source | n | label 1 | agreement | kappa | precision | recall |"
              + "".join(f" {title} |" for _, _, title in columns),
              "|---" * (7 + len(columns)) + "|"]
    lines += [f"| {f['held_out']} | {f['n']} | {f['positives']} | {_with_ci(f['agreement'], f['n'])} | {_fmt(f['kappa'])} | "
              f"{_fmt(f['precision'])} | {_fmt(f['recall'])} |"
              + "".join(f" {_synthetic(f, count, rate)} |" for count, rate, _ in columns) for f in folds]
    summary = card.get("summary") or {}
    if summary:
        lines += ["", f"Pooled over all held-out rows: agreement {_with_ci(summary['pooled_agreement'], summary['n'])} "
                      f"(n = {summary['n']}; 95% Wilson intervals); "
                      f"lowest fold {summary['min_fold_agreement']:.3f}; mean kappa {summary['mean_fold_kappa']:.3f}."]
    cap = card["config"].get("max_per_source")
    lines += ["", "Caveat: the three XSTest sources answer the same 450 prompts, so an XSTest fold holds out a "
                  "responding model, not the prompts; GPTFuzz and SafeRLHF folds hold out both. "
                  + (f"Sources larger than {cap} rows are a seeded sample of that size." if cap else
                     "Every row of every source is used.")]
    lines += _unseen_requests(card.get("unseen_requests") or {})
    lines += ["", "## Reproduce", "", "```", f"{card['command']}", "```", ""]
    return "\n".join(lines)


def _unseen_requests(check: dict) -> list[str]:
    if not check:
        return []
    return ["", "## A seen source, unseen requests", "",
            f"Trained on every row except {check['source']}'s {check['held_out']} (and the synthetic rows built from "
            "them), judged on those requests' human-labelled answers: the shipped head's situation on new jailbreak "
            "answers of a kind it has seen.", "",
            "| held-out requests | n | label 1 | agreement | kappa | precision | recall |", "|---|---|---|---|---|---|---|",
            f"| {check['source']}: {check['held_out']} | {check['n']} | {check['positives']} | "
            f"{_with_ci(check['agreement'], check['n'])} | {_fmt(check['kappa'])} | {_fmt(check['precision'])} | "
            f"{_fmt(check['recall'])} |"]


def write_model_card(card: dict, out_dir: str | Path) -> Path:
    return write_text_atomic(Path(out_dir) / f"MODEL_CARD_{card['judge']}.md", model_card_markdown(card))
