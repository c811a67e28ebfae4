"""A bundle as the report reads it: per configuration, the rates and measures its evidence gives.

Rates are recomputed from the stored answers and verdicts (the same summary eval-safety writes), so a re-judged
bundle reports its new verdicts with no other step; the benign measures, the audit, lm-eval's results and the
training log are read as stored. Nothing here loads a model, reads a run folder or opens a network connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safepref.bundle.store import (
    BundleManifest,
    ConfigurationRecord,
    EvaluatedAnswer,
    SuiteRecord,
    read_json,
    read_manifest,
    read_records,
    read_rows,
)
from safepref.evaluation.safety import summarize_run


def verdict_rows(answers: list[EvaluatedAnswer]) -> list[dict[str, Any]]:
    """The stored verdicts as eval-safety's verdict rows (one per answer and judge)."""
    return [{"attack": a.attack, "id": a.prompt_id, "judge": judge, "label": v.label, "score": v.score,
             "gold": v.gold, "raw": v.raw, "xstest_label": a.xstest_label}
            for a in answers for judge, v in a.verdicts.items()]


def suite_summary(suite: SuiteRecord, answers: list[EvaluatedAnswer]) -> dict[str, Any]:
    """eval-safety's summary of one suite, from the bundle's answers to it."""
    mine = [a for a in answers if a.suite == suite.suite]
    summary = summarize_run(verdict_rows(mine), attacks=suite.attacks, judges=suite.judges, xstest=suite.xstest)
    return {"suite": suite.suite, "n_prompts": suite.n_prompts, **summary}


class Bundle:
    """A bundle opened for reading: its manifest, validated, and its evidence files by configuration."""

    def __init__(self, folder: str | Path) -> None:
        self.dir = Path(folder)
        self.manifest: BundleManifest = read_manifest(self.dir)

    def path(self, relative: str) -> Path:
        return self.dir / relative

    def records(self) -> list[tuple[str, str, ConfigurationRecord]]:
        return [(target, name, record) for target, configurations in self.manifest.targets.items()
                for name, record in configurations.items()]

    def answers(self, record: ConfigurationRecord) -> list[EvaluatedAnswer]:
        return read_records(self.path(record.files["safety"]), EvaluatedAnswer) if "safety" in record.files else []

    def json(self, record: ConfigurationRecord, kind: str) -> dict[str, Any] | None:
        return read_json(self.path(record.files[kind])) if kind in record.files else None

    def rows(self, record: ConfigurationRecord, kind: str) -> list[dict[str, Any]]:
        return read_rows(self.path(record.files[kind])) if kind in record.files else []

    def evidence(self, record: ConfigurationRecord) -> dict[str, Any]:
        """What the report shows of one configuration: safety summaries per suite, the benign summary, the audit,
        lm-eval's results, the training log, the data it trained on and the debias counts."""
        answers = self.answers(record)
        return {"safety": [suite_summary(suite, answers) for suite in record.safety],
                "benign": self.json(record, "benign_summary"), "audit": self.json(record, "audit"),
                "general": self.json(record, "general"), "dynamics": self.rows(record, "training_log"),
                "data": record.data, "training": record.training, "debias": record.debias, "base": record.base}
