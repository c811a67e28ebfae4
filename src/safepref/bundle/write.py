"""Writing a run's evidence into a bundle, configuration by configuration, as its stages finish.

A configuration's files are named by its key (``safety/<target>/<recipe>-<key>.jsonl.gz``), and its record in the
manifest points at them. Evidence is never replaced by less:

- a complete record is rewritten only by re-judging (the same answers, new verdicts), never by a run or an export
  under the same key;
- a configuration re-run under a new key writes its files under the new key beside the old ones, and its record
  replaces the old one only once it is complete: a killed re-run leaves the old evidence in place;
- files no record names (a killed re-run's) are removed when the run finishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safepref.bundle import evidence
from safepref.bundle.store import (
    MANIFEST,
    BundleManifest,
    CodeVersion,
    ConfigurationRecord,
    EvaluationRecord,
    JudgeRecord,
    check_writable,
    read_manifest,
    replace_bytes,
    write_json,
    write_manifest,
    write_rows,
)
from safepref.core.errors import InputError
from safepref.core.keys import STAGE_VERSIONS
from safepref.core.paths import slug
from safepref.core.versions import code_version
from safepref.judges import judge_fingerprints, measured_agreement

# evidence kind -> (folder, suffix)
KINDS = {"pairs": ("pairs", ".jsonl.gz"), "training_log": ("training", ".jsonl.gz"), "safety": ("safety", ".jsonl.gz"),
         "benign": ("benign", ".jsonl.gz"), "benign_summary": ("benign", ".json"), "audit": ("audit", ".json"),
         "general": ("general", ".json")}
EVIDENCE_FOLDERS = sorted({folder for folder, _ in KINDS.values()})


def judge_record(name: str, fingerprint: str | None) -> JudgeRecord:
    """A judge as a bundle records it: its fingerprint and its measured agreement with people."""
    measured = measured_agreement(name)
    # YAML reads an unquoted `on:` key as the boolean True
    agreement = {("on" if key is True else str(key)): value for key, value in measured.items()} if measured else None
    return JudgeRecord(fingerprint=fingerprint, agreement=agreement)


def current_code() -> CodeVersion:
    found = code_version()
    return CodeVersion(safepref=found.get("safepref"), commit=found.get("commit"), stage_versions=dict(STAGE_VERSIONS))


class BundleWriter:
    """The bundle of one experiment, opened for writing: checks it can write there and that the bundle, if it
    exists, is of a known format and of the same experiment."""

    def __init__(self, folder: str | Path, name: str, config: dict[str, Any]) -> None:
        self.dir = Path(folder)
        if (self.dir / MANIFEST).exists():
            self.manifest = read_manifest(self.dir)
            if self.manifest.name != name:
                raise InputError(f"holds the bundle of experiment '{self.manifest.name}', and the config is "
                                 f"'{name}': give another --bundle folder", path=self.dir / MANIFEST, field="name")
        else:
            self.manifest = BundleManifest(name=name, config=config)
        check_writable(self.dir)
        self.manifest.config = config
        self._pending: dict[tuple[str, str], ConfigurationRecord] = {}

    # ------------------------------------------------------------------------------------------ reading back

    def reusable(self, target: str, recipe: str, key: str) -> ConfigurationRecord | None:
        """The configuration's complete record under ``key``, with every file it names present, or None."""
        record = self.manifest.targets.get(target, {}).get(recipe)
        if record is None or not record.complete or record.key != key:
            return None
        return record if all((self.dir / path).is_file() for path in record.all_files()) else None

    # ------------------------------------------------------------------------------------------ writing

    def update_run(self, **fields: Any) -> None:
        """Run-level facts (versions, seed, prompt set, timings): set and saved."""
        for name, value in fields.items():
            setattr(self.manifest, name, value)
        self.save()

    def record(self, target: str, recipe: str, *, key: str, label: str, entry: dict[str, Any], complete: bool,
               models: dict[str, str], stage_keys: dict[str, Any]) -> ConfigurationRecord | None:
        """Export what a run manifest entry names (the stages finished so far; each further seed's evaluation under
        ``entry["seeds"]`` with its ``models`` and ``stage_keys``) as this configuration's evidence. Returns the
        record now in the manifest, or None when a complete record under another key stays there until this one
        is complete."""
        current = self.manifest.targets.get(target, {}).get(recipe)
        if current is not None and current.complete and current.key == key:
            return current  # never rewritten by a run: its evidence is complete
        record = ConfigurationRecord(key=key, label=label, base=entry.get("base"), complete=complete,
                                     code=current_code(), models=models, stage_keys=stage_keys, data=entry.get("data"))
        if current is not None and current.key == key:  # an unfinished record: what it holds stays until redone
            record = current.model_copy(deep=True, update={"complete": complete, "code": record.code,
                                                           "models": models, "stage_keys": stage_keys,
                                                           "data": record.data or current.data})
        stem = f"{slug(target)}/{slug(recipe)}-{key}"
        fingerprints = judge_fingerprints(["harm", "keyword", "classifier", "llm", "refusal", "refusal-rules"])
        self._export_pairs(record, entry, stem, fingerprints)
        seeds = entry.get("seeds") or []
        record.seed = seeds[0]["seed"] if seeds else None
        self._export_evaluation(record, entry, stem, fingerprints)
        for evaluation in seeds[1:]:
            found = next((s for s in record.seeds if s.seed == evaluation["seed"]), None)
            if found is None:
                found = EvaluationRecord(seed=evaluation["seed"])
                record.seeds.append(found)
            found.models, found.stage_keys = evaluation.get("models") or {}, evaluation.get("stage_keys") or {}
            self._export_evaluation(found, evaluation, f"{stem}-seed{evaluation['seed']}", fingerprints)
        replaces_complete = current is not None and current.complete and current.key != key
        if replaces_complete and not complete:
            self._pending[(target, recipe)] = record
            return None
        self._pending.pop((target, recipe), None)
        self.manifest.targets.setdefault(target, {})[recipe] = record
        self.save()
        return record

    def adopt(self, source_dir: str | Path) -> None:
        """Take the configurations of another bundle of the same experiment, by the rules a run follows: a complete
        record here stays unless the incoming one is complete under another key."""
        source_dir = Path(source_dir)
        source = read_manifest(source_dir)
        if source.name != self.manifest.name:
            raise InputError(f"is the bundle of experiment '{source.name}', not '{self.manifest.name}'",
                             path=source_dir / MANIFEST, field="name")
        for target, configurations in source.targets.items():
            for recipe, record in configurations.items():
                current = self.manifest.targets.get(target, {}).get(recipe)
                if current is not None and current.complete and (current.key == record.key or not record.complete):
                    continue
                for path in record.all_files():
                    _copy(source_dir / path, self.dir / path)
                self.manifest.targets.setdefault(target, {})[recipe] = record
        self.manifest.config = source.config
        self.manifest.versions, self.manifest.seed, self.manifest.seeds = source.versions, source.seed, source.seeds
        self.manifest.precision = source.precision
        self.manifest.n_training_prompts = source.n_training_prompts
        self.manifest.training_prompt_set = source.training_prompt_set
        self.manifest.timings = {**self.manifest.timings, **source.timings}
        self.manifest.judges = {**self.manifest.judges, **source.judges}
        self.finish()

    def _export_pairs(self, record: ConfigurationRecord, entry: dict[str, Any], stem: str,
                      fingerprints: dict[str, str | None]) -> None:
        """What a trained configuration's seeds share: its pairs, the debias counts, the audit."""
        if evidence.finished(entry.get("pairs")):
            self._rows(record, "pairs", stem, evidence.pairs_rows(entry["pairs"]))
        if evidence.finished(entry.get("debias")):
            record.debias = evidence.debias_counts(entry["debias"])
        if evidence.finished(entry.get("audit")):
            self._json(record, "audit", stem, evidence.audit_evidence(entry["audit"], fingerprints))

    def _export_evaluation(self, record: EvaluationRecord, entry: dict[str, Any], stem: str,
                           fingerprints: dict[str, str | None]) -> None:
        """One evaluated model: its training log, its answers with their verdicts, benign answers, lm-eval."""
        training = entry.get("training")
        if training and evidence.finished(training.get("summary")):
            record.training = evidence.training_evidence(training["summary"])
            self._rows(record, "training_log", stem, evidence.training_log(training["dynamics"]))
        safety = [path for path in entry.get("safety") or [] if evidence.finished(path)]
        if safety:
            keys = (record.stage_keys.get("safety") or []) + [""] * len(safety)
            record.safety, answers = [], []
            for path, key in zip(safety, keys, strict=False):
                suite, rows = evidence.safety_evidence(path, key, fingerprints)
                record.safety.append(suite)
                answers += rows
            self._rows(record, "safety", stem, answers)
            self._note_judges({judge for suite in record.safety for judge in suite.judges}, fingerprints)
        if evidence.finished(entry.get("benign")):
            summary, rows = evidence.benign_evidence(entry["benign"], fingerprints)
            self._json(record, "benign_summary", stem, summary)
            self._rows(record, "benign", stem, rows)
        if evidence.finished(entry.get("general")):
            self._json(record, "general", stem, evidence.general_evidence(entry["general"]))

    def _path(self, kind: str, stem: str) -> str:
        folder, suffix = KINDS[kind]
        return f"{folder}/{stem}{suffix}"

    def _rows(self, record: EvaluationRecord, kind: str, stem: str, rows: list[Any]) -> None:
        record.files[kind] = self._path(kind, stem)
        write_rows(self.dir / record.files[kind], rows)

    def _json(self, record: EvaluationRecord, kind: str, stem: str, data: dict[str, Any]) -> None:
        record.files[kind] = self._path(kind, stem)
        write_json(self.dir / record.files[kind], data)

    def _note_judges(self, names: set[str], fingerprints: dict[str, str | None]) -> None:
        for name in sorted(names):
            self.manifest.judges[name] = judge_record(name, fingerprints.get(name))

    def save(self) -> None:
        write_manifest(self.dir, self.manifest)

    def reload(self) -> None:
        """Read the manifest again after another writer (re-judging) changed it."""
        self.manifest = read_manifest(self.dir)

    def finish(self) -> None:
        """Save, and remove evidence files that no record names (a killed re-run's, or a replaced record's)."""
        self.save()
        prune(self.dir, self.manifest, extra=[r for r in self._pending.values()])


def _copy(source: Path, destination: Path) -> None:
    if not source.is_file():
        raise InputError("evidence file missing from the bundle", path=source)
    if not destination.is_file() or destination.read_bytes() != source.read_bytes():
        replace_bytes(destination, source.read_bytes())


def prune(folder: Path, manifest: BundleManifest, extra: list[ConfigurationRecord] = ()) -> list[Path]:
    """Delete the evidence files under ``folder`` that no record names; returns them."""
    named = {folder / path for configurations in manifest.targets.values() for record in configurations.values()
             for path in record.all_files()}
    named |= {folder / path for record in extra for path in record.all_files()}
    removed = []
    for name in EVIDENCE_FOLDERS:
        for path in sorted((folder / name).rglob("*")) if (folder / name).is_dir() else []:
            if path.is_file() and path not in named:
                path.unlink()
                removed.append(path)
    return removed
