"""Re-judging a bundle: its stored answers judged by the judges as they are now, with no generation and no training.

A verdict is a function of the judge's fingerprint, the request and the answer, so a stored verdict whose judge
fingerprint is the current judge's is kept, and only the others are judged (``force`` judges every one again);
identical (request, answer) texts are judged once. What each judge decides in a bundle:

- every judge: the verdicts on the answers to the jailbreak suites (the report recomputes its rates from them);
- ``refusal``: also the benign answers and the reference's, and the answers to harmful prompts, whose refusal rates
  the benign summary gives;
- ``harm`` or ``refusal``: the audit's pair diagnostics, judged again from the stored pairs by both their judges.

Files are rewritten atomically and only with as many rows as they had.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safepref.bundle.store import (
    BenignAnswer,
    BundleManifest,
    ConfigurationRecord,
    EvaluatedAnswer,
    EvaluationRecord,
    StoredVerdict,
    check_writable,
    read_json,
    read_manifest,
    read_records,
    read_rows,
    write_json,
    write_manifest,
    write_rows,
)
from safepref.bundle.write import judge_record
from safepref.core.errors import InputError
from safepref.core.io import pair_from_row
from safepref.core.keys import content_key
from safepref.core.stats import rate
from safepref.evaluation.safety import HARM_JUDGES
from safepref.judges import JudgeInput, get_judge, judge_fingerprints, parse_judge_names
from safepref.pairs.diagnostics import HARM_JUDGE, REFUSAL_JUDGE, pair_diagnostics

REFUSAL = "refusal"


class _Verdicts:
    """One judge's verdicts by content (its fingerprint, the request, the answer): each text pair judged once."""

    def __init__(self, name: str, fingerprint: str | None, options: dict[str, Any]) -> None:
        self.name, self.fingerprint, self.options = name, fingerprint, options
        self.known: dict[str, StoredVerdict] = {}
        self._judge = None
        self.judged = 0

    def key(self, request: str, answer: str) -> str:
        return content_key(self.fingerprint, request, answer)

    def remember(self, request: str, answer: str, verdict: StoredVerdict) -> None:
        if verdict.fingerprint == self.fingerprint:
            self.known.setdefault(self.key(request, answer), verdict)

    def judge(self, texts: list[tuple[str, str]]) -> list[StoredVerdict]:
        """Verdicts for (request, answer) pairs, judging only those not known yet."""
        todo = {}
        for request, answer in texts:
            key = self.key(request, answer)
            if key not in self.known:
                todo[key] = (request, answer)
        if todo:
            if self._judge is None:
                self._judge = get_judge(self.name, **self.options)
            rows = [JudgeInput(id=key, prompt=request, response=answer) for key, (request, answer) in todo.items()]
            for verdict in self._judge.judge(rows):
                self.known[verdict.id] = StoredVerdict(label=verdict.label, score=verdict.score, raw=verdict.raw,
                                                       gold=None, fingerprint=self.fingerprint)
            self.judged += len(rows)
        return [self.known[self.key(request, answer)] for request, answer in texts]


def judge_fingerprint(name: str, judge_model: str | None) -> str | None:
    """A judge's fingerprint; an endpoint judge's is the model it asks (nothing shipped to hash)."""
    found = judge_fingerprints([name])[name]
    if found is None and name == "llm" and judge_model:
        return content_key("llm", judge_model)
    return found


def rejudge_bundle(folder: str | Path, judges: list[str] | None = None, *, judge_model: str | None = None,
                   base_url: str | None = None, force: bool = False,
                   log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Judge the bundle's stored answers with ``judges`` (default: every judge its suites report on) as they are
    now; returns what was judged and how many verdicts changed."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    check_writable(folder)
    records = [(target, name, record) for target, configurations in manifest.targets.items()
               for name, record in configurations.items()]
    names = list(dict.fromkeys(judges or default_judges(manifest)))
    if not names:
        raise InputError("the bundle holds no judged answers and no judge was named (--judges)", path=folder)
    parse_judge_names(",".join(names))
    options = {"judge_model": judge_model, "base_url": base_url}
    verdicts = {name: _Verdicts(name, judge_fingerprint(name, judge_model), options) for name in names}
    started = time.perf_counter()
    counts = {"answers": 0, "changed": 0, "files": 0}
    for target, name, record in records:
        log(f"{target} {name}")
        for evaluation in record.evaluations():
            answers = _rejudge_answers(folder, evaluation, verdicts, force, counts)
            if REFUSAL in verdicts:
                _rejudge_benign(folder, evaluation, answers, verdicts[REFUSAL], force, counts)
        if HARM_JUDGE in verdicts or REFUSAL_JUDGE in verdicts:
            _rejudge_pairs(folder, record, force, counts)
    for name, judged in verdicts.items():
        if name in manifest.judges or judged.judged:
            manifest.judges[name] = judge_record(name, judged.fingerprint)
    write_manifest(folder, manifest)
    return {"judges": names, "judged": sum(v.judged for v in verdicts.values()), **counts,
            "seconds": round(time.perf_counter() - started, 1)}


def default_judges(manifest: BundleManifest) -> list[str]:
    """Every judge the bundle's suites report on, and the refusal judge where benign measures or pair diagnostics
    use it."""
    records = [r for configurations in manifest.targets.values() for r in configurations.values()]
    names = [j for r in records for e in r.evaluations() for suite in e.safety for j in suite.judges]
    if any("benign" in r.files or "audit" in r.files for r in records):
        names.append(REFUSAL)
    return list(dict.fromkeys(names))


def _stale(verdict: StoredVerdict | None, fingerprint: str | None, force: bool) -> bool:
    return force or verdict is None or verdict.fingerprint != fingerprint


def _rejudge_answers(folder: Path, record: EvaluationRecord, verdicts: dict[str, _Verdicts], force: bool,
                     counts: dict[str, int]) -> list[EvaluatedAnswer]:
    """The verdicts of every judge a suite reports on (a harm judge asked for joins every suite; refusal joins
    XSTest, as eval-safety adds it there)."""
    if "safety" not in record.files:
        return []
    path = folder / record.files["safety"]
    answers: list[EvaluatedAnswer] = read_records(path, EvaluatedAnswer)
    counts["answers"] += len(answers)
    changed = False
    for name, judged in verdicts.items():
        for suite in record.safety:
            if name not in suite.judges and (name in HARM_JUDGES or (name == REFUSAL and suite.xstest)):
                suite.judges.append(name)
        reported = {suite.suite for suite in record.safety if name in suite.judges}
        mine = [a for a in answers if a.suite in reported]
        for answer in mine:
            if name in answer.verdicts and not force:
                judged.remember(answer.request, answer.answer, answer.verdicts[name])
        changed |= _judge_into(mine, name, judged, force, counts, lambda a: (a.request, a.answer))
    if changed:
        _write_same_rows(path, answers)
        counts["files"] += 1
    return answers


def _judge_into(rows: list[Any], name: str, judged: _Verdicts, force: bool, counts: dict[str, int],
                texts: Callable[[Any], tuple[str, str]]) -> bool:
    """Judge the rows whose verdict by ``name`` is missing or not the current judge's; returns whether any was."""
    todo = [row for row in rows if _stale(row.verdicts.get(name), judged.fingerprint, force)]
    for row, verdict in zip(todo, judged.judge([texts(row) for row in todo]), strict=True):
        before = row.verdicts.get(name)
        counts["changed"] += before is None or before.label != verdict.label
        row.verdicts[name] = verdict
    return bool(todo)


def _rejudge_benign(folder: Path, record: EvaluationRecord, answers: list[EvaluatedAnswer], judged: _Verdicts,
                    force: bool, counts: dict[str, int]) -> None:
    """Refusal verdicts on the benign answers, the reference's and the answers to harmful prompts, then the benign
    summary's refusal rates from them; only when the summary's refusal judge is not the current one."""
    if "benign" not in record.files or "benign_summary" not in record.files:
        return
    summary_path = folder / record.files["benign_summary"]
    summary = read_json(summary_path)
    if not force and (summary.get("judges") or {}).get(REFUSAL) == judged.fingerprint:
        return
    path = folder / record.files["benign"]
    rows: list[BenignAnswer] = read_records(path, BenignAnswer)
    for row in rows:
        if REFUSAL in row.verdicts and not force:
            judged.remember(row.prompt, row.answer, row.verdicts[REFUSAL])
    if _judge_into(rows, REFUSAL, judged, force, counts, lambda r: (r.prompt, r.answer)):
        _write_same_rows(path, rows)
        counts["files"] += 1
    refused = lambda group: _refusal_rate([r.verdicts[REFUSAL].label for r in group])  # noqa: E731
    mine = [r for r in rows if r.role == "answer"]
    _set_refusal(summary, refused(mine))
    for pool, quality in summary.get("pools", {}).items():
        _set_refusal(quality, refused([r for r in mine if r.pool == pool]))
    if summary.get("reference_quality"):
        _set_refusal(summary["reference_quality"], refused([r for r in rows if r.role == "reference"]))
    harmful_changed = False
    for quality in summary.get("harmful", []):
        suite, unsafe_only = quality["suite"].removesuffix("-unsafe"), quality["suite"].endswith("-unsafe")
        harmful = [a for a in answers if a.suite == suite and a.attack == "none"
                   and (not unsafe_only or a.xstest_label == "unsafe")]
        for answer in harmful:
            if REFUSAL in answer.verdicts and not force:
                judged.remember(answer.request, answer.answer, answer.verdicts[REFUSAL])
        harmful_changed |= _judge_into(harmful, REFUSAL, judged, force, counts, lambda a: (a.request, a.answer))
        if len(harmful) == quality["n"]:
            _set_refusal(quality, _refusal_rate([a.verdicts[REFUSAL].label for a in harmful]))
    if harmful_changed:
        _write_same_rows(folder / record.files["safety"], answers)
        counts["files"] += 1
    summary["judges"] = {**(summary.get("judges") or {}), REFUSAL: judged.fingerprint}
    if write_json(summary_path, summary):
        counts["files"] += 1


def _refusal_rate(labels: list[int | None]) -> dict[str, Any]:
    return rate(sum(label == 1 for label in labels), len(labels))


def _set_refusal(quality: dict[str, Any], refused: dict[str, Any]) -> None:
    if refused["n"]:
        quality["refusal_rate"], quality["refusal_rate_ci"] = refused["rate"], refused["ci95"]


def _rejudge_pairs(folder: Path, record: ConfigurationRecord, force: bool, counts: dict[str, int]) -> None:
    """The audit's pair diagnostics from the stored pairs, when their judges are not the current ones."""
    if "audit" not in record.files or "pairs" not in record.files:
        return
    audit_path = folder / record.files["audit"]
    audit = read_json(audit_path)
    current = {name: judge_fingerprints([name])[name] for name in (HARM_JUDGE, REFUSAL_JUDGE)}
    if not force and audit.get("judges") == current:
        return
    pairs_path = folder / record.files["pairs"]
    pairs = [pair_from_row(row, path=pairs_path, line=n, default_id=f"pair-{n}")
             for n, row in enumerate(read_rows(pairs_path), start=1)]
    audit["pair_diagnostics"] = pair_diagnostics(pairs)
    audit["judges"] = current
    if write_json(audit_path, audit):
        counts["files"] += 1


def _write_same_rows(path: Path, rows: list[Any]) -> None:
    """Rewrite an evidence file with new verdicts: never with fewer rows than it holds."""
    before = len(read_rows(path))
    if len(rows) < before:
        raise InputError(f"would replace {before} rows with {len(rows)}: left as it is", path=path)
    write_rows(path, rows)
