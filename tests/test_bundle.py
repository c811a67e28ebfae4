"""The bundle: a run's evidence, from which reports are written, answers re-judged and runs resumed."""

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from safepref.bundle import REPORT_FILES, Bundle, BundleWriter, read_manifest, rejudge_bundle
from safepref.bundle.store import (
    FORMAT_VERSION,
    BundleManifest,
    CodeVersion,
    ConfigurationRecord,
    read_rows,
    rows_bytes,
    write_rows,
)
from safepref.core.errors import InputError
from safepref.report import collect_results
from safepref.report.provenance import provenance_markdown
from safepref.runner.run import run_experiment

from .conftest import run_cli, run_cli_killed_after, tiny_grid_config

STAGES_THAT_MAKE_EVIDENCE = ("train_dpo", "evaluate_safety", "evaluate_benign", "evaluate_general", "generate_responses",
                             "score_responses", "build_pairs", "audit_pairs", "debias_pairs")


def _config(folder: Path, model_dir: Path, **overrides) -> Path:
    return tiny_grid_config(folder, model_dir, name="tiny-bundle", **overrides)


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_model_dir):
    """The tiny grid run once, its bundle in the run folder: (config path, run folder, bundle folder)."""
    folder = tmp_path_factory.mktemp("bundle-grid")
    path = _config(folder, tiny_model_dir)
    run_dir = folder / "run"
    run_experiment(path, run_dir)
    return path, run_dir, run_dir / "bundle"


def _copy_bundle(bundle: Path, to: Path) -> Path:
    shutil.copytree(bundle, to)
    return to


def _forbid_work(monkeypatch):
    calls = []
    for name in STAGES_THAT_MAKE_EVIDENCE:
        monkeypatch.setattr(f"safepref.runner.run.{name}", lambda *a, _n=name, **k: calls.append(_n) or
                            pytest.fail(f"{_n} ran: the bundle held its evidence"))
    return calls


# ---------------------------------------------------------------------------------------------- what a run writes


def test_a_run_writes_every_stage_output_of_every_configuration(grid, tiny_model_dir):
    _, run_dir, bundle_dir = grid
    manifest = read_manifest(bundle_dir)
    target = tiny_model_dir.name
    assert manifest.format_version == FORMAT_VERSION and manifest.name == "tiny-bundle"
    assert list(manifest.targets[target]) == ["sft", "gpt4o_self", "self_rm"]
    for name, record in manifest.targets[target].items():
        assert record.complete and len(record.key) == 16 and record.code.stage_versions
        kinds = {"safety", "benign", "benign_summary"} | ({"pairs", "training_log", "audit"} if name != "sft" else set())
        assert set(record.files) == kinds, name
        answers = Bundle(bundle_dir).answers(record)
        assert len(answers) == 4 and all(a.verdicts["keyword"].fingerprint for a in answers)
        assert all(a.decoding["mode"] == "greedy" and a.decoding["max_new_tokens"] == 8 for a in answers)
    trained = manifest.targets[target]["self_rm"]
    log = read_rows(bundle_dir / trained.files["training_log"])
    assert [row["step"] for row in log] == [1, 2] and all("rewards/margins" in row for row in log)
    assert trained.training["steps"] == 2 and trained.models["evaluated"] != trained.models["target"]
    assert len(read_rows(bundle_dir / trained.files["pairs"])) == trained.data["n_pairs"]
    audit = json.loads((bundle_dir / trained.files["audit"]).read_text())
    assert "projection" not in audit["features"]["shallow"] and audit["pair_diagnostics"]["n_pairs"]
    # no weights, no caches: the evidence is a few kilobytes here
    assert not [p for p in bundle_dir.rglob("*") if p.suffix in (".safetensors", ".bin", ".npz", ".npy", ".pt")]
    assert sum(p.stat().st_size for p in bundle_dir.rglob("*") if p.is_file() and p.name not in REPORT_FILES) < 200_000
    assert (run_dir / "summary.md").read_text() == (bundle_dir / "summary.md").read_text()


def test_report_from_the_bundle_alone_equals_the_run_folders(grid, tmp_path):
    _, run_dir, bundle_dir = grid
    moved = _copy_bundle(bundle_dir, tmp_path / "results" / "tiny")
    for name in ("summary.md", "results.json", "report.html"):
        (moved / name).unlink()
    result = run_cli("report", str(moved), "--markdown", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (moved / "summary.md").read_text() == (run_dir / "summary.md").read_text()
    assert json.loads((moved / "results.json").read_text()) == json.loads((run_dir / "results.json").read_text())
    assert (run_dir / "summary.md").read_text() in result.stdout

    # a run folder without its bundle: the bundle is made again from the folder's artifacts, to the same tables
    folder = tmp_path / "run-copy"
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("bundle", "*.safetensors", "checkpoint-*"))
    manifest = json.loads((folder / "manifest.json").read_text())
    text = json.dumps(manifest).replace(str(run_dir), str(folder))
    (folder / "manifest.json").write_text(text)
    for name in ("summary.md", "results.json"):
        (folder / name).unlink()
    result = run_cli("report", str(folder))
    assert result.returncode == 0, result.stderr
    assert (folder / "summary.md").read_text() == (run_dir / "summary.md").read_text()


def test_a_grid_resumes_from_its_bundle_alone(grid, tmp_path, monkeypatch, tiny_model_dir):
    path, run_dir, bundle_dir = grid
    bundle = _copy_bundle(bundle_dir, tmp_path / "bundle")
    before = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()
              and p.name not in ("results.json", "report.html")}
    calls = _forbid_work(monkeypatch)
    monkeypatch.setattr("safepref.models.loading.load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    paths = run_experiment(path, tmp_path / "fresh-run", bundle_dir=bundle)
    assert calls == []
    assert Path(paths["summary"]).read_text() == (run_dir / "summary.md").read_text()
    after = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()
             and p.name not in ("results.json", "report.html")}
    assert after == before  # nothing rewritten: not the evidence, not the manifest, not the tables
    manifest = json.loads((tmp_path / "fresh-run" / "manifest.json").read_text())
    assert all(entry["from_bundle"] == str(bundle) for entry in manifest["targets"][tiny_model_dir.name].values())


def test_a_changed_key_reruns_its_configurations_and_keeps_the_others(grid, tmp_path, tiny_model_dir):
    path, run_dir, bundle_dir = grid
    bundle = _copy_bundle(bundle_dir, tmp_path / "bundle")
    old = read_manifest(bundle).targets[tiny_model_dir.name]
    config = yaml.safe_load(path.read_text())
    config["training"]["learning_rate"] = 5e-4  # every trained configuration's key changes; SFT's does not
    changed = tmp_path / "config.yaml"
    changed.write_text(yaml.safe_dump(config))
    run_copy = tmp_path / "run"
    shutil.copytree(run_dir, run_copy, ignore=shutil.ignore_patterns("bundle"))
    run_experiment(changed, run_copy, bundle_dir=bundle)  # the run folder's answers and scores are reused; training is not
    new = read_manifest(bundle).targets[tiny_model_dir.name]
    assert new["sft"] == old["sft"]
    for name in ("gpt4o_self", "self_rm"):
        assert new[name].complete and new[name].key != old[name].key
        assert new[name].training["config"]["learning_rate"] == 5e-4
        assert not (bundle / old[name].files["safety"]).exists()  # the replaced evidence is gone, the new is there
        assert (bundle / new[name].files["safety"]).is_file()


# ---------------------------------------------------------------------------------------------- never less


def test_a_killed_run_leaves_the_bundle_readable(tmp_path, tiny_model_dir):
    path = _config(tmp_path, tiny_model_dir, recipes=["sft", "self_rm"])
    bundle = tmp_path / "bundle"
    args = ["run", str(path), "--run-dir", str(tmp_path / "run"), "--bundle", str(bundle)]
    # SFT's safety evidence is in the bundle; the kill comes inside its benign stage, after its own answers
    killed = run_cli_killed_after("safepref.evaluation.benign:model_answers", 1, *args)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not [p for p in bundle.rglob("*") if p.name.endswith(".tmp")]
    record = read_manifest(bundle).targets[tiny_model_dir.name]["sft"]
    assert not record.complete and set(record.files) == {"safety"}
    # the stages finished before the kill keep their times in the bundle, for the report's stage-time table
    assert any(stage.startswith("safety ") for stage in read_manifest(bundle).timings)
    assert len(Bundle(bundle).answers(record)) == 4
    result = run_cli("report", str(bundle), "--markdown")
    assert result.returncode == 0, result.stderr
    assert "| SFT |" in result.stdout and "Incomplete (a stage has not finished): " in result.stdout


def test_a_failed_write_keeps_the_file_it_would_replace(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl.gz"
    write_rows(path, [{"a": 1}, {"a": 2}])
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safepref.bundle.store.os.replace", fail)
    with pytest.raises(OSError):
        write_rows(path, [{"a": 3}])
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["rows.jsonl.gz"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not a temp file's private mode
    assert rows_bytes([{"a": 1}]) == rows_bytes([{"a": 1}])  # no time or name in the gzip header


def test_a_complete_configuration_is_replaced_only_by_complete_evidence(grid, tmp_path, tiny_model_dir):
    _, run_dir, bundle_dir = grid
    bundle = _copy_bundle(bundle_dir, tmp_path / "bundle")
    target = tiny_model_dir.name
    entry = json.loads((run_dir / "manifest.json").read_text())["targets"][target]["self_rm"]
    old = read_manifest(bundle).targets[target]["self_rm"]
    writer = BundleWriter(bundle, "tiny-bundle", read_manifest(bundle).config)
    # the same key: a run never rewrites it
    assert writer.record(target, "self_rm", key=old.key, label="Self+RM", entry={}, complete=False, models={},
                         stage_keys={}) == old
    # a new key, stages still running: the old record stays, the new files wait beside it
    partial = {k: v for k, v in entry.items() if k in ("pairs", "data", "audit")}
    assert writer.record(target, "self_rm", key="0" * 16, label="Self+RM", entry=partial, complete=False, models={},
                         stage_keys={}) is None
    assert read_manifest(bundle).targets[target]["self_rm"] == old
    waiting = bundle / "pairs" / target / f"self_rm-{'0' * 16}.jsonl.gz"
    assert waiting.is_file()
    writer.finish()
    assert waiting.is_file()  # the writer that made it keeps it until the configuration completes
    BundleWriter(bundle, "tiny-bundle", read_manifest(bundle).config).finish()
    assert not waiting.exists() and all((bundle / p).is_file() for p in old.files.values())


def test_an_unfinished_configuration_keeps_its_evidence_while_it_runs_again(grid, tmp_path, tiny_model_dir):
    _, run_dir, bundle_dir = grid
    bundle = _copy_bundle(bundle_dir, tmp_path / "bundle")
    target = tiny_model_dir.name
    entries = json.loads((run_dir / "manifest.json").read_text())["targets"][target]
    writer = BundleWriter(bundle, "tiny-bundle", read_manifest(bundle).config)
    key = "1" * 16
    writer.record(target, "another", key=key, label="Another", entry={"safety": entries["sft"]["safety"]},
                  complete=False, models={}, stage_keys={})
    # another machine runs it from the start: its pairs come first, the safety evidence made before stays
    record = writer.record(target, "another", key=key, label="Another",
                           entry={"pairs": entries["self_rm"]["pairs"]}, complete=False, models={}, stage_keys={})
    assert set(record.files) == {"safety", "pairs"} and len(record.safety) == 1
    assert set(read_manifest(bundle).targets[target]["another"].files) == {"safety", "pairs"}


# ---------------------------------------------------------------------------------------------- re-judging


def test_rejudge_replaces_stale_verdicts_and_the_report_follows(grid, tmp_path, tiny_model_dir):
    _, run_dir, bundle_dir = grid
    bundle = _copy_bundle(bundle_dir, tmp_path / "bundle")
    record = read_manifest(bundle).targets[tiny_model_dir.name]["sft"]
    path = bundle / record.files["safety"]
    rows = read_rows(path)
    for row in rows:  # verdicts of an older keyword list, all the other way
        row["verdicts"]["keyword"].update(label=1 - row["verdicts"]["keyword"]["label"], fingerprint="older-list")
    write_rows(path, rows)
    stale = collect_results(bundle)["targets"][tiny_model_dir.name]["sft"]["safety"][0]["asr"]
    original = collect_results(bundle_dir)["targets"][tiny_model_dir.name]["sft"]["safety"][0]["asr"]
    assert stale == 1 - original

    found = rejudge_bundle(bundle, ["keyword"])
    assert found["judged"] == 4 and found["changed"] == 4 and found["files"] == 1
    assert collect_results(bundle)["targets"][tiny_model_dir.name]["sft"]["safety"][0]["asr"] == original
    assert rejudge_bundle(bundle, ["keyword"])["judged"] == 0  # current verdicts are kept, not judged again
    assert rejudge_bundle(bundle, ["keyword"], force=True)["changed"] == 0

    result = run_cli("rejudge", str(bundle), "--judges", "keyword", "--force")
    assert result.returncode == 0, result.stderr
    assert (bundle / "summary.md").read_text() == (run_dir / "summary.md").read_text()


def test_rejudge_of_refusal_updates_the_benign_rates(grid, tmp_path, tiny_model_dir):
    _, _, bundle_dir = grid
    bundle = _copy_bundle(bundle_dir, tmp_path / "bundle")
    record = read_manifest(bundle).targets[tiny_model_dir.name]["gpt4o_self"]
    summary_path = bundle / record.files["benign_summary"]
    summary = json.loads(summary_path.read_text())
    expected = summary["refusal_rate"], summary["reference_quality"]["refusal_rate"], summary["harmful"][0]["refusal_rate"]
    summary["refusal_rate"] = summary["reference_quality"]["refusal_rate"] = summary["harmful"][0]["refusal_rate"] = 0.99
    summary["judges"]["refusal"] = "an-older-head"
    summary_path.write_text(json.dumps(summary))
    rejudge_bundle(bundle, ["refusal"])
    summary = json.loads(summary_path.read_text())
    assert (summary["refusal_rate"], summary["reference_quality"]["refusal_rate"],
            summary["harmful"][0]["refusal_rate"]) == expected
    rows = read_rows(bundle / record.files["benign"])
    assert {row["role"] for row in rows} == {"answer", "reference"} and all("refusal" in row["verdicts"] for row in rows)


# ---------------------------------------------------------------------------------------------- bad input


def _one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_bad_bundles_are_one_line_errors(grid, tmp_path, tiny_model_dir):
    path, _, bundle_dir = grid
    version = _copy_bundle(bundle_dir, tmp_path / "version")
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (version / "manifest.json").write_text(json.dumps(manifest))
    _one_line_error(run_cli("report", str(version)), "manifest.json", "format version")

    truncated = _copy_bundle(bundle_dir, tmp_path / "truncated")
    record = read_manifest(truncated).targets[tiny_model_dir.name]["self_rm"]
    answers = truncated / record.files["safety"]
    text = gzip.decompress(answers.read_bytes()).decode()
    answers.write_bytes(gzip.compress(text[: len(text) - 40].encode()))
    _one_line_error(run_cli("report", str(truncated)), f"{record.files['safety']}:4", "truncated line")

    other = yaml.safe_load(path.read_text())
    other["name"] = "another-experiment"
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    _one_line_error(run_cli("run", str(tmp_path / "other.yaml"), "--run-dir", str(tmp_path / "run"), "--bundle",
                            str(_copy_bundle(bundle_dir, tmp_path / "named"))), "manifest.json", "tiny-bundle")

    (tmp_path / "a-file").write_text("")
    _one_line_error(run_cli("run", str(path), "--run-dir", str(tmp_path / "run"), "--bundle",
                            str(tmp_path / "a-file" / "bundle")), "a-file", "not writable")
    _one_line_error(run_cli("rejudge", str(tmp_path / "version"), "--judges", "keyword"), "format version")


def test_a_manifest_with_a_bad_field_names_it(tmp_path):
    manifest = BundleManifest(name="x", config={}).model_dump(mode="json")
    manifest["targets"] = {"t": {"sft": {"label": "SFT"}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError) as info:
        read_manifest(tmp_path)
    assert info.value.field == "targets.t.sft.key" and info.value.path.endswith("manifest.json")


def test_the_report_names_the_code_of_each_row():
    def entry(label, commit):
        return {"label": label, "key": "k" * 16, "complete": True,
                **CodeVersion(safepref="0.1.0", commit=commit, stage_versions={"train": 1}).model_dump()}

    same = provenance_markdown({"provenance": {"t": {"sft": entry("SFT", "aaa"), "self_rm": entry("Self+RM", "aaa")}}})
    assert same == ["", "Evidence: every configuration computed by safepref 0.1.0 (aaa)."]
    mixed = provenance_markdown({"provenance": {"t": {"sft": entry("SFT", "aaa"), "self_rm": entry("Self+RM", "bbb")}}})
    assert "| t | SFT | kkkkkkkkkkkkkkkk | safepref 0.1.0 (aaa) | train 1 |" in mixed
    assert "| t | Self+RM | kkkkkkkkkkkkkkkk | safepref 0.1.0 (bbb) | train 1 |" in mixed
    assert ConfigurationRecord(key="k", label="x").complete is False
